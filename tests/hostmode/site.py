"""The host-mode site: a PBX protected in place, in network namespaces the
test makes (tests/edge/netns.py's pair).

    clients namespace                       PBX namespace
    .2 an attacker           --- veth ---   .1:5060 Kamailio itself (udp, tcp), digest auth
    .3 a phone: registers; calls (sipp)     `sipwarden run` with [host] and no [edge]
    .4 the callee, extension 200            nftables table inet sipwarden + the queue rules
    .5 .6 (unused here)

Kamailio listens on the namespace's public address, unchanged; sipwarden
judges its packets through NFQUEUE. ``HostDaemon(site, tmp, fail=..., pack=...)``
is one `sipwarden run`; ``running(...)`` starts it and, after the test,
stops it and takes its kernel state away (`sipwarden firewall flush`).
``callee(site)`` registers extension 200 straight to Kamailio and answers
its calls; ``start_call`` and ``call_ended`` are sipp calling it from the
phone's address.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..conftest import need
from ..edge.harness import Callee, wait_for
from ..edge.kamailio import available as kamailio_available
from ..edge.kamailio import kamailio
from ..edge.netns import Pair, in_namespace, namespace_pair
from ..edge.phone import PORT
from ..edge.site import SCENARIOS, Daemon
from ..edge.test_real_peers import UNEXPECTED

BIN = Path(sys.executable).parent  # SIPVicious comes with the test dependencies
TABLE = "sipwarden"


@dataclass
class HostSite:
    pair: Pair
    backend_port: int = PORT  # Kamailio's (Daemon's config names it; host mode's is its own)

    @property
    def attacker(self) -> str:
        return self.pair.client_ips[0]

    @property
    def phone(self) -> str:
        return self.pair.client_ips[1]

    @property
    def callee(self) -> str:
        return self.pair.client_ips[2]

    @property
    def office(self) -> str:
        return self.pair.client_ips[3]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostSite]:
    need(os.geteuid() == 0, "network namespaces, nftables and NFQUEUE need root")
    need(shutil.which("nft") is not None, "nftables is not installed (apt-get install nftables)")
    # this kernel has no nft queue statement (CONFIG_NFT_QUEUE): the daemon uses iptables'
    need(
        shutil.which("iptables") is not None, "iptables is not installed (apt-get install iptables)"
    )
    need(kamailio_available(), "kamailio is not installed (apt-get install kamailio)")
    with (
        namespace_pair() as pair,
        kamailio(tmp_path_factory.mktemp("pbx"), netns=pair.edge, address=pair.edge_ip, port=PORT),
    ):
        yield HostSite(pair)


class HostDaemon(Daemon):
    """`sipwarden run` with ``[host]`` and no ``[edge]``, in the PBX's namespace."""

    def __init__(
        self, site: HostSite, tmp_path: Path, *, fail: str = "open", pack: bool = True
    ) -> None:
        super().__init__(site, tmp_path, pack=pack)  # type: ignore[arg-type]
        self.config.write_text(
            f"""
[host]
enabled = true
ports = [{PORT}]
tls_ports = [5061]
fail = "{fail}"

[policy]
pack = {"true" if pack else "false"}

[failures]
maxretry = 5
burst = 60

[firewall]
enforcer = "nftables"
table = "{TABLE}"

[storage]
path = "bans.db"

[control]
socket = "sipwarden.sock"

[api]
listen = ""
"""
        )

    ready_marker, ready_within = b"host mode on", 30.0  # (no edge: no "listening on")


@contextlib.contextmanager
def running(
    site: HostSite, tmp: Path, *, fail: str = "open", pack: bool = True
) -> Iterator[HostDaemon]:
    d = HostDaemon(site, tmp, fail=fail, pack=pack)
    d.start()
    try:
        yield d
    finally:
        try:
            if d.proc is not None:
                d.stop()
        finally:
            print(d.log())
            done = d.cli("firewall", "flush")  # the table and the queue rules
            assert done.returncode == 0, done.stderr


def udp_datagrams_received(site: HostSite) -> int:
    """The PBX namespace's UDP InDatagrams: what reached a socket (Kamailio's)."""
    snmp = subprocess.run(
        site.pair.in_edge("cat", "/proc/net/snmp"), capture_output=True, text=True, timeout=10
    ).stdout.splitlines()
    names, values = [line.split() for line in snmp if line.startswith("Udp:")][:2]
    return int(dict(zip(names, values, strict=True))["InDatagrams"])


# ---------------------------------------------------------------- a call


@contextlib.contextmanager
def callee(site: HostSite) -> Iterator[Callee]:
    """Extension 200 on ``site.callee``: registered over UDP straight to
    Kamailio (digest auth, its own address as Contact: no edge, no Path),
    answering calls (180, 200; ACK absorbed; 200 to BYE) until the block ends."""
    phone = in_namespace(
        site.pair.clients,
        lambda: Callee(
            "200", PORT, host=site.callee, pbx=site.pair.edge_ip, contact_host=site.callee
        ),
    )
    phone.start()
    try:
        assert phone.registered.wait(10), f"the callee did not register: {phone.error!r}"
        yield phone
    finally:
        phone.stop()
    assert phone.error is None, phone.error


CALLER_PORT = 5070  # sipp's, on the phone's address (phones' sockets take ephemeral ports)


def start_call(site: HostSite, tmp: Path) -> subprocess.Popen[str]:
    """sipp, a phone on ``site.phone``, calls extension 200 through Kamailio
    over UDP (INVITE, 180, 200, ACK, BYE after 200 ms); its logs go to
    ``tmp / "call"``. Kamailio's UDP workers run in parallel, so the callee's
    180 may reach sipp after its 200 (a phone ignores such a late
    provisional); ``call_ended`` allows that and nothing else unexpected."""
    cwd = tmp / "call"
    cwd.mkdir(exist_ok=True)
    return subprocess.Popen(
        site.pair.in_clients(
            "sipp",
            f"{site.pair.edge_ip}:{PORT}",
            "-sf",
            str(SCENARIOS / "caller.xml"),
            "-s",
            "200",
            "-i",
            site.phone,
            "-p",
            str(CALLER_PORT),
            "-t",
            "u1",
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "20",
            "-timeout_error",
            "-trace_err",
            "-trace_msg",
            "-default_behaviors",
            "all,-abortunexp",
        ),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def call_ended(proc: subprocess.Popen[str], tmp: Path, phone: Callee) -> None:
    """Wait for the call ``start_call`` began (bounded); it must have gone
    through: sipp exits 0 having met nothing unexpected but a late 180, and
    the callee saw INVITE, ACK and BYE."""
    try:
        output = proc.communicate(timeout=40)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    cwd = tmp / "call"
    logs = "".join(p.read_text(errors="replace")[-3000:] for p in cwd.glob("*_errors.log"))
    said = f"sipp exit {proc.returncode}\n{logs}\n{output[-2000:]}"
    assert proc.returncode == 0, said
    assert all(line.startswith("SIP/2.0 1") for line in UNEXPECTED.findall(logs)), said
    expected = ["INVITE", "ACK", "BYE"]
    assert wait_for(lambda: phone.seen[:3] == expected), (phone.seen, said)


def phones_judged(d: HostDaemon, *sources: str) -> dict[str, dict[str, int]]:
    """What host mode judged of each source's packets, from its flows: per
    source, the packets and every verdict that was not a pass ("packets"
    apart): a phone never dropped has its packets and no other key."""
    judged: dict[str, dict[str, int]] = {}
    for source in sources:
        counts = judged.setdefault(source, {"packets": 0})
        for flow in d.json("flows", "--source", source, "--limit", "100000"):
            counts["packets"] += flow["packets"]
            for reason, n in flow["verdicts"].items():
                counts[reason] = counts.get(reason, 0) + n
    return judged
