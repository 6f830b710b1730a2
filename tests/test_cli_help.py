"""``metalearn-kit --help`` and every subcommand's ``--help``: plain text (no reST markup), every option explained,
one profile default everywhere, the multi-machine example complete."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from metalearn_kit.cli import build_parser

PROFILE_DEFAULT = "default: $METALEARN_KIT_PROFILE, else fast"


def _commands() -> dict[str, argparse.ArgumentParser]:
    """'metalearn-kit', 'metalearn-kit bench', 'metalearn-kit bench restoration', ... -> its parser."""
    found = {}

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        found[name] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for word, sub in action.choices.items():
                    walk(sub, f"{name} {word}")

    walk(build_parser(), "metalearn-kit")
    return found


COMMANDS = _commands()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_is_plain_text_and_explains_every_option(name):
    parser = COMMANDS[name]
    text = parser.format_help()
    assert "``" not in text, f"`{name} --help` shows reST double backticks:\n{text}"
    assert ":func:" not in text and ":class:" not in text, text
    silent = [action.option_strings or [action.dest] for action in parser._actions
              if action.help is None and not isinstance(action, argparse._HelpAction)]
    assert not silent, f"`{name} --help`: no help text for {silent}"
    if parser.description:  # a description ends where its sentence ends
        assert parser.description.rstrip().endswith((".", ")", ":")), f"{name}: {parser.description!r}"


def test_every_profile_option_has_the_same_default():
    with_profile = {name: next(a for a in p._actions if "--profile" in a.option_strings)
                    for name, p in COMMANDS.items() if any("--profile" in a.option_strings for a in p._actions)}
    assert {"metalearn-kit train", "metalearn-kit pretrain", "metalearn-kit notebooks execute",
            "metalearn-kit bench notebooks", "metalearn-kit bench restoration",
            "metalearn-kit bench generation"} <= set(with_profile)
    for name, action in with_profile.items():
        assert action.default is None, f"{name}: --profile defaults to {action.default!r}, not to the kit's profile"
        assert PROFILE_DEFAULT in action.help, f"{name}: {action.help!r}"
        assert set(action.choices or ()) == {"fast", "full"} or action.metavar == "{fast,full}", name


def test_train_help_shows_a_complete_multi_machine_example():
    lines = COMMANDS["metalearn-kit train"].format_help().splitlines()
    start = next(i for i, line in enumerate(lines) if "--nnodes" in line)
    end = next(i for i in range(start, len(lines)) if not lines[i].rstrip().endswith("\\"))
    line = " ".join(lines[start:end + 1])  # the command with its continuation lines
    assert "--rdzv-backend c10d" in line and "--rdzv-endpoint" in line and "--rdzv-id" in line, line


def test_the_command_prints_its_help(monkeypatch):
    """The console command prints the parser's help, listing every subcommand of ``cli.COMMANDS``."""
    import os

    from metalearn_kit.cli import COMMANDS as SUBCOMMANDS

    monkeypatch.setenv("COLUMNS", "100")  # the same line width here and in the child process
    done = subprocess.run([sys.executable, "-m", "metalearn_kit.cli", "--help"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "100"})
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout == build_parser().format_help()
    listed = {"metalearn-kit " + " ".join(path) for path in SUBCOMMANDS}
    assert listed <= set(COMMANDS) and all(path[0] in done.stdout for path in SUBCOMMANDS)


def test_running_a_notebook_prints_no_transport_warning(tmp_path):
    """`notebooks execute` and `bench notebooks` run each notebook on a kernel of their own, over IPC: a kernel over
    TCP warns 'Kernel is running over TCP without encryption' on the user's terminal."""
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    path = tmp_path / "tiny.ipynb"
    nbformat.write(notebook, path)
    code = ("from metalearn_kit.commands.notebooks import execute_notebook; "
            f"run = execute_notebook({str(path)!r}, save=True); print('ok' if run.ok else run.errors)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr
    assert "without encryption" not in done.stderr and "Kernel is running over TCP" not in done.stderr, done.stderr
    assert "Parent appears to have exited" not in done.stderr, "the kernel outlived the run: " + done.stderr
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    assert outputs[0]["text"] == "42\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.ipynb"], "the kernel left files beside the notebook"
