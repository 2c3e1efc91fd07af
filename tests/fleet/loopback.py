"""A fleet node on loopback: one real `sipwarden run` (UDP on a free port of
127.0.0.1, no kernel enforcement, a control socket in its own folder), for
tests and benchmarks that need real nodes but no namespace or kernel sets.

``LoopbackNode(folder, name, redis)``; ``start()`` waits for its "listening"
line (20 s at most) and fails with its log otherwise; ``stop()``; ``cli(...)``
and ``json(...)`` run the CLI against it; ``ask(request)`` speaks to its
control socket directly (one JSON line each way), cheaper than a CLI process
when a benchmark polls.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from sipwarden.daemon.control import ask, worker_path

from ..conftest import free_udp_port
from .redis_server import Redis


class NodeFailed(Exception):
    """The node did not start (its stderr says why)."""


class LoopbackNode:
    def __init__(
        self,
        folder: Path,
        name: str,
        redis: Redis,
        *,
        backend_port: int = 0,
        workers: int = 1,
        api: bool = False,
        **fleet: object,
    ) -> None:
        self.name, self.folder = name, folder / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config = self.folder / "edge.toml"
        self.socket = self.folder / "sipwarden.sock"
        self.port = free_udp_port()
        self.config.write_text(
            f"""
[edge]
listen = ["udp:127.0.0.1:{self.port}"]
backend = "udp:127.0.0.1:{backend_port or free_udp_port()}"
workers = {workers}
flow_key_file = "flow.key"

[policy]
pack = false

[storage]
path = "bans.db"

[control]
socket = "{self.socket}"

[api]
listen = "{"127.0.0.1:0" if api else ""}"

{redis.fleet_toml(f"node-{name}", **fleet)}
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr = self.folder / "run.log"
        self.line = b""  # what it printed once listening (the API's URL among it)

    def start(self, timeout: float = 20) -> None:
        with self.stderr.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sipwarden.cli", "run", "-c", str(self.config)],
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.line = self.proc.stdout.readline() if ready else b""
        if b"listening on" not in line:
            self.stop()
            raise NodeFailed(f"node {self.name} did not start: {line!r}\n{self.log()}")

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "sipwarden.cli", *args, "-c", str(self.config)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30)

    def json(self, *args: str) -> Any:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, f"{self.name} {args}: {done.stderr}"
        return json.loads(done.stdout)

    def ask(self, request: dict[str, Any], timeout: float = 10, worker: int = 0) -> dict[str, Any]:
        """One request to a worker's control socket, its answer."""
        return ask(worker_path(self.socket, worker), request, timeout)
