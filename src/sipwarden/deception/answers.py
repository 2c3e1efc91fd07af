"""The fake answers to a hostile source's requests: bytes out, nothing sent.

What each answer does to the tools was measured with the real ones
(SIPVicious 0.2.x and 0.3.8, nmap's NSE, sippts; the tools' own source read
too); ``tests/deception/test_tools.py`` proves it again with SIPVicious
0.3.8. The plan, per request of a source already judged hostile:

- **Discovery stays silent** (``is_discovery``): OPTIONS (nmap -sV, Shodan,
  svmap, sipsak, NSE sip-methods), svmap's REGISTER and INVITE probes and
  nmap's NSE scripts. An answer would only tell a mapper that a SIP server
  lives here; the enumerators and crackers this module fools come after it.
- **A REGISTER without credentials gets 200 OK** (``register_ok``). svwar
  takes its baseline (a random extension) answer as "no such user", so when
  every extension gets the same 200 it scans its whole range and reports
  nothing. svcrack's first REGISTER carries no credentials: the 200 makes it
  report "[no password]" and stop before its first guess, so no guess (the
  real password among them) ever leaves it.
- **A REGISTER with credentials gets a 401 challenge** (``challenge``), never
  a 200. SIPVicious reads the "found" password back from the From tag it
  sent, so a 200 to a guess reports that very guess, and the edge, which
  holds no secrets, cannot tell a wrong guess from the real password: a 200
  would confirm the real one whenever the tool tried it first. A challenge to
  every guess (Asterisk's ``alwaysauthreject``) makes a cracker run through
  its whole list and find nothing; the guesses never reach the PBX. (Such a
  REGISTER comes from a cracker that got its first challenge from the PBX,
  before the source was judged hostile; SIPVicious never gets that far.)
- **The SIPVicious stopper** (``crash_scanners``; ``ScannerStopper``): to a
  source fingerprinted as SIPVicious, at most once per source per interval,
  a 200 whose From tag the tool cannot decode. svwar 0.3.x stops ("could not
  decode to tag"); svcrack 0.3.x dies on svcrash's tag (a TypeError); 0.2.5
  and older die on it in both tools. Two forms (``stopper_kind``): svcrash's
  tag (hex of ``h:e:y\\x01there\\x01bye``, two separators) for svcrack,
  which it crashes in every version but 0.2.8 (which stops); a tag that is
  not hex for svwar, since svwar 0.2.8 records svcrash's tag as a bogus
  extension and scans on, while a tag that is not hex stops every version.
  Only the From tag is read by the tools (never Via, Call-ID or CSeq), so
  the stopper is otherwise a transaction-correct answer that ``sip.parse``
  accepts: unlike svcrash's own message (``SVCRASH``, kept verbatim for
  reference and tests), whose stray blank line ends its header after Via.

Every answer echoes the request's Via (all), From, Call-ID and CSeq byte for
byte and adds a To tag: SIPVicious matches answers by the echoed From tag
alone. No answer carries Contact (no binding is claimed: none of the tools
reads it, and a stack-based client takes success from the status and
Expires), User-Agent, or a Server header naming sipwarden (an operator may
set a generic one). Every answer is smaller than the request it answers
(``tests/deception/test_answers.py``), as the reflection budget's
``ratio=1.0`` for deception requires.

Bounds: ``ScannerStopper`` remembers at most ``max_sources`` sources (the
oldest forgotten first: forgetting one only lets it get the stopper again).
"""

from __future__ import annotations

import re
import secrets
from binascii import Error as HexError
from binascii import unhexlify
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from ..sip import PEEKED_HEADERS, Message, Peek, SipError, make_response
from .limits import OncePer

Kind = Literal["register-ok", "challenge", "svcrash", "non-hex-tag"]

# svcrash.py's message, byte for byte (unchanged since 2010): a response
# whose From tag hex-decodes to b"h:e:y\x01there\x01bye"
SVCRASH: Final = (
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 8.7.6.5:5061;branch=z9hG4bK-573841574;rport\r\n\r\n"
    b'Content-length: 0\r\nFrom: "100"<sip:100@localhost>; tag=683a653a7901746865726501627965\r\n'
    b'User-agent: Telkom Box 2.4\r\nTo: "100"<sip:100@localhost>\r\nCseq: 1 REGISTER\r\n'
    b"Call-id: 469585712\r\nMax-forwards: 70\r\n\r\n"
)
SVCRASH_TAG: Final = "683a653a7901746865726501627965"
# the pack's rules that name SIPVicious (policy/pack/*.toml): a source that
# matched one of them may get the stopper
SIPVICIOUS_RULES: Final = frozenset(
    {
        "scan.sipvicious-tag",
        "scan.sipvicious-branch",
        "scan.sipvicious-display-name",
        "scan.sipvicious-host",
        "scan.sipvicious-contact-none",
        "scan.digest-qop-without-cnonce",  # svcrack's guesses
        "ua.friendly-scanner",
        "ua.sipvicious",
    }
)
MAX_EXPIRES: Final = 3600  # the longest registration the fake 200 grants
SVCRACK_FIRST_TAG: Final = "3206210844"  # svcrack 0.3.x's fixed tag before its first guess

_TAG_PARAM = re.compile(r";[ \t]*tag[ \t]*=[ \t]*[^;, \t]*", re.IGNORECASE)
# svmap's marks: its From display name, the From host it writes instead of its own
_SVMAP_FROM = re.compile(r'^\s*"?sipvicious"?\s*<|@1\.1\.1\.1(?:[:;>]|$)')
_NSE_CALL_ID = re.compile(r"[A-Za-z0-9_]{60}")
_NSE_TAG = re.compile(r"[A-Za-z0-9_]{20}")
_DIGITS = re.compile(r"[0-9]+")
_FROM: Final = PEEKED_HEADERS.index("from")


@dataclass(frozen=True, slots=True)
class Answer:
    """One fake answer: what it is (for counters and events) and its bytes."""

    kind: Kind
    data: bytes


# ----------------------------------------------------------------- who is what


def sipvicious_payload(tag: str | None) -> bytes | None:
    """What a SIPVicious From tag carries (the hex of ``payload\\x01<digits>``):
    svmap its target, svwar the extension, svcrack ``user:password``; None for
    any other tag."""
    if not tag or len(tag) % 2:
        return None
    try:
        decoded = unhexlify(tag)
    except (HexError, ValueError):
        return None
    payload, sep, rand = decoded.partition(b"\x01")
    if not sep or not payload or not rand.isdigit():
        return None
    return payload


def fingerprinted_as_sipvicious(rule_ids: Iterable[str]) -> bool:
    """Whether any of the pack rules a source matched names SIPVicious."""
    return any(rule in SIPVICIOUS_RULES for rule in rule_ids)


def is_discovery(view: Peek) -> bool:
    """Whether ``view`` is a discovery probe, which deception never answers
    (an answer would only make the host visible): any OPTIONS (nmap -sV's
    probe and Shodan's, svmap's default, sipsak, NSE sip-methods); svmap's
    INVITE and REGISTER probes (its "sipvicious" display name or 1.1.1.1 From
    host; or a SIPVicious tag with svmap's 80-bit decimal Call-ID, where svwar
    and svcrack use 32 bits); nmap's NSE scripts (their "Nmap NSE" name, or
    their 60-character Call-ID with a 20-character tag), which abort on any
    uniform answer and so gain nothing from one but our address."""
    if view.method == "OPTIONS":
        return True
    try:
        from_ = view.raw(_FROM) or ""
        if _SVMAP_FROM.search(from_) or "Nmap NSE" in from_:
            return True
        if (view.user_agent or "").startswith("Nmap NSE"):
            return True
        call_id = view.call_id or ""
        tag = view.from_tag
        if len(call_id) > 16 and _DIGITS.fullmatch(call_id) and sipvicious_payload(tag):
            return True
        return bool(_NSE_CALL_ID.fullmatch(call_id) and tag and _NSE_TAG.fullmatch(tag))
    except SipError:
        return True  # a broken From or To: nothing worth fooling, stay silent


# ------------------------------------------------------------------ the answers


def register_ok(
    request: Message, *, to_tag: str | None = None, server: str = "", max_expires: int = MAX_EXPIRES
) -> bytes:
    """The 200 OK to ``request`` (a REGISTER): Via, From, To, Call-ID and
    CSeq copied byte for byte, a To tag added (``to_tag`` or a random one),
    ``Expires`` the request's (its Expires header, else its Contact's
    expires) at most ``max_expires``, ``max_expires`` when it gives none; no
    Contact; a ``Server`` only if ``server`` is set."""
    expires = _asked_expires(request)
    granted = max_expires if expires is None else min(expires, max_expires)
    headers = [("Expires", str(granted))]
    if server:
        headers.append(("Server", server))
    return make_response(request, 200, to_tag=to_tag or _new_tag(), headers=headers).to_bytes()


def challenge(
    request: Message,
    *,
    nonce: str | None = None,
    realm: str | None = None,
    to_tag: str | None = None,
    server: str = "",
) -> bytes:
    """A 401 to ``request`` with a Digest challenge (MD5, ``qop="auth"``):
    ``nonce`` ours (a random one by default); ``realm`` the one the request's
    credentials named (the PBX's, which the cracker got first), else the
    Request-URI's host."""
    if realm is None:
        realm = _realm_of(request)
    nonce = nonce or secrets.token_hex(16)
    www = f'Digest realm="{realm}", nonce="{nonce}", algorithm=MD5, qop="auth"'
    headers = [("WWW-Authenticate", www)]
    if server:
        headers.append(("Server", server))
    return make_response(request, 401, to_tag=to_tag or _new_tag(), headers=headers).to_bytes()


def stopper(
    request: Message, kind: Literal["svcrash", "non-hex-tag"], *, tag: str | None = None
) -> bytes:
    """The SIPVicious stopper for ``request``: a 200 OK echoing it (Via, To
    with a tag added, Call-ID, CSeq) whose From is the request's with its tag
    replaced: svcrash's (``kind="svcrash"``) or one that is not hex
    (``"non-hex-tag"``: ``tag``, or a random one)."""
    if kind == "svcrash":
        tag = SVCRASH_TAG
    elif tag is None:
        tag = f"{secrets.token_hex(4)}s{secrets.token_hex(1)}"  # 's': not hex, odd length
    response = make_response(request, 200, to_tag=_new_tag())
    from_ = request.get("from") or ""
    if _TAG_PARAM.search(from_):
        value = _TAG_PARAM.sub(f";tag={tag}", from_, count=1)
    else:
        value = f"{from_};tag={tag}"
    response.replace_header("from", value)
    return response.to_bytes()


def stopper_kind(view: Peek) -> Literal["svcrash", "non-hex-tag"]:
    """Which stopper stops the tool that sent ``view``: svcrash's tag for
    svcrack (its credentials, its fixed first tag, or ``user:password`` in
    its tag), which that tag crashes; a tag that is not hex for the rest
    (svwar: it stops every version, where svcrash's tag lets 0.2.8 scan on)."""
    try:
        tag = view.from_tag
        if view.has_credentials or tag == SVCRACK_FIRST_TAG:
            return "svcrash"
        payload = sipvicious_payload(tag)
    except SipError:
        return "non-hex-tag"
    return "svcrash" if payload is not None and b":" in payload else "non-hex-tag"


def register_answer(
    request: Message, *, to_tag: str | None = None, server: str = "", nonce: str | None = None
) -> Answer:
    """The answer to a hostile source's REGISTER (see the module doc): 200
    without credentials, a challenge to a guess."""
    if request.get("authorization") is not None or request.get("proxy-authorization") is not None:
        return Answer("challenge", challenge(request, nonce=nonce, to_tag=to_tag, server=server))
    return Answer("register-ok", register_ok(request, to_tag=to_tag, server=server))


class ScannerStopper:
    """The stopper for sources fingerprinted as SIPVicious, at most once per
    source per ``interval`` seconds (``crash_scanners``; see the module doc).
    The first answer a source gets may be the stopper: svcrack dies on it
    at once; svwar takes it as its baseline (it decodes no tag there), scans
    on through the same 200s, and stops at the next stopper, ``interval``
    seconds later."""

    def __init__(self, *, interval: float = 5.0, max_sources: int = 65_536) -> None:
        self.due = OncePer(interval, max_sources=max_sources)

    def answer(self, request: Message, view: Peek, source: str, now: float) -> Answer | None:
        """The stopper for ``request`` from ``source`` if one is due, else None
        (the caller then gives its ordinary answer, or silence)."""
        if not self.due.take(source, now):
            return None
        kind = stopper_kind(view)
        return Answer(kind, stopper(request, kind))


def _new_tag() -> str:
    return secrets.token_hex(5)


def _asked_expires(request: Message) -> int | None:
    try:
        if request.expires is not None:
            return int(request.expires)
        for contact in request.contacts:
            if contact.expires is not None:
                return contact.expires
    except SipError:
        pass
    return None


def _realm_of(request: Message) -> str:
    try:
        credentials = request.authorization or request.proxy_authorization
        if credentials is not None and credentials.realm:
            return credentials.realm.replace('"', "")
        return request.uri.host or "sip"
    except SipError:
        return "sip"
