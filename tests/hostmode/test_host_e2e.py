"""Host mode's acceptance tests: Kamailio on its namespace's public address,
unchanged, with digest auth; sipwarden beside it with [host] and no [edge]
(``site.py``). The scanners get not one byte from Kamailio (over TCP the
handshake completes: the kernel's, host mode cannot hide an open port; no
SIP byte follows), svcrack is banned off Kamailio's own 401s and then
dropped in the kernel, a phone registers and calls another meanwhile, none
of their packets dropped; killed, sipwarden fails open or closed as told."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import dpkt
import pytest

from ..conftest import need
from ..edge.harness import REALM, USERS
from ..edge.netns import capture, in_namespace
from ..edge.phone import PORT
from ..edge.site import eventually, phone
from ..edge.test_invisible import payload_bytes
from .site import (
    BIN,
    HostSite,
    call_ended,
    callee,
    phones_judged,
    running,
    start_call,
    udp_datagrams_received,
)


def test_a_phone_registers_through_host_mode(site: HostSite, tmp_path: Path):
    with running(site, tmp_path) as d, phone(site, site.phone) as p:  # type: ignore[arg-type]
        assert "by iptables" in d.banner or "by nftables" in d.banner, d.banner
        assert "listening on" not in d.banner  # no edge: nothing of ours listens
        assert [p.login() for _ in range(3)] == [200, 200, 200]
        stats = d.stats()
        host = stats["host"]
        assert host["received"] >= 6 and host["answers-read"] >= 3, host
        assert time.time() - 30 < stats["pbx-answered-at"] <= time.time(), stats
        assert host.get("dropped", 0) == 0, host
        # Kamailio's answers counted in the phone's flows, as the edge counts its own
        flows = d.json("flows", "--source", site.phone)
        assert sum(f["answers"].get("200", 0) for f in flows) == 3, flows
        assert sum(f["answers"].get("401", 0) for f in flows) == 3, flows


SCANS = {  # name: (argv after the tool, what its output says when it found nothing)
    "nmap -sU -sV": (
        ["nmap", "-n", "-p", "5060", "--max-retries", "1", "-sU", "-sV"],
        r"5060/udp\s+open\|filtered\s+sip[ \t]*\n",
    ),
    "nmap NSE sip-methods": (
        ["nmap", "-n", "-p", "5060", "--max-retries", "1", "-sU", "--script", "sip-methods"],
        r"5060/udp\s+open\|filtered",
    ),
    "svmap": ([str(BIN / "sipvicious_svmap")], r"found nothing"),
    "svwar": ([str(BIN / "sipvicious_svwar"), "-e100-110"], r"found nothing"),
    "sipsak": (["sipsak", "-v", "-s", "sip:100@{target}"], r"giving up, no final response"),
}


def test_scanners_get_nothing_from_the_pbx_while_phones_register_and_call(
    site: HostSite, tmp_path: Path
):
    for tool in ("nmap", "sipsak", "tcpdump", "sipp"):
        need(shutil.which(tool) is not None, f"{tool} is not installed")
    need((BIN / "sipvicious_svmap").exists(), "SIPVicious is not installed")
    target = site.pair.edge_ip
    pcap = tmp_path / "pbx.pcap"
    logins: list[int] = []
    with (
        running(site, tmp_path) as d,
        phone(site, site.phone) as p,  # type: ignore[arg-type]
        callee(site) as called,
    ):
        with capture("e0", pcap, f"host {site.attacker} and port {PORT}", netns=site.pair.edge):
            procs = {}
            for name, (argv, _) in SCANS.items():
                argv = [a.replace("{target}", target) for a in argv]
                if not name.startswith("sipsak"):
                    argv.append(target)
                procs[name] = subprocess.Popen(
                    site.pair.in_clients(*argv),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    cwd=tmp_path,
                )
            try:
                logins.append(p.login())  # the scanners are under way...
                call_ended(start_call(site, tmp_path), tmp_path, called)  # ...a call goes through
                scanning = {name for name, proc in procs.items() if proc.poll() is None}
                while any(proc.poll() is None for proc in procs.values()) and len(logins) < 60:
                    logins.append(p.login())  # the phone, while the scanners run
                    time.sleep(0.25)  # as a phone would: never near the rate limits
                outputs = {name: proc.communicate(timeout=240)[0] for name, proc in procs.items()}
            finally:
                for proc in procs.values():
                    if proc.poll() is None:
                        proc.kill()
        host = d.stats()["host"]
        judged = phones_judged(d, site.phone, site.callee)
    for name, out in outputs.items():
        print(f"----- {name}\n{out}")
    for name, (_, found_nothing) in SCANS.items():
        assert re.search(found_nothing, outputs[name]), (name, outputs[name][-2000:])
    sent, received = payload_bytes(pcap, target)
    assert received["udp"] >= 20, received  # they did scan
    assert sent == Counter(), f"Kamailio answered the scanners: {sent}"
    assert logins and set(logins) == {200}, logins  # the phone was never refused or dropped
    print(f"still scanning when the call ended: {sorted(scanning)}")
    assert {"svmap", "svwar"} <= scanning, scanning  # the call went through meanwhile
    # every packet of the phones' was judged and passed (flows count each verdict but a pass)
    assert all(j["packets"] >= 5 and set(j) == {"packets"} for j in judged.values()), judged
    assert host["dropped"] >= 10, host  # judged and dropped, not merely unanswered


def test_svcrack_is_banned_off_the_pbx_answers_then_dropped_in_the_kernel(
    site: HostSite, tmp_path: Path
):
    need((BIN / "sipvicious_svcrack").exists(), "SIPVicious is not installed")
    dictionary = tmp_path / "passwords.txt"
    dictionary.write_text("".join(f"guess{i}\n" for i in range(40)) + USERS["100"] + "\n")
    # the pack off: svcrack must be banned by its failed logins, counted off
    # Kamailio's own 401s to its REGISTERs with credentials
    with (
        running(site, tmp_path, pack=False) as d,
        phone(site, site.phone) as p,  # type: ignore[arg-type]
        callee(site) as called,
    ):
        logins: list[int] = []
        stop = threading.Event()

        def register() -> None:
            while not stop.is_set() and len(logins) < 200:
                logins.append(p.login())
                time.sleep(0.3)  # as a phone would: never near the rate limits

        phoning = threading.Thread(target=register)
        phoning.start()
        svcrack = subprocess.Popen(
            site.pair.in_clients(
                str(BIN / "sipvicious_svcrack"),
                "-u",
                "100",
                "-d",
                str(dictionary),
                "-b",
                site.attacker,
                "--timeout",
                "0.02",
                "--maximumtime",
                "30",
                site.pair.edge_ip,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
        )
        try:
            banned = eventually(lambda: site.attacker in d.firewall()["elements"], 15, 0.1)
            assert banned, d.log()
            # a call while svcrack still sends (dropped in the kernel now)
            call_ended(start_call(site, tmp_path), tmp_path, called)
            time.sleep(0.3)  # what was queued before the ban is judged
            before = d.stats()["host"]["received"], d.firewall()["dropped"], len(logins)
            time.sleep(1.0)
            assert svcrack.poll() is None, "svcrack stopped: it should still be sending"
            after = d.stats()["host"]["received"], d.firewall()["dropped"], len(logins)
        finally:
            svcrack.terminate()
            output = svcrack.communicate(timeout=10)[0]
            stop.set()
            phoning.join(30)
        (ban,) = d.bans()
        judged = phones_judged(d, site.phone, site.callee)
    print(f"svcrack: kernel dropped {after[1] - before[1]} packets in 1 s; {output[-500:]}")
    assert ban["ip"] == site.attacker and ban["detector"] == "auth.brute-force", ban
    assert after[1] - before[1] >= 20, (before, after)  # the kernel drops it now...
    # ...before the queue: what reached it meanwhile is the phone's (two REGISTERs a login)
    assert after[0] - before[0] <= 2 * (after[2] - before[2] + 1), (before, after)
    assert USERS["100"] not in output, output  # it never got to the password
    assert logins and set(logins) == {200}, logins
    # every packet of the phones' was judged and passed (flows count each verdict but a pass)
    assert all(j["packets"] >= 5 and set(j) == {"packets"} for j in judged.values()), judged


def _register_over_tcp(source: str, target: str) -> bytes:
    """A REGISTER without credentials over TCP; what came back before the end."""
    message = (
        f"REGISTER sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/TCP {source};branch=z9hG4bKtcp1\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:100@{REALM}>;tag=t1\r\nTo: <sip:100@{REALM}>\r\n"
        f"Call-ID: tcp-{source}\r\nCSeq: 1 REGISTER\r\nContact: <sip:100@{source}>\r\n"
        "User-Agent: Yealink SIP-T46S 66.86.0.15\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    got = b""
    with socket.create_connection((target, PORT), timeout=3, source_address=(source, 0)) as s:
        s.sendall(message)
        try:
            while b"\r\n\r\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (TimeoutError, ConnectionResetError) as exc:
            got += f"<{type(exc).__name__}>".encode()
    return got


def test_tcp_a_phone_is_answered_a_scanner_is_reset(site: HostSite, tmp_path: Path):
    with running(site, tmp_path) as d:
        answer = in_namespace(site.pair.clients, _register_over_tcp, site.phone, site.pair.edge_ip)
        assert answer.startswith(b"SIP/2.0 401"), answer
        probe = in_namespace(
            site.pair.clients,
            lambda: _sipsak_like_over_tcp(site.attacker, site.pair.edge_ip),
        )
        assert probe == b"<ConnectionResetError>", probe  # the kernel's reset, no byte of SIP
        host = d.stats()["host"]
        assert host["reset"] >= 1, host


def _sipsak_like_over_tcp(source: str, target: str) -> bytes:
    message = (
        f"OPTIONS sip:100@{target} SIP/2.0\r\nVia: SIP/2.0/TCP {source};branch=z9hG4bK.1\r\n"
        f"From: sip:sipsak@{source}:5060;tag=1\r\nTo: sip:100@{target}\r\nCall-ID: 1@{source}\r\n"
        "CSeq: 1 OPTIONS\r\nContact: sip:sipsak@{source}\r\nContent-Length: 0\r\n"
        "Max-Forwards: 70\r\nUser-Agent: sipsak 0.9.8.1\r\nAccept: text/plain\r\n\r\n"
    ).encode()
    got = b""
    with socket.create_connection((target, PORT), timeout=3, source_address=(source, 0)) as s:
        s.sendall(message)
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (TimeoutError, ConnectionResetError) as exc:
            got += f"<{type(exc).__name__}>".encode()
    return got


@pytest.mark.parametrize("fail", ["open", "closed"])
def test_killed_it_fails_open_or_closed(site: HostSite, tmp_path: Path, fail: str):
    with running(site, tmp_path, fail=fail) as d, phone(site, site.phone) as p:  # type: ignore[arg-type]
        assert p.login() == 200
        assert d.stop(signal.SIGKILL) == -signal.SIGKILL
        before = udp_datagrams_received(site)
        logins = [p.login(timeout=1.0) for _ in range(3)]
        reached = udp_datagrams_received(site) - before
    if fail == "open":
        assert logins == [200, 200, 200], logins  # the queue is bypassed: the PBX is served
        assert reached >= 6, reached
    else:
        assert logins == [0, 0, 0], logins
        assert reached == 0, reached  # nothing reached Kamailio's socket


TCP_SCANS = {  # name: (argv after the tool, what its output says when it found nothing)
    # the port is "open" (the handshake is the kernel's); "sip?" is nmap's
    # guess from the port number: no probe got an answer to name a service
    # (the default intensity: its GenericLines probe is a bare keep-alive ping)
    "nmap -sT -sV": (
        ["nmap", "-n", "-p", str(PORT), "--max-retries", "1", "-sT", "-sV"],
        rf"{PORT}/tcp\s+open\s+sip\?[ \t]*\n",
    ),
    # no method list: the script's OPTIONS got no answer
    "nmap -sT NSE sip-methods": (
        ["nmap", "-n", "-p", str(PORT), "--max-retries", "1", "-sT", "--script", "sip-methods"],
        rf"{PORT}/tcp\s+open\s+sip[ \t]*\n",
    ),
}


def handshakes(pcap: Path, pbx: str) -> int:
    """The SYN-ACKs the PBX's kernel sent: the handshakes it completed."""
    syn_ack = dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK
    with pcap.open("rb") as f:
        return sum(
            1
            for _, frame in dpkt.pcap.Reader(f)
            if isinstance(ip := dpkt.ethernet.Ethernet(frame).data, dpkt.ip.IP)
            and isinstance(ip.data, dpkt.tcp.TCP)
            and socket.inet_ntoa(ip.src) == pbx
            and ip.data.flags & syn_ack == syn_ack
        )


def test_tcp_scanners_complete_the_handshake_and_get_no_sip_byte(site: HostSite, tmp_path: Path):
    """nmap over TCP: the port shows open (the kernel's handshake: host mode
    cannot hide it, the docs say so) but not one byte of Kamailio's follows,
    nor any service name, version or method list."""
    for tool in ("nmap", "tcpdump"):
        need(shutil.which(tool) is not None, f"{tool} is not installed")
    target = site.pair.edge_ip
    pcap = tmp_path / "pbx.pcap"
    with running(site, tmp_path) as d:
        with capture("e0", pcap, f"host {site.attacker} and tcp port {PORT}", netns=site.pair.edge):
            procs = {
                name: subprocess.Popen(
                    site.pair.in_clients(*argv, target),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    cwd=tmp_path,
                )
                for name, (argv, _) in TCP_SCANS.items()
            }
            try:
                outputs = {name: proc.communicate(timeout=400)[0] for name, proc in procs.items()}
            finally:
                for proc in procs.values():
                    if proc.poll() is None:
                        proc.kill()
        host = d.stats()["host"]
    for name, out in outputs.items():
        print(f"----- {name}\n{out}")
    for name, (_, found_nothing) in TCP_SCANS.items():
        assert re.search(found_nothing, outputs[name]), (name, outputs[name][-2000:])
        assert "returning data" not in outputs[name], (
            name,
            outputs[name][-2000:],
        )  # no fingerprint
        assert "sip-methods" not in outputs[name], (name, outputs[name][-2000:])
    sent, received = payload_bytes(pcap, target)
    assert handshakes(pcap, target) >= 5, "the kernel completed no handshake"  # nmap's connections
    assert received["tcp"] >= 20, received  # they did scan
    assert sent == Counter(), f"Kamailio answered the scanners: {sent}"
    assert host["reset"] >= 2 and host["pings-refused"] >= 1, host  # probes judged and refused
