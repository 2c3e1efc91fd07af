"""Bans in SQLite: every ban ever made (the history ``bans show`` prints and
progressive lengths count), with when and how it ended.

One row per ban. ``apply`` writes a batch of ban-book changes in one
transaction (WAL mode, so readers such as ``sipwarden bans list`` never wait
on the daemon); ``load`` gives every ban back for ``BanBook.restore``.
Writing is idempotent: a ban already on record (its target and creation
time) is not written twice, so a batch retried after a failure, or the bans
in force written again into a store rebuilt while running, leave one row.
``missing`` says which of the kernel's bans the store has no record of.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..values import Ban, Change
from .db import Transaction, connect, explained


class BanStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # explicit transactions; several workers and the CLI share the file
        self._db = connect(self.path)
        self._inode = os.stat(self.path).st_ino

    def vanished(self) -> bool:
        """Whether the file was deleted or replaced since it was opened (the
        connection would go on writing to a file no one can open again)."""
        try:
            return os.stat(self.path).st_ino != self._inode
        except OSError:
            return True

    def close(self) -> None:
        self._db.close()

    @explained
    def apply(self, changes: Iterable[Change], now: float) -> int:
        """Write a batch of changes in one transaction; returns how many."""
        count = 0
        with self._transaction():
            for change in changes:
                ban = change.ban
                if change.op == "add":
                    if self._recorded(ban):
                        count += 1
                        continue
                    # a new ban on a target replaces the one in force
                    self._db.execute(
                        "UPDATE bans SET ended_at = ? WHERE target = ? AND ended_at IS NULL",
                        (ban.created_at, ban.target),
                    )
                    self._db.execute(
                        "INSERT INTO bans (target, reason, detector, created_at, expires_at,"
                        " offence, evidence, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            ban.target,
                            ban.reason,
                            ban.detector,
                            ban.created_at,
                            ban.expires_at,
                            ban.offence,
                            json.dumps(list(ban.evidence)),
                            ban.origin,
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

    @explained
    def load(self) -> list[Ban]:
        """Every ban, oldest first; those that ended are history (their end
        is their expiry for ``BanBook.restore``)."""
        rows = self._db.execute(
            "SELECT target, reason, detector, created_at, expires_at, offence, evidence,"
            " origin, ended_at FROM bans ORDER BY created_at, id"
        )
        bans = []
        for *columns, ended in rows:
            ban = _ban(columns)
            if ended is not None:
                expires = ended if ban.expires_at is None else min(ban.expires_at, ended)
                ban = replace(ban, expires_at=expires)
            bans.append(ban)
        return bans

    @explained
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

    @explained
    def missing(self, bans: Iterable[Ban], now: float) -> list[Ban]:
        """Those of ``bans`` (the kernel's, ``Enforcer.bans``) the store
        knows nothing of: no ban in force on the target, and no record of
        this very ban (one that was lifted is not brought back)."""
        lacking = []
        for ban in bans:
            in_force = self._db.execute(
                "SELECT 1 FROM bans WHERE target = ? AND ended_at IS NULL"
                " AND (expires_at IS NULL OR expires_at > ?) LIMIT 1",
                (ban.target, now),
            ).fetchone()
            if in_force is None and not self._recorded(ban):
                lacking.append(ban)
        return lacking

    def _recorded(self, ban: Ban) -> bool:
        """Whether this ban (target, creation time to the millisecond) is on record."""
        row = self._db.execute(
            "SELECT 1 FROM bans WHERE target = ? AND created_at BETWEEN ? AND ? LIMIT 1",
            (ban.target, ban.created_at - 0.001, ban.created_at + 0.001),
        ).fetchone()
        return row is not None

    @explained
    def last_id(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM bans").fetchone()
        return int(row[0])

    @explained
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

    @explained
    def open_ban(self, target: str) -> Ban | None:
        """The ban on ``target`` the store holds as not ended, if any."""
        row = self._db.execute(
            f"SELECT {_BAN_COLUMNS} FROM bans WHERE target = ? AND ended_at IS NULL"
            " ORDER BY id DESC LIMIT 1",
            (target,),
        ).fetchone()
        return None if row is None else _ban(row)

    @explained
    def in_force(self, now: float) -> list[dict[str, Any]]:
        """The bans in force, as `bans list --json` prints them."""
        rows = self._db.execute(
            "SELECT target, reason, detector, created_at, expires_at, offence, origin FROM bans"
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
                "origin": origin,
            }
            for target, reason, detector, created, expires, offence, origin in rows
        ]

    @explained
    def made(self, since: float, until: float) -> list[dict[str, Any]]:
        """The bans made in [``since``, ``until``], oldest first (the report's
        bans by reason): target, reason, detector, created, expires, ended."""
        rows = self._db.execute(
            "SELECT target, reason, detector, created_at, expires_at, ended_at FROM bans"
            " WHERE created_at >= ? AND created_at <= ? ORDER BY created_at, id",
            (since, until),
        )
        return [
            {
                "ip": target,
                "reason": reason,
                "detector": detector,
                "created_at": created,
                "expires_at": expires,
                "ended_at": ended,
            }
            for target, reason, detector, created, expires, ended in rows
        ]

    @explained
    def history(self, target: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT reason, detector, created_at, expires_at, offence, evidence, ended_at,"
            " origin FROM bans WHERE target = ? ORDER BY created_at, id",
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
                "origin": origin,
            }
            for reason, detector, created, expires, offence, evidence, ended, origin in rows
        ]

    def _transaction(self) -> Transaction:
        return Transaction(self._db)


_BAN_COLUMNS = "target, reason, detector, created_at, expires_at, offence, evidence, origin"


def _ban(row: Any) -> Ban:
    target, reason, detector, created, expires, offence, evidence, origin = row
    return Ban(
        target, reason, detector, created, expires, offence, tuple(json.loads(evidence)), origin
    )
