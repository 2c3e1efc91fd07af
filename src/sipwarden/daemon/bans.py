"""The ban keeper: the ban book's I/O, off the packet path.

The ban book (``policy/bans.py``) decides in memory, on the packet's own
time; the keeper carries its changes out. A change wakes it at once (the
book's ``on_change``), so a ban reaches the kernel in the time one ``nft``
call takes; the changes that piled up meanwhile go in the same batch. The
store is written on its own thread (SQLite, one connection), the enforcer
is awaited alongside. Once a second it expires bans that ended and adopts
the bans other workers made (they are in the store already).

Operators reach it through the control socket and the REST API: ``add``,
``remove``, ``list`` and ``show`` all come here, so a ban an operator makes
is enforced and stored exactly like a detector's.

No ban is lost to a broken store. The kernel is changed first; a store write
that fails (a full disk, a file gone bad) keeps its changes, in order, and
each tick tries them again until they land (``MAX_UNWRITTEN`` at most: past
that the oldest are let go, loudly, and the kernel, whose elements record
each ban's detector and reason, is the record until the next start merges
it back: ``reconcile``). A store deleted while running is noticed within a
tick and rebuilt from the bans in force. ``list`` shows what is in force
(the book's bans too), not only what was written; ``status`` shows what is
held and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from ..config import Config
from ..enforce import DropCounting, Enforcer, make_enforcer
from ..observe import BAN, UNBAN, Event
from ..observe.metrics import Histogram
from ..policy.bans import BanBook
from ..store import BanStore, StoreError
from ..store.thread import StoreThread
from ..values import MAX_DURATION, MIN_DURATION, Ban, Change, canonical

log = logging.getLogger("sipwarden.bans")
TICK = 1.0  # seconds between expiry sweeps, store retries and adopting other workers' bans
# changes held while the store cannot be written (~0.5 kB each: 50 MB at most)
MAX_UNWRITTEN = 100_000
MAX_REASON = 500  # characters of an operator's reason kept
REMIND = 60.0  # seconds between "still failing" lines while the store fails


class BanKeeper:
    def __init__(
        self,
        book: BanBook,
        store_path: Path,
        enforcer: Enforcer,
        *,
        clock: Callable[[], float] = time.time,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.book = book
        # where bans and unbans are told (observe's queue): worker 0's alone,
        # which adopts every worker's bans, so each is told once
        self.on_event = on_event
        self.store_path = store_path
        self.enforcer = enforcer
        self.clock = clock
        self.counters: Counter[str] = Counter()
        # the store's own thread: SQLite blocks, and its calls keep their order
        self._store_thread = StoreThread("sipwarden-store")
        self._store: BanStore | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._again = False
        self._ticker: asyncio.Task[None] | None = None
        self._seen = 0  # the store's last row this worker has looked at
        # changes the store has not taken yet (it failed), oldest first
        self._unwritten: list[Change] = []
        self.store_error: str | None = None  # the last write's error while it fails
        self._reminded = 0.0
        # seconds from a ban's decision to its enforcement (kernel and store
        # written), the last few hundred: `stats` reports them
        self.latencies: deque[float] = deque(maxlen=512)
        self.latency_histogram = Histogram()  # all of them, in buckets: for /metrics
        # told, after the kernel and the store took them, of every change this
        # worker's book carried out and of the bans it adopted from the other
        # workers (worker 0's fleet keeper publishes this node's own)
        self.listeners: list[Callable[[list[Change]], None]] = []

    # ----------------------------------------------------------------- life

    async def start(self) -> None:
        """Restore the book from the store, and from the kernel what the
        store lacks (``reconcile`` kept those in the kernel; they are written
        to the store now, or held until it takes them)."""
        self._store = await self._store_thread.run(BanStore, self.store_path)
        store = self._store
        now = self.clock()
        with contextlib.suppress(StoreError):  # a full disk: said when a write is held
            await self._store_thread.run(store.close_expired, now)
        bans = await self._store_thread.run(store.load)
        self._seen = await self._store_thread.run(store.last_id)
        lacking = await self._store_thread.run(store.missing, await self.enforcer.bans(now), now)
        refused = self.book.restore(bans + lacking, now)
        self.book.drain()  # already enforced (and stored, but for the lacking)
        self._unwritten = [Change("add", ban) for ban in lacking]
        for ban, why in refused:  # lifted: an older release let them in
            log.warning("lifting the ban on %s: %s", ban.target, why)
            self.book.changes.append(Change("remove", ban))
        self.book.on_change = self._wake
        if self._unwritten or self.book.changes:
            self._wake()
        self._ticker = asyncio.create_task(self._tick())
        log.info("%d bans in force (from %s)", len(self.book.active(now)), self.store_path)

    async def stop(self) -> None:
        """Write what is pending; the kernel's bans stay in place."""
        self.book.on_change = None
        if self._ticker is not None:
            self._ticker.cancel()
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing
        await self.flush()
        await self.enforcer.stop()
        if self._store is not None:
            await self._store_thread.run(self._store.close)
        self._store_thread.close()

    def _wake(self) -> None:
        """The book has a change: flush now (one flush at a time; changes
        made while one runs go in the next)."""
        if self._flushing is not None and not self._flushing.done():
            self._again = True
            return
        self._flushing = asyncio.get_running_loop().create_task(self._flush_all())

    async def _flush_all(self) -> None:
        while True:
            self._again = False
            try:
                await self.flush()
            except Exception:
                self.counters["flush-errors"] += 1
                log.exception("writing bans failed; they stay in force in the edge")
            if not self._again and not self.book.changes:
                return

    async def flush(self) -> None:
        """The book's changes to the kernel and the store (with the changes
        the store still owes: see the module doc)."""
        changes = self.book.drain()
        if self._store is None or not (changes or self._unwritten):
            return
        now = self.clock()
        self.counters["changes"] += len(changes)
        # the book's new bans (this worker's; those received from the fleet are the fleet's)
        made = [c.ban for c in changes if c.op == "add" and not c.ban.origin]
        for ban in made:
            self.counters[f"made:{ban.detector}"] += 1
        await asyncio.gather(self.enforcer.apply(changes, now), self._write(changes, now))
        done = self.clock()
        for ban in made:
            self.latencies.append(done - ban.created_at)
            self.latency_histogram.observe(done - ban.created_at)
        if self.on_event is not None:
            for change in changes:
                self.on_event(ban_event(change, now))
        self._tell(changes)

    def _tell(self, changes: list[Change]) -> None:
        for listener in self.listeners if changes else ():
            try:
                listener(changes)
            except Exception:
                self.counters["listener-errors"] += 1
                log.exception("a ban listener failed")

    async def _write(self, changes: list[Change], now: float) -> None:
        """Write the held changes and ``changes``, in order; on failure hold them."""
        assert self._store is not None
        batch = self._unwritten + changes
        if not batch:
            return
        try:
            await self._store_thread.run(self._store.apply, batch, now)
        except StoreError as exc:
            self._hold(batch, str(exc))
            return
        if self.store_error is not None:
            log.warning(
                "the store takes writes again: %d held changes written", len(self._unwritten)
            )
            self.counters["store-written-late"] += len(self._unwritten)
        self._unwritten, self.store_error = [], None
        self.counters["store-unwritten"] = 0

    def _hold(self, batch: list[Change], error: str) -> None:
        self.counters["store-errors"] += 1
        over = len(batch) - MAX_UNWRITTEN
        if over > 0:
            batch = batch[over:]
            self.counters["store-let-go"] += over
            log.error(
                "%d ban changes could not be written and are no longer held (at most %d are):"
                " the kernel keeps those bans, with their detector and reason, and the next"
                " start writes them to the store; %s",
                over,
                MAX_UNWRITTEN,
                error,
            )
        self._unwritten = batch
        self.counters["store-unwritten"] = len(batch)
        now = self.clock()
        if self.store_error is None or now - self._reminded >= REMIND:
            log.error(
                "writing bans failed, %d changes held and tried again every second (the"
                " bans are in force in the edge and the kernel): %s",
                len(batch),
                error,
            )
            self._reminded = now
        self.store_error = error

    def unwritten(self) -> list[Change]:
        """The changes the store has not taken yet (for ``list`` and ``status``)."""
        return list(self._unwritten)

    def latency(self) -> dict[str, float]:
        """Decision to enforcement, in ms: median and worst of the recent bans."""
        if not self.latencies:
            return {}
        ordered = sorted(self.latencies)
        return {
            "bans": len(ordered),
            "median-ms": round(1000 * ordered[len(ordered) // 2], 2),
            "worst-ms": round(1000 * ordered[-1], 2),
        }

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                now = self.clock()
                self.book.expire(now)
                if self._unwritten:
                    self._wake()  # try the store again
                await self._check_store(now)
                await self._adopt(now)
            except StoreError:
                self.counters["tick-store-errors"] += 1  # said by _hold, once a minute
            except Exception:
                self.counters["tick-errors"] += 1
                log.exception("ban keeper tick failed")

    async def _check_store(self, now: float) -> None:
        """A store deleted or replaced under the daemon: open the file at
        its path afresh and write the bans in force into it."""
        assert self._store is not None
        if not await self._store_thread.run(self._store.vanished):
            return
        old = self._store
        self._store = await self._store_thread.run(BanStore, self.store_path)
        await self._store_thread.run(old.close)
        self._seen = 0
        in_force = [Change("add", ban) for ban in self.book.active(now)]
        log.error(
            "%s was deleted or replaced while sipwarden ran: a new store was made and the"
            " %d bans in force written to it (their history before now is lost)",
            self.store_path,
            len(in_force),
        )
        self.counters["store-rebuilt"] += 1
        self._unwritten = in_force + self._unwritten
        self._wake()

    async def _adopt(self, now: float) -> None:
        """Enforce here the bans other workers (or `bans add` with no daemon
        reachable) wrote to the store since the last look."""
        assert self._store is not None
        last, bans = await self._store_thread.run(self._store.newer, self._seen, now)
        self._seen = last
        adopted = []
        for ban in bans:
            before = self.book.get(ban.target)
            self.book.adopt(ban, now)
            if before != ban and self.book.get(ban.target) == ban:
                adopted.append(Change("add", ban))
                if self.on_event is not None:
                    self.on_event(ban_event(Change("add", ban), now))
        self._tell(adopted)

    # ------------------------------------------------------------- operator

    async def add(
        self,
        target: str,
        *,
        duration: float | Literal["progressive"] | None = "progressive",
        reason: str = "added by the operator",
        detector: str = "operator",
    ) -> Ban | None:
        """Ban ``target`` now (an address or CIDR; ValueError if it is
        neither). None when the allow list protects it or a longer ban is in
        force. Written and enforced before this returns."""
        ban = self.book.decide(
            canonical(target),
            reason=reason,
            detector=detector,
            now=self.clock(),
            duration=duration,
        )
        await self._settle()
        return ban

    async def remove(self, target: str) -> Ban | None:
        """Lift the ban on ``target`` (in this worker's book, or only in the
        store and the kernel when another worker made it)."""
        key = canonical(target)
        ban = self.book.lift(key)
        if ban is None:
            assert self._store is not None
            ban = await self._store_thread.run(self._store.open_ban, key)
            if ban is not None:
                self.book.changes.append(Change("remove", ban))
        await self._settle()
        return ban

    async def _settle(self) -> None:
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing
        await self.flush()

    async def list(self) -> list[dict[str, Any]]:
        """The bans in force: the store's, and this worker's book's (a ban
        the store has not taken yet is in force all the same)."""
        assert self._store is not None
        now = self.clock()
        try:
            rows = await self._store_thread.run(self._store.in_force, now)
        except StoreError:
            rows = []  # the book's bans below are what is in force
        listed = {row["ip"]: row for row in rows}
        for ban in self.book.active(now):
            if ban.target not in listed:
                listed[ban.target] = brief(ban)
        return sorted(listed.values(), key=lambda row: (row["created_at"], row["ip"]))

    async def show(self, target: str) -> dict[str, Any]:
        assert self._store is not None
        key = canonical(target)
        try:
            history = await self._store_thread.run(self._store.history, key)
        except StoreError:
            history = []  # the store fails (status says why); the ban in force still shows
        ban = self.book.banned(key, self.clock()) if "/" not in key else self.book.get(key)
        return {
            "ip": key,
            "banned": ban is not None,
            "ban": None if ban is None else describe(ban),
            "allowed": self.book.allowed(key),
            "history": history,
        }


async def add_request(keeper: BanKeeper, request: dict[str, Any]) -> dict[str, Any]:
    """``bans-add`` (control socket, API, offline CLI): target, duration
    (seconds; null: permanent; absent: the progressive length), reason.
    Anything else is an error saying what is wrong, and nothing changes; a
    well-formed ban the book may not make is ``refused`` too (REST: 409)."""
    target = request.get("target")
    duration = request.get("duration", "progressive")
    if duration is not None and duration != "progressive":
        if (
            isinstance(duration, bool)
            or not isinstance(duration, int | float)
            or not math.isfinite(duration)  # JSON's NaN and Infinity would date a ban NaN
            or not MIN_DURATION <= duration <= MAX_DURATION
        ):
            return {
                "ok": False,
                "error": "duration: seconds (at least 1, at most ten years), or null for permanent",
            }
        duration = float(duration)
    reason = request.get("reason") or "added by the operator"
    if not isinstance(reason, str):
        return {"ok": False, "error": "reason: a string"}
    try:
        key = canonical(target) if isinstance(target, str) else None
    except ValueError as exc:
        scoped = isinstance(target, str) and "%" in target
        return {"ok": False, "error": str(exc) if scoped else _not_a_target(target)}
    if key is None:
        return {"ok": False, "error": _not_a_target(target)}
    why = keeper.book.refusal(key)
    if why is not None:
        return {"ok": False, "refused": True, "error": f"{key} not banned: {why}"}
    ban = await keeper.add(key, duration=duration, reason=reason[:MAX_REASON])
    if ban is None:
        return {
            "ok": False,
            "refused": True,
            "error": f"{key} not banned: a ban that lasts longer is in force",
        }
    return {"ok": True, "ban": describe(ban)}


def _not_a_target(target: object) -> str:
    return f"target: {str(target)[:100]!r} is not an IP address or a CIDR"


async def remove_request(keeper: BanKeeper, request: dict[str, Any]) -> dict[str, Any]:
    """``bans-remove``: target."""
    target = request.get("target")
    if not isinstance(target, str):
        return {"ok": False, "error": _not_a_target(target)}
    try:
        ban = await keeper.remove(target)
    except ValueError:
        return {"ok": False, "error": _not_a_target(target)}
    if ban is None:
        return {"ok": False, "error": f"{target} is not banned"}
    return {"ok": True, "ban": describe(ban)}


def describe(ban: Ban) -> dict[str, Any]:
    """A ban as `bans show --json` and the API print it."""
    return {**brief(ban), "evidence": list(ban.evidence)}


def ban_event(change: Change, now: float) -> Event:
    """A ban or its end, as an event (the source is the target, the reason
    its detector)."""
    ban = change.ban
    if change.op == "add":
        fields: tuple[tuple[str, str | int | float | None], ...] = (
            ("why", ban.reason),
            ("expires_at", ban.expires_at),
            ("offence", ban.offence),
        )
        return Event(ban.created_at, BAN, ban.target, ban.detector, fields)
    ended = "expired" if ban.expires_at is not None and ban.expires_at <= now else "lifted"
    return Event(now, UNBAN, ban.target, ban.detector, (("ended", ended), ("why", ban.reason)))


def brief(ban: Ban) -> dict[str, Any]:
    """A ban as `bans list --json` prints it (``BanStore.in_force``'s keys)."""
    return {
        "ip": ban.target,
        "reason": ban.reason,
        "detector": ban.detector,
        "created_at": ban.created_at,
        "expires_at": ban.expires_at,
        "offence": ban.offence,
        "origin": ban.origin,  # the fleet node that made it ("": this one)
    }


def host_ports(config: Config) -> set[tuple[str, int]]:
    """The PBX's SIP ports host mode protects, as (transport, port): banned
    sources and floods are dropped there too, before the queue."""
    host = config.host
    if not host.enabled:
        return set()
    return {("udp", p) for p in host.ports} | {("tcp", p) for p in (*host.ports, *host.tls_ports)}


def enforcer_for(config: Config, kind: str | None = None) -> Enforcer:
    """The configured enforcer (``kind`` overrides ``[firewall] enforcer``:
    `firewall flush` clears the table even after a switch to "none")."""
    fw = config.firewall
    ports = (
        []
        if fw.scope == "all"
        else sorted(
            {
                ("tcp" if ep.transport == "tls" else ep.transport, ep.port)
                for ep in config.edge.listen
            }
            | host_ports(config)
        )
    )
    counting = fw.drop_counts
    return make_enforcer(
        kind or fw.enforcer,
        table=fw.table,
        ports=ports,
        drop_counting=(
            DropCounting(counting.size, math.ceil(counting.idle)) if counting.enabled else None
        ),
    )


async def reconcile(config: Config) -> int:
    """Make the kernel hold the bans in force before any worker bans;
    returns how many.

    In force: the store's, and the kernel's bans the store has no record of
    (made while the store failed, then a SIGKILL; a store deleted or moved
    aside). Those stay in the kernel, never flushed because the store lost
    them, and the workers write them to the store (``BanKeeper.start``).
    What the store lifted while no daemon ran leaves the kernel. StoreError
    (one line) if the store cannot be opened: the kernel is left as it is."""
    now = time.time()
    enforcer = enforcer_for(config)
    store = BanStore(config.storage.path)
    try:
        lacking = store.missing(await enforcer.bans(now), now)
        bans = [b for b in store.load() if b.active(now)]
    finally:
        store.close()
    if lacking:
        log.warning(
            "%d bans in the kernel are not in %s (made while it failed, or it was replaced):"
            " kept, and written to it with the time they have left",
            len(lacking),
            config.storage.path,
        )
    await enforcer.start(bans + lacking, now)
    await enforcer.stop()
    return len(bans) + len(lacking)
