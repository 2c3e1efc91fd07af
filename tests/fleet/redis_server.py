"""A real ``redis-server`` for the fleet's tests: on a free port of the
address asked for (loopback by default), no persistence, an ACL user with a
password (the default user off), or TLS with a certificate made for it.

``redis_server(tmp_path)`` is a context manager giving a ``Redis`` with its
URL, user and password, and ``stop()``/``start()`` to take it away and bring
it back on the same port (what a node sees when Redis restarts)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..conftest import need

USER = "sipwarden"
PASSWORD = "fleet-test-password-0123456789"


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


@dataclass
class Redis:
    workdir: Path
    host: str
    port: int
    prefix: list[str] = field(
        default_factory=list
    )  # run it inside a namespace: ["ip", "netns", ...]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def fleet_toml(self, node: str, **extra: object) -> str:
        """The ``[fleet]`` section a node of this Redis needs."""
        lines = [
            "[fleet]",
            f'redis = "{self.url}"',
            f'node = "{node}"',
            f'username = "{USER}"',
            f'password = "{PASSWORD}"',
        ]
        lines += [f"{key} = {toml_value(value)}" for key, value in extra.items()]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        conf = self.workdir / "redis.conf"
        conf.write_text(
            f'bind {self.host}\nport {self.port}\nsave ""\nappendonly no\n'
            f"dir {self.workdir}\nprotected-mode no\n"
            "user default off\n"
            f"user {USER} on >{PASSWORD} ~* &* +@all\n"
        )
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [*self.prefix, "redis-server", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited: {(self.workdir / 'redis.log').read_text()}"
                )
            answer = subprocess.run(
                [*self.prefix, "redis-cli", "-h", self.host, "-p", str(self.port), "--user", USER,
                 "--pass", PASSWORD, "--no-auth-warning", "ping"],
                capture_output=True, text=True, timeout=5,
            )  # fmt: skip
            if answer.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer in 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def cli(self, *args: str) -> str:
        """``redis-cli`` as the fleet's user: its output."""
        return subprocess.run(
            [*self.prefix, "redis-cli", "-h", self.host, "-p", str(self.port), "--user", USER,
             "--pass", PASSWORD, "--no-auth-warning", *args],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip


@contextmanager
def redis_server(
    workdir: Path, host: str = "127.0.0.1", prefix: list[str] | None = None, port: int = 0
) -> Iterator[Redis]:
    need(
        shutil.which("redis-server") is not None,
        "redis-server is not installed (apt-get install redis-server)",
    )
    workdir.mkdir(parents=True, exist_ok=True)
    server = Redis(workdir, host, port or free_tcp_port(host), prefix or [])
    server.start()
    try:
        yield server
    finally:
        server.stop()
