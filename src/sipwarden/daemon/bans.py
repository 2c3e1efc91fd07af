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
from ..enforce import Enforcer, make_enforcer
from ..policy.bans import BanBook
from ..store.sqlite import BanStore
from ..store.thread import StoreThread
from ..values import Ban, Change, canonical

log = logging.getLogger("sipwarden.bans")
TICK = 1.0  # seconds between expiry sweeps and adopting other workers' bans


class BanKeeper:
    def __init__(
        self,
        book: BanBook,
        store_path: Path,
        enforcer: Enforcer,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.book = book
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
        # seconds from a ban's decision to its enforcement (kernel and store
        # written), the last few hundred: `stats` reports them
        self.latencies: deque[float] = deque(maxlen=512)

    # ----------------------------------------------------------------- life

    async def start(self) -> None:
        """Restore the book from the store (the kernel was reconciled with
        the store before the workers started: ``reconcile``)."""
        self._store = await self._store_thread.run(BanStore, self.store_path)
        store = self._store
        await self._store_thread.run(store.close_expired, self.clock())
        bans = await self._store_thread.run(store.load)
        self._seen = await self._store_thread.run(store.last_id)
        now = self.clock()
        self.book.restore(bans, now)
        self.book.drain()  # already enforced and stored
        self.book.on_change = self._wake
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
        changes = self.book.drain()
        if not changes or self._store is None:
            return
        now = self.clock()
        self.counters["changes"] += len(changes)
        await asyncio.gather(
            self.enforcer.apply(changes, now),
            self._store_thread.run(self._store.apply, changes, now),
        )
        done = self.clock()
        self.latencies.extend(done - c.ban.created_at for c in changes if c.op == "add")

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
                await self._adopt(now)
            except Exception:
                self.counters["tick-errors"] += 1
                log.exception("ban keeper tick failed")

    async def _adopt(self, now: float) -> None:
        """Enforce here the bans other workers (or `bans add` with no daemon
        reachable) wrote to the store since the last look."""
        assert self._store is not None
        last, bans = await self._store_thread.run(self._store.newer, self._seen, now)
        self._seen = last
        for ban in bans:
            self.book.adopt(ban, now)

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
        assert self._store is not None
        return await self._store_thread.run(self._store.in_force, self.clock())

    async def show(self, target: str) -> dict[str, Any]:
        assert self._store is not None
        key = canonical(target)
        history = await self._store_thread.run(self._store.history, key)
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
    (seconds; null: permanent; absent: the progressive length), reason."""
    target = str(request.get("target", ""))
    duration = request.get("duration", "progressive")
    if duration is not None and duration != "progressive":
        if (
            isinstance(duration, bool)
            or not isinstance(duration, int | float)
            or not math.isfinite(duration)  # JSON's NaN and Infinity would date a ban NaN
            or duration <= 0
        ):
            return {"ok": False, "error": "duration: seconds (more than 0), or null for permanent"}
        duration = float(duration)
    try:
        ban = await keeper.add(
            target, duration=duration, reason=str(request.get("reason") or "added by the operator")
        )
    except ValueError:
        return {"ok": False, "error": f"{target!r} is not an IP address or a CIDR"}
    if ban is None:
        why = (
            "it is on the allow list (or a trusted peer)"
            if keeper.book.allowed(target)
            else "a ban that lasts longer is in force"
        )
        return {"ok": False, "error": f"{target} not banned: {why}"}
    return {"ok": True, "ban": describe(ban)}


async def remove_request(keeper: BanKeeper, request: dict[str, Any]) -> dict[str, Any]:
    """``bans-remove``: target."""
    target = str(request.get("target", ""))
    try:
        ban = await keeper.remove(target)
    except ValueError:
        return {"ok": False, "error": f"{target!r} is not an IP address or a CIDR"}
    if ban is None:
        return {"ok": False, "error": f"{target} is not banned"}
    return {"ok": True, "ban": describe(ban)}


def describe(ban: Ban) -> dict[str, Any]:
    """A ban as `bans list --json` and the API print it."""
    return {
        "ip": ban.target,
        "reason": ban.reason,
        "detector": ban.detector,
        "created_at": ban.created_at,
        "expires_at": ban.expires_at,
        "offence": ban.offence,
        "evidence": list(ban.evidence),
    }


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
        )
    )
    return make_enforcer(kind or fw.enforcer, table=fw.table, ports=ports)


async def reconcile(config: Config) -> int:
    """Make the kernel's bans those the store holds in force (a ban added
    or lifted with no daemon running, a crash between a write and its
    enforcement); returns how many are in force."""
    now = time.time()
    store = BanStore(config.storage.path)
    try:
        bans = [b for b in store.load() if b.active(now)]
    finally:
        store.close()
    enforcer = enforcer_for(config)
    await enforcer.start(bans, now)
    await enforcer.stop()
    return len(bans)
