"""Reflection attacks, as a spoofer sends them: a request written in a
victim's name, whose answers all go to the victim, who never answers.

The victim is a UDP socket on its own loopback address (127.0.0.N: a
source the edge has never seen verified) that sends one attack message and
then only receives. What it got back, against what it sent, is the ratio
a spoofer gains. Used by tests/edge/test_reflection.py and bench/reflection.py.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

from sipwarden.sip import parse

from .harness import REALM, UdpPhone, authorization, register_request

# the case, to an extension that does not exist: compact headers, no
# Max-Forwards (111 bytes there, about 150 here); the PBX's 404 becomes the
# uniform challenge
COMPACT_INVITE = (
    "INVITE sip:7@{realm} SIP/2.0\r\nv:SIP/2.0/UDP {host}:{port};branch=z9hG4bK{n}\r\n"
    "f:<sip:a@b>;tag={n}\r\nt:<sip:7@{realm}>\r\ni:{n}\r\nCSeq:1 INVITE\r\n\r\n"
)
# a REGISTER as short as it gets: the PBX challenges it (for any user)
REGISTER = (
    "REGISTER sip:{realm} SIP/2.0\r\nv:SIP/2.0/UDP {host}:{port};branch=z9hG4bK{n}\r\n"
    "f:<sip:100@{realm}>;tag={n}\r\nt:<sip:100@{realm}>\r\ni:{n}\r\nCSeq:1 REGISTER\r\n\r\n"
)
# OPTIONS, the scanners' favourite (the policy drops it from untrusted sources)
OPTIONS = (
    "OPTIONS sip:{realm} SIP/2.0\r\nv:SIP/2.0/UDP {host}:{port};branch=z9hG4bK{n}\r\n"
    "f:<sip:a@b>;tag={n}\r\nt:<sip:{realm}>\r\ni:{n}\r\nCSeq:1 OPTIONS\r\n\r\n"
)
# to a registered user whose phone does not answer: 100 Trying, then the
# PBX's 408 retransmitted until an ACK that never comes
INVITE_REGISTERED = (
    "INVITE sip:100@{realm} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{n}\r\n"
    "Max-Forwards: 70\r\nFrom: <sip:a@b>;tag={n}\r\nTo: <sip:100@{realm}>\r\n"
    "Call-ID: {n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)
# deception's answers (issue 16), to sources hostile by fingerprint (the
# attack tool's User-Agent): svwar's REGISTER gets the 200 OK; a guess that
# carries credentials the challenge; a toll-fraud INVITE the honeypot's 100,
# 180, then after the hold its 486, retransmitted until an ACK that never comes
HOSTILE_REGISTER = (
    "REGISTER sip:{realm} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{n};rport\r\n"
    "Max-Forwards: 70\r\nFrom: <sip:101@{realm}>;tag={n}\r\nTo: <sip:101@{realm}>\r\n"
    "Call-ID: {n}\r\nCSeq: 1 REGISTER\r\nContact: <sip:101@{host}:{port}>\r\n"
    "User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"
)
HOSTILE_GUESS = HOSTILE_REGISTER.replace(
    "User-Agent:",
    'Authorization: Digest username="101",realm="{realm}",nonce="abcdef",'
    'uri="sip:{realm}",response="0123456789abcdef0123456789abcdef"\r\nUser-Agent:',
)
HOSTILE_INVITE = (
    "INVITE sip:00972597562518@{realm} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{n};rport\r\nMax-Forwards: 70\r\n"
    "From: <sip:1000@{realm}>;tag={n}\r\nTo: <sip:00972597562518@{realm}>\r\n"
    "Call-ID: {n}\r\nCSeq: 1 INVITE\r\nContact: <sip:1000@{host}:{port}>\r\n"
    "User-Agent: friendly-scanner\r\nContent-Type: application/sdp\r\nContent-Length: 111\r\n\r\n"
    "v=0\r\no=- 1 1 IN IP4 192.0.2.99\r\ns=-\r\nc=IN IP4 192.0.2.99\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
DECEPTION_ATTACKS = {
    "hostile REGISTER (200 OK)": HOSTILE_REGISTER,
    "hostile guess (challenge)": HOSTILE_GUESS,
    "toll-fraud INVITE (honeypot)": HOSTILE_INVITE,
}
ATTACKS = {
    "compact INVITE": COMPACT_INVITE,
    "REGISTER": REGISTER,
    "OPTIONS": OPTIONS,
    "INVITE to a registered user": INVITE_REGISTERED,
}


@dataclass
class Reflected:
    """What one victim sent (the spoofer's bytes) and got back."""

    sent: int
    answers: list[bytes] = field(default_factory=list)

    @property
    def received(self) -> int:
        return sum(map(len, self.answers))

    @property
    def ratio(self) -> float:
        return self.received / self.sent

    def firsts(self) -> list[str]:
        return [a.split(b"\r\n", 1)[0].decode(errors="replace") for a in self.answers]


def reflect(template: str, edge_port: int, host: str, seconds: float, *, n: str = "1") -> Reflected:
    """Send ``template`` once from ``host`` (a fresh loopback address) to the
    edge, then only receive for ``seconds``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as victim:
        victim.bind((host, 0))
        port = victim.getsockname()[1]
        tag = f"{n}{port:x}"  # short (the INVITE had 111 bytes), unique per victim
        data = template.format(realm=REALM, host=host, port=port, n=tag).encode()
        victim.sendto(data, ("127.0.0.1", edge_port))
        got = Reflected(len(data))
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            victim.settimeout(left)
            try:
                got.answers.append(victim.recv(65535))
            except TimeoutError:
                break
    return got


def register_silent_phone(edge_port: int, user: str = "100") -> UdpPhone:
    """A phone that registers ``user`` through the edge (digest auth, from
    127.0.0.1), then never answers: the callee of ``INVITE_REGISTERED``."""
    phone = UdpPhone()
    phone.send(register_request(user, port=phone.port, contact_host="127.0.0.1"), edge_port)
    challenge = parse(phone.recv() or b"")
    auth = authorization(user, challenge.www_authenticate[0])
    phone.send(
        register_request(user, port=phone.port, contact_host="127.0.0.1", cseq=2, auth=auth),
        edge_port,
    )
    answer = phone.recv()
    if answer is None or parse(answer).status != 200:
        raise AssertionError(f"the phone did not register: {answer!r}")
    return phone
