"""A small registrar and user agent server, sans I/O.

It stands in for the PBX in fast tests and in ``sipwarden demo``: REGISTER
with digest authentication (RFC 2617/3261 MD5, with or without qop=auth),
in-memory bindings that keep their Path (RFC 3327), and a UAS that answers
OPTIONS and INVITE (180, then 200 with SDP), absorbs ACK, and answers BYE and
CANCEL (with 487 for the cancelled INVITE). It shares nothing with the edge
but the SIP core; the real-backend tests use Kamailio instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import NamedTuple

from ...sip import Message, SipError, check_digest, make_response, parse
from ...values import Peer


class Binding(NamedTuple):
    contact: str  # the Contact URI as registered
    path: tuple[str, ...]  # Path values, top first: the route to reach the contact
    expires_at: float
    source: Peer


class Answer(NamedTuple):
    flow: Peer
    data: bytes


SDP_ANSWER = (
    b"v=0\r\no=sipwarden 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class Registrar:
    """See the module docstring. ``users`` maps user name to password."""

    def __init__(
        self,
        realm: str,
        users: dict[str, str],
        *,
        clock: Callable[[], float] = time.monotonic,
        server: str = "sipwarden-registrar",
        min_expires: int = 60,
        max_expires: int = 3600,
        reveal_unknown: bool = False,
    ) -> None:
        self.realm = realm
        self.users = dict(users)
        self.clock = clock
        self.server = server
        self.min_expires = min_expires
        self.max_expires = max_expires
        # answer REGISTER for a user that does not exist with 404, as a PBX
        # without Asterisk's alwaysauthreject does (the demo's leaky PBX)
        self.reveal_unknown = reveal_unknown
        self.bindings: dict[str, list[Binding]] = {}
        self.address: str | None = None  # host:port it is served on (set by its server)
        self.failures = 0
        self._secret = secrets.token_bytes(16)
        self._cancelled: dict[str, None] = {}  # recent cancelled Call-IDs, oldest first

    # ------------------------------------------------------------- digest

    def _nonce(self) -> str:
        stamp = f"{int(self.clock()):x}"
        mac = hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:16]
        return f"{stamp}.{mac}"

    def _nonce_ok(self, nonce: str) -> bool:
        stamp, _, mac = nonce.partition(".")
        good = hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:16]
        if not hmac.compare_digest(mac, good):
            return False
        try:
            return self.clock() - int(stamp, 16) < 300
        except ValueError:
            return False

    def _authorised(self, msg: Message) -> str | None:
        """The authenticated user name, or None."""
        try:
            auth = msg.authorization
        except SipError:
            return None
        if auth is None or not auth.is_digest:
            return None
        user, nonce, response = auth.username, auth.nonce, auth.response
        if user is None or nonce is None or response is None or user not in self.users:
            return None
        if auth.realm != self.realm or not self._nonce_ok(nonce):
            return None
        good = check_digest(auth, password=self.users[user], method=msg.method or "")
        return user if good else None

    def _challenge(self, msg: Message, flow: Peer) -> list[Answer]:
        challenge = (
            f'Digest realm="{self.realm}", nonce="{self._nonce()}", algorithm=MD5, qop="auth"'
        )
        return self._answer(msg, flow, 401, headers=[("WWW-Authenticate", challenge)])

    # ------------------------------------------------------------ messages

    def _answer(
        self,
        msg: Message,
        flow: Peer,
        status: int,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        to_tag: str | None = None,
    ) -> list[Answer]:
        extra = [*(headers or []), ("Server", self.server)]
        if body:
            extra.append(("Content-Type", "application/sdp"))
        reply = make_response(msg, status, to_tag=to_tag or _tag(msg), headers=extra, body=body)
        return [Answer(flow, reply.to_bytes())]

    def handle(self, data: bytes, source: Peer) -> list[Answer]:
        """Answer one message from ``source``; malformed input gets nothing."""
        try:
            msg = parse(data).validate()
        except SipError:
            return []
        if not msg.is_request:
            return []
        flow = reply_flow(msg, source)
        method = msg.method
        if method == "REGISTER":
            return self._register(msg, flow, source)
        if method == "OPTIONS":
            return self._answer(
                msg, flow, 200, headers=[("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER")]
            )
        if method == "INVITE":
            if msg.to is not None and msg.to.tag is not None:  # re-INVITE
                return self._answer(
                    msg, flow, 200, body=SDP_ANSWER, headers=[("Contact", self._contact(msg))]
                )
            if msg.call_id in self._cancelled:
                return self._answer(msg, flow, 487)
            # a UAS copies Record-Route into the answers that set up the dialog (RFC 3261 §12.1.1)
            dialog = [
                *(("Record-Route", v) for v in msg.get_all("record-route")),
                ("Contact", self._contact(msg)),
            ]
            return [
                *self._answer(msg, flow, 100),
                *self._answer(msg, flow, 180, headers=dialog),
                *self._answer(msg, flow, 200, body=SDP_ANSWER, headers=dialog),
            ]
        if method == "ACK":
            return []
        if method == "CANCEL":
            if len(self._cancelled) >= 1024:  # bounded: forget the oldest
                del self._cancelled[next(iter(self._cancelled))]
            self._cancelled[msg.call_id or ""] = None
            return self._answer(msg, flow, 200)
        if method == "BYE":
            return self._answer(msg, flow, 200)
        return self._answer(msg, flow, 501)

    def _contact(self, msg: Message) -> str:
        """Its own address once served (as Asterisk answers), else the R-URI's."""
        uri = msg.uri
        where = self.address or f"{uri.host}{'' if uri.port is None else f':{uri.port}'}"
        return f"<sip:{uri.user or 'pbx'}@{where}>"

    def _register(self, msg: Message, flow: Peer, source: Peer) -> list[Answer]:
        user = self._authorised(msg)
        if user is None:
            to = msg.to
            if self.reveal_unknown and to is not None and to.uri is not None:
                if to.uri.user not in self.users:
                    return self._answer(msg, flow, 404)
            if msg.authorization is not None:
                self.failures += 1
            return self._challenge(msg, flow)
        to = msg.to
        if to is None or to.uri is None or to.uri.user != user:
            return self._answer(msg, flow, 403)
        now = self.clock()
        current = [b for b in self.bindings.get(user, []) if b.expires_at > now]
        default = msg.expires if msg.expires is not None else 3600
        path = tuple(msg.get_all("path"))
        for contact in msg.contacts:
            if contact.wildcard:
                if default == 0:
                    current = []
                continue
            assert contact.uri is not None
            expires = contact.expires if contact.expires is not None else default
            uri = contact.uri.raw
            current = [b for b in current if b.contact != uri]
            if expires > 0:
                expires = max(self.min_expires, min(self.max_expires, expires))
                current.append(Binding(uri, path, now + expires, source))
        self.bindings[user] = current
        contacts = [
            ("Contact", f"<{b.contact}>;expires={int(b.expires_at - now)}") for b in current
        ]
        return self._answer(msg, flow, 200, headers=contacts)

    def lookup(self, user: str) -> list[Binding]:
        now = self.clock()
        return [b for b in self.bindings.get(user, []) if b.expires_at > now]


def _tag(msg: Message) -> str:
    """A To tag that is the same for retransmissions of one request."""
    return hashlib.blake2b(
        (msg.call_id or "").encode("utf-8", "surrogateescape"), digest_size=5
    ).hexdigest()


def reply_flow(msg: Message, source: Peer) -> Peer:
    """Where a UAS sends its responses (RFC 3261 §18.2.2, RFC 3581)."""
    if source.is_stream:
        return source
    via = msg.via
    assert via is not None
    host = via.received or via.host
    port = via.rport or via.port or 5060
    try:
        return Peer("udp", host.strip("[]"), int(port))
    except ValueError:
        return source
