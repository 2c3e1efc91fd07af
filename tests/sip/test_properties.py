"""Property tests and a bounded mutation fuzz run for the sans-I/O SIP core.

What is guarded, one test (or group) per property:

1. hostile bytes (random, SIP-looking, mutated corpus) raise nothing but
   ``SipError`` from ``parse``, ``validate``, the typed views, ``peek`` and
   ``StreamFramer`` / ``parse_frame``;
2. the stream framer gives the same frames whatever the chunking, and
   ``max_size`` holds whatever the chunking;
3. wire -> Message -> wire round trips, before and after edits;
4. edits touch only the header fields they name;
5. ``peek`` agrees with ``parse``.

Generated "valid" messages are valid by RFC 3261, including its legal odd
shapes (compact and odd-case names, LWS before the colon, folded lines), so
a parser that refuses one of them fails a test.
"""

from __future__ import annotations

import os
import re
import string
from contextlib import suppress
from dataclasses import dataclass
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipwarden.sip import (
    PING,
    Header,
    Message,
    SipError,
    StreamFramer,
    canonical_name,
    header_key,
    parse,
    parse_address,
    parse_frame,
    parse_via,
    peek,
)
from sipwarden.sip import errors as E
from sipwarden.sip.text import split_list
from tests.sip.test_peek import scalars_agree

from ..conftest import SCANNERS, TORTURE

# ---------------------------------------------------------------- settings

# Example counts keep the file well under 30 s on two slow cores; set
# SIPWARDEN_HYPOTHESIS_SCALE=20 (say) for a long local hunt.
SCALE = max(1, int(os.environ.get("SIPWARDEN_HYPOTHESIS_SCALE", "1")))


def budget(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


SLOW_GEN = budget(40)  # tests that build whole valid messages (~10 ms per example to generate)
STREAMS = budget(25)  # up to three messages per example
CHEAP = budget(150)  # tests on byte strings

# ------------------------------------------------------------------ corpus

CORPUS_PATHS = sorted(
    [
        *TORTURE.glob("*.dat"),
        *(TORTURE / "extra").glob("*.dat"),
        *(TORTURE / "rfc5118-wire").iterdir(),
        *SCANNERS.glob("*.sip"),
    ]
)
CORPUS: dict[str, bytes] = {
    p.relative_to(TORTURE.parent).as_posix(): p.read_bytes() for p in CORPUS_PATHS
}
CORPUS_BYTES = list(CORPUS.values())


def _parses(data: bytes, *, valid: bool) -> bool:
    try:
        msg = parse(data)
        if valid:
            msg.validate()
    except SipError:
        return False
    return True


# round trips run on every torture message that parses and validates, and every scanner message
ROUND_TRIP_FILES = [
    name
    for name, data in CORPUS.items()
    if _parses(data, valid=True) or (name.startswith("scanners/") and _parses(data, valid=False))
]

# ---------------------------------------------------------- shared strategies

TOKEN_CHARS = string.ascii_letters + string.digits + "-.!%*_+`'~"
token = st.text(TOKEN_CHARS, min_size=1, max_size=6)
alnum = st.text(string.ascii_letters + string.digits, min_size=1, max_size=8)
METHODS = "INVITE ACK BYE CANCEL OPTIONS REGISTER MESSAGE SUBSCRIBE NOTIFY REFER".split()
method = st.sampled_from(METHODS) | token

label = st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=6)
hostname = st.lists(label, min_size=1, max_size=3).map(".".join)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.sampled_from(
    [
        "[2001:db8::1]",
        "[::1]",
        "[2001:db8::10:5070]",
        "[::ffff:192.0.2.10]",
        "[2001:DB8:0:0:0:0:0:A]",
    ]
)
host = st.one_of(hostname, ipv4, ipv6)
hostport = st.tuples(host, st.none() | st.integers(1, 65535)).map(
    lambda hp: hp[0] if hp[1] is None else f"{hp[0]}:{hp[1]}"
)

USER_CHARS = string.ascii_letters + string.digits + "-_.!~*'()&=+$"
escape = st.integers(0, 255).map(lambda b: f"%{b:02X}") | st.sampled_from(
    ["%41", "%3b", "%40", "%2C", "%00"]
)
user = st.lists(st.text(USER_CHARS, min_size=1, max_size=4) | escape, min_size=1, max_size=3).map(
    "".join
)
params = st.lists(st.tuples(token, st.none() | token), max_size=2).map(
    lambda ps: "".join(f";{k}" if v is None else f";{k}={v}" for k, v in ps)
)

# printable ASCII plus a few UTF-8 letters; no CR, LF, tab or other whitespace
TEXT_CHARS = "".join(chr(c) for c in range(32, 127)) + "éü€"
free_text = st.text(TEXT_CHARS, min_size=1, max_size=16).map(str.strip).filter(bool)
call_id_word = st.text(
    string.ascii_letters + string.digits + "-.!%*_+`'~()<>:\\\"/[]?{}", min_size=1, max_size=10
)
call_id = st.tuples(call_id_word, st.none() | call_id_word).map(
    lambda t: t[0] if t[1] is None else f"{t[0]}@{t[1]}"
)


@st.composite
def sip_uri(draw, *, uri_params: bool = True, uri_headers: bool = False) -> str:
    scheme = draw(st.sampled_from(["sip", "sips", "SIP"]))
    userinfo = ""
    if draw(st.booleans()):
        userinfo = draw(user)
        if draw(st.integers(0, 4)) == 0:
            userinfo += ":" + draw(user)
        userinfo += "@"
    text = f"{scheme}:{userinfo}{draw(hostport)}"
    if uri_params:
        text += draw(params)
    if uri_headers and draw(st.integers(0, 3)) == 0:
        text += "?" + "&".join(
            draw(st.lists(st.tuples(alnum, alnum).map("=".join), min_size=1, max_size=2))
        )
    return text


other_uri = st.sampled_from(
    ["tel:+1-555-0100", "tel:7042;phone-context=example.com", "urn:service:sos", "mailto:a@b"]
)

quoted_display = st.lists(
    st.sampled_from(['\\"', "\\\\"])
    | st.text(TEXT_CHARS.replace('"', "").replace("\\", ""), min_size=1, max_size=6),
    max_size=4,
).map(lambda parts: '"' + "".join(parts) + '"')
display = st.none() | quoted_display | st.lists(token, min_size=1, max_size=3).map(" ".join)


@st.composite
def address(draw, *, tag: bool = False) -> str:
    if draw(st.booleans()):
        name = draw(display)
        uri = draw(sip_uri(uri_headers=True) | other_uri)
        gap = draw(st.sampled_from(["", " "])) if name else ""
        text = f"{name or ''}{gap}<{uri}>"
    else:  # addr-spec: ';' after it starts the header parameters
        text = draw(sip_uri(uri_params=False))
    text += draw(params)
    if tag:
        text += ";tag=" + draw(token)
    return text


@st.composite
def via_value(draw) -> str:
    slash = draw(st.sampled_from(["/", "/", " / "]))
    proto = draw(st.sampled_from(["SIP", "SIP", "sip"]))
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS", "udp"]))
    extra = draw(
        st.lists(
            st.sampled_from(
                [";rport", ";rport=5060", ";received=192.0.2.9", ";maddr=224.2.0.1", ";ttl=16"]
            ),
            max_size=2,
        )
    )
    branch = ";branch=z9hG4bK" + draw(token)
    tail = draw(st.permutations([branch, *extra, draw(params)]))
    return f"{proto}{slash}2.0{slash}{transport} {draw(hostport)}{''.join(tail)}"


@dataclass
class Field:
    """One generated header field: the model (name, value) and how it is written."""

    key: str
    name: str  # as written, without the LWS before the colon
    value: str  # unfolded, no surrounding whitespace
    before_colon: str = ""
    after_colon: str = " "
    fold_after_colon: str = ""  # "" or the WSP that starts a continuation line right after ':'
    folds: tuple[tuple[int, str], ...] = ()  # (index of a single space in value, WSP replacing it)

    def line(self, sep: str) -> str:
        value = self.value
        for i, ws in sorted(self.folds, reverse=True):
            value = value[:i] + sep + ws + value[i + 1 :]
        lead = f"{sep}{self.fold_after_colon}" if self.fold_after_colon else self.after_colon
        return f"{self.name}{self.before_colon}:{lead}{value}"


@dataclass
class Gen:
    """A generated valid message and what a parser must read from it."""

    start_line: str
    fields: list[Field]
    body: bytes
    method: str | None
    status: int | None
    cseq: int
    max_forwards: int | None

    def wire(self, sep: str = "\r\n") -> bytes:
        head = sep.join([self.start_line, *(f.line(sep) for f in self.fields)])
        return (head + sep + sep).encode("utf-8") + self.body

    def model(self) -> Message:
        return Message(self.start_line, [Header(f.name, f.value) for f in self.fields], self.body)

    def __repr__(self) -> str:
        return f"Gen({self.wire()!r})"

    def _repr_pretty_(self, p, cycle) -> None:  # how hypothesis prints a failing example
        p.text(repr(self))


COMPACT_OF = {
    "via": "v",
    "from": "f",
    "to": "t",
    "call-id": "i",
    "contact": "m",
    "content-length": "l",
    "content-type": "c",
    "subject": "s",
    "supported": "k",
}


@st.composite
def spelled(draw, key: str) -> str:
    base = canonical_name(key)
    options = [base, base, base.lower(), base.upper()]
    if key in COMPACT_OF:
        options += [COMPACT_OF[key], COMPACT_OF[key].upper()]
    name = draw(st.sampled_from(options))
    if draw(st.integers(0, 5)) == 0:  # random case
        flips = draw(st.integers(0, 2 ** len(name) - 1))
        name = "".join(c.upper() if flips >> i & 1 else c.lower() for i, c in enumerate(name))
    return name


@st.composite
def field(draw, key: str, value: str, *, foldable: bool = True) -> Field:
    name = draw(spelled(key))
    before = draw(st.sampled_from(["", "", "", " ", "\t", "  "]))
    after = draw(st.sampled_from([" ", " ", "", "  ", "\t"]))
    fold_after = ""
    folds: list[tuple[int, str]] = []
    if foldable and draw(st.integers(0, 3)) == 0:
        fold_after = draw(st.sampled_from(["", " ", "\t", "   "]))
        spaces = [
            i
            for i, c in enumerate(value)
            if c == " " and 0 < i < len(value) - 1 and value[i - 1] != " " and value[i + 1] != " "
        ]
        if spaces:
            chosen = draw(st.sets(st.sampled_from(spaces), max_size=3))
            folds = [(i, draw(st.sampled_from([" ", "\t", "  "]))) for i in sorted(chosen)]
    return Field(key, name, value, before, after, fold_after, tuple(folds))


SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n"
MULTIPART = (  # blank lines inside the body, as in RFC 4475 mpart01
    b"--b1\r\nContent-Type: application/sdp\r\n\r\n"
    + SDP
    + b"\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b1--\r\n"
)
bodies = st.binary(max_size=40) | st.sampled_from([SDP, MULTIPART, b"\r\n\r\n", b"\n\nx"])


@st.composite
def valid_messages(draw, *, content_length: bool | None = None) -> Gen:
    """A valid request or response. ``content_length``: True always writes
    it, None lets hypothesis choose (datagrams may omit it)."""
    is_request = draw(st.booleans())
    cseq_n = draw(st.integers(0, 2**32 - 1))
    if is_request:
        meth = draw(method)
        start = f"{meth} {draw(sip_uri() | other_uri)} SIP/2.0"
        cseq_method, status = meth, None
    else:
        meth = None
        status = draw(st.integers(100, 699))
        reason = draw(st.none() | free_text)
        start = (
            f"SIP/2.0 {status} {reason or ''}"
            if reason is not None or draw(st.booleans())
            else f"SIP/2.0 {status}"
        )
        cseq_method = draw(method)
    body = draw(bodies)

    out: list[Field] = []
    for _ in range(draw(st.integers(1, 3))):
        vias = draw(st.lists(via_value(), min_size=1, max_size=2))
        out.append(draw(field("via", draw(st.sampled_from([", ", ","])).join(vias))))
    out.append(draw(field("from", draw(address(tag=is_request)))))
    out.append(draw(field("to", draw(address()))))
    out.append(draw(field("call-id", draw(call_id))))
    out.append(draw(field("cseq", f"{cseq_n} {cseq_method}")))
    mf = None
    if is_request and draw(st.integers(0, 4)):
        mf = draw(st.integers(0, 255))
        out.append(draw(field("max-forwards", str(mf))))
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.integers(0, 9)) == 0:
            contact = "*"
        else:
            contact = ", ".join(draw(st.lists(address(), min_size=1, max_size=2)))
        out.append(draw(field("contact", contact)))
    optional = {
        "user-agent": free_text,
        "server": free_text,
        "subject": free_text,
        "supported": st.lists(token, min_size=1, max_size=3).map(", ".join),
        "expires": st.integers(0, 2**32 - 1).map(str),
        "record-route": st.lists(sip_uri(), min_size=1, max_size=2).map(
            lambda us: ", ".join(f"<{u};lr>" for u in us)
        ),
        "authorization": st.tuples(alnum, hostname, alnum).map(
            lambda t: (
                f'Digest username="{t[0]}", realm="{t[1]}", nonce="{t[2]}", uri="sip:{t[1]}", response="0a1b"'
            )
        ),
        "proxy-authorization": st.tuples(alnum, alnum).map(
            lambda t: f'Digest username="{t[0]}",realm="{t[1]}"'
        ),
        "x-sipwarden-test": free_text,
    }
    chosen = draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=3))
    out += [draw(field(key, draw(optional[key]))) for key in chosen]
    if body:
        out.append(draw(field("content-type", "application/sdp")))
    if content_length or (content_length is None and draw(st.integers(0, 3))):
        # folded Content-Length is checked on its own in test_framer_reads_every_legal_content_length
        out.append(draw(field("content-length", str(len(body)), foldable=False)))
    out = draw(st.permutations(out))
    return Gen(start, list(out), body, meth, status, cseq_n, mf)


@dataclass
class Datagram:
    """A generated valid message as it may arrive in one datagram."""

    gen: Gen
    message: bytes  # what to_bytes() must give back
    data: bytes  # leading CRLFs + message + bytes after the body

    def __repr__(self) -> str:
        return f"Datagram({self.data!r})"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))


@st.composite
def datagrams(draw) -> Datagram:
    gen = draw(valid_messages())
    sep = "\n" if draw(st.integers(0, 3)) == 0 else "\r\n"  # bare LF: a tolerated quirk
    message = gen.wire(sep)
    lead = b"\r\n" * draw(st.integers(0, 3))
    has_cl = any(f.key == "content-length" for f in gen.fields)
    # after the body: junk, or a second message as in RFC 4475 dblreq
    trail = draw(st.binary(max_size=12) | st.just(message)) if has_cl else b""
    return Datagram(gen, message, lead + message + trail)


# SIP-looking hostile messages: real names and value pieces, glued at random
NAME_POOL = [
    *(name.encode() for name in (
        "Via v V VIA vIa From f To t Call-ID i call-id CSeq Contact m cOnTaCt Max-Forwards "
        "Content-Length l L content-LENGTH User-Agent Expires Authorization Proxy-Authorization "
        "WWW-Authenticate Proxy-Authenticate Route Record-Route Path Server Subject s Supported X-Foo"
    ).split()),
    b"Bad Name", b"@", b"", b" Via", b"Via\x00",
]  # fmt: skip
PIECES = [
    b'"', b"\\", b'\\"', b"<", b">", b";", b",", b"=", b"@", b":", b" ", b"\t", b"?", b"&", b"/",
    b"(", b")", b"*", b"sip:", b"sips:", b"tel:", b"urn:x", b"%41", b"%00", b"%", b"%zz", b"%C3%A9",
    b"[", b"]", b"[2001:db8::1]", b"[::1]:5060", b"::", b"z9hG4bK", b";branch=z9hG4bK1", b";tag=",
    b"SIP/2.0/UDP ", b"SIP / 2.0 / TCP ", b"host.example.com", b"192.0.2.1", b":5060", b":65536",
    b"user", b"Digest ", b'username="a"', b"realm=", b"lr", b"0", b"70", b"4294967296",
    b"99999999999", b"INVITE", b"\xc3\xa9", b"\xff", b"\x00", b"\x7f", b"\r\n ", b"\r\n\t", b"\n", b"\r",
]  # fmt: skip
START_LINES = [
    b"INVITE sip:bob@example.com SIP/2.0", b"OPTIONS sip:nm SIP/2.0",
    b"REGISTER sips:[2001:db8::1]:5061 SIP/2.0", b"SIP/2.0 200 OK", b"SIP/2.0 180",
    b"sip/2.0 404 Not Found", b"SIP/2.0 099 x", b"INVITE  sip:a  SIP/2.0", b"INVITE sip:a SIP/1.0",
    b"<sip:a> sip:a SIP/2.0", b"", b"GET / HTTP/1.1", b"SIP/2.0 4294967301 x",
]  # fmt: skip
piece_values = st.lists(st.sampled_from(PIECES) | st.binary(max_size=3), max_size=10).map(b"".join)


@st.composite
def sip_like(draw) -> bytes:
    if draw(st.integers(0, 3)):
        start = draw(st.sampled_from(START_LINES))
    else:
        start = b" ".join(
            [
                draw(st.sampled_from([b"INVITE", b"ACK", b"X%41"]) | piece_values),
                draw(piece_values),
                draw(st.sampled_from([b"SIP/2.0", b"sip/2.0", b"SIP/2.1", b"SIP/2.0 "])),
            ]
        )
    sep = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"]))
    colon = st.sampled_from([b":", b": ", b" : ", b"\t:", b""])
    lines = draw(
        st.lists(
            st.tuples(st.sampled_from(NAME_POOL), colon, piece_values).map(b"".join), max_size=8
        )
    )
    body = draw(st.binary(max_size=16))
    if draw(st.booleans()):
        length = draw(
            st.sampled_from([str(len(body)).encode(), b"0", b"-1", b"00000000000000000001", b"x"])
        )
        lines.insert(draw(st.integers(0, len(lines))), b"Content-Length: " + length)
    lead = draw(st.sampled_from([b"", b"", b"\r\n", b"\r\n\r\n"]))
    end = draw(st.sampled_from([sep + sep, sep + sep, sep, b""]))
    trail = draw(st.sampled_from([b"", b"", sep]) | st.binary(max_size=8))
    return lead + sep.join([start, *lines]) + end + body + trail


# --------------------------------------------------------------- helpers

PEEK_PROPERTIES = tuple(
    "uri via from_ to contact cseq call_id user_agent max_forwards expires content_length "
    "authorization proxy_authorization body".split()
)
MESSAGE_PROPERTIES = tuple(
    "uri vias via from_ to contacts routes record_routes paths call_id cseq max_forwards expires "
    "content_length user_agent server authorization proxy_authorization www_authenticate "
    "proxy_authenticate".split()
)


def read_all(obj: object, names: tuple[str, ...]) -> None:
    for name in names:
        with suppress(SipError):
            getattr(obj, name)


def only_sip_errors(data: bytes) -> None:
    """Property 1: every entry point fails, if at all, with SipError."""
    try:
        msg = parse(data)
    except SipError:
        msg = None
    if msg is not None:
        with suppress(SipError):
            msg.validate()
        read_all(msg, MESSAGE_PROPERTIES)
        for edit in (
            msg.pop_via,
            lambda: msg.set_via_param("rport", None),
            lambda: msg.set_max_forwards(69),
        ):
            try:
                edit()
                parse(msg.to_bytes())
            except SipError:
                pass
    try:
        view = peek(data)
    except SipError:
        view = None
    if view is not None:
        read_all(view, PEEK_PROPERTIES)
    try:
        frames = StreamFramer().feed(data)
    except SipError:
        frames = []
    for frame in frames:
        if frame == PING:
            continue
        with suppress(SipError):
            parse_frame(frame).validate()


class _Raises:
    """Stands for "raised SipError" in comparisons of lazily parsed values."""

    def __repr__(self) -> str:
        return "<raises SipError>"


RAISES = _Raises()


def outcome(read):
    try:
        return read()
    except SipError:
        return RAISES


FRAMING_AND_START_LINE = {
    E.EMPTY,
    E.INCOMPLETE_HEADERS,
    E.BAD_START_LINE,
    E.BAD_REQUEST_LINE,
    E.BAD_STATUS_LINE,
    E.BAD_VERSION,
}


def assert_peek_fails_with_parse(data: bytes):
    """peek(data) raises exactly when parse(data) does (same reason for framing
    and start-line errors). Returns (msg, view) when both succeed."""
    try:
        msg = parse(data)
    except SipError as exc:
        with pytest.raises(SipError) as info:
            peek(data)
        if exc.reason in FRAMING_AND_START_LINE:
            assert info.value.reason == exc.reason
        return None, None
    return msg, peek(data)


def assert_peek_agrees(data: bytes) -> None:
    """Property 5: peek(data) reads what parse(data) reads, and fails where it fails."""
    msg, view = assert_peek_fails_with_parse(data)
    if msg is None:
        return
    assert (view.method, view.uri_text, view.status, view.reason) == (
        msg.method,
        msg.uri_text,
        msg.status,
        msg.reason,
    )
    assert view.body == msg.body
    for name in (
        "uri call_id user_agent cseq from_ to max_forwards expires content_length "
        "authorization proxy_authorization"
    ).split():
        assert outcome(lambda n=name: getattr(view, n)) == outcome(
            lambda n=name: getattr(msg, n)
        ), name
    # the top Via and first Contact: the full parse reads every value, peek only the
    # first, so a broken *later* value may fail msg but not view
    top = outcome(lambda: msg.via)
    got = outcome(lambda: view.via)
    if top is RAISES and got is not RAISES:
        assert got == parse_via(split_list(msg.fields("via")[0].value)[0])
    else:
        assert got == top, "via"
    first = outcome(lambda: msg.contacts[0] if msg.contacts else None)
    got = outcome(lambda: view.contact)
    if first is RAISES and got is not RAISES:
        assert got == parse_address(split_list(msg.fields("contact")[0].value)[0])
    else:
        assert got == first, "contact"
    scalars_agree(peek(data))  # on a fresh view, so the scalar paths run first


def chunks_of(data: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in pairwise(points)]


def cut_points(data: bytes, max_size: int = 12):
    """Cut points anywhere, biased to fall inside CRLF runs (the framer's edge cases)."""
    near_crlf = sorted({i + d for i, b in enumerate(data) if b in b"\r\n" for d in (0, 1)})
    anywhere = st.integers(0, len(data))
    return st.lists(
        st.sampled_from(near_crlf) | anywhere if near_crlf else anywhere, max_size=max_size
    )


# ------------------------------------------------------------------- edits

edit_names = st.sampled_from(
    ["Subject", "X-Edit", "Record-Route", "Contact", "User-Agent", "v", "m", "CALL-ID"]
)
edits = st.one_of(
    st.tuples(st.just("prepend_via"), via_value()),
    st.tuples(st.just("pop_via")),
    st.tuples(
        st.just("set_via_param"),
        st.sampled_from(["branch", "received", "rport", "x"]) | token.map(str.lower),
        st.none() | token,
        st.integers(0, 5),
    ),
    st.tuples(st.just("set_max_forwards"), st.integers(0, 255)),
    st.tuples(st.just("add_header"), edit_names, free_text, st.booleans()),
    st.tuples(st.just("remove_header"), edit_names | st.just("content-length")),
    st.tuples(st.just("replace_header"), edit_names | st.just("max-forwards"), free_text),
)

CORPUS_EDITS = [
    ("prepend_via", "SIP/2.0/TCP edge.example.com:5061;branch=z9hG4bKedge;rport"),
    ("pop_via",),
    ("set_via_param", "received", "192.0.2.7", 0),
    ("set_via_param", "rport", "5060", -1),
    ("set_via_param", "flag", None, 1),
    ("set_max_forwards", 69),
    ("add_header", "X-Warden", "seen", False),
    ("add_header", "Route", "<sip:edge.example.com;lr>", True),
    ("remove_header", "Contact"),
    ("remove_header", "content-length"),
    ("replace_header", "User-Agent", "sipwarden"),
    ("replace_header", "max-forwards", "12"),
]


def apply_and_check_edit(msg: Message, edit: tuple) -> bool:
    """Property 4 (and 3 after edits): apply ``edit``; fields it does not name keep
    their exact text and order, the body stays, and the new values read back
    from the message and from a re-parse of its bytes. Returns False (nothing
    done) for a Via edit on a message whose Vias do not parse or are absent."""
    kind, *args = edit
    key = {
        "prepend_via": "via",
        "pop_via": "via",
        "set_via_param": "via",
        "set_max_forwards": "max-forwards",
    }.get(kind) or header_key(args[0])
    old_vias = outcome(lambda: msg.vias) if key == "via" else None
    if key == "via" and (old_vias is RAISES or (kind != "prepend_via" and not old_vias)):
        return False
    if kind == "set_via_param":
        args[2] %= len(old_vias)
    old_headers = list(msg.headers)
    untouched = [h.render() for h in msg.headers if h.key != key]
    body = msg.body

    if kind == "add_header":
        result = msg.add_header(args[0], args[1], first=args[2])
    else:
        result = getattr(msg, kind)(*args)

    assert [h.render() for h in msg.headers if h.key != key] == untouched, edit
    assert msg.body == body
    again = parse(msg.to_bytes())
    assert again == msg
    named = [h for h in msg.headers if h.key == key]
    for m in (msg, again):
        if kind == "prepend_via":
            assert m.vias == [parse_via(args[0]), *old_vias]
        elif kind == "pop_via":
            assert result == old_vias[0]
            assert m.vias == old_vias[1:]
        elif kind == "set_via_param":
            name, value, index = args
            expected = list(old_vias)
            expected[index] = old_vias[index].with_param(name, value)
            assert m.vias == expected
            assert m.vias[index].param(name) == ("" if value is None else value)
        elif kind == "set_max_forwards":
            assert m.max_forwards == args[0]
            assert len(named) == 1
        elif kind == "add_header":
            name, value, first = args
            assert m.headers[0 if first else -1] == Header(name, value)
            assert len(named) == sum(1 for h in old_headers if h.key == key) + 1
        elif kind == "remove_header":
            assert result == sum(1 for h in old_headers if h.key == key)
            assert args[0] not in m
        elif kind == "replace_header":
            assert m.get(args[0]) == args[1]
            assert len(named) == 1
            firsts = [i for i, h in enumerate(old_headers) if h.key == key]
            position = next(i for i, h in enumerate(msg.headers) if h.key == key)
            assert position == (firsts[0] if firsts else len(msg.headers) - 1)
    return True


# ============================================================ 1. only SipError


@CHEAP
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_sip_error(data):
    """Random bytes never escape as anything but SipError."""
    only_sip_errors(data)


@CHEAP
@given(sip_like())
def test_sip_like_bytes_raise_only_sip_error(data):
    """SIP-looking garbage (real names, quotes, <>, ;, %XX, IPv6, folding) reaches
    the typed-value parsers and still only raises SipError."""
    only_sip_errors(data)


@SLOW_GEN
@given(datagrams())
def test_valid_messages_raise_only_sip_error_and_validate(dg):
    """Every generated valid message parses and validates; nothing else raises."""
    parse(dg.data).validate()
    only_sip_errors(dg.data)


# ============================================================ 2. stream framing


@st.composite
def streams(draw):
    """Valid messages with Content-Length, CRLF keep-alives around them, and the
    frames a framer must give: PING for each CRLFCRLF, each message whole."""
    gens = draw(st.lists(valid_messages(content_length=True), min_size=1, max_size=3))
    gaps = draw(st.lists(st.integers(0, 5), min_size=len(gens) + 1, max_size=len(gens) + 1))
    stream, expected = b"", []
    for gap, gen in zip(gaps, gens, strict=False):
        message = gen.wire()
        stream += b"\r\n" * gap + message
        expected += [PING] * (gap // 2) + [message]
    stream += b"\r\n" * gaps[-1]
    expected += [PING] * (gaps[-1] // 2)
    return stream, expected


def feed_all(framer: StreamFramer, chunks: list[bytes], got: list[bytes]) -> list[bytes]:
    for chunk in chunks:
        got += framer.feed(chunk)
    return got


@STREAMS
@given(streams(), st.data())
def test_framer_any_chunking_gives_the_same_frames(stream_expected, data):
    """Chunking never changes the frames; frames are the messages' exact bytes
    and parse_frame reads each as parse reads the message."""
    stream, expected = stream_expected
    whole = StreamFramer().feed(stream)
    assert whole == expected
    cuts = data.draw(cut_points(stream), label="cuts")
    chunked = feed_all(StreamFramer(), chunks_of(stream, cuts), [])
    assert chunked == expected
    assert feed_all(StreamFramer(), [stream[i : i + 1] for i in range(len(stream))], []) == expected
    for frame in chunked:
        if frame != PING:
            assert parse_frame(frame) == parse(frame)
            parse_frame(frame).validate()


@STREAMS
@given(streams(), st.data())
def test_framer_max_size_holds_whatever_the_chunking(stream_expected, data):
    """A message longer than max_size is message-too-large however it arrives;
    messages within the limit pass, and no frame is invented or reordered."""
    stream, expected = stream_expected
    sizes = sorted({len(f) + d for f in expected if f != PING for d in (-1, 0, 1)})
    # (at least a ping's 4 bytes: below that a keep-alive itself would be
    # too large; the config's floor is 1024)
    max_size = data.draw(st.sampled_from(sizes) | st.integers(4, sizes[-1]), label="max_size")
    cuts = data.draw(cut_points(stream), label="cuts")
    framer = StreamFramer(max_size=max_size)
    got: list[bytes] = []
    oversize = [i for i, f in enumerate(expected) if f != PING and len(f) > max_size]
    if not oversize:
        assert feed_all(framer, chunks_of(stream, cuts), got) == expected
        return
    try:
        feed_all(framer, chunks_of(stream, cuts), got)
        error = framer.error  # the frames before it were delivered, the error kept
    except SipError as exc:
        error = exc
    assert error is not None and error.reason == E.TOO_LARGE
    # every frame before the oversize one is delivered, and nothing after it
    assert got == expected[: oversize[0]]


@st.composite
def content_length_forms(draw) -> str:
    """A Content-Length field in a form RFC 3261 allows: any case or 'l',
    HCOLON = *(SP/HTAB) ':' SWS (so a line fold after the colon), 1*DIGIT."""
    name = draw(st.sampled_from(["Content-Length", "content-length", "CONTENT-LENGTH", "l", "L"]))
    before = draw(st.sampled_from(["", " ", "\t "]))
    after = draw(st.sampled_from(["", " ", "\t", "\r\n ", " \r\n\t", "\r\n   "]))
    zeros = draw(st.integers(0, 12))
    return f"{name}{before}:{after}{'0' * zeros}"


@SLOW_GEN
@given(valid_messages(content_length=False), content_length_forms(), st.data())
def test_framer_reads_every_legal_content_length(gen, prefix, data):
    """The framer reads Content-Length as the grammar allows (LWS, folding,
    leading zeros), so it frames what parse_frame and parse accept."""
    gen.fields = [f for f in gen.fields if f.key != "content-length"]
    message = gen.wire()
    head, _, body = message.partition(b"\r\n\r\n")
    message = head + f"\r\n{prefix}{len(body)}".encode() + b"\r\n\r\n" + body
    assert parse(message).content_length == len(body)
    cuts = data.draw(cut_points(message + message, 6), label="cuts")
    frames = feed_all(StreamFramer(), chunks_of(message + message, cuts), [])
    assert frames == [message, message]
    assert parse_frame(message) == parse(message)


# ============================================================ 3. round trips


@SLOW_GEN
@given(datagrams())
def test_generated_message_round_trips(dg):
    """Bytes -> Message -> bytes is exact; Message -> bytes -> Message is equal;
    the parser reads the fields, start line and integers the generator wrote."""
    gen = dg.gen
    msg = parse(dg.data)
    assert msg.to_bytes() == dg.message
    model = gen.model()
    assert msg == model
    assert parse(model.to_bytes()) == model
    assert parse(msg.to_bytes()) == msg
    assert (msg.method, msg.status) == (gen.method, gen.status)
    assert msg.cseq.number == gen.cseq
    assert msg.max_forwards == gen.max_forwards


@pytest.mark.parametrize("name", ROUND_TRIP_FILES)
def test_corpus_round_trips(name):
    """Torture and scanner messages: to_bytes() is the input minus leading CRLFs
    and bytes after the body, and re-parses to an equal message."""
    data = CORPUS[name]
    msg = parse(data)
    lead = 0
    while data.startswith(b"\r\n", lead):
        lead += 2
    wire = msg.to_bytes()
    assert data[lead:].startswith(wire)
    if E.D_TRAILING_BYTES not in msg.defects:
        assert wire == data[lead:]
    assert wire.endswith(msg.body)
    assert parse(wire) == msg


@st.composite
def int_header(draw) -> tuple[str, str, int]:
    key = draw(st.sampled_from(["max-forwards", "expires", "cseq", "content-length"]))
    n = draw(st.integers(0, 40 if key == "content-length" else 2**32 - 1))
    return key, "0" * draw(st.integers(0, 12)) + str(n), n


@SLOW_GEN
@given(valid_messages(content_length=False), int_header())
def test_integer_headers_read_their_decimal_value(gen, header):
    """1*DIGIT values (leading zeros are in the grammar) read as their number in
    parse and in peek; only values over 2**32-1 are out of range."""
    key, digits, n = header
    cseq_method = next(f for f in gen.fields if f.key == "cseq").value.split(" ", 1)[1]
    gen.fields = [f for f in gen.fields if f.key != key]
    if key == "content-length":
        gen.body = b"x" * n
    gen.fields.append(
        Field(key, canonical_name(key), f"{digits} {cseq_method}" if key == "cseq" else digits)
    )
    data = gen.wire()

    def number(reader):
        view = reader(data)
        return view.cseq.number if key == "cseq" else getattr(view, key.replace("-", "_"))

    assert outcome(lambda: number(parse)) == n, f"parse: {key}: {digits}"
    assert outcome(lambda: number(peek)) == n, f"peek: {key}: {digits}"


# ============================================================ 4. edits


@budget(50)
@given(valid_messages(), st.lists(edits, min_size=1, max_size=3))
def test_edits_touch_only_what_they_name(gen, edit_list):
    """prepend_via, pop_via, set_via_param, set_max_forwards, add_header,
    remove_header and replace_header keep every other field byte for byte, in
    order, keep the body, and round-trip through bytes."""
    msg = parse(gen.wire())
    for edit in edit_list:
        apply_and_check_edit(msg, edit)


@pytest.mark.parametrize("name", ROUND_TRIP_FILES)
def test_corpus_edits_touch_only_what_they_name(name):
    """The same edit checks on every torture and scanner message that parses."""
    for edit in CORPUS_EDITS:
        apply_and_check_edit(parse(CORPUS[name]), edit)


# ============================================================ 5. peek agrees with parse


@budget(50)
@given(valid_messages(content_length=True))
def test_peek_agrees_with_parse_on_valid_messages(gen):
    """Folded lines, LWS before ':', compact and odd-case names: same values."""
    assert_peek_agrees(gen.wire())


@budget(50)
@given(datagrams())
def test_peek_agrees_with_parse_on_datagram_quirks(dg):
    """Leading CRLFs, bare-LF line ends, bytes after the body, no Content-Length:
    peek frames the datagram exactly as parse does, body included."""
    assert_peek_agrees(dg.data)


@CHEAP
@given(sip_like())
def test_peek_fails_where_parse_fails(data):
    """On SIP-looking garbage, peek raises whenever parse raises, and only then
    (same reason for framing and start-line errors)."""
    assert_peek_fails_with_parse(data)


@CHEAP
@given(sip_like())
def test_peek_reads_what_parse_reads_on_sip_like(data):
    """On SIP-looking garbage that parses, peek's values (or SipError for a
    lazily parsed field) are the full parse's."""
    assert_peek_agrees(data)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_peek_agrees_with_parse_on_corpus(name):
    """Every torture and scanner file: same values, or both raise."""
    assert_peek_agrees(CORPUS[name])


# ============================================================ 6. mutation fuzz


def _line_starts(data: bytes) -> list[int]:
    return [0, *(m.end() for m in re.finditer(rb"\n", data))]


@st.composite
def mutated_corpus(draw) -> bytes:
    """A torture or scanner file with 1-5 mutations: byte flips, inserted
    pieces or bytes, deleted slices, a duplicated line, truncation, or a splice
    with another file."""
    data = bytearray(draw(st.sampled_from(CORPUS_BYTES)))
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup_line", "truncate", "splice"]))
        n = len(data)
        if op == "flip" and n:
            data[draw(st.integers(0, n - 1))] ^= draw(st.integers(1, 255))
        elif op == "insert":
            at = draw(st.integers(0, n))
            data[at:at] = draw(st.sampled_from(PIECES) | st.binary(min_size=1, max_size=8))
        elif op == "delete":
            at = draw(st.integers(0, n))
            del data[at : draw(st.integers(at, min(n, at + 40)))]
        elif op == "dup_line":
            starts = _line_starts(bytes(data))
            i = draw(st.integers(0, len(starts) - 1))
            line = data[starts[i] : starts[i + 1] if i + 1 < len(starts) else n]
            at = draw(st.sampled_from(starts))
            data[at:at] = line
        elif op == "truncate":
            del data[draw(st.integers(0, n)) :]
        elif op == "splice":
            other = draw(st.sampled_from(CORPUS_BYTES))
            data = data[: draw(st.integers(0, n))] + other[draw(st.integers(0, len(other))) :]
    return bytes(data)


@pytest.mark.fuzz
@budget(600)
@given(mutated_corpus())
def test_mutated_corpus_raises_only_sip_error(data):
    """Bounded mutation fuzz from the RFC 4475/5118 and scanner corpus: property 1."""
    only_sip_errors(data)
