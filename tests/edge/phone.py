"""A phone for the namespace tests: REGISTER with digest auth through the
edge to a real Kamailio, from an address of the clients' namespace (the
brute-force, chaos and flood tests, and ``bench/flood.py``)."""

from __future__ import annotations

import secrets
import socket
import time
from typing import Any, Protocol

from sipwarden.sip import Message, answer_challenge, parse

from .harness import REALM, authorization
from .netns import Pair, in_namespace

PORT = 5060  # the edge's SIP port in every site


class HasPair(Protocol):
    """A site: its two namespaces."""

    @property
    def pair(self) -> Pair: ...


def digest(user: str, password: str, challenge: Any, uri: str = f"sip:{REALM}") -> str:
    """The Authorization a phone computes with ``password`` (the wrong one,
    for a failed login; the right one goes through harness.authorization)."""
    return answer_challenge(
        challenge,
        username=user,
        password=password,
        method="REGISTER",
        uri=uri,
        cnonce=secrets.token_hex(4),
    )


class Phone:
    """A SIP phone on address ``ip`` of the clients' namespace: REGISTER with
    digest auth through the edge to Kamailio, as a phone does it but without
    retransmissions (a lost request is a failed attempt: the strict count).
    Its socket is connected, so an ICMP port unreachable (nothing listens)
    shows: as silence to ``register`` and ``login``, as ConnectionRefusedError
    to ``unanswered`` and to the socket itself."""

    def __init__(self, site: HasPair, ip: str, user: str = "100") -> None:
        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((ip, 0))
            sock.connect((site.pair.edge_ip, PORT))
            return sock

        self.sock = in_namespace(site.pair.clients, make)
        self.ip, self.user = ip, user
        self.port = self.sock.getsockname()[1]
        self.call_id = f"{secrets.token_hex(8)}@{ip}"
        self.cseq = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, auth: str = "") -> int:
        """One REGISTER; its CSeq."""
        self.cseq += 1
        lines = [
            f"REGISTER sip:{REALM} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.ip}:{self.port};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{REALM}>;tag={self.port}",
            f"To: <sip:{self.user}@{REALM}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: <sip:{self.user}@{self.ip}:{self.port}>",
            "Expires: 600",
            "User-Agent: Yealink SIP-T46S 66.86.0.15",
            *([f"Authorization: {auth}"] if auth else []),
            "Content-Length: 0",
        ]
        self.sock.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        return self.cseq

    def register(self, auth: str = "", timeout: float = 1.0) -> Message | None:
        """One REGISTER and its final answer; None if nothing answered."""
        cseq = self.send(auth)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                answer = parse(self.sock.recv(65535))
            except (TimeoutError, ConnectionRefusedError):
                return None
            if answer.cseq.number == cseq and (answer.status or 0) >= 200:
                return answer
        return None

    def login(self, password: str | None = None, timeout: float = 1.0) -> int:
        """The whole login: REGISTER, the challenge, the credentials (the
        right password unless one is given); the final status, 0 for silence."""
        challenge = self.register(timeout=timeout)
        if challenge is None or challenge.status != 401:
            return 0 if challenge is None else challenge.status or 0
        offer = challenge.www_authenticate[0]
        auth = (
            authorization(self.user, offer)
            if password is None
            else digest(self.user, password, offer)
        )
        final = self.register(auth, timeout)
        return 0 if final is None else final.status or 0

    def unanswered(self, count: int, wait: float = 0.3) -> bool:
        """``count`` REGISTERs, and not one byte back (nor an ICMP error)."""
        for _ in range(count):
            self.send()
        self.sock.settimeout(wait)
        try:
            self.sock.recv(65535)
        except TimeoutError:
            return True
        return False
