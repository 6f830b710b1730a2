"""The ``metalearn-kit`` command: meta-learning for image generation and restoration, from the terminal.

This file is the console entry point and only lists the sub-commands; each lives in a module of
:mod:`metalearn_kit.commands`. A command module defines ``configure_parser(parser)`` and ``main(args) -> int``
and is imported only when its command runs, so ``metalearn-kit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

__all__ = ["COMMANDS", "build_parser", "main"]

# command words -> (module, one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("info",): ("metalearn_kit.commands.info", "versions, device and profile of this installation"),
    ("notebooks", "execute"): ("metalearn_kit.commands.notebooks", "re-execute the notebooks and save their outputs"),
    ("bench", "notebooks"): ("metalearn_kit.commands.bench_notebooks", "time and memory of each notebook"),
    ("bench", "meta-step"): ("metalearn_kit.commands.bench_meta_step", "time one meta-step per backend"),
    ("bench", "restoration"): ("metalearn_kit.commands.bench_restoration",
                               "the restoration benchmark table"),
    ("bench", "generation"): ("metalearn_kit.commands.bench_generation", "the generation benchmark table"),
    ("bench", "warmstart"): ("metalearn_kit.commands.bench_warmstart",
                             "choose a start from the meta-labels: the warm-start table"),
    ("train",): ("metalearn_kit.commands.train", "meta-train an experiment from its config"),
    ("db",): ("metalearn_kit.commands.db", "query the meta-database"),
    ("pretrain",): ("metalearn_kit.commands.pretrain",
                    "train the shipped checkpoints (config, seed, metrics recorded)"),
}
GROUPS = {"notebooks": "run the notebooks", "bench": "benchmarks: print a table, write it as JSON"}


def plain_text(text: str | None) -> str | None:
    """Docstring markup as terminal text: reST ``literals`` and :role:`targets` lose their markup."""
    if not text:
        return text
    return re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text).replace("``", "")


def _plain_help(parser: argparse.ArgumentParser) -> None:
    parser.description, parser.epilog = plain_text(parser.description), plain_text(parser.epilog)
    for action in parser._actions:
        if action.help and action.help is not argparse.SUPPRESS:
            action.help = plain_text(action.help)


def build_parser(load_modules: bool = True, words: tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metalearn-kit", description=plain_text(__doc__.split("\n\n")[0]),
                                     epilog="`metalearn-kit COMMAND --help` shows the options of one command.")
    groups: dict[str, argparse._SubParsersAction] = {}
    top = parser.add_subparsers(dest="command", metavar="COMMAND", help="one of:")
    top.required = True
    for path, (module_name, help_text) in COMMANDS.items():
        description = help_text[0].upper() + help_text[1:] + "."  # until the command module says more
        if len(path) == 1:
            sub = top.add_parser(path[0], help=help_text, description=description)
        else:
            if path[0] not in groups:
                group = top.add_parser(path[0], help=GROUPS[path[0]], description=f"{GROUPS[path[0]].capitalize()}.")
                groups[path[0]] = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", help="one of:")
                groups[path[0]].required = True
            sub = groups[path[0]].add_parser(path[1], help=help_text, description=description)
        sub.set_defaults(_module=module_name)
        if load_modules and (words is None or tuple(words[: len(path)]) == path):
            module = importlib.import_module(module_name)
            module.configure_parser(sub)
            _plain_help(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    words = tuple(w for w in argv if not w.startswith("-"))[:2]
    parser = build_parser(words=words)
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.main(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as err:
        # bad input: one clear line, not a traceback
        print(f"metalearn-kit: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
