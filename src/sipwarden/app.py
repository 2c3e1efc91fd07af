"""Wiring: build the running parts from the config, and run them."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import signal
from pathlib import Path
from typing import Any

from .config import Config, ConfigError, load_config
from .control import add_stats, ask_async, serve_control, worker_path
from .edge import Edge
from .policy import Policy, RuleError
from .policy.load import PolicyError, build_policy

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


class Daemon:
    """One worker's edge with its policy, reload and control socket."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None,
        edge: Edge,
        *,
        worker: int = 0,
        children: list[int] | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.edge = edge
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

        def build() -> tuple[Config, Policy]:
            config = load_config(self.config_path)
            return config, build_policy(config.policy, previous=previous)

        try:
            config, policy = await asyncio.get_running_loop().run_in_executor(None, build)
        except (ConfigError, RuleError, PolicyError) as exc:
            log.error("reload refused, the old rules stay in force: %s", exc)
            return str(exc)
        if config.edge != self.config.edge:
            log.warning("reload: changes to [edge] take effect at the next restart")
        # counted while the new one was being built: carried over, then swapped
        policy.verdicts = self.edge.policy.verdicts
        self.edge.policy = policy
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
        return {
            "ok": True,
            "hits": dict(policy.rules.hits),
            "monitored": dict(policy.rules.monitored),
            "verdicts": dict(policy.counters),
            "edge": dict(self.edge.counters),
        }

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("cmd")
        if command == "reload":
            error = await (self.reload_all() if self.worker == 0 else self.reload())
            if error is not None:
                return {"ok": False, "error": error}
            return {"ok": True, "rules": len(self.edge.policy.rules.rules)}
        if command == "stats":
            total = self.stats()
            if self.worker == 0 and not request.get("local"):
                for n in range(1, len(self.children) + 1):
                    with contextlib.suppress(OSError, ValueError, TimeoutError):
                        part = await ask_async(
                            worker_path(self.config.control.socket, n), {"cmd": "stats"}
                        )
                        add_stats(total, part)
            return total
        return {"ok": False, "error": f"unknown command {command!r} (reload, stats)"}


async def serve(
    config: Config,
    key: bytes,
    policy: Policy,
    *,
    config_path: Path | None = None,
    worker: int = 0,
    children: list[int] | None = None,
) -> None:
    """Run one edge worker until SIGTERM or SIGINT, then stop cleanly.
    SIGHUP reloads the policy (worker 0 passes it on to the others)."""
    edge = Edge(config.edge, key, policy=policy)
    await edge.start()
    daemon = Daemon(config, config_path, edge, worker=worker, children=children)
    control = await serve_control(daemon.socket_path, daemon.handle)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.on_sighup)
    if worker == 0:
        workers = config.edge.workers
        print(
            f"sipwarden: listening on {', '.join(map(str, edge.bound))}; backend {config.edge.backend}"
            f"; {len(policy.rules.rules)} rules" + (f"; {workers} workers" if workers > 1 else ""),
            flush=True,
        )
    try:
        await stop.wait()
    finally:
        control.close()
        with contextlib.suppress(OSError):
            daemon.socket_path.unlink()
        await edge.stop()
        log.info(
            "worker %d stopped; edge %s; verdicts %s",
            worker,
            dict(edge.counters),
            dict(edge.policy.counters),
        )


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
    policy = build_policy(config.policy)  # a broken rule stops startup here
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
