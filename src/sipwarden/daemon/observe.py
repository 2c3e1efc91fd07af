"""The observe keeper: one worker's events and traffic flows, from the
packet path's bounded queues to the store, and back out to whoever reads.

The edge and the policy append to ``events`` (an ``EventQueue``) and count
into ``flows`` (a ``FlowTable``) on the packet path and never wait; every
``[observe] write_interval`` this keeper drains both and writes the batch
on the store's own thread (SQLite blocks). Events are written within a
second, flows when their minute ends; ``stop`` writes what is left,
including the minute under way, so a restart loses nothing and a SIGKILL at
most a second of events and the minute in progress.

A store that fails (a full disk) does not hold the packet path: the batch
is kept and tried again at the next write, up to ``[observe] max_events``
events and ``MAX_HELD_FLOWS`` flow records; past that the oldest are let go and counted
(``events-lost``, ``flows-lost``), never a packet. Worker 0 also deletes
what is past the retention and the row caps, once a minute.

Readers (`sipwarden events`, `flows`, REST) go through ``events_since``
and ``flows_since``, on the same thread. In worker 0, ``follow`` reads the
rows every worker wrote since its last look, after each write, and hands
them to the ``listeners`` (the live stream, the alerts): one reader of the
table serves them all, and every worker's events reach them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from itertools import chain
from pathlib import Path
from typing import Any

from ..config import ObserveConfig
from ..enforce import EnforcerError
from ..observe import Event, EventQueue, FlowTable, KernelDrops, ipfix
from ..observe.events import EventRow
from ..observe.flows import FlowMinute
from ..observe.health import HealthWatch
from ..store import ObserveStore, StoreError
from ..store.thread import StoreThread

log = logging.getLogger("sipwarden.observe")
HEALTH_EVERY = 10.0  # seconds between two looks at sipwarden's own health (worker 0)
PRUNE_EVERY = 60.0  # seconds between two deletions of what is past the retention
REMIND = 60.0  # seconds between two "still failing" lines
# flow records held while the store fails: two full minutes (~130 MB); a
# store that fails longer loses the oldest (counted), the kernel's drops too
MAX_HELD_FLOWS = 200_000


class ObserveKeeper:
    def __init__(
        self,
        config: ObserveConfig,
        store_path: Path,
        *,
        worker: int = 0,
        clock: Callable[[], float] = time.time,
        drop_counts: Callable[[], Awaitable[dict[str, tuple[int, int]]]] | None = None,
    ) -> None:
        self.config = config
        # worker 0: the kernel's per-source drop counts (the enforcer's reader)
        self.drop_counts = drop_counts
        self.kernel_drops: KernelDrops | None = None
        self._kernel_read = 0.0
        self._kernel_pending: list[dict[str, Any]] = []  # read, not written yet
        self._kernel_totals: Counter[str] = Counter()  # what the readings added up to
        self.store_path = store_path
        self.worker = worker
        self.clock = clock
        self.events = EventQueue(
            sample=config.event_sample, max_events=config.max_events, max_keys=config.max_events
        )
        self.flows = FlowTable(max_flows=config.max_flows)
        self.counters: Counter[str] = Counter()
        # worker 0: told of every worker's events as the store has them
        # (the live stream, the alerts); see follow()
        self.listeners: list[Callable[[list[dict[str, Any]]], None]] = []
        self._followed: int | None = None  # the last event row told to listeners
        self.store_error: str | None = None
        self._thread = StoreThread("sipwarden-observe")
        self._store: ObserveStore | None = None
        self._held_events: list[EventRow] = []
        self._held_flows: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._pruned = 0.0
        self._reminded = 0.0

    # ----------------------------------------------------------------- life

    async def start(self) -> None:
        """Open the store (a store that fails is said and retried: events
        and flows are held meanwhile) and start writing."""
        if await self._open() and self.worker == 0:  # followed from here on
            assert self._store is not None
            with contextlib.suppress(StoreError):
                self._followed = await self._thread.run(self._store.last_event_id)
        if self.drop_counts is not None:  # the kernel counts from zero since its table was made
            self.kernel_drops = KernelDrops(started=self.clock())
            self._kernel_read = self.clock()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Write what is queued and the minute under way, then close."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):  # said by write(); nothing more to do at stop
            await self.write(final=True)
        if self._store is not None:
            await self._thread.run(self._store.close)
        self._thread.close()

    async def _open(self) -> bool:
        if self._store is None:
            try:
                self._store = await self._thread.run(ObserveStore, self.store_path)
            except StoreError as exc:
                self._failed(str(exc))
                return False
        return True

    async def watch_health(self, stats: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        """Worker 0: every ``HEALTH_EVERY`` seconds, the counters summed over
        the workers (``stats``) through ``HealthWatch``; what begins or ends
        is a health event (the alerts hear of it)."""
        watch = HealthWatch(started=self.clock())
        while True:
            await asyncio.sleep(HEALTH_EVERY)
            try:
                for event in watch.check(await stats(), self.clock()):
                    self.events.push(event)
            except Exception:
                self.counters["health-bugs"] += 1
                log.exception("checking sipwarden's health failed")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.write_interval)
            try:
                now = self.clock()
                if now - self._kernel_read >= self.config.kernel_drops_every:
                    await self.read_kernel()
                await self.write()
                if self.worker == 0:
                    await self.follow()
                now = self.clock()
                if self.worker == 0 and now - self._pruned >= PRUNE_EVERY:
                    self._pruned = now
                    await self.prune(now)
            except Exception:
                self.counters["observe-write-bugs"] += 1
                log.exception("writing events and flows failed")

    # ---------------------------------------------------------------- write

    async def write(self, *, final: bool = False) -> None:
        """Drain the queues and write them (with what a failed write held)."""
        now = self.clock()
        events = self._held_events + self.events.drain_rows()  # (written as they are)
        # at stop the minute under way is written too (it is complete so far)
        flows = self._held_flows + self._kernel_pending
        # the ended minutes stay tables: their records are made one at a time
        # as the store's thread writes them (100,000 records alive at once
        # were 100,000 dicts for each collection meanwhile to walk)
        minutes = self.flows.drain_minutes(now + 60 if final else now)
        self._held_events, self._held_flows, self._kernel_pending = [], [], []
        count = len(flows) + sum(len(minute) for minute in minutes)
        if not events and not count:
            return
        if not await self._open():
            self._hold(events, flows + [r for m in minutes for r in m.records()])
            return
        assert self._store is not None
        try:
            if events:
                await self._thread.run(self._store.write_events, events)
                self.counters["events-written"] += len(events)
                await self._thread.run(_release, events)
                events = []
            if count:
                records = chain(flows, *(minute.records() for minute in minutes))
                await self._thread.run(self._store.write_flows, records)
                self.counters["flows-written"] += count
                self._export(chain(flows, *(minute.records() for minute in minutes)))
                await self._thread.run(_release, minutes)
                flows, minutes = [], []
        except StoreError as exc:
            self._failed(str(exc))
            self._hold(events, flows + [r for m in minutes for r in m.records()])
        else:
            if self.store_error is not None:
                log.warning("events and flows are written again")
            self.store_error = None

    async def read_kernel(self) -> None:
        """The kernel's drops since the last reading, as flow records (their
        source port null) written with the next batch (worker 0; a reading
        that fails is counted and the next one covers the gap)."""
        if self.drop_counts is None or self.kernel_drops is None:
            return
        self._kernel_read = self.clock()
        try:
            reading = await self.drop_counts()
        except EnforcerError as exc:
            self.counters["kernel-drops-read-errors"] += 1
            log.warning("reading the kernel's drop counts failed: %s", exc)
            return
        records = self.kernel_drops.read(reading, self.clock())
        self._kernel_pending.extend(records)
        self._kernel_totals["packets:ban-or-feed"] += sum(r["packets"] for r in records)
        self._kernel_totals["bytes:ban-or-feed"] += sum(r["bytes"] for r in records)
        self._kernel_totals["sources"] = len(reading)

    async def follow(self) -> None:
        """Tell the listeners the events every worker wrote since the last
        call (or since the start: the stream is live, not history)."""
        if self._store is None:
            return
        try:
            if self._followed is None:  # (the store could not be opened at start)
                self._followed = await self._thread.run(self._store.last_event_id)
                return
            rows = await self._thread.run(
                lambda: self._store.events(after_id=self._followed, limit=10_000)  # type: ignore[union-attr]
            )
        except StoreError as exc:
            self._failed(str(exc))
            return
        if not rows:
            return
        self._followed = rows[-1]["id"]
        for listener in list(self.listeners):
            try:
                listener(rows)
            except Exception:
                self.counters["events-listener-errors"] += 1
                log.exception("an event listener failed")

    def _hold(self, events: list[EventRow], flows: list[dict[str, Any]]) -> None:
        over = len(events) - self.config.max_events
        if over > 0:
            self.counters["events-lost"] += over
            events = events[over:]
        over = len(flows) - MAX_HELD_FLOWS
        if over > 0:
            self.counters["flows-lost"] += over
            flows = flows[over:]
        self._held_events, self._held_flows = events, flows

    def _failed(self, error: str) -> None:
        self.counters["observe-write-errors"] += 1
        now = self.clock()
        if self.store_error is None or now - self._reminded >= REMIND:
            log.error("writing events and flows failed; they are held and tried again: %s", error)
            self._reminded = now
        self.store_error = error

    def _export(self, flows: Iterable[dict[str, Any]]) -> None:
        """Append the flows to ``[observe] flows_export`` as IPFIX-like JSON lines."""
        path = self.config.flows_export
        if path is None:
            return
        lines = "".join(json.dumps(ipfix(record)) + "\n" for record in flows)
        try:
            with open(path, "a", encoding="utf-8") as out:  # small, once a minute
                out.write(lines)
        except OSError as exc:
            self.counters["flows-export-errors"] += 1
            if self.counters["flows-export-errors"] == 1:
                log.error("observe.flows_export %r: %s", str(path), exc.strerror or exc)

    async def prune(self, now: float) -> None:
        """Delete what is past the retention and the row caps (worker 0)."""
        if self._store is None:
            return
        cfg = self.config
        try:
            deleted = await self._thread.run(
                lambda: self._store.prune(  # type: ignore[union-attr]
                    now,
                    events_retention=cfg.events_retention,
                    events_max_rows=cfg.events_max_rows,
                    flows_retention=cfg.flows_retention,
                    flows_max_rows=cfg.flows_max_rows,
                )
            )
        except StoreError as exc:
            self._failed(str(exc))
            return
        for table, count in deleted.items():
            self.counters[f"{table}-pruned"] += count

    # ----------------------------------------------------------------- read

    async def events_since(
        self,
        since: float | None,
        *,
        source: str | None = None,
        kinds: tuple[str, ...] = (),
        limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        store = await self._reader()
        return await self._thread.run(
            lambda: store.events(since=since, source=source, kinds=kinds, limit=limit)
        )

    async def oldest_event(self) -> float | None:
        """When the store's oldest event kept happened (None: it has none)."""
        store = await self._reader()
        return await self._thread.run(store.oldest_event)

    async def events_after(self, after_id: int, *, limit: int = 1000) -> list[dict[str, Any]]:
        """The events written after row ``after_id`` (the live stream's next batch)."""
        store = await self._reader()
        return await self._thread.run(lambda: store.events(after_id=after_id, limit=limit))

    async def flows_since(
        self, since: float, *, source: str | None = None, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        store = await self._reader()
        return await self._thread.run(lambda: store.flows(since=since, source=source, limit=limit))

    async def sources_since(self, since: float, *, limit: int = 15) -> list[dict[str, Any]]:
        store = await self._reader()
        return await self._thread.run(lambda: store.sources(since=since, limit=limit))

    async def _reader(self) -> ObserveStore:
        if not await self._open():
            raise StoreError(self.store_error or "the store cannot be opened")
        assert self._store is not None
        return self._store

    # --------------------------------------------------------------- status

    def kernel_stats(self) -> dict[str, int] | None:
        """The "kernel-drops" section of ``status`` (worker 0, with nftables):
        the packets and bytes the kernel dropped for a ban or a feed, as read
        so far, and the sources of the last reading."""
        return None if self.drop_counts is None else dict(self._kernel_totals)

    def stats(self) -> dict[str, int]:
        """The "observe" section of ``status`` (summed over workers but
        ``flows-tracked``, which is this minute's flows: summed too, as each
        worker tracks its own sources)."""
        queue, flows = self.events, self.flows
        return {
            **self.counters,
            "events-queued": queue.counters["queued"],
            "events-repeated": queue.counters["repeated"],
            "events-dropped": queue.dropped,
            "events-held": len(self._held_events),
            "flows-tracked": len(flows),
            "flows-untracked": flows.counters["untracked"],
            "flows-minutes-lost": flows.counters["minutes-lost"],
            "flows-held": len(self._held_flows),
        }


CORE_FIELDS = ("id", "time", "kind", "source", "reason")


def _release(written: list[Any]) -> None:
    """Drop what was written a piece at a time, on the store's thread: its
    Python loop lets the event loop's thread have the GIL every few
    milliseconds (50,000 events, or a minute of 100,000 flows, dropped at
    once stopped the loop for tens of milliseconds; a minute's tables
    release themselves likewise)."""
    while written:
        chunk = written[-256:]
        del written[-256:]
        for item in chunk:
            if isinstance(item, FlowMinute):
                item.release()
        del chunk  # (256 events at most at once)


def as_event(row: dict[str, Any]) -> Event:
    """A row of the events table (``ObserveStore.events``) as the Event it was."""
    fields = tuple((name, value) for name, value in row.items() if name not in CORE_FIELDS)
    return Event(row["time"], row["kind"], row["source"], row["reason"], fields)
