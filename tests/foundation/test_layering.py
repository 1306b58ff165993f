"""DESIGN.md's layering, checked on the source: data flows one way, parts meet at public names,
and no file grows past 600 lines."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "cachescope"

# Low-level modules every part may use: errors, the mimebundle helper and the model table.
SHARED = {"_errors", "_render", "_modeldata"}

# Private top-level modules and the part they belong to.
PRIVATE_MODULES = {
    "_levels": "blocks",
    "_memo": "blocks",
    "_prefixdiff": "stability",
    "_client_sessions": "client",
    "_magic_args": "magics",
    "_magic_cache": "magics",
    "_magic_run": "magics",
    "_ledger_summary": "ledger",
    "_demo": "cli",
    "_demo_run": "cli",
}

# A part may import parts of a lower rank only (DESIGN.md's one-way flow).
RANK = {
    "shared": 0,
    "tokens": 1,
    "blocks": 2,
    "pricing": 2,
    "prompt": 3,
    "syntax": 4,
    "fingerprints": 5,
    "stability": 6,
    "sim": 6,
    "ledger": 6,
    "lint": 7,
    "logs": 7,
    "recorder": 8,
    "client": 9,
    "whatif": 10,
    "otel": 10,
    "views": 11,
    "magics": 12,
    "cli": 13,
    "__init__": 14,
}

# Upward imports that DESIGN.md asks for, each made inside the function that needs it.
ALLOWED_UPWARD = {
    ("prompt", "lint"),  # `Prompt.lint()` is the public shortcut for `cs.lint(prompt)`
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _part(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    top = parts[1]
    if top in SHARED:
        return "shared"
    return PRIVATE_MODULES.get(top, top)


def _imports() -> Iterator[tuple[str, str, str | None, int]]:
    """(importing module, imported module, imported name or None, line) for every import of
    cachescope code, at module level or inside a function."""
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "cachescope":
                    for alias in node.names:
                        target = f"cachescope.{alias.name}"
                        if (SRC / alias.name).is_dir() or (SRC / f"{alias.name}.py").exists():
                            yield module, target, None, node.lineno
                elif node.module.startswith("cachescope."):
                    for alias in node.names:
                        yield module, node.module, alias.name, node.lineno
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("cachescope."):
                        yield module, alias.name, None, node.lineno


def _edges() -> list[tuple[str, str, str, str | None, int]]:
    return [
        (module, _part(module), target, name, line)
        for module, target, name, line in _imports()
        if _part(target) not in (_part(module), "__init__")
    ]


def test_every_part_has_a_place_in_the_flow() -> None:
    parts = {_part(_module_name(path)) for path in SRC.rglob("*.py")}
    assert parts - set(RANK) == set(), "add the new part to RANK (and to DESIGN.md)"


def test_data_flows_one_way() -> None:
    upward = [
        f"{module}:{line} imports {target} ({part} may not import {_part(target)})"
        for module, part, target, _name, line in _edges()
        if RANK.get(part, 99) <= RANK.get(_part(target), 99)
        and (part, _part(target)) not in ALLOWED_UPWARD
    ]
    assert upward == []


def test_parts_import_each_other_by_public_names_only() -> None:
    private = []
    for module, _part_name, target, name, line in _edges():
        if _part(target) == "shared":
            continue
        inner = target.split(".")[2:]  # below the part's own module or package
        top = target.split(".")[1]
        if top in PRIVATE_MODULES or any(c.startswith("_") for c in inner):
            private.append(f"{module}:{line} imports the private module {target}")
        elif name is not None and name.startswith("_"):
            private.append(f"{module}:{line} imports the private name {target}.{name}")
    assert private == []


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_source_file_is_over_600_lines(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= 600, f"{path.name} has {lines} lines: split it by what each piece does"
