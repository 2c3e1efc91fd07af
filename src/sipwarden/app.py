"""Wiring: build the running parts from the config, and run them."""

from __future__ import annotations

import asyncio
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


async def serve(config: Config, *, ready: asyncio.Event | None = None) -> None:
    """Run the edge until SIGTERM or SIGINT, then stop cleanly."""
    edge = Edge(config.edge, flow_key(config.edge.flow_key_file))
    await edge.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"sipwarden: listening on {', '.join(map(str, edge.bound))}; backend {config.edge.backend}",
        flush=True,
    )
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await edge.stop()
        log.info("stopped; counters: %s", dict(edge.counters))
