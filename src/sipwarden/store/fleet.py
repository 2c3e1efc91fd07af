"""Where this node is in the fleet's ban stream (``fleet_state``), so that
a restart replays what it missed and applies nothing twice.

Two keys: ``stream-id``, the id of the last stream entry this node applied,
and ``epoch``, the Redis data set it belongs to (a Redis that lost its data
has a new epoch: the ids before it mean nothing there). ``save`` writes
both in one transaction. Errors are ``StoreError`` (one line naming the
file), as the other stores'. Bounded: two rows.
"""

from __future__ import annotations

from pathlib import Path

from .db import Transaction, connect, explained


class FleetCursor:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = connect(self.path)

    def close(self) -> None:
        self._db.close()

    @explained
    def load(self) -> tuple[str | None, str | None]:
        """(the last stream id applied, the epoch it belongs to); None: never."""
        rows = dict(self._db.execute("SELECT key, value FROM fleet_state").fetchall())
        return rows.get("stream-id"), rows.get("epoch")

    @explained
    def save(self, stream_id: str, epoch: str) -> None:
        with Transaction(self._db):
            self._db.executemany(
                "INSERT OR REPLACE INTO fleet_state (key, value) VALUES (?, ?)",
                [("stream-id", stream_id), ("epoch", epoch)],
            )
