"""The flood site: a phone, a spoofed REGISTER flood and `sipwarden run` in
front of a real Kamailio, in two network namespaces of the test's own.
Shared by the kernel lane's acceptance test (``test_flood.py``) and
``bench/flood.py``.

    clients namespace                        edge namespace
    .2 the gateway of the spoofed range      .1:5060 `sipwarden run` (udp)
    .3 a phone (registers every second)      127.0.0.1 Kamailio (digest auth)
    .4 a newcomer phone (never logged in)    nftables table inet sipwarden
    flooder.py: 198.18.0.0/16, raw IPv4      route 198.18.0.0/15 via .2

The answers the edge sends to spoofed sources go back to the clients'
namespace and die there (it does not forward). Everything is bounded: the
flood by its count and duration, the phone by its number of attempts, every
wait by a timeout.
"""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sipwarden.daemon.control import ask

from .kamailio import kamailio
from .netns import Pair, namespace_pair
from .phone import PORT, Phone

FLOODER = Path(__file__).with_name("flooder.py")
SPOOFED = "198.18.0.0/16"  # the flood's sources (RFC 2544), routed via the clients' end
SPOOFED_WIDE = "198.18.0.0/15"  # ... for more than a /16 holds (bench/flood.py's 100,000)


@dataclass
class FloodSite:
    pair: Pair
    backend_port: int  # Kamailio, on the edge namespace's loopback
    tmp: Path

    @property
    def phone_ip(self) -> str:
        return self.pair.client_ips[1]

    @property
    def newcomer_ip(self) -> str:
        return self.pair.client_ips[2]


@contextlib.contextmanager
def flood_site(tmp: Path) -> Iterator[FloodSite]:
    """The namespaces, Kamailio in the edge's, and the route back to the
    spoofed range (without it the edge could not even answer them)."""
    pbx = tmp / "pbx"
    pbx.mkdir()
    with namespace_pair() as pair, kamailio(pbx, netns=pair.edge) as backend_port:
        subprocess.run(
            pair.in_edge("ip", "route", "add", "198.18.0.0/15", "via", pair.client_ips[0]),
            check=True,
            capture_output=True,
            timeout=10,
        )
        yield FloodSite(pair, backend_port, tmp)


def edge_config(site: FloodSite, *, firewall: str) -> str:
    """The daemon's config: the defaults, but for the addresses and
    ``firewall`` (the TOML of ``[firewall]`` and its subtables)."""
    return f"""
[edge]
listen = ["udp:{site.pair.edge_ip}:{PORT}"]
backend = "udp:127.0.0.1:{site.backend_port}"
flow_key_file = "flow.key"

{firewall}

[storage]
path = "bans.db"

[control]
socket = "sipwarden.sock"

[api]
listen = ""
"""


class EdgeDaemon:
    """`sipwarden run` in the edge namespace."""

    def __init__(self, site: FloodSite, name: str, firewall: str) -> None:
        self.site = site
        self.dir = site.tmp / name
        self.dir.mkdir()
        self.config = self.dir / "edge.toml"
        self.config.write_text(edge_config(site, firewall=firewall))
        self.socket = self.dir / "sipwarden.sock"
        self.log_path = self.dir / "edge.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.site.pair.in_edge(
                    sys.executable, "-m", "sipwarden.cli", "run", "-c", str(self.config)
                ),
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else b""
        if b"listening on" not in line:
            self.stop()
            raise RuntimeError(f"sipwarden run did not start: {line!r}\n{self.log()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stats(self) -> dict[str, Any]:
        return ask(self.socket, {"cmd": "stats"})

    def cli(self, *args: str) -> Any:
        """`sipwarden ARGS -c edge.toml --json` in the edge namespace, parsed."""
        argv = [sys.executable, "-m", "sipwarden.cli", *args, "-c", str(self.config), "--json"]
        done = subprocess.run(
            self.site.pair.in_edge(*argv), capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, f"{args}: {done.stderr}"
        return json.loads(done.stdout)

    def __enter__(self) -> EdgeDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def flood(
    site: FloodSite, rate: int, seconds: float, sources: int = 65_024
) -> subprocess.Popen[str]:
    """The flooder in the clients' namespace, started once it has built its
    packets (so the flood begins when this returns); its last line is JSON.
    ``sources``: spoofed addresses, from SPOOFED, or the whole routed /15
    when more are asked than it holds."""
    proc = subprocess.Popen(
        site.pair.in_clients(
            sys.executable,
            str(FLOODER),
            "--target",
            site.pair.edge_ip,
            "--port",
            str(PORT),
            "--sources",
            SPOOFED if sources <= 65_024 else SPOOFED_WIDE,
            "--count",
            str(sources),
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else ""
    if '"ready"' not in line:
        proc.kill()
        raise RuntimeError(f"the flooder did not start: {line!r} {proc.communicate()[1]}")
    return proc


def flood_result(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


@dataclass
class Attempt:
    at: float  # when it began (time.monotonic)
    status: int  # the final status, 0 when nothing came back
    took: float  # seconds


class Registering:
    """A phone logging in every ``interval`` seconds on a thread, until
    stopped or ``limit`` attempts (a bound whatever happens)."""

    def __init__(self, phone: Phone, interval: float = 1.0, limit: int = 200) -> None:
        self.phone = phone
        self.interval = interval
        self.limit = limit
        self.attempts: list[Attempt] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set() and len(self.attempts) < self.limit:
            began = time.monotonic()
            status = self.phone.login()
            self.attempts.append(Attempt(began, status, time.monotonic() - began))
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Registering:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def within(self, start: float, end: float) -> list[Attempt]:
        return [a for a in self.attempts if start <= a.at <= end]


def socket_drops(site: FloodSite) -> int:
    """Datagrams the edge namespace's UDP sockets had no room for (the
    kernel's RcvbufErrors): what a full queue cost, whoever sent it."""
    snmp = subprocess.run(
        site.pair.in_edge("cat", "/proc/net/snmp"), capture_output=True, text=True, timeout=10
    ).stdout
    names, values = [line.split()[1:] for line in snmp.splitlines() if line.startswith("Udp:")]
    return int(dict(zip(names, values, strict=True))["RcvbufErrors"])


def success(attempts: list[Attempt]) -> float:
    """The share of attempts that ended in 200."""
    return sum(a.status == 200 for a in attempts) / len(attempts) if attempts else 0.0


__all__ = [
    "Attempt",
    "EdgeDaemon",
    "FloodSite",
    "Phone",
    "Registering",
    "flood",
    "flood_result",
    "flood_site",
    "socket_drops",
    "success",
]
