"""What the SQLite stores share: how the file is opened, and transactions.

One file serves every store (bans, feeds) and every process that reads it
(the workers, `sipwarden bans list`): WAL, so readers never wait on the
writer; explicit transactions, so a batch is written whole or not at all.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(path: str | Path, schema: str) -> sqlite3.Connection:
    db = sqlite3.connect(Path(path), isolation_level=None, timeout=10.0, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db


class Transaction:
    """``with Transaction(db):`` BEGIN IMMEDIATE, then COMMIT, or ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
