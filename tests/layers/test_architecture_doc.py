"""docs/architecture.md names what exists (issue 13: the doc matches the code).

Its package table has a row per top-level package or module of
``src/sipwarden``, and every file or folder a row names (in backticks,
ending in ``.py`` or ``/``) exists inside that package. A package added
without a row, or a module moved without the doc, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import sipwarden

ROOT = Path(sipwarden.__file__).parent
DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
ROW = re.compile(r"^\| `([a-z_]+(?:/|\.py))` \| (.*) \|$")


def rows() -> dict[str, str]:
    return {m[1]: m[2] for line in DOC.read_text().splitlines() if (m := ROW.match(line))}


def top_level() -> set[str]:
    names = {p.name + "/" for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    names |= {p.name for p in ROOT.glob("*.py") if p.name != "__init__.py"}
    return names


def test_every_top_level_package_has_a_row_and_every_row_exists() -> None:
    table = set(rows())
    assert table, "no package table found"
    assert top_level() - table == set(), "packages missing from docs/architecture.md"
    assert table - top_level() == set(), "rows for packages that do not exist"


def test_every_file_a_row_names_exists() -> None:
    missing = []
    for package, text in rows().items():
        if not package.endswith("/"):
            continue
        base = ROOT / package
        for name in re.findall(r"`([a-z_]+(?:/|\.py|\.c))`", text):
            found = [*base.rglob(name.rstrip("/"))]
            if not found:
                missing.append(f"{package}{name}")
    assert missing == []
