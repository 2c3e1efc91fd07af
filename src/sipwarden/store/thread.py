"""A store's own thread: how asyncio code uses a blocking store.

SQLite blocks, so the daemon's stores (bans, feeds) are used from one
thread each: one connection, calls in the order they were made. A call once
made is carried out even if the coroutine that asked is cancelled
(``asyncio.shield``): a write is never half-asked. ``close`` waits for the
calls in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

_T = TypeVar("_T")


class StoreThread:
    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name)

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` on the store's thread, after every call made before it."""
        future = asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        return await asyncio.shield(future)

    def close(self) -> None:
        """Finish the calls in flight; no call may be made after this."""
        self._pool.shutdown(wait=True)
