"""No package reads another's private names (issue 13; ``docs/architecture.md``).

A package's public door is its ``__init__`` and the names without a leading
underscore; ``_x`` is for its own modules. import-linter checks private
*modules*; this checks private *names*, from the source: ``from ... import
_x`` out of another top-level package, and ``something._x`` in a package
that defines no ``_x`` of its own (so the name can only be someone else's:
another package's, or a library's). ``self._x`` and ``cls._x`` are a class's
own; the named tuple API (``_replace``, ``_asdict``...) is public despite
its spelling.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import sipwarden

ROOT = Path(sipwarden.__file__).parent
PUBLIC_DESPITE_SPELLING = frozenset({"_replace", "_asdict", "_fields", "_make", "_exit"})


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _package(path: Path) -> str:
    """The top-level package a source file belongs to ("" for the root's own modules)."""
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else ""


def _defined(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, classes, module and class
    variables, and attributes it assigns (``self._x = ...``)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.rpartition(".")[2])
    return {n for n in names if _private(n)}


def _imported_package(module: Path, node: ast.ImportFrom) -> str | None:
    """The top-level sipwarden package an ``import from`` reads (None: not ours)."""
    if node.level == 0:
        parts = (node.module or "").split(".")
        return (parts[1] if len(parts) > 1 else "") if parts[0] == "sipwarden" else None
    base = module.relative_to(ROOT).parent.parts[: len(module.relative_to(ROOT).parts) - node.level]
    target = [*base, *(node.module or "").split(".")] if node.module else list(base)
    target = [t for t in target if t]
    return target[0] if target else ""


def violations(root: Path = ROOT) -> list[str]:
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in root.rglob("*.py")}
    own: dict[str, set[str]] = defaultdict(set)
    for path, tree in trees.items():
        own[_package(path)] |= _defined(tree)
    found = []
    for path, tree in trees.items():
        package = _package(path)
        where = path.relative_to(root)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _imported_package(path, node)
                if source is not None and source != package:
                    found += [
                        f"{where}:{node.lineno}: imports {a.name} from {node.module or '.'}"
                        for a in node.names
                        if _private(a.name)
                    ]
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    continue
                if node.attr in own[package] or node.attr in PUBLIC_DESPITE_SPELLING:
                    continue
                found.append(f"{where}:{node.lineno}: reads .{node.attr}")
    return sorted(found)


def test_no_package_reads_another_packages_private_names() -> None:
    assert violations() == []


def test_the_check_finds_a_private_read(tmp_path: Path) -> None:
    """It can fail: a module of one package reading another's private names."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "m.py").write_text(
        "_hidden = 1\nclass C:\n    def __init__(self):\n        self._slot = 0\n"
    )
    (tmp_path / "b" / "n.py").write_text(
        "from ..a.m import _hidden\nfrom ..a.m import C\nC()._slot\nC()._asdict\n"
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = violations(tmp_path)
    finally:
        ROOT = saved
    assert found == ["b/n.py:1: imports _hidden from a.m", "b/n.py:3: reads ._slot"]
