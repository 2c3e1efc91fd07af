"""The lane keeper: the kernel lane's I/O, off the packet path.

The lane (``enforce/lane.py``) lets sources that logged in through before
any limit. The policy learns them (``policy/known_good.py``: a 2xx to a
REGISTER that carried credentials) and reports each one once in
a while; this keeper carries the reports to the kernel in batches: the
first report wakes it, it waits ``BATCH_DELAY`` for others to join, and
sends them all in one nft transaction (a phone is in the lane a fraction
of a second after its login, and a thousand phones booting cost a few
nft calls, not a thousand). Every worker pushes its own reports.

Worker 0 also keeps the lane's trusted sets in step with the trusted peers
and the allow list (a reload may change them) and reads the kernel's
counters every ``READ_EVERY`` seconds for ``status``.

``start_lane`` builds the lane before the workers start (``app.run``, after
the bans' reconciliation): from ``[firewall.lane]`` and the edge's ports;
with ``enforcer = "none"`` or ``enabled = false`` there is none, and it says
so in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Final

from ..config import Config
from ..enforce import Enforcer, EnforcerError, LaneSettings
from ..enforce.lane import ports_of, total_rate
from ..policy.known_good import KnownGood
from ..values import Network
from .bans import enforcer_for, host_ports

log = logging.getLogger("sipwarden.lane")
BATCH_DELAY: Final = 0.2  # seconds a first report waits for others to join its batch
READ_EVERY: Final = 5.0  # seconds between two readings of the kernel's counters (worker 0)


def lane_settings(config: Config) -> LaneSettings | None:
    """The lane ``config`` asks for; None when there is none."""
    lane = config.firewall.lane
    if config.firewall.enforcer != "nftables" or not lane.enabled:
        return None
    return LaneSettings(
        ports=ports_of(
            [(ep.transport, ep.port) for ep in config.edge.listen] + sorted(host_ports(config))
        ),
        prefix_rate=lane.prefix_rate,
        total_rate=total_rate(lane.total_rate, config.edge.workers),
        prefix_v4=lane.prefix_v4,
        prefix_v6=lane.prefix_v6,
        known_good_timeout=lane.known_good_timeout,
    )


async def start_lane(config: Config, trusted: Sequence[Network]) -> None:
    """Build (or remove) the kernel lane before the workers start, with
    ``trusted`` (the trusted peers and the allow list), and say which in
    one line."""
    settings = lane_settings(config)
    if config.firewall.enforcer != "nftables":
        log.info(
            'no kernel lane: [firewall] enforcer = "none", so under a flood the edge\'s'
            ' socket decides who is served (enforcer = "nftables" keeps phones a lane)'
        )
        return
    enforcer = enforcer_for(config)
    await enforcer.start_lane(settings, trusted)
    await enforcer.stop()
    if settings is None:
        log.info("no kernel lane: [firewall.lane] enabled = false")
        return
    log.info(
        "kernel lane on %s: sources that logged in (for %s s) and %d trusted networks first;"
        " unknown sources %d packets/s per /%d (IPv6 /%d), %d packets/s in all",
        ", ".join(f"{proto}/{port}" for proto, port in settings.ports),
        f"{settings.known_good_timeout:g}",
        len(trusted),
        settings.prefix_rate,
        settings.prefix_v4,
        settings.prefix_v6,
        settings.total_rate,
    )


class LaneKeeper:
    """Carries ``known_good``'s reports to the kernel (see the module doc).
    ``trusted``: worker 0's source of the trusted networks (None in the
    other workers: they neither load them nor read the counters)."""

    def __init__(
        self,
        known_good: KnownGood,
        enforcer: Enforcer,
        *,
        trusted: Callable[[], list[Network]] | None = None,
        clock: Callable[[], float] = time.time,
        read_every: float = READ_EVERY,
    ) -> None:
        self.known_good = known_good
        self.enforcer = enforcer
        self.trusted = trusted
        self.clock = clock
        self.read_every = read_every
        # "pushed" (sources sent to the kernel), "batches", "refused" (the kernel did not take them)
        self.counters: Counter[str] = Counter()
        self.kernel: dict[str, int] = {}  # the kernel's counters at the last reading (worker 0)
        self._wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._loaded: list[Network] | None = None  # the trusted networks in the kernel

    async def start(self) -> None:
        self.known_good.on_change = self._wanted.set
        if self.known_good.pending:
            self._wanted.set()
        self._tasks.append(asyncio.create_task(self._pusher()))
        if self.trusted is not None:
            self._loaded = list(self.trusted())  # start_lane loaded these
            self._tasks.append(asyncio.create_task(self._reader()))

    async def stop(self) -> None:
        """Push what waits; the kernel keeps its entries."""
        self.known_good.on_change = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.push()

    async def push(self) -> None:
        """One batch: every report waiting."""
        entries = self.known_good.drain()
        if not entries:
            return
        refused = await self.enforcer.add_known_good(entries, self.clock())
        self.known_good.unreported(refused)  # reported again at their next login
        self.counters["batches"] += 1
        self.counters["pushed"] += len(entries) - len(refused)
        self.counters["refused"] += len(refused)

    async def _pusher(self) -> None:
        while True:
            await self._wanted.wait()
            await asyncio.sleep(BATCH_DELAY)  # let the logins of the moment join
            self._wanted.clear()
            try:
                await self.push()
            except Exception:
                self.counters["errors"] += 1
                log.exception("pushing known-good sources failed")

    async def _reader(self) -> None:
        assert self.trusted is not None
        while True:
            try:
                now = list(self.trusted())
                if now != self._loaded:  # a reload changed the trusted peers or the allow list
                    await self.enforcer.load_trusted(now)
                    self._loaded = now
                self.kernel = await self.enforcer.lane_counters()
            except (EnforcerError, OSError, ValueError) as exc:
                self.counters["errors"] += 1
                log.warning("reading the kernel lane failed: %s", exc)
            await asyncio.sleep(self.read_every)

    def status(self) -> dict[str, Any]:
        """For ``status``: this worker's known-good record and pushes, and
        (worker 0) the kernel's counters, as ``kernel-<name>``."""
        good = self.known_good
        return {
            "known-good": len(good),
            "pending": good.pending,
            **{f"known-good-{k}": v for k, v in good.counters.items()},
            **self.counters,
            **{f"kernel-{k}": v for k, v in self.kernel.items()},
        }
