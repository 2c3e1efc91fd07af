"""The fleet keeper: worker 0's share of the fleet's bans (``[fleet]``).

What it does: publishes this node's own bans and unbans to the ban stream
(``fleet/bans.py``), the ones its book made and those it adopted from the
other workers (the ban keeper's ``listeners``), and applies what the other
nodes published to the ban book (``BanBook.receive``/``lift_received``),
whose changes the ban keeper carries to the kernel and the store as it
does local ones (the other workers adopt them from the store).

- Joining or returning: the last stream id applied is kept in the store
  (``store/fleet.py``). At (re)connect: if Redis lost its data (a new
  epoch), this node publishes its own bans in force again and reads the new
  stream from its start; else if every entry after that id is still in the
  stream it replays from there; else it applies the snapshot (the bans in
  force), lifts the fleet's bans it holds that the snapshot lacks, and
  follows from the id read before the snapshot.
- Redis away: the node works alone (local detection, bans and expiry are
  the ban keeper's, unchanged); what it must publish waits in a queue of
  ``[fleet] queue`` changes (past it the oldest are dropped, counted and
  logged) and goes out in order when Redis answers; following resumes from
  the last id (applying is idempotent: none lost, none doubled).
- Limits: at most ``[fleet] publish_limit`` bans a minute published (the
  rest stay local: "held back", logged once a minute) and applied from each
  other node (a node that ignores its own limit cannot ban the world).
- Heartbeat: every second this node's state in ``nodes`` (``fleet status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from ..fleet.bans import BanStream, Entry, encode, parse_id
from ..fleet.link import RETRY, UNREACHABLE, FleetAuthError, FleetLink
from ..observe.metrics import PROPAGATION_BUCKETS, Histogram
from ..policy.bans import BanBook
from ..store import FleetCursor, StoreError
from ..store.thread import StoreThread
from ..values import Ban, Change

log = logging.getLogger("sipwarden.fleet")

BEAT: Final = 1.0  # seconds between heartbeats (and publishing rounds)
WINDOW: Final = 60.0  # the publish limit's minute
PUBLISH_BATCH: Final = 500  # changes in one transaction
CLOCK_EVERY: Final = 10.0  # seconds between measures of the offset to Redis's clock
PRUNE_EVERY: Final = 60.0  # seconds between sweeps of the snapshot's bans that are over
SAID_EVERY: Final = 60.0  # seconds between log lines of one kind (held back, dropped)
GONE_AFTER: Final = 10.0  # seconds without a heartbeat: a node no longer counts as up


class FleetKeeper:
    """Worker 0's publishing and following of the fleet's bans (see the module doc)."""

    def __init__(
        self,
        link: FleetLink,
        book: BanBook,
        store_path: Path,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.link = link
        self.node = link.node
        self.book = book
        self.stream = BanStream(link)
        self.store_path = store_path
        self.clock = clock
        self.limit = link.config.publish_limit
        self.queue_size = link.config.queue
        self.counters: Counter[str] = Counter()
        self.applied_from: Counter[str] = Counter()  # bans applied, by origin
        self.refused_from: Counter[str] = Counter()  # over the origin's limit, by origin
        self.delay = Histogram(PROPAGATION_BUCKETS)  # published to applied here, seconds
        self.delays: deque[float] = deque(maxlen=512)
        self._queue: deque[Change] = deque()
        # (target, created_at) of the bans this keeper lifted (an unban or a
        # snapshot received), until the ban keeper reports their removal
        self._lifted: set[tuple[str, float]] = set()
        # told of every ban the fleet lifted here (the daemon: the other workers lift theirs)
        self.on_lifted: Callable[[str], None] | None = None
        self._published: deque[float] = deque()  # times of the bans published this minute
        self._applied: dict[str, deque[float]] = {}  # origin -> times applied this minute
        self._wake = asyncio.Event()
        self._cursor_thread = StoreThread("sipwarden-fleet")
        self._cursor: FleetCursor | None = None
        self.last_id: str | None = None  # the last stream entry applied
        self.epoch: str | None = None  # the Redis data set it belongs to
        self.synced = False  # following (the replay or snapshot done since the last connect)
        self.offset = 0.0  # Redis's clock minus ours
        self.lag = 0.0  # seconds between the stream's last entry and the last one applied
        self.nodes = 0  # nodes with a heartbeat in Redis (this one too), at the last beat
        self.nodes_up = 0  # those that beat within GONE_AFTER seconds
        self._said: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # ----------------------------------------------------------------- life

    async def start(self) -> None:
        """Connect (refused credentials raise ``FleetAuthError``: the node
        must not start), load where this node was, and follow and publish in
        the background (also when Redis does not answer yet)."""
        self._cursor = await self._cursor_thread.run(FleetCursor, self.store_path)
        self.last_id, self.epoch = await self._cursor_thread.run(self._cursor.load)
        await self.link.connect()
        self._tasks = [
            asyncio.create_task(self._follow()),
            asyncio.create_task(self._beat()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.link.up and self.synced:  # what is queued goes out if it can, briefly
            with contextlib.suppress(*UNREACHABLE, Exception):
                await asyncio.wait_for(self._publish(), self.link.config.timeout)
        with contextlib.suppress(Exception):
            await self.link.close()
        if self._cursor is not None:
            await self._cursor_thread.run(self._cursor.close)
        self._cursor_thread.close()

    # ----------------------------------------------------------- publishing

    def offer(self, changes: list[Change]) -> None:
        """The ban keeper's listener: this node's own bans and unbans to
        publish (received ones and expiries are not)."""
        now = self.clock()
        for change in changes:
            ban = change.ban
            if change.op == "add" and ban.origin:
                continue  # received from the fleet: its origin told everyone
            if change.op == "remove" and ban.expires_at is not None and ban.expires_at <= now:
                continue  # an expiry: every node expires the ban on its own
            if change.op == "remove" and (ban.target, ban.created_at) in self._lifted:
                self._lifted.discard((ban.target, ban.created_at))
                continue  # lifted because the fleet said so: not told back
            if change.op == "add" and not self._within_limit(now):
                self.counters["held-back"] += 1
                self._say(
                    "held-back",
                    "fleet: over [fleet] publish_limit (%d bans a minute): %d bans kept on this"
                    " node only so far",
                    self.limit,
                    self.counters["held-back"],
                )
                continue
            self._queue.append(change)
            if len(self._queue) > self.queue_size:
                self._queue.popleft()
                self.counters["queue-dropped"] += 1
                self._say(
                    "dropped",
                    "fleet: Redis does not answer and %d changes wait ([fleet] queue): the"
                    " oldest are dropped, not published (%d so far)",
                    self.queue_size,
                    self.counters["queue-dropped"],
                )
        self._wake.set()

    def _within_limit(self, now: float) -> bool:
        return _counted_within(self._published, now, self.limit)

    async def _publish(self) -> None:
        """What waits, in order, a transaction per batch; what fails stays."""
        while self._queue:
            batch = list(self._queue)[:PUBLISH_BATCH]
            now = self.clock()
            fleet_now = now + self.offset
            entries = [
                fields
                for change in batch
                if (fields := encode(change, self.node, now, fleet_now)) is not None
            ]
            if entries:
                await self.stream.publish(entries)
            for _ in batch:
                self._queue.popleft()
            self.counters["published"] += sum(1 for e in entries if e["op"] == "ban")
            self.counters["published-unbans"] += sum(1 for e in entries if e["op"] == "unban")

    # ------------------------------------------------------------ following

    async def _follow(self) -> None:
        block = max(50, min(1000, int(self.link.config.timeout * 500)))
        while True:
            try:
                if not self.link.up:
                    await asyncio.sleep(RETRY)
                    await self.link.probe()
                    continue
                if not self.synced:
                    await self._sync()
                    self._wake.set()
                    continue
                entries = await self.stream.read(self.last_id or "0-0", block)
                if entries:
                    await self._apply_all(entries, live=True)
            except asyncio.CancelledError:
                raise
            except UNREACHABLE as exc:
                self._lost(exc)
            except FleetAuthError as exc:  # refused after the start (a password or certificate
                self._lost(str(exc))  # changed): degraded, said once, tried again
            except Exception as exc:
                self.counters["follow-errors"] += 1
                log.exception("fleet: following the ban stream failed")
                self._lost(exc)
                await asyncio.sleep(RETRY)

    def _lost(self, exc: BaseException | str) -> None:
        self.link.mark_down(exc)
        self.synced = False

    async def _sync(self) -> None:
        """Catch up after a (re)connect (see the module doc)."""
        self.offset = await self.stream.clock_offset()
        epoch = await self.stream.epoch()
        if self.epoch is not None and epoch != self.epoch:
            self._reseed()
            log.warning(
                "fleet: Redis lost the fleet's data (a new epoch): this node's %d bans in"
                " force are published again",
                len(self._queue),
            )
            self.last_id = "0-0"
        elif self.last_id is not None and await self.stream.holds_after(self.last_id):
            pass  # replay from there: the reads below
        else:
            last, entries = await self.stream.snapshot()
            await self._apply_all(entries, live=False)
            held = {e.ban.target for e in entries}
            now = self.clock()
            lifted = 0
            for ban in self.book.active(now):
                if ban.origin and ban.target not in held and self._lift(ban.target, ban):
                    lifted += 1
            self.counters["snapshot-lifted"] += lifted
            log.info(
                "fleet: %d bans in force taken from the snapshot (%d lifted that it lacks);"
                " following from %s",
                len(entries),
                lifted,
                last,
            )
            self.last_id = last
        self.epoch = epoch
        await self._save()
        self.synced = True

    def _reseed(self) -> None:
        """This node's own bans in force, first in the queue (those already
        waiting are not put twice)."""
        now = self.clock()
        waiting = {(c.ban.target, c.ban.created_at) for c in self._queue}
        mine = [
            Change("add", ban)
            for ban in self.book.active(now)
            if not ban.origin and (ban.target, ban.created_at) not in waiting
        ]
        self._queue.extendleft(reversed(mine))
        self.counters["republished"] += len(mine)

    async def _apply_all(self, entries: list[Entry], *, live: bool) -> None:
        now = self.clock()
        fleet_now = now + self.offset
        for entry in entries:
            self._apply(entry, now, fleet_now, live=live)
            if entry.id:
                self.last_id = entry.id
        if live:
            await self._save()

    def _apply(self, entry: Entry, now: float, fleet_now: float, *, live: bool) -> None:
        ban = entry.ban
        if not ban.target or ban.origin == self.node:
            return  # not an entry, or this node's own
        if live:
            delay = max(0.0, fleet_now - entry.published_at)
            self.delay.observe(delay)
            self.delays.append(delay)
        try:
            if entry.op == "unban":
                current = self.book.get(ban.target)
                lifted = current is not None and current.created_at <= ban.created_at + 0.001
                if lifted and current is not None:
                    self._lifted.add((current.target, current.created_at))
                    self.book.lift_received(ban.target, ban.created_at)
                    if self.on_lifted is not None:
                        self.on_lifted(ban.target)
                self.counters["applied-unbans" if lifted else "unchanged"] += 1
                return
            if not self._may_apply(ban.origin, now):
                self.counters["refused-over-limit"] += 1
                self.refused_from[ban.origin] += 1
                self._say(
                    f"limit:{ban.origin}",
                    "fleet: node %s publishes more than [fleet] publish_limit (%d bans a"
                    " minute): %d of its bans not applied here so far",
                    ban.origin,
                    self.limit,
                    self.refused_from[ban.origin],
                )
                return
            expires = entry.expires_at(now, fleet_now)
            if expires is not None and expires <= now:
                self.counters["over"] += 1
                return
            made = self.book.receive(_with_expiry(ban, expires), now)
            if made is None:
                self.counters["unchanged"] += 1
            else:
                self.counters["applied"] += 1
                self.applied_from[ban.origin] += 1
        except ValueError:  # a target that is not one: skipped, counted
            self.counters["bad-entries"] += 1

    def _lift(self, target: str, ban: Ban) -> bool:
        self._lifted.add((ban.target, ban.created_at))
        lifted = self.book.lift(target) is not None
        if lifted and self.on_lifted is not None:
            self.on_lifted(target)
        return lifted

    def _may_apply(self, origin: str, now: float) -> bool:
        return _counted_within(self._applied.setdefault(origin, deque()), now, self.limit)

    async def _save(self) -> None:
        if self._cursor is None or self.last_id is None or self.epoch is None:
            return
        try:
            await self._cursor_thread.run(self._cursor.save, self.last_id, self.epoch)
        except StoreError as exc:  # replayed after a restart: applying twice changes nothing
            self.counters["cursor-errors"] += 1
            self._say("cursor", "fleet: the stream's position cannot be saved: %s", exc)

    # ------------------------------------------------------------ heartbeat

    async def _beat(self) -> None:
        measured = pruned = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), BEAT)
            self._wake.clear()
            if not (self.link.up and self.synced):
                continue
            try:
                await self._publish()
                now = self.clock()
                if now - measured >= CLOCK_EVERY:
                    self.offset, measured = await self.stream.clock_offset(), now
                last, _ = await self.stream.info()
                if self.last_id is not None:
                    self.lag = max(0.0, (parse_id(last)[0] - parse_id(self.last_id)[0]) / 1000)
                await self.stream.beat(self.node, self.state())
                self._count_nodes(await self.stream.nodes(), now + self.offset)
                if now - pruned >= PRUNE_EVERY:
                    self.counters["snapshot-pruned"] += await self.stream.prune(now + self.offset)
                    pruned = now
            except asyncio.CancelledError:
                raise
            except UNREACHABLE as exc:
                self._lost(exc)
            except Exception:
                self.counters["beat-errors"] += 1
                log.exception("fleet: publishing or the heartbeat failed")

    def _count_nodes(self, nodes: dict[str, dict[str, Any]], fleet_now: float) -> None:
        self.nodes = len(nodes)
        self.nodes_up = 0
        for state in nodes.values():
            with contextlib.suppress(TypeError, ValueError):
                if fleet_now - float(state.get("last_seen", 0)) <= GONE_AFTER:
                    self.nodes_up += 1

    def _say(self, kind: str, message: str, *args: Any) -> None:
        """A warning at most once a minute per kind (the count says the rest)."""
        now = self.clock()
        if now - self._said.get(kind, -SAID_EVERY) >= SAID_EVERY:
            self._said[kind] = now
            log.warning(message, *args)

    # --------------------------------------------------------------- status

    @property
    def degraded(self) -> bool:
        return not (self.link.up and self.synced)

    def state(self) -> dict[str, Any]:
        """What the heartbeat tells the others (and ``fleet status`` shows)."""
        return {
            "last_seen": self.clock() + self.offset,
            "state": "degraded" if self.degraded else "up",
            "lag": round(self.lag, 3),
            "published": self.counters["published"],
            "applied": self.counters["applied"],
            "held_back": self.counters["held-back"],
            "refused_over_limit": self.counters["refused-over-limit"],
            "queue": len(self._queue),
            "delay_median_ms": self._median_ms(),
        }

    def _median_ms(self) -> float | None:
        return self._quantile_ms(0.5)

    def _quantile_ms(self, q: float) -> float | None:
        """The recent propagation delays' ``q`` quantile, in ms (None: none yet)."""
        if not self.delays:
            return None
        ordered = sorted(self.delays)
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    def status(self) -> dict[str, Any]:
        """This node's fleet state, for ``status`` (under "fleet") and /metrics."""
        return {
            **self.link.status(),
            "state": "degraded" if self.degraded else "up",
            "degraded": self.degraded,
            "stream-id": self.last_id,
            "lag": round(self.lag, 3),
            "nodes": self.nodes,
            "nodes-up": self.nodes_up,
            "queue": len(self._queue),
            "counters": dict(self.counters),
            "applied-from": dict(self.applied_from),
            "refused-from": dict(self.refused_from),
            "propagation": self.delay.as_stats(),
            "delay-median-ms": self._median_ms(),
            "delay-p99-ms": self._quantile_ms(0.99),  # of the last 512 bans received live
        }

    async def fleet_status(self) -> dict[str, Any]:
        """Every node's heartbeat (this node's own state when Redis is away)."""
        nodes: dict[str, dict[str, Any]] = {}
        error = None
        if self.link.up:
            try:
                nodes = await self.stream.nodes()
            except UNREACHABLE as exc:
                error = str(exc) or type(exc).__name__
        else:
            error = self.link.last_error
        nodes[self.node] = self.state()  # this node's own, fresh
        return {
            "ok": True,
            "node": self.node,
            "redis": self.link.status()["redis"],
            "degraded": self.degraded,
            "error": error,
            "now": self.clock() + self.offset,
            "nodes": nodes,
        }


def _counted_within(times: deque[float], now: float, limit: int) -> bool:
    """Whether one more fits ``limit`` a ``WINDOW`` (``times``: this
    window's, oldest first); if so it is counted."""
    while times and now - times[0] >= WINDOW:
        times.popleft()
    if len(times) >= limit:
        return False
    times.append(now)
    return True


def _with_expiry(ban: Ban, expires: float | None) -> Ban:
    return replace(ban, expires_at=expires)
