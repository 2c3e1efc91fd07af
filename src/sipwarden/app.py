"""Wiring: build the running parts from the config, and run them.

``run`` checks what can stop startup (files and addresses the config names:
``daemon.preflight``; a broken rule, an unreadable country database), makes
the kernel match the store, builds the kernel's lane, forks the workers and
runs ``serve`` in each; ``serve`` builds one worker (the policy's keepers,
the modes, the daemon, worker 0's API) and runs it until SIGTERM or SIGINT.
Nothing here judges a packet or keeps state: that is the core's and the
daemon's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config, ConfigError
from .daemon import preflight
from .daemon.alerts import AlertKeeper, check_alerts
from .daemon.bans import BanKeeper, enforcer_for, reconcile
from .daemon.core import Daemon
from .daemon.honeypot import HoneypotKeeper
from .daemon.intel import IntelKeeper
from .daemon.lane import LaneKeeper, start_lane
from .daemon.modes import Mode
from .daemon.observe import ObserveKeeper, as_event
from .daemon.readiness import notify
from .daemon.report import ReportKeeper
from .deception.deceiver import Deceiver
from .edge import Edge, flow_key
from .fetch.calendar import open_schedule
from .fetch.dns import resolve
from .fetch.geoip import open_geo
from .hostmode import HostMode
from .logwatch.mode import LogWatch
from .observe.schedule import Schedule
from .policy import Policy, build_policy
from .values import Network

if TYPE_CHECKING:
    from .api import ApiServer
    from .daemon.fleet import FleetKeeper
    from .fleet import FleetLink
    from .fleet.intel import FleetIntel

log = logging.getLogger("sipwarden")

# the start banner's first words in monitor mode: loud, so it is not mistaken for protection
MONITOR_SAID = "MONITOR MODE (judged and recorded; nothing dropped, banned or deceived); "


async def serve(
    config: Config,
    key: bytes,
    policy: Policy,
    schedule: Schedule | None = None,
    *,
    config_path: Path | None = None,
    worker: int = 0,
    children: list[int] | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[Daemon, ApiServer | None], None] | None = None,
    announce: bool = True,
    monitor: bool = False,
) -> None:
    """Run one worker until SIGTERM or SIGINT (or ``stop`` is set), then
    stop cleanly. SIGHUP reloads the policy (worker 0 passes it on to the
    others). ``on_ready`` is called once it serves, and ``announce`` prints
    the "listening on" line operators and tests wait for (the demo says it
    its own way). ``monitor``: `run --monitor`, monitor mode whatever the
    config file says, across reloads too."""
    assert policy.bans is not None and policy.intel is not None
    # events and flows: every worker counts its own and writes them; worker 0
    # tells of the bans (it adopts every worker's) and follows the table
    enforcer = enforcer_for(config)
    observe = (
        ObserveKeeper(
            config.observe,
            config.storage.path,
            worker=worker,
            drop_counts=enforcer.drop_counts
            if worker == 0 and config.firewall.enforcer == "nftables"
            else None,
        )
        if config.observe.enabled
        else None
    )
    # alerts from worker 0 alone, which follows every worker's events (one
    # alert per burst, with the whole count); made after the fork (its HTTP client)
    alerts = AlertKeeper.from_config(config) if worker == 0 and observe is not None else None
    if alerts and observe is not None:
        observe.listeners.append(lambda rows: alerts.offer([as_event(row) for row in rows]))
        # quiet time as the schedule in force says (a reload may change it)
        alerts.quiet = lambda t: daemon is not None and daemon.quiet(t)
    events = observe.events if observe is not None else None
    keeper = BanKeeper(
        policy.bans,
        config.storage.path,
        enforcer,
        on_event=events.push if worker == 0 and events is not None else None,
    )
    # deception ([deception] enabled): a hostile source's messages get the
    # deceiver's answers; the honeypot's records are written by their keeper
    deceiver = make_deceiver(config, policy) if config.deception.enabled else None
    honeypot = (
        None
        if deceiver is None
        else HoneypotKeeper(
            deceiver.records, config.deception.fake_pbx, config.storage.path, worker=worker
        )
    )
    modes: list[Mode] = []
    if config.edge.listen:  # a config file without [edge] (or listen = []) has no edge
        modes.append(
            Edge(
                config.edge,
                key,
                policy=policy,
                events=events,
                flows=observe.flows if observe is not None else None,
                deceiver=deceiver,
            )
        )
    if config.host.enabled and worker == 0:  # one reader per queue: worker 0's
        modes.append(
            HostMode(
                config.host,
                table=config.firewall.table,
                policy=policy,
                events=events,
                flows=observe.flows if observe is not None else None,
            )
        )
    # logwatch mode ([[logwatch.sources]]): worker 0 alone reads the PBX's logs
    if worker == 0 and config.logwatch.sources:
        modes.append(LogWatch(config.logwatch, config.storage.path, policy=policy))
    daemon: Daemon | None = None
    # [fleet]: worker 0 publishes this node's bans and applies the others' (redis imported only then)
    fleet: FleetKeeper | None = None
    link: FleetLink | None = None  # worker 0's, shared by its bans and its intel
    if worker == 0 and config.fleet.enabled:
        from .daemon.fleet import FleetKeeper
        from .fleet import FleetLink

        link = FleetLink(config.fleet)
        fleet = FleetKeeper(link, keeper.book, config.storage.path)

    def never_dropped() -> list[Network]:  # the policy in force: a reload may change them
        book = daemon.policy.bans if daemon is not None else policy.bans
        return [*book.allow_networks, *book.protected_networks] if book is not None else []

    # the kernel lane's known-good sources, pushed by every worker; worker 0
    # keeps its trusted sets in step with the policy's and reads its counters
    # (monitor mode drops nothing: no lane; run() removed any left in the kernel)
    monitoring = config.policy.mode == "monitor"
    with_lane = (
        config.firewall.enforcer == "nftables" and config.firewall.lane.enabled and not monitoring
    )
    lane = (
        None
        if policy.known_good is None or not with_lane
        else LaneKeeper(
            policy.known_good, keeper.enforcer, trusted=never_dropped if worker == 0 else None
        )
    )

    # [fleet] share_intel: worker 0 of one node fetches each feed, the others take it from Redis
    fleet_intel = make_fleet_intel(config, lambda: intel.specs, link) if link is not None else None
    intel = IntelKeeper(
        config.intel,
        config.storage.path,
        policy.intel.index,
        fetch=worker == 0,
        enforcer=keeper.enforcer,
        exclude=never_dropped,
        screen=lambda: daemon.policy.intel if daemon is not None else policy.intel,
        widest=(config.bans.widest_v4, config.bans.widest_v6),
        on_event=events.push if worker == 0 and events is not None else None,
        # monitor mode: the kernel's feed sets are kept empty (a reload may switch)
        monitoring=lambda: daemon.policy.monitor if daemon is not None else policy.monitor,
        gate=fleet_intel.may_fetch if fleet_intel is not None else None,
    )
    counters = None
    if config.fleet.enabled and config.fleet.share_failures:  # failure counts fleet-wide
        from .fleet import FleetLink  # lazily: no fleet, no redis imported
        from .fleet.counters import FleetCounters

        counters = FleetCounters(
            FleetLink(config.fleet), lambda: daemon.policy if daemon is not None else policy
        )
    daemon = Daemon(
        config,
        config_path,
        policy,
        modes,
        keeper,
        intel,
        fleet_counters=counters,
        lane=lane,
        observe=observe,
        alerts=alerts,
        honeypot=honeypot,
        # [report]: the weekly mail, from worker 0 (made after the fork: its sender's thread)
        reports=ReportKeeper.from_config(config) if worker == 0 else None,
        fleet=fleet,
        fleet_intel=fleet_intel,
        schedule=schedule,
        worker=worker,
        children=children,
        monitor=monitor,
    )
    api = None
    try:
        await daemon.start()
        api = await start_api(config, daemon) if worker == 0 else None
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, daemon.on_sighup)
        if on_ready is not None:
            on_ready(daemon, api)
        if worker == 0 and announce:
            workers = config.edge.workers
            print(
                "sipwarden: "
                + (MONITOR_SAID if daemon.policy.monitor else "")
                + "; ".join(mode.describe() for mode in modes)
                + f"; {len(policy.rules.rules)} rules"
                + (f"; {workers} workers" if workers > 1 else "")
                + (f"; API {api.url}/api/v1" if api is not None else "")
                + (f" (token in {api.token_file})" if api and api.token_file else ""),
                flush=True,
            )
        if worker == 0:  # every mode's ports are open: `systemctl start` may return
            notify("READY=1", f"STATUS={'; '.join(mode.describe() for mode in modes)}")
        await stop.wait()
    finally:
        if worker == 0:
            notify("STOPPING=1")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            asyncio.get_running_loop().remove_signal_handler(sig)
        if api is not None:
            await api.cleanup()
        await daemon.stop()


async def start_api(config: Config, daemon: Daemon) -> ApiServer | None:
    """The REST API on ``[api] listen``; a port another program holds, or
    a token file that cannot be used, is an error in the log, not a reason
    to leave the PBX unprotected."""
    if not config.api.listen:
        return None
    from .api import TokenError, serve_api

    try:
        return await serve_api(config, daemon)
    except OSError as exc:
        problem = preflight.bind_problem("api.listen", config.api.listen, exc)
        log.error("%s; sipwarden runs without the API", problem)
    except TokenError as exc:
        log.error("the API is not running: %s", exc)
    return None


async def check_fleet(config: Config) -> None:
    """ConfigError (one line) if Redis refuses ``[fleet]``'s credentials
    (or its password file cannot be read)."""
    from .fleet import FleetAuthError, FleetLink

    try:
        link = FleetLink(config.fleet)
    except FleetAuthError as exc:
        raise ConfigError(f"[fleet] {exc}") from None
    try:
        await link.connect()
    except FleetAuthError as exc:
        raise ConfigError(f"[fleet] {exc}") from None
    finally:
        await link.close()


def make_fleet_intel(
    config: Config, specs: Callable[[], dict[str, Any]], link: FleetLink
) -> FleetIntel | None:
    """The fleet's shared intel ([fleet] with share_intel) on worker 0's
    link (the fleet keeper closes it); None when the fleet shares no intel."""
    if not config.fleet.share_intel:
        return None
    from .fleet.intel import FleetIntel

    return FleetIntel(
        link,
        config.storage.path,
        lambda: {name: spec.life for name, spec in specs().items()},
        close_link=False,
    )


def make_deceiver(config: Config, policy: Policy) -> Deceiver:
    """The deceiver, its honeypot's numbers read by the policy's dialplan."""
    plan = policy.dialplan

    def classify(dialled: str) -> tuple[str | None, str | None, str | None]:
        if plan is None:
            return dialled, None, None
        number = plan.classify(dialled)
        if not number.is_number:
            return None, None, None
        return number.e164 or number.tail, number.prefix or None, number.country

    return Deceiver(config.deception, classify=classify)


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker if the main process dies, however it
    dies (PR_SET_PDEATHSIG), so no worker is left holding the port."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def monitoring(config: Config) -> Config:
    """``config`` in monitor mode (`run --monitor`)."""
    return config.model_copy(
        update={"policy": config.policy.model_copy(update={"mode": "monitor"})}
    )


def run(config: Config, config_path: Path | None = None, *, monitor: bool = False) -> None:
    """Run ``edge.workers`` processes sharing the listening ports (SO_REUSEPORT;
    the kernel spreads sources across them). The proxy keeps no state, and
    each worker's own backend socket brings the PBX's answers back to it.
    Host mode runs in worker 0 alone (one reader per queue); with no edge
    there is one worker (config.py refuses edge.workers > 1 without one).

    ``monitor``: monitor mode whatever ``[policy] mode`` says (`run --monitor`)."""
    if monitor:
        config = monitoring(config)
    import uvloop

    # a SIGHUP before the loop handles it (logrotate during startup) must
    # not kill the daemon; the workers inherit this until their loop starts
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    preflight.check(config)  # before the store, the kernel or a port is touched
    check_alerts(config)  # an alert target's secret that cannot be read
    # before forking: one key for all (no edge, no flow tokens: no key file)
    key = flow_key(config.edge.flow_key_file) if config.edge.listen else b""
    # a broken rule or an unreadable country database stops startup here
    schedule = open_schedule(config.schedule, time.time())  # a bad timezone or country stops it
    policy = build_policy(
        config, countries=open_geo(config.intel.geoip), resolve=resolve, schedule=schedule
    )
    if config.fleet.enabled:  # credentials Redis refuses stop the start (unreachable: alone)
        asyncio.run(check_fleet(config))
    asyncio.run(reconcile(config))  # before any worker bans: the kernel holds what is in force
    assert policy.bans is not None
    # before any packet is read; monitor mode drops nothing: a lane left from before goes
    lane_config = config
    if config.policy.mode == "monitor":
        firewall = config.firewall.model_copy(
            update={"lane": config.firewall.lane.model_copy(update={"enabled": False})}
        )
        lane_config = config.model_copy(update={"firewall": firewall})
    asyncio.run(start_lane(lane_config, policy.bans.allow_networks))
    children: list[int] = []
    for worker in range(1, config.edge.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            _die_with_parent()
            code = 0
            try:
                uvloop.run(
                    serve(
                        config,
                        key,
                        policy,
                        schedule,
                        config_path=config_path,
                        worker=worker,
                        monitor=monitor,
                    )
                )
            except BaseException:
                log.exception("worker %d failed", worker)
                code = 1
            os._exit(code)
        children.append(pid)
    try:
        uvloop.run(
            serve(
                config,
                key,
                policy,
                schedule,
                config_path=config_path,
                children=children,
                monitor=monitor,
            )
        )
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            os.waitpid(pid, 0)
