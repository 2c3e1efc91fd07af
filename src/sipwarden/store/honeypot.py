"""The honeypot's call records in SQLite: one row per (source, number),
written in batches (``deception.CallRecords.drain``), read by `sipwarden
honeypot calls` and export, and REST.

``add`` adds a batch up: a new (source, number) is inserted; a known one
gets its count added, its first and last seen widened, and the details of
the latest call (User-Agent, media address, classification...) when the
batch's call is the later one. Bounds on disk: ``prune`` deletes the
records not called since the retention and, past a row cap, the least
recently called. Every method raises ``StoreError`` (one line naming the
file) on a SQLite error, as the other stores do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ..deception.records import DETAILS
from .db import Transaction, connect, explained

# every column a record has, in the order --json gives them
COLUMNS: Final = ("source", "number", "count", "first_seen", "last_seen", *DETAILS)
_LATEST: Final = ", ".join(
    f"{name} = CASE WHEN excluded.last_seen >= honeypot_calls.last_seen"
    f" THEN excluded.{name} ELSE honeypot_calls.{name} END"
    for name in DETAILS
)
_UPSERT: Final = (
    f"INSERT INTO honeypot_calls ({', '.join(COLUMNS)})"
    f" VALUES ({', '.join('?' * len(COLUMNS))})"
    " ON CONFLICT (source, number) DO UPDATE SET"
    " count = honeypot_calls.count + excluded.count,"
    " first_seen = MIN(honeypot_calls.first_seen, excluded.first_seen),"
    f" {_LATEST},"  # (SET reads the row as it was: every CASE sees the stored last_seen)
    " last_seen = MAX(honeypot_calls.last_seen, excluded.last_seen)"
)


class HoneypotStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = connect(self.path)

    def close(self) -> None:
        self._db.close()

    @explained
    def add(self, records: Sequence[dict[str, Any]]) -> int:
        """Add up a batch of records in one transaction; returns how many."""
        with Transaction(self._db):
            self._db.executemany(
                _UPSERT, [tuple(record.get(name) for name in COLUMNS) for record in records]
            )
        return len(records)

    @explained
    def prune(self, now: float, *, retention: float, max_rows: int) -> int:
        """Delete the records not called within ``retention``, then the least
        recently called past ``max_rows``; how many went."""
        with Transaction(self._db):
            old = self._db.execute(
                "DELETE FROM honeypot_calls WHERE last_seen < ?", (now - retention,)
            ).rowcount
            over = self._db.execute(
                "DELETE FROM honeypot_calls WHERE id IN (SELECT id FROM honeypot_calls"
                " ORDER BY last_seen DESC, id DESC LIMIT -1 OFFSET ?)",
                (max_rows,),
            ).rowcount
        return int(old + over)

    @explained
    def calls(
        self, *, since: float | None = None, source: str | None = None, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        """The records called since ``since`` (from ``source`` only, if
        given), the most recently called first, at most ``limit``."""
        where: list[str] = ["1"]
        args: list[Any] = []
        if since is not None:
            where.append("last_seen >= ?")
            args.append(since)
        if source is not None:
            where.append("source = ?")
            args.append(source)
        rows = self._db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM honeypot_calls WHERE {' AND '.join(where)}"
            " ORDER BY last_seen DESC, id DESC LIMIT ?",
            (*args, limit),
        )
        return [dict(zip(COLUMNS, row, strict=True)) for row in rows]
