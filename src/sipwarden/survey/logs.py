"""Where a PBX's logs are: the first of its usual files that exists, or
its systemd unit when it logs to the journal (read under the survey's root)."""

from __future__ import annotations

from pathlib import Path

UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")


def first_existing(root: Path, *paths: str) -> str | None:
    """The first of ``paths`` (the machine's) that is a file under ``root``."""
    return next((p for p in paths if (root / p.lstrip("/")).is_file()), None)


def journal_unit(root: Path, unit: str) -> str | None:
    """``unit`` if a unit file by that name is installed."""
    return unit if any((root / d.lstrip("/") / unit).exists() for d in UNIT_DIRS) else None
