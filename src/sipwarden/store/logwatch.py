"""Where logwatch mode is in each log it follows, so that a restart reads
no line twice and loses none (``logwatch_positions``, one row per source).

A file's position is the file (device, inode), the offset of the end of
the last whole line handed on, and the file's first bytes (a copy, or a new
file with a recycled inode, is told apart by them); the journal's is its
cursor. ``save`` writes a batch in one transaction. Every method raises
``StoreError`` (one line naming the file) on a SQLite error, as the other
stores do. Bounded: one row per configured source (rows of sources no
longer configured are left; they are a few bytes each).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from .db import Transaction, connect, explained


class Position(NamedTuple):
    device: int | None = None
    inode: int | None = None
    offset: int = 0
    head: bytes = b""
    cursor: str | None = None


class LogPositions:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = connect(self.path)

    def close(self) -> None:
        self._db.close()

    @explained
    def load(self) -> dict[str, Position]:
        """Every source's position, by source name."""
        rows = self._db.execute(
            "SELECT source, device, inode, offset, head, cursor FROM logwatch_positions"
        )
        return {
            row[0]: Position(row[1], row[2], row[3], bytes(row[4] or b""), row[5]) for row in rows
        }

    @explained
    def save(self, positions: Iterable[tuple[str, Position]], now: float) -> None:
        """Write these sources' positions, all or none."""
        with Transaction(self._db):
            self._db.executemany(
                "INSERT OR REPLACE INTO logwatch_positions"
                " (source, device, inode, offset, head, cursor, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(name, *pos, now) for name, pos in positions],
            )
