"""Deception is safe (issue 16): a spoofed hostile source never turns the
edge into a reflector, and phones are served while attackers are deceived.

An edge on loopback with `[deception]` on, the daemon's policy (the pack:
a tool's User-Agent makes a source hostile) and a real Kamailio behind it.

- A spoofed source: each attack message is sent once in a victim's name
  (a receive-only socket on its own loopback address, 127.0.0.N, which
  never answers, so it never proves it receives). Deception answers go
  through the reflection budget at ratio 1.0: the victim gets back at most
  what it sent, and the honeypot's 486, retransmitted until an ACK that
  never comes, is withheld with every copy. The control, the budget off,
  shows what the victim would get without it (more than it sent).
- Meanwhile: svwar and a toll-fraud caller are deceived from their own
  addresses while a phone registers and calls another through the edge.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import SCANNERS, need
from .harness import drops, running_edge, wait_for
from .kamailio import available as kamailio_available
from .kamailio import kamailio
from .reflection import DECEPTION_ATTACKS, HOSTILE_INVITE, reflect
from .test_real_peers import place_call

SCENARIOS = Path(__file__).parent / "scenarios"
BIN = Path(sys.executable).parent  # SIPVicious comes with the test dependencies
HOLD = 1.0  # the honeypot's ring before its busy
DECEPTION = {
    "deception": {"enabled": True, "engaged_for": "30s", "fake_pbx": {"hold": f"{HOLD}s"}},
    "dialplan": {"country": "GB"},
}


def need_tools() -> None:
    need(kamailio_available(), "kamailio is not installed (apt-get install kamailio)")
    need(shutil.which("sipp") is not None, "sipp is not installed (apt-get install sip-tester)")
    need(
        (BIN / "sipvicious_svwar").exists(), "SIPVicious is not installed (pip install sipvicious)"
    )


@pytest.mark.parametrize("name", sorted(DECEPTION_ATTACKS))
def test_a_spoofed_hostile_source_gets_back_at_most_what_it_sent(tmp_path, name):
    need_tools()
    template = DECEPTION_ATTACKS[name]
    listen = HOLD + 8.0  # the 486 and its two retransmissions (0.5 and 1 s apart), with room
    with kamailio(tmp_path) as pbx:
        with running_edge(tmp_path, backend_port=pbx, armed=DECEPTION) as run:
            got = reflect(template, run.ports["udp"], "127.0.0.4", seconds=listen)
            if (
                template is HOSTILE_INVITE
            ):  # (the edge's thread counts them: a busy machine is slow)
                wait_for(lambda: run.edge.counters["deceive-withheld"] >= 3, 15)
            counters = dict(run.edge.counters)
        with running_edge(
            tmp_path, backend_port=pbx, armed=DECEPTION, reflection={"enabled": False}
        ) as run:
            control = reflect(template, run.ports["udp"], "127.0.0.5", seconds=listen)
    assert got.answers, "deception answered nothing: the test would prove nothing"
    assert got.received <= got.sent, (got.sent, got.received, got.firsts())
    if template is HOSTILE_INVITE:
        assert got.firsts()[0] == "SIP/2.0 100 Trying", got.firsts()
        assert not any(" 486 " in line for line in got.firsts()), got.firsts()  # none fits
        assert counters["deceive-withheld"] >= 3, counters  # the 486 and its copies
        assert counters["reflection-withheld"] == counters["deceive-withheld"], counters
        # the control: without the budget the 486 comes, again and again
        busy = [line for line in control.firsts() if " 486 " in line]
        assert len(busy) >= 3 and control.received > control.sent, control.firsts()
    else:
        assert control.firsts() == got.firsts(), (control.firsts(), got.firsts())


def svwar(port: int, extensions: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(BIN / "sipvicious_svwar"),
            "-e",
            extensions,
            "-m",
            "REGISTER",
            "-p",
            str(port),
            "--maximumtime",
            "3",
            "127.0.0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def toll_fraud(port: int, source: str, calls: int, cwd: Path) -> subprocess.Popen[str]:
    """sipp dialling an international number ``calls`` times, one after the other."""
    return subprocess.Popen(
        [
            "sipp",
            f"127.0.0.1:{port}",
            "-sf",
            str(SCENARIOS / "tollfraud_caller.xml"),
            "-s",
            "00972597562518",
            "-i",
            source,
            "-m",
            str(calls),
            "-l",
            "1",
            "-nostdin",
            "-timeout",
            "30",
            "-timeout_error",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=cwd,
    )


def test_a_phone_registers_and_calls_while_attackers_are_deceived(tmp_path):
    need_tools()
    fraud_dir = tmp_path / "fraud"
    fraud_dir.mkdir()
    with (
        kamailio(tmp_path) as pbx,
        running_edge(tmp_path, backend_port=pbx, armed=DECEPTION) as run,
    ):
        port = run.ports["udp"]
        counters = run.edge.counters
        # the toll-fraud caller is hostile first: svmap's probe (silence)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.7", 0))
            probe.sendto((SCANNERS / "svmap_0.3.8_OPTIONS.sip").read_bytes(), ("127.0.0.1", port))
        fraud = toll_fraud(port, "127.0.0.7", calls=4, cwd=fraud_dir)
        scan = svwar(port, "100-400")  # (from 127.0.0.1: svwar 0.3.8 ignores its -b)
        try:
            assert wait_for(
                lambda: counters["deceive:register-ok"] > 0 and counters["deceive:180"] > 0, 15
            ), dict(counters)
            # the phones: callee 200 registers, sipp (as 100) calls it, from 127.0.0.8
            callee = place_call(run, tmp_path, nothing_dropped=False, source="127.0.0.8")
            assert fraud.poll() is None, "the attack was over before the call: nothing overlapped"
            fraud_out, _ = fraud.communicate(timeout=60)
            scan_out, _ = scan.communicate(timeout=60)
        finally:
            for proc in (fraud, scan):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
    assert callee.seen[:3] == ["INVITE", "ACK", "BYE"], callee.seen
    # nothing was dropped: the only verdicts that were not a pass are the attackers'
    assert {k for k in drops(run) if not k.startswith("policy-deceive:")} == set(), drops(run)
    assert fraud.returncode == 0, fraud_out[-2000:]  # 4 calls, each 100, 180, 486
    assert counters["deceive:486"] >= 4, dict(counters)
    assert "reqauth" not in scan_out and "noauth" not in scan_out, scan_out  # svwar found nothing
    # it scanned its whole range: answered, or past the limiter's burst (100) held back
    deceiver = run.edge.deceiver
    assert deceiver is not None
    assert deceiver.counters["register-ok"] + deceiver.counters["withheld"] >= 301, (
        deceiver.counters
    )
    assert counters["deceive:register-ok"] >= 100, dict(counters)
