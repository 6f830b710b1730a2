"""The README and the docs it sends readers to tell the truth: the paths of every file the kit writes, the profile
default, the torch the set-up installs, what each notebook's first cell says, and benchmark tables equal to the
benchmark JSONs. The text is parsed; the values come from the code and the JSONs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
INSTALL = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
RESULTS = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
KIT = (ROOT / "scripts" / "kit").read_text(encoding="utf-8")
BENCHMARKS = ROOT / "docs" / "benchmarks"


def _section(title: str, text: str = README) -> str:
    """The ``## title`` section of ``text`` (the README by default), up to the next ``## `` heading."""
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def _table(section: str) -> dict[str, tuple[str, str]]:
    """The first markdown table of ``section`` as ``{what: (where, moved by)}``."""
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header == ["what", "where", "moved by"], header
    table = {}
    for line in rows[2:]:
        what, where, moved = (c.strip() for c in line.strip("|").split("|"))
        table[what] = (where, moved)
    return table


def _row(table: dict[str, tuple[str, str]], starts: str) -> tuple[list[str], list[str]]:
    """(backticked names in 'where', backticked names in 'moved by') of the row whose 'what' starts with ``starts``."""
    (key,) = [k for k in table if k.startswith(starts)]
    where, moved = table[key]
    return re.findall(r"`([^`]+)`", where), re.findall(r"`([^`]+)`", moved)


def _home_relative(path: Path, home: Path) -> str:
    return "~/" + str(path.relative_to(home))


@pytest.fixture
def linux_home(tmp_path, monkeypatch):
    """A home folder without XDG overrides or kit variables, so the code's defaults show."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "METALEARN_KIT_DB", "METALEARN_KIT_CACHE_DIR",
                 "METALEARN_KIT_CHECKPOINT_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.mark.skipif(not Path("/proc").exists(), reason="the README's table gives the Linux paths")
def test_where_results_land_matches_the_code(linux_home):
    from metalearn_kit import benchmark_tables, pretrained
    from metalearn_kit.data import _cache
    from metalearn_kit.store import db

    table = _table(_section("Where results land"))

    where, moved = _row(table, "shipped, pretrained checkpoints")
    assert where == [str(pretrained.checkpoint_dir().relative_to(ROOT)) + "/"]
    assert moved[0] == pretrained.DIR_ENV

    where, moved = _row(table, "the meta-database")
    assert where == [_home_relative(db.default_path(), linux_home)]
    assert moved[0] == db.DB_ENV

    where, moved = _row(table, "downloaded datasets")
    assert where == [_home_relative(_cache.cache_dir(), linux_home) + "/"]
    assert moved == [_cache.CACHE_ENV]

    where, _ = _row(table, "benchmark tables")
    assert where[-1] == str(benchmark_tables.BENCHMARK_DIR.resolve().relative_to(ROOT)) + "/"  # through the link

    where, moved = _row(table, "the environment of `scripts/kit`")
    default_venv = re.search(r'VENV="\$\{METALEARN_KIT_VENV:-([^}]+)\}"', KIT)
    assert default_venv and where[0] == default_venv.group(1) + "/" and moved == ["METALEARN_KIT_VENV"]
    assert where[1] == default_venv.group(1) + "-ipywidgets7/" and 'overlay="$VENV-ipywidgets7"' in KIT

    where, moved = _row(table, "runs of `metalearn-kit train`")
    import metalearn_kit.commands.train as train_command

    source = Path(train_command.__file__).read_text()
    assert where == ["runs/EXPERIMENT-ALGORITHM/"] and moved == ["--out"]
    assert 'Path("runs") / f"{args.experiment}-{algorithm_name}"' in source

    where, _ = _row(table, "test artefacts")
    assert where == ["artifacts/"] and "/artifacts/" in (ROOT / ".gitignore").read_text()


def test_readme_profile_default_is_the_code_default(monkeypatch):
    import torch

    import metalearn_kit as mk

    monkeypatch.delenv("METALEARN_KIT_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert mk.get_profile() == "fast"
    devices = _section("Devices and profiles")
    assert "`fast` is the default on every device, GPU included" in devices
    assert "full on CUDA" not in README.replace("`", "") and "default profile is `full`" not in README


def test_readme_torch_version_is_the_kits_pin():
    pin = re.search(r"^KIT_TORCH_VERSION=(\S+)$", KIT, re.M).group(1)
    assert f"torch {pin}" in _section("Quick start") and f"torch {pin}" in _section("Set-up", INSTALL)
    torch_rows = _section("Picking the torch build", INSTALL)
    assert f"torch {pin}, CPU build" in torch_rows and f"torch {pin} from the default index" in torch_rows
    assert "https://download.pytorch.org/whl/cpu" in KIT and "--timeout 5 --retries 0" in KIT


def test_quick_start_names_the_chromium_notice_of_conftest():
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    assert "browser test(s) skipped:" in conftest and "NOTE: 3 browser test(s) skipped:" in _section("Quick start")
    for text in ("second terminal", "apt-get install chromium", "activate", "vary by machine"):
        assert text in README, text


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("0*.ipynb")), ids=lambda p: p.name)
def test_first_code_cell_says_how_to_opt_in_to_full(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    first_code = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    assert 'os.environ["METALEARN_KIT_PROFILE"] = "full"' in first_code
    assert "`fast` sizes" in first_code and "METALEARN_KIT_PROFILE=full" in first_code


def test_notebook_times_are_the_benchmarks():
    # the README's CPU column and its series/peak sentence are docs/benchmarks/notebooks_cpu.json's, not retyped
    bench = json.loads((ROOT / "docs" / "benchmarks" / "notebooks_cpu.json").read_text(encoding="utf-8"))
    section = _section("The notebooks")
    rows = [line for line in section.splitlines() if line.startswith("| [")]
    shown = {re.match(r"\| \[(\w+)\]", line).group(1): line.split("|")[3].strip() for line in rows}
    measured = {Path(entry["name"]).stem: f"{entry['seconds']:.0f} s" for entry in bench["notebooks"]}
    assert shown == measured, "update the README's notebook table from docs/benchmarks/notebooks_cpu.json"
    peak = max(entry["peak_memory_mb"] for entry in bench["notebooks"])
    assert f"the series takes {bench['total_seconds']:.0f} s, the kernel peaks at {peak:.0f} MB" in section


def test_readme_stays_an_overview_with_the_ci_command():
    """The README is the overview (details live in docs/), and it keeps the test command CI runs."""
    assert len(README.splitlines()) < 250
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash scripts/kit test\n" in ci and "bash scripts/kit test\n" in _section("Quick start")
    assert "bash scripts/kit lab\n" in _section("Quick start")
    assert "](docs/install.md)" in README and "](docs/results.md)" in _section("Results, honestly")


@pytest.mark.parametrize("name", ["README.md", "docs/install.md", "docs/results.md"])
def test_relative_links_lead_to_files(name):
    path = ROOT / name
    links = re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8"))
    local = [link.split("#")[0] for link in links if not re.match(r"[a-z]+:", link) and not link.startswith("#")]
    missing = [link for link in local if not (path.parent / link).exists()]
    assert not missing, f"{name} links to missing files: {missing}"


def test_generation_table_is_the_benchmarks():
    """docs/results.md's generation table is what ``scripts/generation_readme_table.py`` prints from the JSON."""
    import contextlib
    import importlib.util
    import io

    spec = importlib.util.spec_from_file_location("generation_readme_table",
                                                  ROOT / "scripts" / "generation_readme_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert script.main([str(BENCHMARKS / "generation_fast.json")]) == 0
    printed = [line for line in out.getvalue().splitlines() if line.startswith("|")]
    shown = [line for line in RESULTS.splitlines() if line.startswith("|")]
    start = shown.index(printed[0])
    assert shown[start:start + len(printed)] == printed, "update docs/results.md from the script's output"


def test_meta_step_table_is_the_benchmarks():
    bench = json.loads((BENCHMARKS / "meta_step_cpu.json").read_text(encoding="utf-8"))
    measured = {(r["algorithm"], r["backend"]): f"{r['tasks_per_s']:.1f} tasks/s" for r in bench["rows"]
                if r["meta_batch"] == 32 and "tasks_per_s" in r}
    header = "| algorithm, meta-batch 32 | `higher` loop | `torch.func` + `vmap` | `torch.func`, loop over tasks |"
    lines = RESULTS.splitlines()
    start = lines.index(header)
    algorithms = {"second-order MAML": "maml", "first-order MAML": "fomaml", "Reptile": "reptile"}
    rows = lines[start + 2:start + 5]
    assert [r.split("|")[1].strip() for r in rows] == list(algorithms)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        algorithm = algorithms[cells[0]]
        assert cells[1:] == [measured[(algorithm, b)] for b in ("higher", "func", "func-loop")], row
