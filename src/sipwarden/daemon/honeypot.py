"""The honeypot keeper: one worker's call records (``deception.records``),
from memory to the store every ``WRITE_EVERY`` seconds, on the store's own
thread; worker 0 prunes past the retention and the row cap once a minute.

A store that fails keeps the records in memory (the deceiver's own bound,
``[deception.fake_pbx] max_records``, holds: past it new keys are counted
and dropped) and tries again at the next write. ``write`` is also what
`sipwarden honeypot calls` asks every worker before reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import HoneypotConfig
from ..deception.records import CallRecords
from ..store import HoneypotStore, StoreError
from ..store.thread import StoreThread

log = logging.getLogger("sipwarden.honeypot")
WRITE_EVERY = 2.0  # seconds
PRUNE_EVERY = 60.0


class HoneypotKeeper:
    def __init__(
        self,
        records: CallRecords,
        config: HoneypotConfig,
        store_path: Path,
        *,
        worker: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.records = records
        self.config = config
        self.store_path = store_path
        self.worker = worker
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self._thread = StoreThread("sipwarden-honeypot")
        self._store: HoneypotStore | None = None
        self._held: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._pruned = 0.0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(StoreError):
            await self.write()
        if self._store is not None:
            await self._thread.run(self._store.close)
        self._thread.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(WRITE_EVERY)
            try:
                await self.write()
                now = self.clock()
                if self.worker == 0 and now - self._pruned >= PRUNE_EVERY:
                    self._pruned = now
                    await self._prune(now)
            except StoreError as exc:
                self.counters["write-errors"] += 1
                if self.counters["write-errors"] == 1:
                    log.error("writing the honeypot's calls failed (held, tried again): %s", exc)
            except Exception:
                self.counters["write-bugs"] += 1
                log.exception("writing the honeypot's calls failed")

    async def write(self) -> None:
        """The records made since the last write (and those a failed write
        held), to the store. Raises StoreError (they are held again)."""
        batch = self._held + self.records.drain()
        self._held = []
        if not batch:
            return
        try:
            if self._store is None:
                self._store = await self._thread.run(HoneypotStore, self.store_path)
            await self._thread.run(self._store.add, batch)
        except StoreError:
            self._held = batch[-self.config.max_records :]
            raise
        self.counters["written"] += len(batch)

    async def _prune(self, now: float) -> None:
        if self._store is None:
            self._store = await self._thread.run(HoneypotStore, self.store_path)
        store, cfg = self._store, self.config
        self.counters["pruned"] += await self._thread.run(
            lambda: store.prune(now, retention=cfg.retention, max_rows=cfg.max_rows)
        )
