"""`sipwarden run` with [[logwatch.sources]] in a network namespace of the
test's own, with its nftables table there: what the acceptance tests and
bench/logwatch.py start. The edge listens on the namespace's loopback
beside logwatch mode (one daemon, one config)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sipwarden.daemon.control import ask

from ..conftest import need
from ..edge.netns import Namespace, namespace

TABLE = "sipwarden"
EDGE_PORT = 5060


def stamp(when: float | None = None) -> str:
    """Asterisk's timestamp for ``when`` (now), in UTC (the sources' timezone)."""
    t = dt.datetime.fromtimestamp(time.time() if when is None else when, dt.UTC)
    return t.strftime("[%Y-%m-%d %H:%M:%S]")


def wrong_password(host: str, user: str = "301", when: float | None = None) -> str:
    return (
        f"{stamp(when)} NOTICE[1638] chan_sip.c: Registration from '<sip:{user}@pbx.example.com>'"
        f" failed for '{host}:5060' - Wrong password\n"
    )


def no_endpoint(host: str, user: str) -> str:
    return (
        f"{stamp()} NOTICE[19388] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from"
        f" '<sip:{user}@pbx>' failed for '{host}:5060' (callid: x) - No matching endpoint found\n"
    )


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


@contextlib.contextmanager
def netns() -> Iterator[Namespace]:
    need(os.geteuid() == 0, "network namespaces and nftables need root")
    need(shutil.which("nft") is not None, "nftables is not installed (apt-get install nftables)")
    with namespace() as ns:
        yield ns


class LogDaemon:
    """`sipwarden run` in ``ns``; ``sources`` is the [[logwatch.sources]] TOML."""

    def __init__(
        self, ns: Namespace, tmp: Path, sources: str, extra: str = "", poll: float = 0.1
    ) -> None:
        self.ns, self.tmp = ns, tmp
        self.config = tmp / "sipwarden.toml"
        self.config.write_text(
            f"""
[edge]
listen = ["udp:127.0.0.1:{EDGE_PORT}"]
backend = "udp:127.0.0.1:5080"
flow_key_file = "flow.key"

[policy]
trusted_peers = ["198.51.100.7"]

[bans]
allow = ["198.51.100.8"]

[failures]
maxretry = 5

[firewall]
enforcer = "nftables"
table = "{TABLE}"

[storage]
path = "sipwarden.db"

[control]
socket = "sipwarden.sock"

[api]
listen = ""

[logwatch]
poll = {poll}
{extra}
{sources}
"""
        )
        self.socket = tmp / "sipwarden.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.banner = ""

    def start(self) -> None:
        self.starts += 1
        log = (self.tmp / f"run-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            self.ns.command(sys.executable, "-m", "sipwarden.cli", "run", "-c", str(self.config)),
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        log.close()
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else b""
        if b"logwatch on" not in line:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"sipwarden run did not start: {line!r}\n{self.log()}")
        self.banner = line.decode()

    def stop(self) -> int:
        proc, self.proc = self.proc, None
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise

    def log(self) -> str:
        return (self.tmp / f"run-{self.starts}.log").read_text(errors="replace")[-4000:]

    def stats(self) -> dict[str, Any]:
        return ask(self.socket, {"cmd": "stats"})

    def counters(self) -> dict[str, int]:
        return self.stats().get("logwatch", {})  # type: ignore[no-any-return]

    def kernel(self) -> set[str]:
        """The addresses banned in the namespace's nftables sets."""
        done = subprocess.run(
            self.ns.command("nft", "-j", "list", "table", "inet", TABLE),
            capture_output=True,
            text=True,
            timeout=10,
        )
        found: set[str] = set()
        if done.returncode != 0:
            return found
        import json

        for item in json.loads(done.stdout)["nftables"]:
            s = item.get("set")
            if s and s["name"].startswith("ban") and "elem" in s:
                for elem in s["elem"]:
                    value = elem["elem"]["val"] if isinstance(elem, dict) else elem
                    found.add(str(value))
        return found


@contextlib.contextmanager
def running(
    ns: Namespace, tmp: Path, sources: str, extra: str = "", poll: float = 0.1
) -> Iterator[LogDaemon]:
    d = LogDaemon(ns, tmp, sources, extra, poll)
    d.start()
    try:
        yield d
    finally:
        try:
            if d.proc is not None:
                d.stop()
        finally:
            print(d.log())
            subprocess.run(
                ns.command("nft", "delete", "table", "inet", TABLE), capture_output=True, timeout=10
            )


def eventually(predicate: Callable[[], Any], timeout: float, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)
