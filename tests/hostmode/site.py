"""The host-mode site: a PBX protected in place, in network namespaces the
test makes (tests/edge/netns.py's pair).

    clients namespace                       PBX namespace
    .2 an attacker           --- veth ---   .1:5060 Kamailio itself (udp, tcp), digest auth
    .3 a phone                              `sipwarden run` with [host] and no [edge]
    .4 .5 .6 (unused here)                  nftables table inet sipwarden + the queue rules

Kamailio listens on the namespace's public address, unchanged; sipwarden
judges its packets through NFQUEUE. ``HostDaemon(site, tmp, fail=..., pack=...)``
is one `sipwarden run`; ``running(...)`` starts it and, after the test,
stops it and takes its kernel state away (`sipwarden firewall flush`).
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..conftest import need
from ..edge.kamailio import available as kamailio_available
from ..edge.kamailio import kamailio
from ..edge.netns import Pair, namespace_pair
from ..edge.phone import PORT
from ..edge.site import Daemon

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
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else b""
        if b"host mode on" not in line:
            self.proc.kill()
            self.proc.wait(10)
            pytest.fail(f"sipwarden run did not start: {line!r}\n{self.log()}")
        self.banner = line.decode()


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
