"""The honeypot as a sans-I/O UAS: real callers' INVITEs in, actions out."""

from __future__ import annotations

import heapq
from typing import Any

import pytest

from sipwarden.config import HoneypotConfig
from sipwarden.deception.honeypot import Honeypot, Send, Wake
from sipwarden.deception.records import CallRecords
from sipwarden.sip import Message, SipError, parse
from sipwarden.values import Peer

from ..conftest import SCANNERS, TORTURE

SIPP = (SCANNERS / "captured" / "sipp_3.6.1_uac_INVITE_udp.sip").read_bytes()
SVCRACK = (SCANNERS / "captured" / "svcrack_0.3.8_INVITE_auth_pwpassword_udp.sip").read_bytes()
CALLER = Peer("udp", "203.0.113.9", 5060)
# the research's toll-fraud dial strings: one tail behind three trunk prefixes
TOLL_FRAUD = ("00972597562518", "011972597562518", "9011972597562518")
T0 = 1_000_000.0


def invite(number: str = "00972597562518", call: str = "1", cseq: int = 1) -> Message:
    """sipp's uac INVITE (with its SDP), dialling ``number``, Call-ID ``call``."""
    data = SIPP.replace(b"sip:service@", f"sip:{number}@".encode())
    data = data.replace(b"Call-ID: 1-19426@", f"Call-ID: {call}-19426@".encode())
    return parse(data.replace(b"CSeq: 1 INVITE", f"CSeq: {cseq} INVITE".encode()))


def in_dialog(method: str, response: bytes, cseq: int = 1, call: str = "1") -> Message:
    """A CANCEL, ACK or BYE from the caller, To carrying the tag of ``response``
    (an ACK to a final answer, a BYE) or not (a CANCEL)."""
    to = parse(response).get("to") if method != "CANCEL" else invite(call=call).get("to")
    lines = [
        f"{method} sip:00972597562518@127.0.0.1:15060 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-19426-1-0",
        "From: sipp <sip:sipp@127.0.0.1:5060>;tag=19426SIPpTag001",
        f"To: {to}",
        f"Call-ID: {call}-19426@127.0.0.1",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    return parse(("\r\n".join(lines) + "\r\n\r\n").encode())


def sends(actions: list[Any]) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def wakes(actions: list[Any]) -> list[Wake]:
    return [a for a in actions if isinstance(a, Wake)]


def status_of(send: Send) -> int:
    msg = parse(send.data)
    assert msg.status is not None
    return msg.status


class Edge:
    """What the edge does with the actions: sends (kept here) and timers."""

    def __init__(self, honeypot: Honeypot) -> None:
        self.honeypot = honeypot
        self.sent: list[tuple[float, Send]] = []
        self.timers: list[tuple[float, int, Any]] = []
        self.n = 0

    def take(self, actions: list[Any], now: float) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.sent.append((now, action))
            else:
                self.n += 1
                heapq.heappush(self.timers, (action.at, self.n, action.token))

    def receive(self, msg: Message, now: float, source: Peer = CALLER) -> None:
        self.take(self.honeypot.receive(msg, source, now), now)

    def run_until(self, until: float) -> None:
        while self.timers and self.timers[0][0] <= until:
            at, _, token = heapq.heappop(self.timers)
            self.take(self.honeypot.wake(token, at), at)

    def whats(self) -> list[str]:
        return [send.what for _, send in self.sent]


def test_a_full_call_rings_then_busy_and_is_forgotten_after_the_ack():
    honeypot = Honeypot(HoneypotConfig(hold=20))
    request = invite()
    actions = honeypot.receive(request, CALLER, T0)
    trying, ringing = sends(actions)
    (hold,) = wakes(actions)
    assert (status_of(trying), status_of(ringing), hold.at) == (100, 180, T0 + 20)
    assert trying.peer == ringing.peer == CALLER
    first, second = parse(trying.data), parse(ringing.data)
    assert first.to is not None and first.to.tag is None  # 100 adds no tag
    assert second.to is not None and second.to.tag and len(second.to.tag) >= 16
    for field in ("via", "from", "call-id", "cseq"):
        assert second.get(field) == request.get(field)
    assert "contact" not in second and "server" not in second and second.body == b""
    # early (the edge's timers run on another clock): set again for its time
    assert honeypot.wake(hold.token, T0 + 19) == [Wake(T0 + 20, hold.token)]
    # a millisecond early (the event loop rounds its timers): due, or the call would stall
    actions = honeypot.wake(hold.token, T0 + 20 - 0.001)
    (busy,) = sends(actions)
    assert status_of(busy) == 486 and parse(busy.data).get("to") == second.get("to")
    ack = in_dialog("ACK", busy.data)
    (forget,) = honeypot.receive(ack, CALLER, T0 + 20.1)
    assert isinstance(forget, Wake) and len(honeypot) == 1
    # a retransmitted INVITE in the grace time still gets the final answer
    (again,) = honeypot.receive(invite(), CALLER, T0 + 21)
    assert again.data == busy.data
    assert honeypot.wake(forget.token, forget.at) == [] and len(honeypot) == 0
    assert honeypot.counters["calls"] == 1 and honeypot.counters["final-486"] == 1


def test_the_answers_follow_the_config():
    config = HoneypotConfig(ringing=183, final="603", server="PBX", ring_after=1.5, hold=10)
    edge = Edge(Honeypot(config))
    edge.receive(invite(), T0)
    assert edge.whats() == ["100"]
    edge.run_until(T0 + 1.5)
    assert edge.whats() == ["100", "183"]
    edge.run_until(T0 + 11.4)
    assert edge.whats() == ["100", "183"]
    edge.run_until(T0 + 11.5)
    assert edge.whats() == ["100", "183", "603"]
    assert all(parse(send.data).get("server") == "PBX" for _, send in edge.sent)
    # no ACK: the 603 is retransmitted (0.5 s, then 1 s), then the call ends
    edge.run_until(T0 + 100)
    assert [(round(t - T0, 1), s.what) for t, s in edge.sent[3:]] == [(12.0, "603"), (13.0, "603")]
    assert len(edge.honeypot) == 0


def test_cancel_while_ringing_gets_200_and_487_and_no_final_answer():
    edge = Edge(Honeypot(HoneypotConfig(hold=15)))
    edge.receive(invite(), T0)
    edge.receive(in_dialog("CANCEL", edge.sent[1][1].data), T0 + 3)
    ok, terminated = (send for _, send in edge.sent[2:4])
    assert (status_of(ok), parse(ok.data).get("cseq")) == (200, "1 CANCEL")
    assert (status_of(terminated), parse(terminated.data).get("cseq")) == (487, "1 INVITE")
    assert parse(terminated.data).get("to") == parse(edge.sent[1][1].data).get("to")
    edge.receive(in_dialog("ACK", terminated.data), T0 + 3.1)
    edge.run_until(T0 + 100)
    assert edge.whats() == ["100", "180", "200", "487"]  # the hold's end found it cancelled
    # a CANCEL for no call, and a late one
    (unknown,) = sends(edge.honeypot.receive(in_dialog("CANCEL", b"", call="9"), CALLER, T0))
    assert status_of(unknown) == 481


def test_retransmitted_invites_get_the_last_answer_and_do_not_restart_the_call():
    edge = Edge(Honeypot(HoneypotConfig(hold=15)))
    edge.receive(invite(), T0)
    ringing = edge.sent[-1][1]
    edge.receive(invite(), T0 + 0.5)
    edge.receive(invite(), T0 + 1.5)
    assert [s.data for _, s in edge.sent[2:]] == [ringing.data, ringing.data]
    assert edge.honeypot.counters["retransmissions"] == 2 and len(edge.timers) == 1
    edge.run_until(T0 + 15)
    assert edge.whats()[-1] == "486" and edge.sent[-1][0] == T0 + 15  # the hold ran from T0
    # the same Call-ID with a new CSeq and no To tag (an answer to a challenge): a new call
    edge.receive(invite(cseq=2), T0 + 16)
    assert edge.whats()[-2:] == ["100", "180"] and edge.honeypot.counters["calls"] == 2


def test_answered_with_no_media_then_our_bye():
    edge = Edge(Honeypot(HoneypotConfig(final="200", hold=5, bye_after=30)))
    request = invite()
    edge.receive(request, T0)
    edge.run_until(T0 + 5)
    answered = parse(edge.sent[-1][1].data)
    assert answered.status == 200 and answered.get("content-type") == "application/sdp"
    assert b"m=audio 0 RTP/AVP" in answered.body  # its one stream refused: no media anywhere
    assert answered.get("contact") == "<sip:127.0.0.1:15060>"  # what the caller dialled
    edge.receive(in_dialog("ACK", bytes(answered)), T0 + 5.2)
    edge.run_until(T0 + 35.1)
    assert edge.whats() == ["100", "180", "200"]  # the hold after the ACK, not after the 200
    edge.run_until(T0 + 35.2)
    assert edge.whats() == ["100", "180", "200", "bye"]
    assert edge.sent[-1][0] == pytest.approx(T0 + 35.2)
    bye = parse(edge.sent[-1][1].data)
    assert bye.method == "BYE" and str(bye.uri) == "sip:sipp@127.0.0.1:5060"  # its Contact
    assert bye.get("call-id") == request.get("call-id")
    assert bye.to is not None and bye.to.tag == "19426SIPpTag001"
    assert bye.from_ is not None and answered.to is not None
    assert bye.from_.tag == answered.to.tag
    assert bye.cseq is not None and bye.cseq.method == "BYE" and bye.via is not None
    # the caller's 200 to our BYE ends the call: no retransmission of the BYE
    reply = (
        f"SIP/2.0 200 OK\r\nVia: {bye.get('via')}\r\nFrom: {bye.get('from')}\r\n"
        f"To: {bye.get('to')}\r\nCall-ID: {bye.get('call-id')}\r\nCSeq: 1 BYE\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    edge.receive(parse(reply.encode()), T0 + 35.3)
    edge.run_until(T0 + 1000)
    assert edge.whats() == ["100", "180", "200", "bye"] and len(edge.honeypot) == 0


def test_a_200_never_acked_is_retransmitted_a_bounded_number_of_times_then_hung_up():
    edge = Edge(Honeypot(HoneypotConfig(final="200", hold=5, bye_after=10, retransmits=3)))
    edge.receive(invite(), T0)
    edge.run_until(T0 + 1000)
    # the 200 four times (0.5, 1, 2 s apart), then BYE four times, then forgotten
    assert edge.whats() == ["100", "180"] + ["200"] * 4 + ["bye"] * 4
    assert len(edge.honeypot) == 0


def test_200_without_a_body_by_config():
    edge = Edge(Honeypot(HoneypotConfig(final="200", answer_sdp=False, hold=1)))
    edge.receive(invite(), T0)
    edge.run_until(T0 + 1)
    answered = parse(edge.sent[-1][1].data)
    assert answered.status == 200 and answered.body == b"" and "content-type" not in answered


def test_the_callers_bye_gets_200_and_an_unknown_bye_481():
    edge = Edge(Honeypot(HoneypotConfig(final="200", hold=1)))
    edge.receive(invite(), T0)
    edge.run_until(T0 + 1)
    answered = edge.sent[-1][1]
    edge.receive(in_dialog("ACK", answered.data), T0 + 1.1)
    edge.receive(in_dialog("BYE", answered.data, cseq=2), T0 + 2)
    assert edge.whats()[-1] == "200" and parse(edge.sent[-1][1].data).get("cseq") == "2 BYE"
    edge.run_until(T0 + 1000)
    assert "bye" not in edge.whats() and len(edge.honeypot) == 0
    edge.receive(in_dialog("BYE", answered.data, cseq=3), T0 + 1001)
    assert status_of(edge.sent[-1][1]) == 481


def test_calls_in_progress_are_bounded_the_oldest_forgotten():
    honeypot = Honeypot(HoneypotConfig(max_calls=3))
    for n in range(5):
        honeypot.receive(invite(call=str(n)), CALLER, T0 + n)
    assert len(honeypot) == 3 and honeypot.counters["evicted"] == 2
    # the forgotten call's timer does nothing; a kept one's answers
    assert honeypot.wake(((CALLER.host, "0-19426@127.0.0.1", "19426SIPpTag001"), 1), T0 + 99) == []
    assert sends(honeypot.wake(((CALLER.host, "4-19426@127.0.0.1", "19426SIPpTag001"), 5), T0 + 99))


def test_ended_calls_are_forgotten_even_when_their_timers_are_lost():
    honeypot = Honeypot(HoneypotConfig(grace=10))
    actions = honeypot.receive(invite(call="a"), CALLER, T0)
    honeypot.receive(in_dialog("CANCEL", b"", call="a"), CALLER, T0 + 1)
    honeypot.receive(invite(call="b"), CALLER, T0 + 20)  # no wake was ever run
    assert len(honeypot) == 1 and wakes(actions)


def test_one_call_per_source_even_with_the_same_call_id():
    honeypot = Honeypot(HoneypotConfig())
    honeypot.receive(invite(), CALLER, T0)
    honeypot.receive(invite(), Peer("udp", "198.51.100.4", 5060), T0)
    assert len(honeypot) == 2 and honeypot.counters["retransmissions"] == 0


def test_other_methods_and_stray_responses_are_ignored_silently():
    honeypot = Honeypot(HoneypotConfig())
    for name in ("svmap_0.3.8_OPTIONS_udp.sip", "svcrack_0.3.8_REGISTER_initial_udp.sip"):
        assert (
            honeypot.receive(parse((SCANNERS / "captured" / name).read_bytes()), CALLER, T0) == []
        )
    stray = parse(
        b"SIP/2.0 180 Ringing\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    assert honeypot.receive(stray, CALLER, T0) == []
    assert honeypot.counters["ignored"] == 3 and len(honeypot) == 0


def test_malformed_and_odd_requests_never_raise():
    honeypot = Honeypot(HoneypotConfig(final="200", hold=1))
    edge = Edge(honeypot)
    samples = [*TORTURE.glob("*.dat"), *(SCANNERS / "captured").glob("*.sip")]
    odd = [
        b"INVITE sip:1@x SIP/2.0\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n",  # no From, no Via
        b"INVITE sip:1@x SIP/2.0\r\nFrom: <sip:a@b>;tag=1\r\nCall-ID: c\r\nCSeq: x\r\n\r\n",
        b"INVITE sip:1@x SIP/2.0\r\nFrom: <sip:a@b>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
        b"INVITE sip:1@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: bad<<\r\n"
        b"Call-ID: d\r\nCSeq: 1 INVITE\r\n\r\n",
        b"INVITE tel:+442037690000 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\r\n"
        b"From: <sip:a@b>;tag=2\r\nTo: <tel:+442037690000>\r\nCall-ID: e\r\nCSeq: 1 INVITE\r\n"
        b"Contact: <mailto:x@y>\r\n\r\n",
    ]
    parsed = 0
    for data in [*(path.read_bytes() for path in samples), *odd]:
        try:
            msg = parse(data)
        except SipError:
            continue
        parsed += 1
        edge.receive(msg, T0)
    edge.run_until(T0 + 10_000)
    assert parsed > 50 and honeypot.counters["calls"] >= 10 and honeypot.counters["malformed"] >= 2
    assert len(honeypot) == 0  # every call ran to its end and was forgotten
    # the tel: call was answered and hung up with a BYE to its From (its Contact is no SIP URI)
    byes = [parse(s.data) for _, s in edge.sent if s.what == "bye"]
    assert any(str(bye.uri) == "sip:a@b" for bye in byes)


def test_records_one_per_source_and_number_with_the_classifiers_reading():
    def classify(number: str) -> tuple[str | None, str | None, str | None]:
        for prefix in ("9011", "011", "00"):
            if number.startswith(prefix):
                return "+" + number[len(prefix) :], prefix, "PS"
        return number, None, None

    honeypot = Honeypot(HoneypotConfig(), CallRecords(classify))
    other = Peer("udp", "198.51.100.4", 5099)
    for n, number in enumerate(TOLL_FRAUD):
        honeypot.receive(invite(number, call=str(n)), CALLER, T0 + n)
        honeypot.receive(invite(number, call=str(n)), CALLER, T0 + n + 0.5)  # retransmission
    honeypot.receive(invite(TOLL_FRAUD[0], call="9"), CALLER, T0 + 9)
    honeypot.receive(parse(SVCRACK), other, T0 + 10)
    records = {(r["source"], r["number"]): r for r in honeypot.records.drain()}
    assert len(records) == 4 and len(honeypot.records) == 0
    first = records[(CALLER.host, TOLL_FRAUD[0])]
    assert (first["count"], first["first_seen"], first["last_seen"]) == (2, T0, T0 + 9)
    assert {records[(CALLER.host, n)]["normalised"] for n in TOLL_FRAUD} == {"+972597562518"}
    assert [records[(CALLER.host, n)]["prefix"] for n in TOLL_FRAUD] == ["00", "011", "9011"]
    assert first["country"] == "PS" and first["to_user"] == TOLL_FRAUD[0]
    assert (first["from_user"], first["from_tag"]) == ("sipp", "19426SIPpTag001")
    assert (first["media_address"], first["media_port"]) == ("127.0.0.1", 6000)
    assert (first["via"], first["contact"]) == ("127.0.0.1:5060", "sip:sipp@127.0.0.1:5060")
    assert (first["source_port"], first["transport"], first["digest_user"]) == (5060, "udp", None)
    # svcrack's R-URI has no user: the To user is the number; its digest user is kept
    cracker = records[(other.host, "100")]
    assert (cracker["user_agent"], cracker["digest_user"]) == ("friendly-scanner", "100")
    assert (cracker["media_address"], cracker["normalised"], cracker["prefix"]) == (
        None,
        "100",
        None,
    )


def test_records_are_bounded_between_drains():
    records = CallRecords(max_keys=2)
    for n in range(5):
        records.observe(invite(f"00{n}1234567"), CALLER, T0)
    records.observe(invite("0001234567"), CALLER, T0 + 1)  # a known key still counts
    drained = records.drain()
    assert len(drained) == 2 and records.dropped == 3
    assert sorted(r["count"] for r in drained) == [1, 2]


def test_a_broken_classifier_loses_no_call():
    def broken(number: str) -> tuple[str | None, str | None, str | None]:
        raise RuntimeError("bug")

    records = CallRecords(broken)
    records.observe(invite(), CALLER, T0)
    (record,) = records.drain()
    assert (record["normalised"], record["prefix"], record["country"]) == (
        TOLL_FRAUD[0],
        None,
        None,
    )
