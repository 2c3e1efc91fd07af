"""One fetcher per feed at a time, across processes.

The daemon's worker 0 refreshes the feeds on its schedule, and an operator
may run `sipwarden intel sync` meanwhile: two APIBAN syncs at once would
share one key's rate limit without knowing it and write the same paging
state. An advisory ``flock`` on a file beside the store says who fetches;
the kernel releases it when its holder dies, however it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

POLL = 0.5  # seconds between tries while waiting


def lock_path(store: Path, feed: str) -> Path:
    """``sipwarden.db`` + ``apiban:sip`` -> ``sipwarden.db.apiban_sip.lock``."""
    return store.with_name(f"{store.name}.{re.sub(r'[^A-Za-z0-9_.-]', '_', feed)}.lock")


def _try(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.asynccontextmanager
async def feed_lock(store: Path, feed: str, *, wait: float = 0.0) -> AsyncIterator[bool]:
    """Hold ``feed``'s lock for the block; yields False (and holds nothing)
    when another process still had it after ``wait`` seconds."""
    path = lock_path(store, feed)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    fd = _try(path)
    while fd is None and loop.time() < deadline:
        await asyncio.sleep(POLL)
        fd = _try(path)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock
