"""All three modes in one daemon, from one config (issue 17): on the PBX's
machine, host mode judges what reaches Kamailio on its public port, an
edge in front of the same Kamailio listens on another port, and logwatch
follows a log; each does its work, and their bans share one kernel table.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..edge.site import eventually, phone
from ..logwatch.daemon import append, wrong_password
from .site import HostDaemon, HostSite

EDGE_PORT = 5070
GUESSER = "203.0.113.77"  # seen only in the log

# a REGISTER sent from the clients' namespace to the edge's port: the reply's first line
REGISTER_THROUGH_THE_EDGE = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(({source!r}, 0))
port = s.getsockname()[1]
s.settimeout(5)
msg = (
    "REGISTER sip:pbx.test SIP/2.0\\r\\n"
    f"Via: SIP/2.0/UDP {source}:{{port}};branch=z9hG4bK-all1;rport\\r\\n"
    "Max-Forwards: 70\\r\\nFrom: <sip:100@pbx.test>;tag=all1\\r\\nTo: <sip:100@pbx.test>\\r\\n"
    "Call-ID: all-modes-1\\r\\nCSeq: 1 REGISTER\\r\\n"
    f"Contact: <sip:100@{source}:{{port}}>\\r\\nUser-Agent: Yealink SIP-T46S\\r\\n"
    "Content-Length: 0\\r\\n\\r\\n"
)
s.sendto(msg.encode(), ({edge!r}, {port}))
print(s.recv(65535).split(b"\\r\\n", 1)[0].decode())
"""


def test_host_mode_an_edge_and_logwatch_in_one_daemon(site: HostSite, tmp_path: Path):
    log = tmp_path / "messages"
    log.write_text("")
    d = HostDaemon(site, tmp_path)
    ip = site.pair.edge_ip
    d.config.write_text(
        d.config.read_text()
        + f"""
[edge]
listen = ["udp:{ip}:{EDGE_PORT}"]
backend = "udp:{ip}:5060"                # the same Kamailio, on its public address
flow_key_file = "flow.key"

[[logwatch.sources]]
path = "{log}"
format = "asterisk"
timezone = "UTC"
"""
    )
    d.start()
    try:
        banner = d.banner
        assert f"listening on udp:{ip}:{EDGE_PORT}" in banner, banner
        assert "host mode on" in banner and "logwatch on" in banner, banner
        # host mode: a phone logs in to Kamailio's own port
        with phone(site, site.phone) as p:  # type: ignore[arg-type]
            assert p.login() == 200
        # the edge: a REGISTER to its port is relayed, Kamailio's challenge comes back
        script = REGISTER_THROUGH_THE_EDGE.format(source=site.phone, edge=ip, port=EDGE_PORT)
        done = subprocess.run(
            site.pair.in_clients(sys.executable, "-c", script),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.stdout.strip() == "SIP/2.0 401 Unauthorized", (done.stdout, done.stderr)
        # logwatch: five wrong passwords in the log ban their source in the kernel
        append(log, "".join(wrong_password(GUESSER) for _ in range(5)))
        banned = eventually(lambda: GUESSER in d.firewall()["elements"], 30, 0.2)
        assert banned, (d.firewall(), d.log())
        stats = d.stats()
        assert stats["host"]["received"] >= 2, stats["host"]
        assert stats["edge"]["to-backend"] >= 1, stats["edge"]
        assert stats["logwatch"][f"failed:{log}"] == 5, stats["logwatch"]
    finally:
        try:
            if d.proc is not None:
                d.stop()
        finally:
            print(d.log())
            flushed = d.cli("firewall", "flush")
            assert flushed.returncode == 0, flushed.stderr
