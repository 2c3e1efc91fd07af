"""The reflection budget: no source that has not shown it receives at its
address gets more back than a small multiple of what it sent.

Why: a UDP source address is whatever the sender writes. A request sent in
a victim's name earns the victim every answer: the edge's own (a reject,
the uniform challenge) and the PBX's relayed ones (a 100 Trying, a 401, a
final answer retransmitted until an ACK that never comes). Measured before
this budget: a 111-byte compact INVITE got a 305-byte challenge (2.75x),
and a spoofed INVITE to a registered user got 100 Trying and four 408s
(6.4x over 34 s). An answer larger than its request makes the edge an
amplifier for reflection attacks.

The rule, per unverified source: the answers let through to it add up to at
most ``ratio`` times the bytes it sent (messages the edge forwarded or
answered: a dropped message earns no answer, so no credit). An answer that
does not fit is withheld whole, retransmissions included; and over all
unverified sources together at most ``total`` bytes a second go out (a
token bucket, one second deep), so that a flood from many spoofed
addresses, each within its ratio, reflects a bounded amount. What is
withheld is counted: messages and bytes, by cause.

A source is verified, and no longer limited for ``verified_for`` seconds,
once it has shown it receives at its address:

- a completed TCP handshake (TCP or TLS; the edge calls ``verify`` when it
  accepts a connection): a spoofer never sees the SYN-ACK;
- our nonce in its digest answer: an Authorization or Proxy-Authorization
  whose nonce is one the budget let through to that source in a challenge
  (401/407, the PBX's or the uniform one; the last ``NONCES`` are kept);
- our To tag in its next request: the tag of an answer let through to that
  source (its ACK, or a request in the dialog; the last ``TAGS`` are kept,
  from answers to the requests that make dialogs and from challenges; never
  a tag the source wrote in a request itself, which a PBX echoes in its
  answer to a forged in-dialog request: a spoofer knows it). This
  rule is as strong as the PBX's tags are unguessable: Kamailio derives
  its stateless tags from fixed text and a CRC of the request, which an
  attacker who got one answer can compute; the nonce and TCP rules carry
  no such caveat.

Trusted peers and the allow list are never limited: ``exempt(host)``,
given by the caller, says so (it is asked on answers to unverified sources
only; the caller keeps it cheap).

Operations (sans-I/O; the clock is passed in):
  ``received(host, size, view, now)`` for each message a client sent over
  UDP that the edge forwarded or answered (it earns credit, and may prove);
  ``permit(host, answer, now, ratio=None, view=None)`` before each answer
  to a UDP client: True to send it (it is then charged, and its nonce and
  To tag remembered), False to withhold it. Anything that answers a client goes
  through ``permit``: the edge's relayed answers, its rejects, the uniform
  challenge and, later, deception (which passes ``ratio=1.0``: DESIGN's
  rule that deception never sends an unverified source more than it sent);
  ``verify(host, now, proof)`` for a proof seen elsewhere (a TCP accept).

Bounds: at most ``max_sources`` unverified sources (the least recently
touched forgotten first, to within a generation: ``recent.RecentMap``;
forgetting one forgets its credit, it never grants any), and as many
sources' nonces and tags, at most ``max_verified`` verified ones (the
oldest proof forgotten first, likewise: that source is limited again until
it proves again), ``NONCES`` and ``TAGS`` per source. Per message on the
path of a verified source: one dict probe. The tables hold only strings
and numbers, which the garbage collector never tracks: a spoofed flood
filling them adds nothing to what a collection walks.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Final, Literal

from ..sip import PEEKED_HEADERS, Peek, SipError, parse_auth, peek
from .recent import RecentMap

NONCES: Final = 4  # challenges remembered per source (a phone retries a few)
TAGS: Final = 4  # To tags remembered per source
Proof = Literal["tcp", "nonce", "tag"]
TO, CSEQ = PEEKED_HEADERS.index("to"), PEEKED_HEADERS.index("cseq")
# the requests whose answers' To tags come back (in the ACK, in the dialog),
# as their CSeq value ends: a cheap filter (an odd CSeq loses only this proof)
_DIALOGS: Final = (" INVITE", " SUBSCRIBE", " REFER", " NOTIFY")

# a challenge header's value, folded lines included
_CHALLENGE = re.compile(
    rb"^(?:www|proxy)-authenticate[ \t]*:((?:[^\r\n]|\r\n[ \t])*)", re.IGNORECASE | re.MULTILINE
)


# An unverified source's bytes, one int: received (bytes it sent that the
# edge forwarded or answered; past 2^48 no more credit) + sent (bytes of
# answers let through to it) * _SENT. The nonces and To tags of the answers
# let through, newest first, and the To tags the source wrote itself (they
# prove nothing), are a string: nonces, _PROOFS, tags, _PROOFS, its own
# tags, each joined by _SEP (no nonce or tag holds them: a control
# character would only cost its proof). Strings and ints, which the garbage collector never
# tracks: a spoofed flood filling the tables adds nothing to what a full
# collection walks (a slots object per source did: 65,536 more; a tuple per
# source in an OrderedDict still ~4 ms); see tests/policy/test_reflection.py.
_SENT: Final = 1 << 48
_RECEIVED: Final = _SENT - 1
_SEP, _PROOFS = "\x1f", "\x1e"


def _never(host: str) -> bool:
    return False


class ReflectionBudget:
    """See the module doc. ``counters`` (the edge passes its own, so that
    they show in ``status``) gets ``reflection-*`` keys."""

    def __init__(
        self,
        *,
        ratio: float = 1.5,
        total: int = 1_048_576,
        verified_for: float = 3600.0,
        max_sources: int = 65_536,
        max_verified: int = 65_536,
        exempt: Callable[[str], bool] = _never,
        counters: Counter[str] | None = None,
    ) -> None:
        if ratio <= 0 or total < 0 or verified_for <= 0 or max_sources < 1 or max_verified < 1:
            raise ValueError("ratio and verified_for must be > 0, total >= 0, maxima >= 1")
        self.ratio = ratio
        self.total = total  # bytes a second to all unverified sources; 0: no total
        self.verified_for = verified_for
        self.max_sources = max_sources
        self.max_verified = max_verified
        self.exempt = exempt
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self._sources: RecentMap[int] = RecentMap(max_sources)  # host -> bytes (see _SENT)
        self._proofs: RecentMap[str] = RecentMap(max_sources)  # host -> nonces and tags
        self._verified: RecentMap[float] = RecentMap(max_verified)  # host -> verified until
        self._tokens = float(total)  # the total's bucket
        self._filled_at: float | None = None

    def __len__(self) -> int:
        """Unverified sources tracked."""
        return len(self._sources)

    @property
    def verified_count(self) -> int:
        """Verified sources remembered (expired ones until they are looked at)."""
        return len(self._verified)

    # ------------------------------------------------------------ verification

    def is_verified(self, host: str, now: float) -> bool:
        verified = self._verified  # (RecentMap.peek, inline: on every message)
        until = verified.young.get(host)
        if until is None:
            until = verified.old.get(host)
            if until is None:
                return False
        if now < until:
            return True
        self._verified.pop(host)
        return False

    def verify(self, host: str, now: float, proof: Proof) -> None:
        """``host`` has shown it receives at its address: not limited for
        ``verified_for`` seconds from now."""
        verified = self._verified
        if verified.pop(host) is None:
            self.counters[f"reflection-verified:{proof}"] += 1
        if verified.put(host, now + self.verified_for):
            self.counters["reflection-verified-forgotten"] += 1
        self._sources.pop(host)  # its credit and proofs are of no more use
        self._proofs.pop(host)

    # ------------------------------------------------------------------ inbound

    def received(self, host: str, size: int, view: Peek | None, now: float) -> None:
        """A message of ``size`` bytes from ``host`` that the edge forwards
        or answers (``view``, its peek, may carry a proof)."""
        if self.is_verified(host, now):
            return
        sources = self._sources
        source = sources.young.get(host)  # (a hit in the young: no method call)
        if source is None:
            source = sources.get(host)
            if source is None:
                source = self._track(host)
        if (source & _RECEIVED) + size <= _RECEIVED:
            sources.young[host] = source + size  # (get and _track left it young)
        if view is not None and view.method is not None:
            proofs = self._proofs.young.get(host)
            if proofs is None and self._proofs.old:
                proofs = self._proofs.get(host)
            nonces, tags, offered = _unpack(proofs)
            if nonces or tags:
                proof = _proof(nonces, tags, view)
                if proof is not None:
                    self.verify(host, now, proof)
                    return
            # a To tag the source wrote itself (a forged in-dialog request)
            # comes back in the PBX's answer: that answer's tag proves nothing
            tag = _to_tag(view)
            if tag and tag not in offered and tag not in tags:
                offered = (tag, *offered[: TAGS - 1])
                self._proofs.put(host, _pack(nonces, tags, offered))

    # ----------------------------------------------------------------- outbound

    def permit(
        self,
        host: str,
        answer: bytes,
        now: float,
        ratio: float | None = None,
        view: Peek | None = None,
    ) -> bool:
        """Whether ``answer`` may go to ``host`` now; if so it is charged to
        the source and the total, and its nonce and To tag remembered.
        ``ratio``: a stricter multiple for this answer (never a looser one);
        ``view``: a peek of the answer (or of the message it was made from,
        with the same status and To), when the caller has one: it spares a
        second."""
        if self.is_verified(host, now) or self.exempt(host):
            return True
        sources = self._sources
        source = sources.young.get(host)
        if source is None:
            source = sources.get(host)
            if source is None:
                source = self._track(host)
        received, sent = source & _RECEIVED, source >> 48
        size = len(answer)
        limit = self.ratio if ratio is None else min(ratio, self.ratio)
        if sent + size > received * limit:
            return self._withhold("reflection-withheld:ratio", size)
        if self.total and not self._take(size, now):
            return self._withhold("reflection-withheld:total", size)
        counters = self.counters
        counters["reflection-sent"] += 1
        counters["reflection-sent-bytes"] += size
        sources.young[host] = source + size * _SENT  # (get and _track left it young)
        if answer[8:12] != b"100 ":  # (100 Trying: hop by hop, no tag to keep)
            proofs = self._proofs.young.get(host)
            if proofs is None and self._proofs.old:
                proofs = self._proofs.get(host)
            nonces, tags, offered = _unpack(proofs)
            kept = _remember(nonces, tags, offered, answer, view)
            if kept != (nonces, tags):
                self._proofs.put(host, _pack(*kept, offered))
        return True

    def _withhold(self, cause: str, size: int) -> bool:
        counters = self.counters
        counters["reflection-withheld"] += 1
        counters["reflection-withheld-bytes"] += size
        counters[cause] += 1
        return False

    def _take(self, size: int, now: float) -> bool:
        """Take ``size`` bytes from the total's bucket, if it holds them."""
        if self._filled_at is not None:
            self._tokens = min(
                float(self.total), self._tokens + (now - self._filled_at) * self.total
            )
        self._filled_at = now
        if size > self._tokens:
            return False
        self._tokens -= size
        return True

    def _track(self, host: str) -> int:
        if self._sources.put(host, 0):
            self.counters["reflection-forgotten"] += 1
        return 0


def _split(joined: str) -> tuple[str, ...]:
    return tuple(joined.split(_SEP)) if joined else ()


_NOTHING: Final[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = ((), (), ())


def _unpack(proofs: str | None) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """A source's nonces, tags and the tags it wrote itself, from their string."""
    if proofs is None:
        return _NOTHING
    nonces, tags, offered = proofs.split(_PROOFS)
    return _split(nonces), _split(tags), _split(offered)


def _pack(nonces: tuple[str, ...], tags: tuple[str, ...], offered: tuple[str, ...]) -> str:
    return _PROOFS.join((_SEP.join(nonces), _SEP.join(tags), _SEP.join(offered)))


def _to_tag(request: Peek) -> str | None:
    """The To tag a request carries, if any (None for a broken To)."""
    to = request.raw(TO)
    if to is None or "tag" not in to.lower():
        return None
    try:
        return request.to_tag
    except SipError:
        return None


def _proof(nonces: tuple[str, ...], tags: tuple[str, ...], request: Peek) -> Proof | None:
    """What in ``request`` proves its source got one of our answers (``nonces``
    and ``tags``: those of the answers let through to it)."""
    try:
        to = request.raw(TO)
        if tags and to is not None and "tag" in to.lower() and request.to_tag in tags:
            return "tag"
        if nonces and request.has_credentials:
            for credentials in (request.authorization, request.proxy_authorization):
                if credentials is not None and credentials.nonce in nonces:
                    return "nonce"
    except SipError:  # a broken header proves nothing
        pass
    return None


def _remember(
    nonces: tuple[str, ...],
    tags: tuple[str, ...],
    offered: tuple[str, ...],
    answer: bytes,
    view: Peek | None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``nonces`` and ``tags`` with the To tag and any challenge nonce of an
    answer let through (not a tag in ``offered``: the source wrote it)."""
    if answer[8:12] == b"100 ":
        return nonces, tags  # 100 Trying: hop by hop, no tag to keep
    try:
        if view is None:
            view = peek(answer)
        challenge = view.status in (401, 407)
        if not challenge and not (view.raw(CSEQ) or "").endswith(_DIALOGS):
            return (
                nonces,
                tags,
            )  # (an answer to OPTIONS or REGISTER: no request comes back with its tag)
        tag = view.to_tag
    except SipError:
        return nonces, tags
    if tag and tag not in tags and tag not in offered:
        tags = (tag, *tags[: TAGS - 1])
    if not challenge:
        return nonces, tags
    head = answer[: answer.find(b"\r\n\r\n")]
    for found in _CHALLENGE.finditer(head):
        value = re.sub(rb"\r\n[ \t]+", b" ", found.group(1)).decode("utf-8", "surrogateescape")
        try:
            nonce = parse_auth(value.strip()).nonce
        except SipError:
            continue
        if nonce and nonce not in nonces:
            nonces = (nonce, *nonces[: NONCES - 1])
    return nonces, tags
