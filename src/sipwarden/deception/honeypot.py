"""The honeypot: a fake PBX that lets a hostile source "call", answers like
a PBX would, and connects nothing (issue 16, item 5).

Why: a toll-fraud caller that gets silence moves on; one that hears its
call ring, then busy (or answered, then hung up) keeps dialling into a
place where nothing costs anything, and tells us what it dials. Every call
is recorded (``records.CallRecords``: the number, the tool, the media host).

What a call gets (sans-I/O: ``receive`` and ``wake`` return actions, the
edge carries them out; the clock is passed in):
- an INVITE: ``100 Trying`` at once, ``180 Ringing`` (or ``183``, by
  config) at once or ``ring_after`` later, a hold of ``hold`` seconds, then
  the final answer: ``486`` or ``603``, or ``200`` with an SDP whose one
  stream is refused (port 0: no media to send anywhere) or no body, and
  after ``bye_after`` seconds our BYE;
- a retransmitted INVITE gets the last answer again; the call goes on as
  it was (a retransmission never restarts the hold);
- CANCEL: ``200`` to it and ``487`` to the INVITE (while ringing; after the
  final answer, ``200`` only); ACK is absorbed (it stops our
  retransmissions of the final answer); BYE: ``200``; a CANCEL or BYE for
  no call we know: ``481``; the answer to our BYE ends the call;
- anything else (OPTIONS, REGISTER, responses we did not ask for): no
  answer, counted: discovery stays silent.

Responses are transaction-correct (``sip.make_response``: Via, From,
Call-ID and CSeq echoed, To with our tag, a random one per call so that it
can serve as the reflection budget's proof of return routability); they
carry no Contact but the 200's, which names the address the caller dialled
(every request there comes back here), and a Server header only if
configured.

Actions (small immutable values, as the proxy's ``Send``/``Drop``):
``Send(peer, data, what)``: bytes to send to that peer now (``what`` names
it for counters: "100", "180", "486", "bye"...); ``Wake(at, token)``: call
``wake(token, now)`` at ``at``. Nothing relies on a send happening: the edge
passes each ``Send`` through the reflection budget, which may withhold it; a
withheld final answer is resent on the next retransmission timer or
INVITE, like a lost one.

Bounds: at most ``max_calls`` calls in progress (the oldest forgotten
first, counted as ``evicted``); a call is forgotten ``grace`` seconds after
its end; the final answer and our BYE are retransmitted at most
``retransmits`` times (Timer G/E: 0.5 s, doubling, capped at 4 s). A
malformed or odd request never raises: it is ignored and counted.
"""

from __future__ import annotations

import secrets
from collections import Counter, OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NamedTuple

from ..sip import Message, SipError, make_response
from ..values import Peer
from .records import CallRecords

if TYPE_CHECKING:
    from ..config import HoneypotConfig

T1: Final = 0.5  # RFC 3261's round-trip estimate: the first retransmission interval
T2: Final = 4.0  # the longest retransmission interval
# a Wake this early is due all the same: the caller's timers run on the event
# loop's monotonic clock, rounded to the millisecond, ``now`` is the wall clock
EARLY: Final = 0.01
# a 200 that refuses its one stream (port 0, RFC 3264 §6): "answered", no media
NO_MEDIA_SDP: Final = (
    "v=0\r\no=- {sid} 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n"
)


class Send(NamedTuple):
    """Bytes to send to ``peer`` now (through the reflection budget)."""

    peer: Peer
    data: bytes
    what: str  # "100", "180", "183", "486", "603", "200", "487", "481", "bye"


class Wake(NamedTuple):
    """Call ``Honeypot.wake(token, now)`` at ``at`` (epoch seconds)."""

    at: float
    token: Hashable


Action = Send | Wake

# a call's states
TRYING, RINGING, ANSWERED, COMPLETED, BYE_SENT, ENDED = (
    "trying",
    "ringing",
    "answered",  # 200 sent: ACK awaited, our BYE due
    "completed",  # a final answer sent (486/603/487): ACK awaited
    "bye-sent",
    "ended",
)

CallKey = tuple[str, str, str]  # (source host, Call-ID, the caller's From tag)


@dataclass(slots=True)
class Call:
    """One call in progress: what its answers are built from, and where it stands."""

    key: CallKey
    serial: int  # tells this call's timers from an older call's with the same key
    peer: Peer
    invite: Message
    cseq: int  # the INVITE's CSeq number
    to_tag: str
    local: str  # our host[:port] as the caller dialled it (Contact, our BYE's Via)
    state: str = TRYING
    due: float = 0.0  # when its next timer is due
    last: bytes = b""  # the last answer to the INVITE (sent again on a retransmission)
    last_what: str = ""
    resend: bytes = b""  # what the retransmission timer sends (final answer or our BYE)
    resend_what: str = ""
    resends_left: int = 0
    interval: float = T1


class Honeypot:
    """The fake PBX. ``receive`` each message a hostile source sent it (a
    parsed request, or a response to our BYE); ``wake`` when a ``Wake``
    falls due; ``records`` holds the calls to write; ``counters`` what it did."""

    def __init__(
        self,
        config: HoneypotConfig,
        records: CallRecords | None = None,
    ) -> None:
        self.config = config
        self.ringing = int(config.ringing)
        self.final = int(config.final)
        self.records = records if records is not None else CallRecords(max_keys=config.max_records)
        self.counters: Counter[str] = Counter()
        self._calls: OrderedDict[CallKey, Call] = OrderedDict()
        self._serial = 0
        self._server = (("Server", config.server),) if config.server else ()

    def __len__(self) -> int:
        return len(self._calls)

    # ---------------------------------------------------------------- input

    def receive(self, msg: Message, source: Peer, now: float) -> list[Action]:
        """The actions for one message from ``source``; never raises."""
        try:
            if msg.is_request:
                return self._request(msg, source, now)
            return self._response(msg, source, now)
        except (SipError, ValueError, TypeError, AttributeError, IndexError):
            # malformed in a way parse() tolerated (a bad From, a CSeq for
            # another method...): no answer; a hostile source learns nothing
            self.counters["malformed"] += 1
            return []

    def wake(self, token: Hashable, now: float) -> list[Action]:
        """A ``Wake`` fell due: the call's next step (nothing if the call
        ended or was forgotten since, or the timer is stale)."""
        if not isinstance(token, tuple) or len(token) != 2:
            return []
        key, serial = token
        call = self._calls.get(key)
        if call is None or call.serial != serial:
            return []
        if now + EARLY < call.due:  # early (the caller's timer, another clock): set again
            return [Wake(call.due, token)]
        try:
            return self._step(call, now)
        except (SipError, ValueError, TypeError, AttributeError, IndexError):
            self.counters["malformed"] += 1  # (a Contact we could not read for our BYE)
            return self._end(call, now)

    def _step(self, call: Call, now: float) -> list[Action]:
        if call.state == TRYING:
            return self._ring(call, now)
        if call.state == RINGING:
            return self._answer(call, now)
        if call.state == ANSWERED and not call.resend:
            return self._send_bye(call, now)
        if call.state in (ANSWERED, COMPLETED, BYE_SENT) and call.resend:
            return self._retransmit(call, now)
        if call.state == ENDED:
            del self._calls[call.key]
        return []

    # -------------------------------------------------------------- requests

    def _request(self, msg: Message, source: Peer, now: float) -> list[Action]:
        method = (msg.method or "").upper()
        if method not in ("INVITE", "ACK", "CANCEL", "BYE"):
            self.counters["ignored"] += 1
            return []
        key = _key(msg, source)
        if key is None:
            self.counters["malformed"] += 1
            return []
        call = self._calls.get(key)
        if method == "INVITE":
            return self._invite(msg, source, now, key, call)
        if method == "ACK":
            self.counters["ack"] += 1
            return self._acked(call, now) if call is not None else []
        if method == "CANCEL":
            return self._cancel(msg, source, now, call)
        return self._bye(msg, source, now, call)

    def _invite(
        self, msg: Message, source: Peer, now: float, key: CallKey, call: Call | None
    ) -> list[Action]:
        cseq = msg.cseq  # (these views raise on a malformed value: no call then)
        if cseq is None or msg.via is None or msg.to is None:
            self.counters["malformed"] += 1
            return []
        if call is not None and cseq.number == call.cseq:
            # a retransmission: the last answer again, the call as it was
            self.counters["retransmissions"] += 1
            return [Send(source, call.last, call.last_what)] if call.last else []
        if call is not None and msg.to is not None and msg.to.tag == call.to_tag:
            # a re-INVITE inside our dialog: 200 again if answered, else "pending"
            self.counters["reinvite"] += 1
            if call.state in (ANSWERED, BYE_SENT):
                return [self._respond(msg, source, 200, call, body=self._sdp(call), contact=True)]
            return [self._respond(msg, source, 491, call)]
        # a new call (or a new INVITE on the same Call-ID and From tag: an
        # answer to a challenge, another try): it starts over
        local = _local(msg, source)
        trying = make_response(msg, 100, headers=self._server).to_bytes()
        self._forget_due(now)
        if call is not None:
            del self._calls[key]
        self._serial += 1
        call = Call(
            key=key,
            serial=self._serial,
            peer=source,
            invite=msg,
            cseq=cseq.number,
            to_tag=secrets.token_hex(8),
            local=local,
        )
        self._calls[key] = call
        self._bound()
        self.counters["calls"] += 1
        self.records.observe(msg, source, now)
        call.last, call.last_what = trying, "100"
        actions: list[Action] = [Send(source, trying, "100")]
        if self.config.ring_after > 0:
            call.due = now + self.config.ring_after
            return [*actions, Wake(call.due, (key, call.serial))]
        return [*actions, *self._ring(call, now)]

    def _ring(self, call: Call, now: float) -> list[Action]:
        ring = self._answer_bytes(call, self.ringing)
        call.state, call.last, call.last_what = RINGING, ring, str(self.ringing)
        call.due = now + self.config.hold
        return [Send(call.peer, ring, call.last_what), Wake(call.due, (call.key, call.serial))]

    def _answer(self, call: Call, now: float) -> list[Action]:
        """The hold is over: the final answer."""
        if self.final == 200:
            final = self._answer_bytes(call, 200, body=self._sdp(call), contact=True)
            call.state = ANSWERED
        else:
            final = self._answer_bytes(call, self.final)
            call.state = COMPLETED
        self.counters[f"final-{self.final}"] += 1
        return self._final(call, final, str(self.final), now)

    def _final(self, call: Call, final: bytes, what: str, now: float) -> list[Action]:
        call.last, call.last_what = final, what
        call.resend, call.resend_what = final, what
        call.resends_left, call.interval = self.config.retransmits, T1
        return [Send(call.peer, final, what), *self._next_timer(call, now)]

    def _next_timer(self, call: Call, now: float) -> list[Action]:
        """The next retransmission, or, with none left, what follows."""
        if call.resends_left > 0:
            call.due = now + call.interval
        elif call.state == ANSWERED:
            call.resend = b""  # no ACK came: hang up all the same
            call.due = now + self.config.bye_after
        else:
            return self._end(call, now)
        return [Wake(call.due, (call.key, call.serial))]

    def _retransmit(self, call: Call, now: float) -> list[Action]:
        call.resends_left -= 1
        call.interval = min(call.interval * 2, T2)
        self.counters["retransmitted"] += 1
        return [Send(call.peer, call.resend, call.resend_what), *self._next_timer(call, now)]

    def _acked(self, call: Call, now: float) -> list[Action]:
        if call.state == ANSWERED and call.resend:
            call.resend, call.resends_left = b"", 0
            call.due = now + self.config.bye_after  # the wake sends our BYE
            return [Wake(call.due, (call.key, call.serial))]
        if call.state == COMPLETED:
            return self._end(call, now)
        return []

    def _send_bye(self, call: Call, now: float) -> list[Action]:
        bye = self._bye_bytes(call)
        call.state = BYE_SENT
        call.resend, call.resend_what = bye, "bye"
        call.resends_left, call.interval = self.config.retransmits, T1
        self.counters["bye-sent"] += 1
        return [Send(call.peer, bye, "bye"), *self._next_timer(call, now)]

    def _cancel(self, msg: Message, source: Peer, now: float, call: Call | None) -> list[Action]:
        self.counters["cancel"] += 1
        if call is None or msg.cseq is None or msg.cseq.number != call.cseq:
            return [self._respond(msg, source, 481, None)]
        ok = self._respond(msg, source, 200, call)
        if call.state not in (TRYING, RINGING):
            return [ok]  # too late: the final answer stands
        terminated = self._answer_bytes(call, 487)
        call.state = COMPLETED
        return [ok, *self._final(call, terminated, "487", now)]

    def _bye(self, msg: Message, source: Peer, now: float, call: Call | None) -> list[Action]:
        self.counters["bye"] += 1
        if call is None:
            return [self._respond(msg, source, 481, None)]
        return [self._respond(msg, source, 200, call), *self._end(call, now)]

    def _response(self, msg: Message, source: Peer, now: float) -> list[Action]:
        """An answer to our BYE ends the call; any other is ignored."""
        cseq, to = msg.cseq, msg.to
        call = None
        if cseq is not None and cseq.method == "BYE" and to is not None and msg.call_id:
            call = self._calls.get((source.host, msg.call_id, to.tag or ""))
        if call is None or call.state != BYE_SENT or (msg.status or 0) < 200:
            self.counters["ignored"] += 1
            return []
        return self._end(call, now)

    # ------------------------------------------------------------ lifecycle

    def _end(self, call: Call, now: float) -> list[Action]:
        """The call is over: forgotten ``grace`` later (the wake deletes it;
        a retransmitted request meanwhile still gets its answer)."""
        if call.state != ENDED:
            self.counters["ended"] += 1
        call.state, call.resend, call.resends_left = ENDED, b"", 0
        call.due = now + self.config.grace
        call.invite = _EMPTY  # its headers were only needed to answer it
        return [Wake(call.due, (call.key, call.serial))]

    def _forget_due(self, now: float) -> None:
        """Forget, oldest first, the ended calls past their grace and the
        calls whose timer is overdue by more than it (their wakes may never
        come: the edge may have lost them)."""
        while self._calls:
            call = next(iter(self._calls.values()))
            if now < call.due + (0.0 if call.state == ENDED else self.config.grace):
                return
            del self._calls[call.key]

    def _bound(self) -> None:
        while len(self._calls) > self.config.max_calls:
            self._calls.popitem(last=False)
            self.counters["evicted"] += 1

    # ------------------------------------------------------------- building

    def _respond(
        self,
        msg: Message,
        source: Peer,
        status: int,
        call: Call | None,
        *,
        body: bytes = b"",
        contact: bool = False,
    ) -> Send:
        """A response to ``msg`` itself (a CANCEL, a BYE, a re-INVITE)."""
        tag = call.to_tag if call is not None else secrets.token_hex(8)
        headers = _headers(self._server, call.local if call and contact else "", body)
        data = make_response(msg, status, to_tag=tag, headers=headers, body=body).to_bytes()
        return Send(source, data, str(status))

    def _answer_bytes(
        self, call: Call, status: int, *, body: bytes = b"", contact: bool = False
    ) -> bytes:
        headers = _headers(self._server, call.local if contact else "", body)
        return make_response(
            call.invite, status, to_tag=call.to_tag, headers=headers, body=body
        ).to_bytes()

    def _sdp(self, call: Call) -> bytes:
        if not self.config.answer_sdp:
            return b""
        host = call.local.rsplit(":", 1)[0] if call.local.count(":") == 1 else call.local
        if not host or host.startswith("["):
            host = "0.0.0.0"
        return NO_MEDIA_SDP.format(sid=secrets.randbits(31), host=host).encode()

    def _bye_bytes(self, call: Call) -> bytes:
        """Our BYE (RFC 3261 §15): to the caller's Contact (else its From
        URI), From and To swapped, our tag, the Call-ID, our own CSeq."""
        invite = call.invite
        target = _bye_target(invite)
        branch = "z9hG4bK" + secrets.token_hex(8)
        transport = call.peer.transport.upper()
        lines = [
            f"BYE {target} SIP/2.0",
            f"Via: SIP/2.0/{transport} {call.local};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: {invite.get('to', '')};tag={call.to_tag}",
            f"To: {invite.get('from', '')}",
            f"Call-ID: {invite.call_id}",
            "CSeq: 1 BYE",
            *(f"{name}: {value}" for name, value in self._server),
            "Content-Length: 0",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def _headers(
    server: tuple[tuple[str, str], ...], contact: str, body: bytes
) -> list[tuple[str, str]]:
    headers = list(server)
    if contact:
        headers.append(("Contact", f"<sip:{contact}>"))
    if body:
        headers.append(("Content-Type", "application/sdp"))
    return headers


_EMPTY: Final = Message("OPTIONS sip:ended SIP/2.0", [])


def _key(msg: Message, source: Peer) -> CallKey | None:
    from_, call_id = msg.from_, msg.call_id
    if not call_id or from_ is None:
        return None
    return (source.host, call_id, from_.tag or "")


def _local(msg: Message, source: Peer) -> str:
    """Our host[:port] as the caller dialled it (the Request-URI's)."""
    uri = msg.uri
    host = uri.host or ("[::1]" if ":" in source.host else "127.0.0.1")
    return f"{host}:{uri.port}" if uri.port else host


def _bye_target(invite: Message) -> str:
    for contact in invite.contacts:
        if contact.uri is not None and contact.uri.is_sip:
            return str(contact.uri)
    from_ = invite.from_
    return str(from_.uri) if from_ is not None and from_.uri is not None else "sip:invalid"


__all__ = ["Action", "Call", "Honeypot", "Send", "Wake"]
