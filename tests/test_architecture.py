"""The layout holds: no import cycle inside ``metalearn_kit`` (module-level *and* function-level imports), no
module above the size limit, one public face with ``__all__`` everywhere, notebooks that import only public
names, and every shipped checkpoint loading through the one checkpoint service."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest
from torch import nn

import metalearn_kit

PACKAGE_DIR = Path(metalearn_kit.__file__).resolve().parent
NOTEBOOK_DIR = PACKAGE_DIR.parent / "notebooks"
MAX_LINES = 450


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every ``metalearn_kit`` module ``name`` imports, anywhere in the file (a function-level import is an
    import too: it runs when the function does)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from pkg import sub`` imports the sub-module when there is one
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def test_no_import_cycle():
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    # a module also imports the packages above its target (importing a.b.c runs a/__init__ and a/b/__init__),
    # except its own ancestors (a module inside a package never re-enters that package's __init__)
    for name, targets in graph.items():
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for target in list(targets):
            parts = target.split(".")
            graph[name] |= {".".join(parts[:i]) for i in range(2, len(parts))} - ancestors - {name}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_module_above_the_size_limit():
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not too_long, f"modules above {MAX_LINES} lines (split them by idea): {too_long}"


MAX_FUNCTION_LINES = 60


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """``{function name: lines}`` for every function (methods and nested ones too) longer than ``limit`` lines,
    counted from its ``def`` to its last line (decorators excluded)."""
    return {node.name: node.end_lineno - node.lineno + 1 for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > limit}


def test_the_length_check_counts_lines():
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    assert long_functions(f"def long():\n{body}\n") == {"long": 61}
    assert long_functions(f"def fits():\n{body[:-len(body.splitlines()[-1]) - 1]}\n") == {}


def test_no_function_above_the_length_limit():
    found = {f"{name}.{fn}": n for name, path in _modules().items()
             for fn, n in long_functions(path.read_text()).items()}
    assert not found, f"functions above {MAX_FUNCTION_LINES} lines (split them by step): {found}"


def test_the_public_face():
    from metalearn_kit import FOMAML, MAML, MetaSGD, Reptile, Task, meta_train  # noqa: F401

    for name in metalearn_kit.__all__:
        assert getattr(metalearn_kit, name) is not None, name


@pytest.mark.parametrize("package", sorted(n for n, p in _modules().items() if p.name == "__init__.py"))
def test_every_package_lists_its_public_names(package):
    module = importlib.import_module(package)
    assert isinstance(getattr(module, "__all__", None), list), f"{package} has no __all__ list"
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.__all__ names {name!r}, which it does not have"


def _notebook_imports(path: Path) -> list[tuple[str, str]]:
    """``(module, name)`` for every ``from metalearn_kit... import name`` in the notebook's code cells, and
    ``(module, attribute)`` for every ``alias.attribute`` of an ``import metalearn_kit... as alias``."""
    found = []
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        tree = ast.parse("\n".join(lines))
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("metalearn_kit"):
                found += [(node.module, a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                aliases.update({a.asname or a.name: a.name for a in node.names if a.name.startswith("metalearn_kit")})
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                found.append((aliases[node.value.id], node.attr))
    return found


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_import_only_public_names(notebook):
    allowed_dunder = {"__file__", "__version__"}
    for module_name, name in _notebook_imports(notebook):
        module = importlib.import_module(module_name)
        public = set(getattr(module, "__all__", ()))
        if name in allowed_dunder:
            continue
        assert name in public, f"{notebook.name} uses {module_name}.{name}, which is not in {module_name}.__all__"


def test_every_shipped_checkpoint_loads():
    from metalearn_kit import pretrained

    present = pretrained.available()
    assert set(pretrained.CHECKPOINTS) <= set(present)
    shipped = [name for name, ok in present.items() if ok]
    missing = set(pretrained.CHECKPOINTS) - set(shipped)
    assert not missing, f"registered checkpoints without a shipped file: {missing}"
    for name in shipped:
        model, meta = pretrained.load_pretrained(name)
        assert isinstance(model, nn.Module) and not model.training
        assert meta["seed"] == pretrained.REGISTRY[name].seed, name


def test_nothing_registers_at_import():
    import subprocess
    import sys

    code = ("import sys, metalearn_kit.pretrained, metalearn_kit.cli; print(sorted(m for m in sys.modules "
            "if m.startswith(('metalearn_kit.recipes', 'metalearn_kit.evaluation'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"importing the checkpoint service or the CLI loaded {out}"


def test_store_is_persistence_only():
    modules = _modules()
    known = set(modules)
    for name, path in modules.items():
        if name.startswith("metalearn_kit.store"):
            engine = {t for t in _imports(name, path, known)
                      if t.startswith(("metalearn_kit.meta", "metalearn_kit.recipes", "metalearn_kit.evaluation"))}
            assert not engine, f"{name} imports {sorted(engine)}: the store persists, adaptation lives above it"
