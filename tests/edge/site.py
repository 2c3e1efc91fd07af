"""The brute-force site shared by the acceptance tests that run the real
daemon in a network namespace with nftables and Kamailio behind it.

Topology (all of it made by the test, nothing on the host's network):

    clients namespace                       edge namespace
    .2 an attacker           --- veth ---   .1:5060 `sipwarden run` (udp, tcp)
    .3 a phone                              127.0.0.1 Kamailio, the registrar
    .4 a sipp REGISTER flood                nftables table inet sipwarden
    .5 an allow-listed office               (the daemon's own, in its namespace)
    .6 banned by the operator

``site`` (module-scoped: the namespaces and Kamailio) and ``daemon`` (one
`sipwarden run` per test, fresh store and kernel table) are fixtures; a
test module imports them. ``Daemon(site, tmp, pack=..., extra=...)`` takes
the scanner pack on or off and more config.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sipwarden.daemon.control import ask

from ..conftest import need
from .kamailio import available as kamailio_available
from .kamailio import kamailio
from .netns import Pair, namespace_pair
from .phone import PORT, Phone

BIN = Path(sys.executable).parent  # SIPVicious comes with the test dependencies
SCENARIOS = Path(__file__).parent / "scenarios"
TABLE = "sipwarden"  # the daemon's table, in the edge namespace: ours alone


@dataclass
class Site:
    pair: Pair
    backend_port: int  # Kamailio, on the edge namespace's loopback

    @property
    def attacker(self) -> str:
        return self.pair.client_ips[0]

    @property
    def phone(self) -> str:
        return self.pair.client_ips[1]

    @property
    def flooder(self) -> str:
        return self.pair.client_ips[2]

    @property
    def office(self) -> str:  # on [bans] allow
        return self.pair.client_ips[3]

    @property
    def operator_banned(self) -> str:
        return self.pair.client_ips[4]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    need(os.geteuid() == 0, "network namespaces and nftables need root")
    need(shutil.which("nft") is not None, "nftables is not installed (apt-get install nftables)")
    need(kamailio_available(), "kamailio is not installed (apt-get install kamailio)")
    need(shutil.which("sipp") is not None, "sipp is not installed (apt-get install sip-tester)")
    need(
        (BIN / "sipvicious_svcrack").exists(),
        "SIPVicious is not installed (pip install sipvicious)",
    )
    with (
        namespace_pair() as pair,
        kamailio(tmp_path_factory.mktemp("pbx"), netns=pair.edge) as backend_port,
    ):
        yield Site(pair, backend_port)


# ------------------------------------------------------------- the daemon


class Daemon:
    """`sipwarden run` in the edge namespace, and the operator's commands."""

    def __init__(self, site: Site, tmp_path: Path, *, pack: bool = False, extra: str = "") -> None:
        self.site = site
        self.tmp = tmp_path
        self.config = tmp_path / "edge.toml"
        ip = site.pair.edge_ip
        # Paths are relative to the config file. The scanner pack is off:
        # it drops SIPVicious by its fingerprints (the From tag, the Via
        # branch, "friendly-scanner") before a single login fails, so with it
        # on svcrack is silenced by the pack, never banned by the failure
        # tracker. These tests are about a guesser the pack does not know.
        self.config.write_text(
            f"""
[edge]
listen = ["udp:{ip}:{PORT}", "tcp:{ip}:{PORT}"]
backend = "udp:127.0.0.1:{site.backend_port}"
flow_key_file = "flow.key"

[policy]
pack = {"true" if pack else "false"}

[bans]
allow = ["{site.office}"]

# the defaults, written out: the tests count on them
[failures]
maxretry = 5
burst = 60

[limits]
window = 2
methods = {{ REGISTER = 20, INVITE = 20 }}

[firewall]
enforcer = "nftables"
table = "{TABLE}"

[storage]
path = "bans.db"

[control]
socket = "sipwarden.sock"

[api]
listen = "127.0.0.1:0"
{extra}
"""
        )
        self.socket = tmp_path / "sipwarden.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.api: str | None = None
        self.starts = 0

    # what the start banner says once it serves, and how long it may take
    ready_marker, ready_within = b"listening on", 15.0

    def start(self) -> None:
        self.starts += 1
        log = (self.tmp / f"edge-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            self.site.pair.in_edge(
                sys.executable, "-m", "sipwarden.cli", "run", "-c", str(self.config)
            ),
            stdout=subprocess.PIPE,
            stderr=log,
        )
        log.close()
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], self.ready_within)
        line = self.proc.stdout.readline() if ready else b""
        self.banner = line.decode(errors="replace")
        if self.ready_marker not in line:
            self.proc.kill()
            self.proc.wait(10)
            pytest.fail(f"sipwarden run did not start: {line!r}\n{self.log()}")
        api = re.search(rb"API (http://\S+)/api/v1", line)
        self.api = api.group(1).decode() if api else None  # http://127.0.0.1:PORT, in the edge's

    def http(self, path: str, *, lines: int | None = None, timeout: float = 20) -> str:
        """GET ``path`` of the API from inside the edge's namespace (where it
        listens on loopback): the body, or its first ``lines`` lines (a stream)."""
        assert self.api is not None
        script = (
            "import sys, urllib.request\n"
            f"with urllib.request.urlopen({self.api + path!r}, timeout={timeout}) as r:\n"
            + (
                "    sys.stdout.write(r.read().decode())\n"
                if lines is None
                else f"    for _ in range({lines}): sys.stdout.write(r.readline().decode()); sys.stdout.flush()\n"
            )
        )
        done = subprocess.run(
            self.site.pair.in_edge(sys.executable, "-c", script),
            capture_output=True,
            text=True,
            timeout=timeout + 10,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def log(self) -> str:
        return (self.tmp / f"edge-{self.starts}.log").read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal it; its exit status (-9 for SIGKILL)."""
        proc, self.proc = self.proc, None
        assert proc is not None
        proc.send_signal(sig)
        try:
            return proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`sipwarden ARGS -c edge.toml`, in the edge namespace."""
        argv = [sys.executable, "-m", "sipwarden.cli", *args, "-c", str(self.config)]
        return subprocess.run(
            self.site.pair.in_edge(*argv), capture_output=True, text=True, timeout=30
        )

    def json(self, *args: str) -> Any:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, f"{args}: {done.stderr}"
        return json.loads(done.stdout)

    def bans(self) -> list[dict[str, Any]]:
        return self.json("bans", "list")  # type: ignore[no-any-return]

    def show(self, target: str) -> dict[str, Any]:
        return self.json("bans", "show", target)  # type: ignore[no-any-return]

    def firewall(self) -> dict[str, Any]:
        """{"elements": {target: seconds left | None}, "dropped": packets}"""
        return self.json("firewall", "show")  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        return ask(self.socket, {"cmd": "stats"})


@contextlib.contextmanager
def running(site: Site, tmp: Path, extra: str = "", *, pack: bool = False) -> Iterator[Daemon]:
    """A daemon started for a test, stopped after it with the kernel's table
    deleted: the next test starts from an empty kernel (its bans would
    otherwise be kept and merged back at the next start)."""
    d = Daemon(site, tmp, pack=pack, extra=extra)
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
                site.pair.in_edge("nft", "delete", "table", "inet", TABLE),
                capture_output=True,
                timeout=10,
            )


@pytest.fixture
def daemon(site: Site, tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(site, tmp_path)
    try:
        d.start()
        yield d
    finally:
        try:
            if d.proc is not None:
                d.stop()
        finally:
            print(d.log())  # shown when the test failed
            # the next test's daemon starts from an empty kernel as well as an empty store
            subprocess.run(
                site.pair.in_edge("nft", "delete", "table", "inet", TABLE),
                capture_output=True,
                timeout=10,
            )


def eventually(predicate: Callable[[], Any], timeout: float, step: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy, at most ``timeout`` seconds; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def send_udp(site: Site, source: str, payload: bytes, count: int = 1) -> None:
    """``count`` datagrams of ``payload`` from ``source`` (an address of the
    clients' namespace, one socket: one source port) to the edge's SIP port."""
    subprocess.run(
        site.pair.in_clients(
            sys.executable,
            "-c",
            "import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"s.bind(({source!r}, 0))\n"
            f"for _ in range({count}): s.sendto({payload!r}, ({site.pair.edge_ip!r}, {PORT}))",
        ),
        check=True,
        timeout=30,
    )


# ---------------------------------------------------------------- a phone


@contextlib.contextmanager
def phone(site: Site, ip: str) -> Iterator[Phone]:
    p = Phone(site, ip)
    try:
        yield p
    finally:
        p.close()


def sipp_flood(
    site: Site, source: str, tmp_path: Path, calls: int, rate: int = 500
) -> tuple[subprocess.CompletedProcess[str], list[float]]:
    """sipp in the clients' namespace sends ``calls`` REGISTERs from
    ``source`` at ``rate`` a second; returns it and when each one left
    (from its message log)."""
    messages = tmp_path / f"flood-{source}.log"
    result = subprocess.run(
        site.pair.in_clients(
            "sipp",
            f"{site.pair.edge_ip}:{PORT}",
            "-sf",
            str(SCENARIOS / "register_flood.xml"),
            "-s",
            "100",
            "-i",
            source,
            "-t",
            "u1",
            "-r",
            str(rate),
            "-m",
            str(calls),
            "-nostdin",
            "-timeout",
            "20",
            "-trace_msg",
            "-message_file",
            str(messages),
        ),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    stamps = re.findall(
        r"^-+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\nUDP message sent",
        messages.read_text() if messages.exists() else "",
        re.M,
    )
    # sipp writes local time, as time.time() is read here
    return result, [datetime.strptime(s, "%Y-%m-%d %H:%M:%S.%f").timestamp() for s in stamps]
