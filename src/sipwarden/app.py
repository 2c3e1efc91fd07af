"""Wiring: build the running parts from the config, and run them."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config, ConfigError, load_config
from .daemon.bans import BanKeeper, add_request, remove_request
from .daemon.control import add_intel, add_stats, ask_async, serve_control, worker_path
from .daemon.intel import IntelKeeper
from .edge import Edge
from .enforce import Enforcer, make_enforcer
from .fetch.dns import resolve
from .fetch.geoip import open_geo
from .intel.geo import Countries
from .policy import Policy, PolicyError, RuleError, build_policy, rules_policy, with_state
from .store.sqlite import BanStore

if TYPE_CHECKING:
    from .api import ApiServer

log = logging.getLogger("sipwarden")


def flow_key(path: Path) -> bytes:
    """The flow-token key in ``path``, created on first use (0600)."""
    try:
        key = path.read_bytes()
        if len(key) >= 16:
            return key
        raise ValueError(
            f"{path}: the flow key is shorter than 16 bytes; delete it to make a new one"
        )
    except FileNotFoundError:
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key


# what a reload cannot change: sockets, files and the kernel's table
RESTART_SECTIONS = ("edge", "storage", "firewall", "api", "control")


class Daemon:
    """One worker's edge with its policy, reload and control socket."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None,
        edge: Edge,
        keeper: BanKeeper,
        intel: IntelKeeper,
        *,
        worker: int = 0,
        children: list[int] | None = None,
    ) -> None:
        self.config = config  # in force: a reload updates what it can change
        self.config_path = config_path
        self.edge = edge
        self.keeper = keeper
        self.intel = intel
        self.worker = worker
        self.children = children or []
        self.socket_path = worker_path(config.control.socket, worker)
        self._tasks: set[asyncio.Future[str | None]] = set()

    async def reload(self) -> str | None:
        """Re-read the config's policy and swap it in whole; on any error keep
        the rules in force and return the error. Counters and connections stay.
        The new policy is built in a thread: resolving a trusted peer's host
        name can take seconds, and packets must not wait for it."""
        previous = self.edge.policy
        geo_before = self.config.intel.geoip

        def build() -> tuple[Config, Policy, Countries | None]:
            config = load_config(self.config_path)
            policy = rules_policy(config.policy, previous=previous, resolve=resolve)
            # a new country database is opened (and walked) here, not on the packets' thread
            countries = open_geo(config.intel.geoip) if config.intel.geoip != geo_before else None
            return config, policy, countries

        try:
            config, policy, countries = await asyncio.get_running_loop().run_in_executor(
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
        policy.verdicts = self.edge.policy.verdicts
        self.edge.policy = with_state(
            policy, config, previous=self.edge.policy, countries=countries
        )
        self.config = config
        self.intel.configure(config.intel)
        await self.intel.reopen_countries()  # the same file name, new content (geoipupdate)
        log.info("worker %d: reloaded, %d rules in force", self.worker, len(policy.rules.rules))
        return None

    async def reload_all(self) -> str | None:
        error = await self.reload()
        if error is None:
            for pid in self.children:  # they read the same files
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGHUP)
        return error

    def on_sighup(self) -> None:
        task = asyncio.ensure_future(self.reload_all() if self.worker == 0 else self.reload())
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    def stats(self) -> dict[str, Any]:
        policy = self.edge.policy
        now = time.time()
        return {
            "ok": True,
            "hits": dict(policy.rules.hits),
            "monitored": dict(policy.rules.monitored),
            "verdicts": dict(policy.counters),
            "edge": dict(self.edge.counters),
            "decisions": dict(policy.decisions),
            # every worker enforces every ban (adopted from the store): not summed
            "bans-in-force": len(policy.bans.active(now)) if policy.bans else 0,
            "bans": {
                **self.keeper.counters,
                **{
                    f"{self.keeper.enforcer.name}:{k}": v
                    for k, v in self.keeper.enforcer.counters.items()
                },
            },
            "enforcement": self.keeper.latency(),
            "tracked": {
                "rate-sources": len(policy.limiter) if policy.limiter is not None else 0,
                "failure-sources": len(policy.failures) if policy.failures is not None else 0,
            },
            "intel": self.intel_status(),
        }

    def intel_status(self) -> dict[str, Any]:
        """Feeds, country policy and the listed sources that pass anyway
        (worker 0's view: every worker loads the same store)."""
        screen = self.edge.policy.intel
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
        for part in await self._from_others({"cmd": "stats", "local": True}):
            add_stats(total, part)
        return total

    async def all_intel_status(self) -> dict[str, Any]:
        """``intel_status`` with what every worker noticed (worker 0 asks the others)."""
        status = self.intel_status()
        for part in await self._from_others({"cmd": "intel-status", "local": True}):
            add_intel(status, part)
        return status

    async def _from_others(self, request: dict[str, Any]) -> list[dict[str, Any]]:
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

    async def ban(self, request: dict[str, Any]) -> dict[str, Any]:
        """``bans-add``: stored and enforced at once; the other workers adopt
        it from the store within a second (their tick)."""
        return await add_request(self.keeper, request)

    async def unban(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = await remove_request(self.keeper, request)
        if not request.get("local"):
            await self._from_others({**request, "local": True})  # each worker lifts its own copy
        return answer

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("cmd")
        if command == "reload":
            error = await (self.reload_all() if self.worker == 0 else self.reload())
            if error is not None:
                return {"ok": False, "error": error}
            return {"ok": True, "rules": len(self.edge.policy.rules.rules)}
        if command == "stats":
            return self.stats() if request.get("local") else await self.all_stats()
        if command == "bans-add":
            return await self.ban(request)
        if command == "bans-remove":
            return await self.unban(request)
        if command == "bans-list":
            return {"ok": True, "bans": await self.keeper.list()}
        if command == "bans-show":
            try:
                return {"ok": True, **await self.keeper.show(str(request.get("target", "")))}
            except ValueError:
                return {
                    "ok": False,
                    "error": f"{request.get('target')!r} is not an IP address or a CIDR",
                }
        if command == "intel-lookup":
            try:
                return {
                    "ok": True,
                    **await self.intel.lookup(self.edge.policy, str(request.get("target", ""))),
                }
            except ValueError:
                return {"ok": False, "error": f"{request.get('target')!r} is not an IP address"}
        if command == "intel-status":
            if request.get("local"):
                return {"ok": True, **self.intel_status()}
            return {"ok": True, **await self.all_intel_status()}
        return {
            "ok": False,
            "error": f"unknown command {command!r} (reload, stats, bans-add, bans-remove,"
            " bans-list, bans-show, intel-lookup, intel-status)",
        }


async def serve(
    config: Config,
    key: bytes,
    policy: Policy,
    *,
    config_path: Path | None = None,
    worker: int = 0,
    children: list[int] | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[Daemon, ApiServer | None], None] | None = None,
    announce: bool = True,
) -> None:
    """Run one edge worker until SIGTERM or SIGINT (or ``stop`` is set),
    then stop cleanly. SIGHUP reloads the policy (worker 0 passes it on to
    the others). ``on_ready`` is called once it serves, and ``announce``
    prints the "listening on" line operators and tests wait for (the demo
    says it its own way)."""
    assert policy.bans is not None and policy.intel is not None
    keeper = BanKeeper(policy.bans, config.storage.path, enforcer_for(config))
    edge = Edge(config.edge, key, policy=policy)

    def never_dropped() -> list[object]:  # the policy in force: a reload may change them
        book = edge.policy.bans
        return list(book.allow_networks) if book is not None else []

    intel = IntelKeeper(
        config.intel,
        config.storage.path,
        policy.intel.index,
        fetch=worker == 0,
        enforcer=keeper.enforcer,
        exclude=never_dropped,
        screen=lambda: edge.policy.intel,
    )
    daemon = Daemon(config, config_path, edge, keeper, intel, worker=worker, children=children)
    # the control socket first: a second daemon started by mistake stops
    # here, before it touches the store or the ports
    control = await serve_control(daemon.socket_path, daemon.handle)
    api = None
    try:
        await keeper.start()  # bans in force before the first packet
        await intel.start()  # and the feeds' entries
        await edge.start()
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
                f"sipwarden: listening on {', '.join(map(str, edge.bound))}"
                f"; backend {config.edge.backend}; {len(policy.rules.rules)} rules"
                + (f"; {workers} workers" if workers > 1 else "")
                + (f"; API {api.url}/api/v1" if api is not None else ""),
                flush=True,
            )
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            asyncio.get_running_loop().remove_signal_handler(sig)
        control.close()
        with contextlib.suppress(OSError):
            daemon.socket_path.unlink()
        if api is not None:
            await api.cleanup()
        await edge.stop()
        await intel.stop()
        await keeper.stop()
        log.info(
            "worker %d stopped; edge %s; verdicts %s",
            worker,
            dict(edge.counters),
            dict(edge.policy.counters),
        )


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


async def start_api(config: Config, daemon: Daemon) -> ApiServer | None:
    """The REST API on ``[api] listen``; a port another program holds is
    a warning, not a reason to leave the PBX unprotected."""
    if not config.api.listen:
        return None
    from .api import serve_api

    try:
        return await serve_api(config.api, daemon)
    except OSError as exc:
        log.error(
            "the API is not running: %s:%s (set [api] listen)", config.api.listen, exc.strerror
        )
        return None


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker if the main process dies, however it
    dies (PR_SET_PDEATHSIG), so no worker is left holding the port."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def run(config: Config, config_path: Path | None = None) -> None:
    """Run ``edge.workers`` processes sharing the listening ports (SO_REUSEPORT;
    the kernel spreads sources across them). The proxy keeps no state, and
    each worker's own backend socket brings the PBX's answers back to it."""
    import uvloop

    # a SIGHUP before the loop handles it (logrotate during startup) must
    # not kill the daemon; the workers inherit this until their loop starts
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    key = flow_key(config.edge.flow_key_file)  # before forking: one key for all
    # a broken rule or an unreadable country database stops startup here
    policy = build_policy(config, countries=open_geo(config.intel.geoip), resolve=resolve)
    asyncio.run(reconcile(config))  # before any worker bans: the store is the truth
    children: list[int] = []
    for worker in range(1, config.edge.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            _die_with_parent()
            code = 0
            try:
                uvloop.run(serve(config, key, policy, config_path=config_path, worker=worker))
            except BaseException:
                log.exception("worker %d failed", worker)
                code = 1
            os._exit(code)
        children.append(pid)
    try:
        uvloop.run(serve(config, key, policy, config_path=config_path, children=children))
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            os.waitpid(pid, 0)
