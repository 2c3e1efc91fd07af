"""The daemon: one worker's policy, its keepers, its modes and its control socket.

What it owns, and why here: the policy in force (every mode judges with it;
a reload builds a new one off the packets' thread and swaps it into every
mode between two packets), the ban keeper, the feed keeper and the lane
keeper (the policy's I/O), and the control socket through which the CLI,
the other workers and REST reach the commands (``commands.COMMANDS``). What it does not own: how
traffic arrives (the modes), what the API serves (``api/``, above it), how
the workers are forked (``app``).

With several workers, worker 0 is the one that answers for all: it asks the
others over their control sockets (``PATH.N``) and sums or joins the answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..config import Config, ConfigError, load_config
from ..fetch.calendar import open_schedule
from ..fetch.dns import resolve
from ..fetch.geoip import open_geo
from ..intel.geo import Countries
from ..observe.schedule import Schedule
from ..policy import Policy, PolicyError, RuleError, rules_policy, with_state
from .analysis import AnalysisKeeper
from .commands import run_command
from .control import ask_async, serve_control, worker_path
from .protect import protected_networks
from .readiness import notify
from .stats import add_intel, add_stats, worker_stats

if TYPE_CHECKING:
    from ..fleet.counters import FleetCounters
    from ..fleet.intel import FleetIntel
    from .alerts import AlertKeeper
    from .bans import BanKeeper
    from .fleet import FleetKeeper
    from .honeypot import HoneypotKeeper
    from .intel import IntelKeeper
    from .lane import LaneKeeper
    from .modes import Mode
    from .observe import ObserveKeeper
    from .report import ReportKeeper

log = logging.getLogger("sipwarden")
M = TypeVar("M")

# what a reload cannot change: sockets, files and the kernel's table
RESTART_SECTIONS = (
    "edge",
    "host",
    "storage",
    "firewall",
    "api",
    "control",
    "logging",
    "observe",
    "alerts",
    "report",  # its mail goes through an [[alerts]] target
    "deception",
    "fleet",  # the connection to Redis and what it shares
)


def settle_heap() -> None:
    """What start-up (or a reload) made lives as long as the worker: the
    modules, the config, the policy and its rules. Frozen out of the garbage
    collector's generations (``gc.freeze``), it is never walked again, so a
    full collection walks only what the packets made since: without this,
    every full collection walked the 66,000 objects of start-up, 20-30 ms
    on this machine (bench/pauses.py). What a reload replaced is collected
    first (one full collection then, at the operator's request): frozen
    garbage in a reference cycle would never be."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Daemon:
    """One worker: the policy, the keepers and the modes (see the module doc)."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None,
        policy: Policy,
        modes: Sequence[Mode],
        keeper: BanKeeper,
        intel: IntelKeeper,
        *,
        lane: LaneKeeper | None = None,
        observe: ObserveKeeper | None = None,
        alerts: AlertKeeper | None = None,
        honeypot: HoneypotKeeper | None = None,
        reports: ReportKeeper | None = None,
        fleet: FleetKeeper | None = None,
        fleet_counters: FleetCounters | None = None,
        fleet_intel: FleetIntel | None = None,
        schedule: Schedule | None = None,
        worker: int = 0,
        children: list[int] | None = None,
        monitor: bool = False,
    ) -> None:
        self.config = config  # in force: a reload updates what it can change
        self.config_path = config_path
        self.modes = list(modes)
        self.keeper = keeper
        self.intel = intel
        self.lane = lane  # None: no kernel lane
        self.observe = observe  # None: no events or flows kept
        self.alerts = alerts  # worker 0's, when [[alerts]] names targets
        self.honeypot = honeypot  # the honeypot's records to the store ([deception] on)
        self.reports = reports  # worker 0's weekly mail, when [report] is on
        self.fleet = fleet  # worker 0's share of the fleet's bans, when [fleet] is set
        self.fleet_counters = fleet_counters  # failure counts shared ([fleet] share_failures)
        # worker 0's: one node of the fleet fetches each feed ([fleet] share_intel)
        self.fleet_intel = fleet_intel
        self.schedule = schedule  # [schedule]: quiet time (None: never quiet)
        # worker 0 runs the analysis over every worker's events and flows
        self.analysis = AnalysisKeeper(self) if worker == 0 and observe is not None else None
        self.worker = worker
        self.children = children or []
        self.forced_monitor = monitor  # `run --monitor`: monitor mode across reloads too
        self.socket_path = worker_path(config.control.socket, worker)
        self._policy = policy
        for mode in self.modes:
            mode.policy = policy
        if observe is not None:
            policy.events = observe.events
        self._control: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    def mode(self, kind: type[M]) -> M:
        """The running mode of class ``kind`` (the demo asks for its edge)."""
        for mode in self.modes:
            if isinstance(mode, kind):
                return mode
        raise LookupError(f"no {kind.__name__} mode is running")

    @property
    def policy(self) -> Policy:
        return self._policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        """Swap the policy in every mode at once (on the packets' thread)."""
        self._policy = policy
        for mode in self.modes:
            mode.policy = policy

    # ----------------------------------------------------------------- life

    async def start(self) -> None:
        """The control socket first (a second daemon started by mistake stops
        here, before it touches the store or the ports), then bans and feed
        entries in force, then the modes: no packet is judged without them."""
        self._control = await serve_control(self.socket_path, lambda r: run_command(self, r))
        # this machine and its PBX are never banned (the book refuses them)
        self.keeper.book.protect(await asyncio.to_thread(protected_networks, self.config))
        if self.observe is not None:  # first: the bans restored are not news, but all after are
            await self.observe.start()
        if self.alerts:
            await self.alerts.start()
        if self.honeypot is not None:
            await self.honeypot.start()
        await self.keeper.start()
        if self.fleet is not None:  # after the bans restored: it publishes what follows
            self.keeper.listeners.append(self.fleet.offer)
            self.fleet.on_lifted = self._lifted_by_fleet
            await self.fleet.start()
        if self.fleet_counters is not None:  # before the modes: their first failures count
            await self.fleet_counters.start()
        if self.fleet_intel is not None:  # before the intel keeper: which feeds this node fetches
            await self.fleet_intel.start()
        await self.intel.start()
        if self.lane is not None:
            await self.lane.start()
        for mode in self.modes:
            await mode.start()
        if self.worker == 0 and self.observe is not None:
            self._background(self.observe.watch_health(self.all_stats))
        if self.analysis is not None:
            self._background(self.analysis.loop())
        if self.reports is not None:
            await self.reports.start()
        settle_heap()

    async def stop(self) -> None:
        if self._control is None:
            return  # it never started: the socket (maybe another daemon's) is not ours
        for task in list(self._tasks):
            task.cancel()
        if self.reports is not None:
            await self.reports.stop()
        self._control.close()
        with contextlib.suppress(OSError):
            self.socket_path.unlink()
        for mode in reversed(self.modes):
            await mode.stop()
        if self.lane is not None:
            await self.lane.stop()
        await self.intel.stop()
        if self.fleet_intel is not None:  # its lease given back before the shared link closes
            await self.fleet_intel.stop()
        if self.fleet_counters is not None:
            await self.fleet_counters.stop()
        if self.fleet is not None:  # last of the fleet: it closes worker 0's link
            await self.fleet.stop()
        await self.keeper.stop()
        if self.observe is not None:  # last: what the others said on their way out is written
            await self.observe.stop()
        if self.alerts:
            await self.alerts.stop()
        if self.honeypot is not None:
            await self.honeypot.stop()
        log.info(
            "worker %d stopped; %s; verdicts %s",
            self.worker,
            "; ".join(f"{m.name} {dict(m.counters)}" for m in self.modes),
            dict(self.policy.counters),
        )

    def quiet(self, when: float) -> bool:
        """Whether ``when`` is quiet time, as the schedule in force says."""
        return self.schedule is not None and self.schedule.quiet(when)

    # --------------------------------------------------------------- reload

    async def reload(self) -> str | None:
        """Re-read the config's policy and swap it in whole; on any error keep
        the rules in force and return the error. Counters and connections stay.
        The new policy is built in a thread: resolving a trusted peer's host
        name can take seconds, and packets must not wait for it."""
        previous = self.policy
        geo_before = self.config.intel.geoip

        def build() -> tuple[Config, Policy, Countries | None, Schedule]:
            config = load_config(self.config_path)
            if self.forced_monitor:
                monitor = config.policy.model_copy(update={"mode": "monitor"})
                config = config.model_copy(update={"policy": monitor})
            policy = rules_policy(config.policy, previous=previous, resolve=resolve)
            # a new country database is opened (and walked) here, not on the packets' thread
            countries = open_geo(config.intel.geoip) if config.intel.geoip != geo_before else None
            schedule = open_schedule(config.schedule, time.time())  # the holidays: a walk too
            return config, policy, countries, schedule

        try:
            config, policy, countries, schedule = await asyncio.get_running_loop().run_in_executor(
                None, build
            )
        except (ConfigError, RuleError, PolicyError) as exc:
            log.error("reload refused, the old rules stay in force: %s", exc)
            return str(exc)
        for section in RESTART_SECTIONS:
            if getattr(config, section) != getattr(self.config, section):
                log.warning("reload: changes to [%s] take effect at the next restart", section)
        config = config.model_copy(update={s: getattr(self.config, s) for s in RESTART_SECTIONS})
        # counted while the new one was being built: carried over, then swapped;
        # the bans, rates, failure counts and feed entries are handed over
        # here, on the packets' own thread
        policy.verdicts = self.policy.verdicts
        policy = with_state(
            policy, config, previous=self.policy, countries=countries, schedule=schedule
        )
        policy.events = self.policy.events
        self.policy = policy
        self.config = config
        self.schedule = schedule
        if self.analysis is not None:
            self.analysis.configure()
        self.intel.configure(config.intel)
        await self.intel.reopen_countries()  # the same file name, new content (geoipupdate)
        if policy.monitor != previous.monitor:
            log.warning(
                "reload: [policy] mode is now %s%s",
                "monitor: nothing is dropped, banned or deceived (bans already in force stay)"
                if policy.monitor
                else "enforce",
                "; the kernel lane follows at the next restart" if self.lane is not None else "",
            )
        settle_heap()  # the old policy collected, the new one frozen
        log.info("worker %d: reloaded, %d rules in force", self.worker, len(policy.rules.rules))
        return None

    async def reload_all(self) -> str | None:
        """Worker 0's reload: its own, then the others' (they read the same files).
        systemd hears of it (``Type=notify``: ``systemctl reload`` waits for READY)."""
        notify("RELOADING=1")
        try:
            error = await self.reload()
        finally:
            notify("READY=1")
        if error is None:
            for pid in self.children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGHUP)
        return error

    def on_sighup(self) -> None:
        self._background(self.reload_all() if self.worker == 0 else self.reload())

    def _lifted_by_fleet(self, target: str) -> None:
        """Another node's unban, lifted in worker 0's book: the other workers
        lift their own copies (as an operator's ``bans-remove`` does)."""
        if self.children:
            self._background(
                self.ask_others({"cmd": "bans-remove", "target": target, "local": True})
            )

    def _background(self, work: Awaitable[Any]) -> None:
        """Run ``work`` until it ends or the daemon stops."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    # --------------------------------------------------------------- status

    def stats(self) -> dict[str, Any]:
        """This worker's counters (``stats`` sums them over the workers)."""
        stats = worker_stats(
            self.policy,
            self.modes,
            self.keeper,
            self.intel_status(),
            self.lane.status() if self.lane is not None else None,
            self.observe.stats() if self.observe is not None else None,
            self.alerts.status() if self.alerts else None,
            self.reports.status() if self.reports is not None else None,
            self.analysis.stats() if self.analysis is not None else None,
            self.observe.kernel_stats() if self.observe is not None else None,
            fleet_counters=(
                self.fleet_counters.status() if self.fleet_counters is not None else None
            ),
            fleet_intel=self.fleet_intel.status() if self.fleet_intel is not None else None,
        )
        if self.fleet is not None:  # worker 0's: the fleet's bans, up or degraded
            stats["fleet"] = self.fleet.status()
        return stats

    def intel_status(self) -> dict[str, Any]:
        """Feeds, country policy and the listed sources that pass anyway
        (this worker's view: every worker loads the same store)."""
        screen = self.policy.intel
        status = self.intel.status()
        if screen is not None:
            policy = screen.country_policy
            status["countries"] = (
                None
                if policy is None
                else {
                    "allow": None if policy.allow is None else sorted(policy.allow),
                    "deny": sorted(policy.deny),
                    "unknown": policy.unknown,
                }
            )
            status["listed_but_exempt"] = {h: list(f) for h, f in screen.listed_exempt.items()}
        return status

    async def all_stats(self) -> dict[str, Any]:
        """``stats`` summed over every worker (worker 0 asks the others)."""
        total = self.stats()
        for part in await self.ask_others({"cmd": "stats", "local": True}):
            add_stats(total, part)
        return total

    async def all_intel_status(self) -> dict[str, Any]:
        """``intel_status`` with what every worker noticed (worker 0 asks the others)."""
        status = self.intel_status()
        for part in await self.ask_others({"cmd": "intel-status", "local": True}):
            add_intel(status, part)
        return status

    async def ask_others(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        """The other workers' answers to ``request`` (worker 0 only; a worker
        that does not answer is left out). Asked at once: a stuck worker
        costs the control timeout once, not once per worker."""
        if self.worker != 0:
            return []
        answers = await asyncio.gather(
            *(
                ask_async(worker_path(self.config.control.socket, n), request)
                for n in range(1, len(self.children) + 1)
            ),
            return_exceptions=True,
        )
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(
                answer, OSError | ValueError | TimeoutError
            ):
                raise answer
        return [a for a in answers if isinstance(a, dict)]
