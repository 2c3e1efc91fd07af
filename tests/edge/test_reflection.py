"""The reflection budget with a real Kamailio behind the edge: a source that
never answers (a spoofed victim) gets back at most the budget's multiple of
what it sent; a source that shows it receives (TCP, our nonce, our To tag),
a trusted peer and a real phone are served in full.

Every victim is a receive-only socket on its own loopback address
(127.0.0.N), so that no other test traffic verifies it (the phones and
Kamailio are on 127.0.0.1)."""

from __future__ import annotations

import functools
import json
import shutil
import socket
import subprocess
import sys

import pytest

from sipwarden.sip import parse
from sipwarden.values import Peer

from ..conftest import free_udp_port, need, start_edge_process
from .harness import USERS, running_edge, wait_for
from .kamailio import available as kamailio_available
from .kamailio import kamailio
from .reflection import (
    COMPACT_INVITE,
    INVITE_REGISTERED,
    OPTIONS,
    REGISTER,
    reflect,
    register_silent_phone,
)
from .test_real_peers import explain, free_port, place_call, sipp

RATIO = 1.5  # the default


def need_kamailio() -> None:
    need(kamailio_available(), "kamailio is not installed (apt-get install kamailio)")


@pytest.mark.parametrize(
    ("name", "template"),
    [("compact INVITE", COMPACT_INVITE), ("REGISTER", REGISTER), ("OPTIONS", OPTIONS)],
)
def test_a_spoofed_request_gets_back_at_most_the_budget(tmp_path, name, template):
    """Before the budget: the compact INVITE got the uniform challenge made
    from Kamailio's 404, the REGISTER Kamailio's 401, each about twice its size."""
    need_kamailio()
    with kamailio(tmp_path) as pbx, running_edge(tmp_path, backend_port=pbx, armed={}) as run:
        got = reflect(template, run.ports["udp"], "127.0.0.2", seconds=2.0)
        counters = run.edge.counters
        assert got.received <= RATIO * got.sent, (name, got.sent, got.firsts())
        if template is not OPTIONS:  # (dropped by the policy: nothing to hold back)
            assert wait_for(lambda: counters["reflection-withheld"] >= 1), dict(counters)
            assert counters["reflection-withheld-bytes"] > RATIO * got.sent - got.received


def test_a_spoofed_invite_to_a_registered_user_gets_no_retransmissions_past_it(tmp_path):
    """Before the budget: 100 Trying and the PBX's 408 four or five times
    over (6.4x); Kamailio's fr_timer is cut to 2 s to see it in 12 s."""
    need_kamailio()
    with (
        kamailio(tmp_path, fr_timer=2000) as pbx,
        running_edge(tmp_path, backend_port=pbx, armed={}) as run,
    ):
        edge = run.ports["udp"]
        phone = register_silent_phone(edge)
        got = reflect(INVITE_REGISTERED, edge, "127.0.0.3", seconds=12.0)
        phone.close()
        assert got.received <= RATIO * got.sent, (got.sent, got.firsts())
        assert not any(" 408 " in line for line in got.firsts())  # it does not fit
        counters = run.edge.counters
        assert counters["reflection-withheld"] >= 3, dict(counters)  # the 408 and its copies
        assert counters["reflection-verified:nonce"] == 1  # the phone, by its login


def test_a_real_phone_registers_and_calls_in_full(tmp_path):
    """sipp registers with digest auth (its first REGISTER is unverified:
    the challenge fits; the nonce in its answer verifies it), then a phone
    registers and sipp calls it: nothing is held back."""
    need_kamailio()
    need(shutil.which("sipp") is not None, "sipp is not installed (apt-get install sip-tester)")
    with kamailio(tmp_path) as pbx, running_edge(tmp_path, backend_port=pbx, armed={}) as run:
        result = sipp(
            f"127.0.0.1:{run.ports['udp']}",
            "register_auth.xml",
            *("-s", "200", "-au", "200", "-ap", USERS["200"], "-p", str(free_port())),
            *("-t", "u1"),
            cwd=tmp_path,
        )
        assert result.returncode == 0, explain(result, tmp_path)
        counters = run.edge.counters
        assert counters["reflection-verified:nonce"] == 1, dict(counters)
        place_call(run, tmp_path)
        assert counters["reflection-withheld"] == 0, dict(counters)
        assert counters["reflection-sent"] >= 1  # the first challenge, before the proof


def test_a_tcp_connection_verifies_its_address_for_udp(tmp_path):
    need_kamailio()
    with kamailio(tmp_path) as pbx, running_edge(tmp_path, backend_port=pbx, armed={}) as run:
        conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        conn.bind(("127.0.0.4", 0))
        conn.connect(("127.0.0.1", run.ports["tcp"]))
        try:
            assert wait_for(lambda: run.edge.counters["reflection-verified:tcp"] == 1)
            got = reflect(COMPACT_INVITE, run.ports["udp"], "127.0.0.4", seconds=2.0)
        finally:
            conn.close()
        assert got.firsts() == ["SIP/2.0 401 Unauthorized"]  # in full, past the ratio
        assert got.received > RATIO * got.sent
        assert run.edge.counters["reflection-withheld"] == 0


def test_our_to_tag_in_its_ack_verifies_a_caller(tmp_path):
    """A caller that does not log in: its INVITE (with a body, so that the
    challenge fits) is challenged; its ACK carries the challenge's To tag,
    which only a source that received it knows."""
    need_kamailio()
    with kamailio(tmp_path) as pbx, running_edge(tmp_path, backend_port=pbx, armed={}) as run:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as caller:
            caller.bind(("127.0.0.6", 0))
            caller.settimeout(3)
            port, edge = caller.getsockname()[1], ("127.0.0.1", run.ports["udp"])
            sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.6\r\ns=-\r\nc=IN IP4 127.0.0.6\r\nt=0 0\r\n"
            sdp += "m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
            head = (
                f"sip:7@pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.6:{port};branch=z9hG4bKtag1\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:caller@pbx.test>;tag=c1\r\n"
            )
            invite = (
                f"INVITE {head}To: <sip:7@pbx.test>\r\nCall-ID: tagcall\r\nCSeq: 1 INVITE\r\n"
                "Contact: <sip:caller@127.0.0.6>\r\nUser-Agent: Yealink SIP-T46S\r\n"
                f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
            )
            caller.sendto(invite.encode(), edge)
            answer = parse(caller.recv(65535))
            assert answer.status == 401 and answer.to.tag
            ack = (
                f"ACK {head}To: <sip:7@pbx.test>;tag={answer.to.tag}\r\nCall-ID: tagcall\r\n"
                "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            )
            caller.sendto(ack.encode(), edge)
            assert wait_for(lambda: run.edge.counters["reflection-verified:tag"] == 1)
        got = reflect(COMPACT_INVITE, run.ports["udp"], "127.0.0.6", seconds=2.0)
        assert got.firsts() == ["SIP/2.0 401 Unauthorized"] and got.received > RATIO * got.sent


def test_trusted_peers_are_never_limited(tmp_path):
    need_kamailio()
    with (
        kamailio(tmp_path) as pbx,
        running_edge(
            tmp_path,
            backend_port=pbx,
            armed={},
            policy={"trusted_peers": ["127.0.0.5"]},
            reflection={"ratio": 1.0},
        ) as run,
    ):
        got = reflect(COMPACT_INVITE, run.ports["udp"], "127.0.0.5", seconds=2.0)
        assert got.firsts() == ["SIP/2.0 404 Not Found"]  # (answers to a trunk stay as they are)
        assert got.received > got.sent
        assert run.edge.counters["reflection-withheld"] == 0


def test_budget_off_and_withheld_answers_in_status(tmp_path):
    """`sipwarden status --json` counts what the budget held back: here an
    operator's reject (403), larger than the INVITE it answers, with
    `ratio = 1.0`; with `enabled = false` it goes out."""
    rule = (
        '[[policy.rules]]\nid = "no-seven"\naction = "reject"\ncode = 403\n'
        'match = { "ruri.user" = "7" }\n'
    )
    for enabled in (True, False):
        work = tmp_path / str(enabled)
        work.mkdir()
        port = free_udp_port()
        extra = rule + f"[edge.reflection]\nenabled = {str(enabled).lower()}\nratio = 1.0\n"
        proc, _ = start_edge_process(work, port, backend_port=9, extra=extra)
        try:
            got = reflect(COMPACT_INVITE, port, "127.0.0.2", 1.0)
            config = str(work / "edge.toml")
            status = subprocess.run(
                [sys.executable, "-m", "sipwarden.cli", "status", "-c", config, "--json"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert status.returncode == 0, status.stderr
            shown = json.loads(status.stdout)["reflection"]
            text = subprocess.run(
                [sys.executable, "-m", "sipwarden.cli", "status", "-c", config],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
        finally:
            proc.terminate()
            proc.wait(10)
        if enabled:
            assert got.answers == [] and shown["withheld"] == 1, shown
            assert shown["withheld-bytes"] > got.sent and shown["withheld:ratio"] == 1
            assert "reflection budget: 1 answers" in text, text
        else:
            assert got.firsts() == ["SIP/2.0 403 Forbidden"] and shown is None
            assert "reflection budget: off" in text, text


def test_an_answer_can_ask_for_a_stricter_ratio(tmp_path):
    """Deception's way (DESIGN: never more bytes than the source sent):
    ``Edge.send(flow, answer, ratio=1.0)``."""
    with running_edge(tmp_path) as run, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as victim:
        victim.bind(("127.0.0.8", 0))
        victim.settimeout(0.5)
        flow = Peer("udp", "127.0.0.8", victim.getsockname()[1])
        budget = run.edge.reflection
        run.call(budget.received, flow.host, 100, None, run.edge.clock())
        answer = b"SIP/2.0 200 OK\r\n" + b"x" * 104  # 120 bytes: within 1.5x, not 1.0x
        run.call(functools.partial(run.edge.send, flow, answer, ratio=1.0))
        with pytest.raises(TimeoutError):
            victim.recv(65535)
        run.call(run.edge.send, flow, answer)
        assert victim.recv(65535) == answer
