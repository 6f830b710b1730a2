"""docs/architecture.md tells the truth: every import between rooms of ``metalearn_kit`` is one its room table's
"may import" column allows, and every room the table names exists."""

from __future__ import annotations

import re

from test_architecture import PACKAGE_DIR, _imports, _modules

DOC = PACKAGE_DIR.parent / "docs" / "architecture.md"
# The helpers every room may import (the doc's "everywhere" line).
EVERYWHERE = {"config", "_checks", "_lazy", "checkpoints"}
# The top-level package re-exports every room lazily: it is the public face, not a room of the row.
PUBLIC_FACE = "metalearn_kit"


def room_of(module: str) -> str:
    """``metalearn_kit.meta.step`` -> ``meta``; ``metalearn_kit.pretrained`` -> ``pretrained``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _names(cell: str) -> set[str]:
    """The rooms a table cell names: its backticked tokens, without ``/`` or ``.py``."""
    return {re.sub(r"(/|\.py)$", "", token) for token in re.findall(r"`([^`]+)`", cell)}


def room_table(text: str) -> dict[str, set[str] | None]:
    """``{room: rooms it may import}`` from the doc's table (``None``: anything)."""
    table: dict[str, set[str] | None] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        allowed = None if cells[2].strip().lower().startswith("anything") else _names(cells[2])
        for room in _names(cells[0]):
            table[room] = allowed
    return table


def actual_imports() -> dict[str, set[str]]:
    """``{room: rooms it imports}`` from every import statement of the package (module and function level)."""
    modules = _modules()
    known = set(modules)
    found: dict[str, set[str]] = {}
    for name, path in modules.items():
        here = room_of(name)
        found.setdefault(here, set())
        found[here] |= {room_of(t) for t in _imports(name, path, known)} - {here}
    return found


def test_room_table_parses():
    table = room_table(DOC.read_text())
    assert {"data", "tasks", "models", "meta", "recipes", "evaluation", "store", "widgets"} <= set(table)


def test_every_room_in_the_table_exists():
    rooms = {room_of(name) for name in _modules()}
    missing = set(room_table(DOC.read_text())) - rooms
    assert not missing, f"docs/architecture.md names rooms the package does not have: {sorted(missing)}"


def violations(table: dict[str, set[str] | None], imports: dict[str, set[str]]) -> dict[str, list[str]]:
    """``{room: rooms it imports that the table does not allow}`` (a room missing from the table: all of them)."""
    wrong = {}
    for room, targets in imports.items():
        if room in EVERYWHERE or room == PUBLIC_FACE:
            continue
        allowed = table.get(room, set())
        if allowed is None:
            continue
        extra = targets - allowed - EVERYWHERE
        if extra or room not in table:
            wrong[room] = sorted(extra) or ["(room missing from the table)"]
    return wrong


def test_imports_follow_the_may_import_column():
    wrong = violations(room_table(DOC.read_text()), actual_imports())
    assert not wrong, f"imports the doc's 'may import' column does not allow (room: rooms): {wrong}"


def test_the_checker_sees_a_forbidden_import():
    table = room_table("| `data/` | sources | `config`, `_checks` |\n| `commands/` | the CLI | anything |")
    assert table == {"data": {"config", "_checks"}, "commands": None}
    assert violations(table, {"data": {"config", "tasks"}, "commands": {"meta"}}) == {"data": ["tasks"]}
    assert violations(table, {"viz": {"tasks"}}) == {"viz": ["tasks"]}
    assert violations(table, {"data": {"config"}}) == {}
