"""Bans in SQLite: every ban ever made (the history ``bans show`` prints and
progressive lengths count), with when and how it ended.

One row per ban. ``apply`` writes a batch of ban-book changes in one
transaction (WAL mode, so readers such as ``sipwarden bans list`` never wait
on the daemon); ``load`` gives every ban back for ``BanBook.restore``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..values import Ban, Change
from .db import Transaction, connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS bans (
    id          INTEGER PRIMARY KEY,
    target      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    detector    TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL,               -- NULL: permanent
    offence     INTEGER NOT NULL,
    evidence    TEXT NOT NULL,      -- JSON array of strings
    ended_at    REAL                -- lifted or expired; NULL while in force
);
CREATE INDEX IF NOT EXISTS bans_target ON bans (target, created_at);
CREATE INDEX IF NOT EXISTS bans_open ON bans (ended_at) WHERE ended_at IS NULL;
"""


class BanStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # explicit transactions; several workers and the CLI share the file
        self._db = connect(self.path, SCHEMA)

    def close(self) -> None:
        self._db.close()

    def apply(self, changes: Iterable[Change], now: float) -> int:
        """Write a batch of changes in one transaction; returns how many."""
        count = 0
        with self._transaction():
            for change in changes:
                ban = change.ban
                if change.op == "add":
                    # a new ban on a target replaces the one in force
                    self._db.execute(
                        "UPDATE bans SET ended_at = ? WHERE target = ? AND ended_at IS NULL",
                        (ban.created_at, ban.target),
                    )
                    self._db.execute(
                        "INSERT INTO bans (target, reason, detector, created_at, expires_at,"
                        " offence, evidence) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            ban.target,
                            ban.reason,
                            ban.detector,
                            ban.created_at,
                            ban.expires_at,
                            ban.offence,
                            json.dumps(list(ban.evidence)),
                        ),
                    )
                else:
                    ended = now if ban.expires_at is None else min(now, ban.expires_at)
                    self._db.execute(
                        "UPDATE bans SET ended_at = ? WHERE target = ? AND created_at = ?"
                        " AND ended_at IS NULL",
                        (ended, ban.target, ban.created_at),
                    )
                count += 1
        return count

    def load(self) -> list[Ban]:
        """Every ban, oldest first; those that ended are history (their end
        is their expiry for ``BanBook.restore``)."""
        rows = self._db.execute(
            "SELECT target, reason, detector, created_at, expires_at, offence, evidence,"
            " ended_at FROM bans ORDER BY created_at, id"
        )
        bans = []
        for target, reason, detector, created, expires, offence, evidence, ended in rows:
            if ended is not None:
                expires = ended if expires is None else min(expires, ended)
            bans.append(
                Ban(
                    target, reason, detector, created, expires, offence, tuple(json.loads(evidence))
                )
            )
        return bans

    def close_expired(self, now: float) -> int:
        """Mark the bans that ran out while no daemon watched (it was down)
        as ended at their expiry, as a running one would have; returns how many."""
        with self._transaction():
            cursor = self._db.execute(
                "UPDATE bans SET ended_at = expires_at"
                " WHERE ended_at IS NULL AND expires_at IS NOT NULL AND expires_at <= ?",
                (now,),
            )
        return cursor.rowcount

    def last_id(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM bans").fetchone()
        return int(row[0])

    def newer(self, after: int, now: float) -> tuple[int, list[Ban]]:
        """The bans in force written after row ``after`` (by another worker,
        or by `bans add` with no daemon running), and the last row id."""
        rows = self._db.execute(
            f"SELECT id, {_BAN_COLUMNS} FROM bans WHERE id > ? AND ended_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > ?) ORDER BY id",
            (after, now),
        ).fetchall()
        last = max([after, self.last_id()])
        return last, [_ban(row[1:]) for row in rows]

    def open_ban(self, target: str) -> Ban | None:
        """The ban on ``target`` the store holds as not ended, if any."""
        row = self._db.execute(
            f"SELECT {_BAN_COLUMNS} FROM bans WHERE target = ? AND ended_at IS NULL"
            " ORDER BY id DESC LIMIT 1",
            (target,),
        ).fetchone()
        return None if row is None else _ban(row)

    def in_force(self, now: float) -> list[dict[str, Any]]:
        """The bans in force, as `bans list --json` prints them."""
        rows = self._db.execute(
            "SELECT target, reason, detector, created_at, expires_at, offence FROM bans"
            " WHERE ended_at IS NULL AND (expires_at IS NULL OR expires_at > ?)"
            " ORDER BY created_at, id",
            (now,),
        )
        return [
            {
                "ip": target,
                "reason": reason,
                "detector": detector,
                "created_at": created,
                "expires_at": expires,
                "offence": offence,
            }
            for target, reason, detector, created, expires, offence in rows
        ]

    def history(self, target: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT reason, detector, created_at, expires_at, offence, evidence, ended_at"
            " FROM bans WHERE target = ? ORDER BY created_at, id",
            (target,),
        )
        return [
            {
                "reason": reason,
                "detector": detector,
                "created_at": created,
                "expires_at": expires,
                "offence": offence,
                "evidence": json.loads(evidence),
                "ended_at": ended,
            }
            for reason, detector, created, expires, offence, evidence, ended in rows
        ]

    def _transaction(self) -> Transaction:
        return Transaction(self._db)


_BAN_COLUMNS = "target, reason, detector, created_at, expires_at, offence, evidence"


def _ban(row: Any) -> Ban:
    target, reason, detector, created, expires, offence, evidence = row
    return Ban(target, reason, detector, created, expires, offence, tuple(json.loads(evidence)))
