"""Invisible to scanners, open to phones: the acceptance test of the scanner
pack with the real tools.

The edge listens on 5060 (UDP and TCP) on our end of a veth pair; nmap (its
-sV probes and NSE scripts), SIPVicious (svmap, normal and compact, svwar,
svcrack) and sipsak run in a network namespace on the other end, all at once.
Meanwhile phones on loopback register and call through the same edge to
Kamailio. Each tool must report that it found nothing, tcpdump on the veth
must see not one byte of payload coming back from the edge, and no message
of the phones may be dropped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import dpkt
import pytest

from ..conftest import need
from .harness import running_edge
from .kamailio import available as kamailio_available
from .kamailio import kamailio
from .netns import capture, namespace
from .test_real_peers import place_call

BIN = Path(sys.executable).parent  # SIPVicious comes with the test dependencies


@dataclass
class Scan:
    argv: list[str]
    found_nothing: str  # a regex over stdout + stderr that means: nothing found
    exit_codes: tuple[int, ...] = (0,)
    absent: tuple[str, ...] = ()  # what it prints when it does find something


def scans(target: str, tmp: Path) -> dict[str, Scan]:
    users, passwords = tmp / "users.txt", tmp / "passwords.txt"
    users.write_text("100\n200\nadmin\n")
    passwords.write_text("100\nsecret\nsecret200\npassword\n")
    nmap = ["nmap", "-n", "-p", "5060", "--max-retries", "1"]
    svmap, svwar, svcrack = (str(BIN / f"sipvicious_{t}") for t in ("svmap", "svwar", "svcrack"))
    return {
        # the whole UDP version scan (the Shodan-style SIPOptions probe among
        # ~20): "sip" is only the name of port 5060; the VERSION column stays
        # empty and the state open|filtered (any answer would make it "open")
        "nmap -sU -sV": Scan(
            [*nmap, "-sU", "-sV", target], r"5060/udp\s+open\|filtered\s+sip[ \t]*\n"
        ),
        # TCP: a listening socket is always "open"; "sip?" is a guess from the
        # port number, no probe identified a service (intensity 0 still sends
        # SIPOptions, which names port 5060); "tcpwrapped" once the scanner's
        # fingerprint hits have banned it: its connections are closed unanswered
        "nmap -sV tcp": Scan(
            [*nmap, "-sV", "--version-intensity", "0", target],
            r"5060/tcp\s+open\s+(sip\?|tcpwrapped)[ \t]*\n",
        ),
        "nmap NSE udp": Scan(
            [
                *nmap,
                "-sU",
                "--script",
                "sip-methods,sip-enum-users,sip-brute",
                "--script-args",
                f"userdb={users},passdb={passwords},"
                "sip-enum-users.minext=100,sip-enum-users.maxext=110",
                target,
            ],
            r"Accounts: No valid accounts found",
            absent=("sip-methods", "sip-enum-users"),
        ),
        "nmap NSE tcp": Scan(
            [*nmap, "-sT", "--script", "sip-methods", target],
            r"5060/tcp\s+open\s+sip\n",
            absent=("sip-methods",),
        ),
        "svmap": Scan([svmap, target], r"found nothing", (30,)),
        "svmap -c": Scan([svmap, "-c", target], r"found nothing", (30,)),
        "svwar": Scan([svwar, "-e100-110", target], r"found nothing", (30,)),
        "svcrack": Scan(
            [svcrack, "-u", "100", "-d", str(passwords), target], r"found nothing", (30,)
        ),
        "sipsak": Scan(
            ["sipsak", "-v", "-s", f"sip:100@{target}"], r"giving up, no final response", (3,)
        ),
        "sipsak tcp": Scan(
            ["sipsak", "-v", "--transport", "tcp", "-s", f"sip:100@{target}"],
            r"giving up, no final response",
            (3,),
        ),
    }


def chosen(target: str, tmp: Path, deception: bool) -> dict[str, Scan]:
    """The tools a run uses: all of them in silence; with deception on, the
    discovery tools and sipsak (its probe is discovery too)."""
    every = scans(target, tmp)
    if not deception:
        return every
    return {name: scan for name, scan in every.items() if name in DISCOVERY or "sipsak" in name}


def payload_bytes(pcap: Path, edge: str) -> tuple[Counter[str], Counter[str]]:
    """(bytes of UDP/TCP payload the edge sent, packets the scanners sent), by protocol."""
    sent, received = Counter(), Counter()
    with pcap.open("rb") as f:
        for _, frame in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(frame).data
            if not isinstance(ip, dpkt.ip.IP):
                continue
            segment = ip.data
            proto = "udp" if isinstance(segment, dpkt.udp.UDP) else "tcp"
            if not isinstance(segment, dpkt.udp.UDP | dpkt.tcp.TCP):
                continue
            if ip.src == bytes(map(int, edge.split("."))):
                sent[proto] += len(segment.data)
            else:
                received[proto] += 1
    return sent, received


# the discovery tools: silent with deception on too (svwar and svcrack, which
# enumerate and crack, get deception's answers then: tests/edge/test_deception_e2e.py)
DISCOVERY = ("nmap -sU -sV", "nmap -sV tcp", "nmap NSE udp", "nmap NSE tcp", "svmap", "svmap -c")


@pytest.mark.parametrize("deception", [False, True], ids=["silence", "deception-on"])
def test_scanners_find_nothing_while_phones_call_through(tmp_path, deception):
    for tool in ("nmap", "sipsak", "sipp"):
        need(shutil.which(tool) is not None, f"{tool} is not installed")
    need(
        (BIN / "sipvicious_svmap").exists(), "SIPVicious is not installed (pip install sipvicious)"
    )
    need(kamailio_available(), "kamailio is not installed (apt-get install kamailio)")
    with namespace() as ns, kamailio(tmp_path) as pbx_port:
        public = (f"udp:{ns.outside}:5060", f"tcp:{ns.outside}:5060")
        # (no fingerprint bans: a scanner banned halfway would hide the probes it sends later)
        armed = (
            {"deception": {"enabled": True}, "fingerprints": {"ban": False}} if deception else None
        )
        with running_edge(tmp_path, backend_port=pbx_port, extra_listen=public, armed=armed) as run:
            verdicts: Counter[tuple[str, str]] = Counter()
            judge = run.edge.policy.judge_bytes

            def recording(data, source, local_port, now):
                verdict, view = judge(data, source, local_port, now)
                verdicts[(source.host, "passed" if verdict.passes else verdict.reason)] += 1
                return verdict, view

            run.edge.policy.judge_bytes = recording
            pcap = tmp_path / "public.pcap"
            with capture(ns.link, pcap, f"host {ns.outside} and port 5060"):
                procs = {
                    name: subprocess.Popen(
                        ns.command(*scan.argv),
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                        cwd=tmp_path,
                    )
                    for name, scan in chosen(ns.outside, tmp_path, deception).items()
                }
                try:
                    # the phones, while the scanners run
                    for transport in ("udp", "tcp"):
                        place_call(run, tmp_path, transport=transport, nothing_dropped=False)
                    outputs = {name: p.communicate(timeout=240) for name, p in procs.items()}
                finally:
                    for p in procs.values():
                        if p.poll() is None:
                            p.kill()
            results = {name: (p.returncode, outputs[name][0]) for name, p in procs.items()}

    for name, (code, out) in results.items():
        print(f"----- {name}: exit {code}\n{out}")  # shown when an assertion fails
    for name, scan in chosen(ns.outside, tmp_path, deception).items():
        code, out = results[name]
        assert code in scan.exit_codes, (name, code, out[-2000:])
        assert re.search(scan.found_nothing, out), (name, out[-2000:])
        assert not any(text in out for text in scan.absent), (name, out[-2000:])
    sent, received = payload_bytes(pcap, ns.outside)
    assert received["udp"] >= 50 and received["tcp"] >= 10, received  # they did scan
    assert sent == Counter(), f"the edge answered the scanners: {sent}"

    scanner = {reason: n for (host, reason), n in verdicts.items() if host == ns.inside}
    phones = {reason: n for (host, reason), n in verdicts.items() if host == "127.0.0.1"}
    assert "passed" not in scanner, scanner
    expected = {  # each tool was recognised for what it is, not merely dropped
        "scan.empty-datagram",  # nmap's UDP port scan
        "scan.nmap-options-probe",  # nmap -sV, UDP and TCP
        "scan.nmap-nse",
        "scan.sipvicious-tag",
        "scan.sipsak",
    }
    if not deception:
        expected.add("scan.sipvicious-branch")  # svcrack's first REGISTER
    assert expected <= set(scanner), scanner
    assert set(phones) == {"passed"}, phones  # not a single message of the phones dropped
