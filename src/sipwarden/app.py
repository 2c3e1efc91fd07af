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

from .config import Config
from .edge import Edge

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


async def serve(config: Config, key: bytes, *, worker: int = 0) -> None:
    """Run one edge worker until SIGTERM or SIGINT, then stop cleanly."""
    edge = Edge(config.edge, key)
    await edge.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if worker == 0:
        workers = config.edge.workers
        print(
            f"sipwarden: listening on {', '.join(map(str, edge.bound))}; backend {config.edge.backend}"
            + (f"; {workers} workers" if workers > 1 else ""),
            flush=True,
        )
    try:
        await stop.wait()
    finally:
        await edge.stop()
        log.info("worker %d stopped; counters: %s", worker, dict(edge.counters))


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker if the main process dies, however it
    dies (PR_SET_PDEATHSIG), so no worker is left holding the port."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def run(config: Config) -> None:
    """Run ``edge.workers`` processes sharing the listening ports (SO_REUSEPORT;
    the kernel spreads sources across them). The proxy keeps no state, and
    each worker's own backend socket brings the PBX's answers back to it."""
    import uvloop

    key = flow_key(config.edge.flow_key_file)  # before forking: one key for all
    children: list[int] = []
    for worker in range(1, config.edge.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            _die_with_parent()
            code = 0
            try:
                uvloop.run(serve(config, key, worker=worker))
            except BaseException:
                log.exception("worker %d failed", worker)
                code = 1
            os._exit(code)
        children.append(pid)
    try:
        uvloop.run(serve(config, key))
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            os.waitpid(pid, 0)
