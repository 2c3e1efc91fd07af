"""What the SQLite stores share: how the file is opened, and transactions.

One file serves every store (bans, feeds) and every process that reads it
(the workers, `sipwarden bans list`): WAL, so readers never wait on the
writer; explicit transactions, so a batch is written whole or not at all.

Opening checks the file before anything relies on it: a file that is not a
database (corrupt, truncated, something else), one from a newer release, a
folder that is missing or not writable, a full disk: each is one
``StoreError`` line naming the file and what to do, never a traceback. The
file is created readable by its owner only (it holds every banned address
and the evidence), and an older, wider mode is narrowed. Its tables are
brought up to date (``schema.migrate``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from .schema import MIGRATIONS, VERSION

MODE = 0o600
_F = TypeVar("_F", bound=Callable[..., Any])


class StoreError(Exception):
    """The store cannot be used; the message names the file and what to do."""


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (creating it if missing) and migrate the store at ``path``."""
    path = Path(path)
    _create_private(path)
    try:
        db = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            _migrate(db, path)
        except BaseException:
            db.close()
            raise
    except sqlite3.Error as exc:
        raise StoreError(explain(path, exc)) from None
    return db


def explained(method: _F) -> _F:
    """A store method whose SQLite errors (a full disk, a file gone bad) come
    out as one ``StoreError`` line naming the file (``self.path``): the
    keepers hold what they could not write and say so."""

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreError(explain(self.path, exc)) from exc

    return cast(_F, call)


def explain(path: Path, exc: BaseException) -> str:
    """One line: what is wrong with the store at ``path``, and what to do."""
    text = str(exc)
    where = f"storage.path {str(path)!r}"
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code in (sqlite3.SQLITE_FULL,) or "disk is full" in text:
            return f"{where}: the disk is full; free some space (the bans stay in the kernel)"
        if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT) or "not a database" in text:
            return (
                f"{where} is not a sipwarden database (corrupt, truncated or another file):"
                " move it aside and start again; the bans in the kernel are kept and written"
                " to the new store"
            )
        if code == sqlite3.SQLITE_READONLY or "readonly" in text:
            return f"{where} is read-only: make it (and its folder) writable by sipwarden"
        if code == sqlite3.SQLITE_CANTOPEN or "unable to open" in text:
            return f"{where} cannot be opened: check its folder exists and is writable"
    if isinstance(exc, OSError):
        return f"{where}: {exc.strerror or text}"
    return f"{where}: {text}"


def _create_private(path: Path) -> None:
    """Create the file owner-only (SQLite gives its -wal and -shm files the
    same mode), or narrow an existing one's mode.

    An existing file is never opened here, only stat'ed and chmod'ed by
    name: closing any descriptor of a file drops every POSIX lock this
    process holds on it (POSIX, not SQLite, decides that), so a second
    store opened in a process that already had one (the fleet's cursor
    beside the bans) would drop the first connection's shared lock. Another
    process closing the file (``sipwarden bans show``) then believes it is
    the last user: it checkpoints and deletes the WAL, and this process
    goes on committing into a deleted WAL no one else can read until it
    stops."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, MODE)
    except FileExistsError:
        fd = None
    except IsADirectoryError:
        raise StoreError(f"storage.path {str(path)!r} is a folder: name a file in it") from None
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise StoreError(
                f"storage.path {str(path)!r}: the folder {str(path.parent)!r} does not exist"
            ) from None
        raise StoreError(explain(path, exc)) from None
    if fd is not None:  # new: no lock of this process on it yet to drop
        os.close(fd)
        return
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise StoreError(explain(path, exc)) from None
    if stat.S_ISDIR(mode):
        raise StoreError(f"storage.path {str(path)!r} is a folder: name a file in it")
    if stat.S_IMODE(mode) & 0o077:
        with contextlib.suppress(OSError):  # not ours to change: SQLite still opens it
            os.chmod(path, MODE)


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Run the migrations the file lacks (see ``schema``)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > VERSION:
        raise StoreError(
            f"storage.path {str(path)!r} was written by a newer sipwarden (schema {version};"
            f" this one knows up to {VERSION}): upgrade sipwarden, or move the file aside"
        )
    while version < VERSION:
        with Transaction(db):  # several workers may open it at once: one migrates
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version >= VERSION:
                break
            for statement in _statements(MIGRATIONS[version]):
                db.execute(statement)  # (executescript would commit the transaction first)
            db.execute(f"PRAGMA user_version = {version + 1}")
            version += 1


def _statements(script: str) -> list[str]:
    """A script's statements, one by one (SQLite's own tokenizer says where
    each ends, so a ``;`` in a comment is not an end)."""
    statements, lines = [], []
    for line in script.splitlines():
        lines.append(line)
        text = "\n".join(lines)
        if sqlite3.complete_statement(text):
            statements.append(text.strip())
            lines = []
    if "\n".join(lines).strip():
        raise ValueError(f"an unfinished statement: {chr(10).join(lines)!r}")
    return statements


class Transaction:
    """``with Transaction(db):`` BEGIN IMMEDIATE, then COMMIT, or ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
