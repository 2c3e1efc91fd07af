"""Known-bad before the first packet: the acceptance tests of the intel
stage with the real daemon, a real Kamailio, the local APIBAN mock and
nftables, all inside namespaces the test makes.

Topology (nothing reaches the host's network):

    clients namespace                         edge namespace
    .2  XB by the test's GeoIP database  --- veth ---  .1:5060 `sipwarden run`
    .3  a phone (XA)                                    127.0.0.1 Kamailio, the registrar
    .4  a trunk: trusted, XB, and listed by a feed      127.0.0.1 the APIBAN mock
    45.95.147.7  an attacker APIBAN lists               nftables table inet sipwarden
    2a0e:97c0:3e3::7  another, over IPv6                 ULA ::1 on the link, ::2 the clients'

APIBAN lists public addresses only (the client skips private ones, as the
real list has none), so the attacker gets a public address of its own on
the clients' end of the link, routed by the edge's namespace to that
link: it exists only inside the two namespaces. The mock answers as the
real service (tests/intel/mock_apiban.py), with its rate window scaled
down to one second.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sipwarden.daemon.control import ask
from sipwarden.sip import parse

from ..conftest import need
from ..intel.geodata import write_mmdb
from ..intel.mock_apiban import MockApiban, mock_thread
from .harness import REALM, wait_for
from .kamailio import available as kamailio_available
from .kamailio import kamailio
from .netns import Pair, in_namespace, namespace_pair

PORT = 5060
TABLE = "sipwarden"
KEY = "s3cr3t-k3y-0123456789"
ATTACKER = "45.95.147.7"  # public: APIBAN lists it; it lives in the clients' namespace only
ATTACKER6 = "2a0e:97c0:3e3::7"  # the same, over IPv6


def ula(pair: Pair) -> tuple[str, str]:
    """The edge's and the clients' IPv6 addresses on the link (a ULA /64
    of this process's own)."""
    prefix = f"fd00:5758:{os.getpid() % 65536:x}"
    return f"{prefix}::1", f"{prefix}::2"


@dataclass
class Site:
    pair: Pair
    backend_port: int
    apiban: MockApiban
    tmp: Path

    @property
    def foreign(self) -> str:  # XB
        return self.pair.client_ips[0]

    @property
    def phone(self) -> str:  # XA
        return self.pair.client_ips[1]

    @property
    def trunk(self) -> str:  # trusted, XB, listed by a feed
        return self.pair.client_ips[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    need(os.geteuid() == 0, "network namespaces and nftables need root")
    need(shutil.which("nft") is not None, "nftables is not installed (apt-get install nftables)")
    need(kamailio_available(), "kamailio is not installed (apt-get install kamailio)")
    tmp = tmp_path_factory.mktemp("intel")
    with (
        namespace_pair() as pair,
        kamailio(tmp_path_factory.mktemp("pbx"), netns=pair.edge) as backend_port,
        mock_thread(key=KEY, rate_window=1.0, netns=pair.edge) as mock,
    ):
        edge6, clients6 = ula(pair)
        for command in (
            f"-n {pair.clients} addr add {ATTACKER}/32 dev c0",
            f"-n {pair.edge} route add {ATTACKER}/32 dev e0",
            f"-n {pair.edge} addr add {edge6}/64 dev e0 nodad",
            f"-n {pair.clients} addr add {clients6}/64 dev c0 nodad",
            f"-n {pair.clients} addr add {ATTACKER6}/128 dev c0 nodad",
            f"-n {pair.edge} route add {ATTACKER6}/128 dev e0",
        ):
            subprocess.run(["ip", *command.split()], check=True, timeout=10)
        start = int(time.time()) - 3 * 86400
        for i in range(600):  # three pages of 250, the attacker last
            mock.add(f"45.{(i >> 8) + 60}.{i & 255}.9", start + i)
        mock.add(ATTACKER, start + 700)
        mock.add(ATTACKER6, start + 701)
        write_mmdb(
            tmp / "countries.mmdb",
            {
                f"{pair.client_ips[0]}/32": "XB",
                f"{pair.client_ips[1]}/32": "XA",
                f"{pair.client_ips[2]}/32": "XB",
            },
            {},
        )
        (tmp / "blocklist.txt").write_text(
            f"# the trunk is on it by mistake\n{pair.client_ips[2]}\n"
        )
        yield Site(pair, backend_port, mock, tmp)


# ------------------------------------------------------------- the daemon


class Daemon:
    """`sipwarden run` in the edge namespace with ``extra`` config."""

    def __init__(self, site: Site, tmp: Path, extra: str, workers: int = 1) -> None:
        self.site = site
        self.tmp = tmp
        self.config = tmp / "edge.toml"
        ip, ip6 = site.pair.edge_ip, ula(site.pair)[0]
        self.config.write_text(
            f"""
[edge]
listen = ["udp:{ip}:{PORT}", "tcp:{ip}:{PORT}", "udp:[{ip6}]:{PORT}"]
backend = "udp:127.0.0.1:{site.backend_port}"
flow_key_file = "flow.key"
workers = {workers}

[policy]
trusted_peers = ["{site.trunk}"]

[storage]
path = "sipwarden.db"

[control]
socket = "sipwarden.sock"

[api]
listen = ""
{extra}
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.tmp / "edge.log").open("wb")
        self.proc = subprocess.Popen(
            self.site.pair.in_edge(
                sys.executable, "-m", "sipwarden.cli", "run", "-c", str(self.config)
            ),
            stdout=subprocess.PIPE,
            stderr=log,
        )
        log.close()
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else b""
        if b"listening on" not in line:
            self.stop()
            pytest.fail(f"sipwarden run did not start: {line!r}\n{self.log()}")

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
        return (self.tmp / "edge.log").read_text(errors="replace")[-4000:]

    def cli(self, *args: str) -> Any:
        """`sipwarden ARGS -c edge.toml --json` in the edge namespace, parsed."""
        argv = [sys.executable, "-m", "sipwarden.cli", *args, "-c", str(self.config), "--json"]
        done = subprocess.run(
            self.site.pair.in_edge(*argv), capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, f"{args}: {done.stderr}"
        return json.loads(done.stdout)

    def stats(self, worker: int = 0) -> dict[str, Any]:
        """Worker 0's sums over every worker; another worker's own."""
        suffix = f".{worker}" if worker else ""
        request = {"cmd": "stats", "local": True} if worker else {"cmd": "stats"}
        return ask(self.tmp / f"sipwarden.sock{suffix}", request)


@pytest.fixture
def start_daemon(site: Site, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(extra: str, workers: int = 1) -> Daemon:
        daemon = Daemon(site, tmp_path, extra, workers)
        started.append(daemon)
        daemon.start()
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            daemon.stop()
            print(daemon.log())  # shown when the test failed
        subprocess.run(
            site.pair.in_edge("nft", "delete", "table", "inet", TABLE),
            capture_output=True,
            timeout=10,
        )


def apiban_section(site: Site) -> str:
    return f"""
[intel.apiban]
key = "{KEY}"
url = "{site.apiban.base}"
rate_window = "1s"
"""


def feed_section(site: Site) -> str:
    return f"""
[[intel.feeds]]
name = "blocklist"
path = "{site.tmp / "blocklist.txt"}"
"""


def feeds_in_force(daemon: Daemon) -> dict[str, int]:
    return {f["feed"]: f.get("in_force", 0) for f in daemon.cli("status")["intel"]["feeds"]}


# ---------------------------------------------------------------- clients


def request(method: str, ip: str, port: int) -> bytes:
    branch = "z9hG4bK" + secrets.token_hex(8)
    lines = [
        f"{method} sip:{REALM} SIP/2.0",
        f"Via: SIP/2.0/UDP {ip}:{port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:100@{REALM}>;tag={secrets.token_hex(4)}",
        f"To: <sip:100@{REALM}>",
        f"Call-ID: {secrets.token_hex(8)}@{ip}",
        f"CSeq: 1 {method}",
        f"Contact: <sip:100@{ip}:{port}>",
        "User-Agent: Yealink SIP-T46S 66.86.0.15",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answers(site: Site, ip: str, method: str = "REGISTER", count: int = 1) -> list[int]:
    """Send ``count`` requests from ``ip`` (clients' namespace) to the edge,
    one at a time; the status of each answer, 0 for silence (1 s each)."""

    v6 = ":" in ip

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((ip, 0))
        return sock

    sock = in_namespace(site.pair.clients, make)
    statuses = []
    edge = ula(site.pair)[0] if v6 else site.pair.edge_ip
    try:
        port = sock.getsockname()[1]
        for _ in range(count):
            host = f"[{ip}]" if v6 else ip
            sock.sendto(request(method, host, port), (edge, PORT))
            sock.settimeout(1.0)
            try:
                statuses.append(parse(sock.recv(65535)).status or 0)
            except TimeoutError:
                statuses.append(0)
    finally:
        sock.close()
    return statuses


def held_open(site: Site, ip: str) -> bool:
    """Connect over TCP from ``ip``: whether the edge keeps the connection
    (True) or closes it at once (False), judged within 1 s."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((ip, 0))
        sock.settimeout(3)
        sock.connect((site.pair.edge_ip, PORT))  # the kernel completes the handshake
        return sock

    sock = in_namespace(site.pair.clients, make)
    try:
        sock.settimeout(1.0)
        try:
            return sock.recv(1) != b""  # b"": closed
        except TimeoutError:
            return True
        except ConnectionResetError:
            return False
    finally:
        sock.close()


# ------------------------------------------------------------------ tests


def test_a_listed_source_gets_no_answer_to_its_first_packet(
    site: Site, start_daemon: Callable[..., Daemon]
) -> None:
    daemon = start_daemon(apiban_section(site) + feed_section(site), workers=2)
    # the cold start pages through the mock under its (scaled) rate limit;
    # worker 0 fetches, and both workers load what it stored
    assert wait_for(lambda: feeds_in_force(daemon) == {"apiban:sip": 602, "blocklist": 1}, 30)

    def worker_one() -> dict[str, int]:
        feeds = daemon.stats(worker=1)["intel"]["feeds"]
        return {f["feed"]: f["in_force"] for f in feeds}

    assert wait_for(lambda: worker_one() == {"apiban:sip": 602, "blocklist": 1}, 5)
    # six first packets, from six ports: the kernel spreads them over the workers
    assert [answers(site, ATTACKER)[0] for _ in range(6)] == [0] * 6
    assert [answers(site, ATTACKER6)[0] for _ in range(2)] == [0] * 2
    verdicts = daemon.stats()["verdicts"]
    assert verdicts.get("drop:intel.apiban-sip") == 8, verdicts
    assert answers(site, site.phone) == [401]  # Kamailio's challenge: the phone goes through
    assert answers(site, ula(site.pair)[1]) == [401]  # and over IPv6: the link works
    # the trunk is listed by the blocklist, and trusted: it keeps working, and it is reported
    assert answers(site, site.trunk, "OPTIONS") != [0]
    status = daemon.cli("status")
    assert status["intel"]["listed_but_exempt"] == {site.trunk: ["blocklist"]}
    looked = daemon.cli("intel", "lookup", ATTACKER)
    assert looked["verdict"] == "drop (intel.apiban-sip)"
    assert [i["feed"] for i in looked["listed"]] == ["apiban:sip"]
    assert site.apiban.max_in_window <= 11 and site.apiban.rate_limited == 0


def test_with_nftables_a_listed_source_dies_in_the_kernel(
    site: Site, start_daemon: Callable[..., Daemon]
) -> None:
    need(shutil.which("nft") is not None, "nftables is not installed")
    extra = f'\n[firewall]\nenforcer = "nftables"\ntable = "{TABLE}"\n'
    daemon = start_daemon(extra + apiban_section(site) + feed_section(site))
    assert wait_for(lambda: daemon.cli("firewall", "show")["feed_count"] == 602, 30)
    shown = daemon.cli("firewall", "show", "--feeds")
    assert ATTACKER in shown["feed_elements"] and ATTACKER6 in shown["feed_elements"]
    assert site.trunk not in shown["feed_elements"]  # trusted: never dropped by the kernel
    assert answers(site, ATTACKER, count=5) == [0] * 5
    assert answers(site, ATTACKER6, count=2) == [0] * 2
    assert daemon.cli("firewall", "show")["feed_dropped"] == 7
    assert answers(site, ula(site.pair)[1]) == [401]
    # the kernel dropped them: the edge never saw one
    assert daemon.stats()["verdicts"].get("drop:intel.apiban-sip", 0) == 0
    assert answers(site, site.phone) == [401]
    assert answers(site, site.trunk, "OPTIONS") != [0]
    assert daemon.cli("status")["intel"]["kernel"]["elements"] == 602


def test_only_allowed_countries_reach_the_pbx_but_trusted_peers_always_do(
    site: Site, start_daemon: Callable[..., Daemon]
) -> None:
    daemon = start_daemon(
        f"""
[intel.geoip]
database = "{site.tmp / "countries.mmdb"}"
allow_countries = ["XA"]
"""
    )
    assert answers(site, site.phone) == [401]  # XA
    assert answers(site, site.foreign, count=2) == [0, 0]  # XB: dropped silently
    assert answers(site, site.trunk, "OPTIONS") != [0]  # XB, but trusted
    verdicts = daemon.stats()["verdicts"]
    assert verdicts.get("drop:geo.XB") == 2, verdicts
    # over TCP a refused source's connection is closed at once, a phone's kept
    assert not held_open(site, site.foreign)
    assert held_open(site, site.phone)
    assert daemon.stats()["edge"].get("refused:geo.XB") == 1
    looked = daemon.cli("intel", "lookup", site.foreign)
    assert (looked["country"], looked["country_allowed"]) == ("XB", False)
    assert looked["verdict"] == "drop (geo.XB)"
    countries = daemon.cli("status")["intel"]["countries"]
    assert countries == {"allow": ["XA"], "deny": [], "unknown": "allow"}
