"""The C hot path and its pure-Python twins give the same answers.

``_speedups`` claims only shapes it can parse exactly and returns None for
the rest; these properties check that every claim agrees with the Python
twin (and that the simple-shape fast paths agree with the general parsers),
on the corpus and on generated near-miss input.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipwarden.sip import PEEKED_HEADERS, SipError, parse, peek
from sipwarden.sip.accel import SPEEDUPS
from sipwarden.sip.address import address_from_parts, general_address, name_addr_parts_py
from sipwarden.sip.fields import _general_via, _simple_auth_params, parse_auth, via_parts_py
from sipwarden.sip.message import parse_python
from sipwarden.sip.peek import _KEYS as KEYS
from sipwarden.sip.peek import CONTACT, MAX_FORWARDS, SERVER, USER_AGENT, VIA, Peek, peek_python

from ..conftest import SCANNERS, TORTURE, need

CORPUS = (
    sorted(SCANNERS.glob("*.sip"))
    + sorted(TORTURE.glob("*.dat"))
    + sorted((TORTURE / "rfc5118-wire").iterdir())
)


@pytest.fixture(scope="module")
def c():
    need(
        SPEEDUPS is not None,
        "the C extension sipwarden.sip._speedups is not built (needs a C compiler)",
    )
    return SPEEDUPS


# --- generated near-miss text -------------------------------------------------------

PIECES = st.sampled_from(
    [
        "a",
        "Z",
        "9",
        "-",
        ".",
        "!",
        "%",
        "%41",
        "*",
        "_",
        "+",
        "`",
        "'",
        "~",
        "(",
        ")",
        "&",
        "=",
        "$",
        ",",
        ";",
        "?",
        "/",
        ":",
        "@",
        "[",
        "]",
        "<",
        ">",
        '"',
        "\\",
        " ",
        "\t",
        "\r",
        "\x0b",
        "é",
        "\x00",
    ]
)
WORD = st.lists(
    st.one_of(PIECES, st.sampled_from(["alice", "pbx", "example", "com", "2001", "db8"])),
    max_size=6,
).map("".join)
HOST = st.one_of(
    st.sampled_from(
        [
            "example.com",
            "192.0.2.1",
            "[2001:db8::1]",
            "[::ffff:192.0.2.10]",
            "h_1",
            "[zz]",
            "",
            "a..b",
        ]
    ),
    WORD,
)
PORT = st.one_of(
    st.just(""), st.integers(0, 999999).map(lambda p: f":{p}"), st.just(":"), st.just(":0x1")
)
PARAM = st.builds(
    lambda name, eq, value: f";{name}{eq}{value}",
    st.one_of(
        st.sampled_from(
            ["tag", "TAG", "lr", "transport", "branch", "rport", "received", "q", "+sip.instance"]
        ),
        WORD,
    ),
    st.sampled_from(["", "=", " = "]),
    st.one_of(
        WORD, st.sampled_from(['"<urn:uuid:1>"', '"a;b"', '"x\\"y"', "1.2.3.4", "[2001:db8::9]"])
    ),
)
PARAMS = st.lists(PARAM, max_size=4).map("".join)
DISPLAY = st.one_of(
    st.just(""),
    st.builds(lambda w: f'"{w}" ', WORD),
    st.builds(lambda w: f'"{w}"', WORD),
    st.sampled_from(["Bob ", "Bob  Smith\t", "caller", '"a\\"b" ', '"unterminated ']),
    st.builds(lambda w: f"{w} ", WORD),
)
SCHEME = st.sampled_from(["sip:", "sips:", "SIP:", "tel:", "http:", "sip", ""])
USERINFO = st.one_of(
    st.just(""), st.builds(lambda w: f"{w}@", WORD), st.sampled_from(["u:pw@", "a%20b@", "@"])
)


@st.composite
def addresses(draw):
    uri = draw(SCHEME) + draw(USERINFO) + draw(HOST) + draw(PORT) + draw(PARAMS)
    if draw(st.booleans()):
        text = draw(DISPLAY) + "<" + uri + draw(st.sampled_from([">", "", " >"])) + draw(PARAMS)
    else:
        text = uri + draw(PARAMS)
    return draw(st.sampled_from(["", " ", "\t"])) + text + draw(st.sampled_from(["", " ", "\r"]))


@st.composite
def vias(draw):
    proto = draw(
        st.sampled_from(
            [
                "SIP/2.0/UDP",
                "SIP/2.0/TCP",
                "SIP/2.0/tls",
                "SIP / 2.0 / UDP",
                "SIP/2.1/UDP",
                "SIP/2.0/",
            ]
        )
    )
    sep = draw(st.sampled_from([" ", "  ", "\t", ""]))
    return (
        proto + sep + draw(HOST) + draw(PORT) + draw(PARAMS) + draw(st.sampled_from(["", " ", ","]))
    )


SETTINGS = settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def general_or_error(fn, text):
    try:
        return ("ok", fn(text))
    except SipError as exc:
        return ("error", exc.reason)


# --- name_addr ----------------------------------------------------------------------


@SETTINGS
@given(addresses())
def test_name_addr_c_equals_python(c, text):
    assert c.name_addr(text) == name_addr_parts_py(text)


@SETTINGS
@given(addresses())
def test_simple_address_equals_general_parse(text):
    parts = name_addr_parts_py(text)
    if parts is not None:
        fast = address_from_parts(parts, text)
        assert general_or_error(general_address, text) == ("ok", fast)
        assert parts[8] == fast.tag
        assert (parts[2], parts[3], parts[4]) == (fast.uri.user, fast.uri.host, fast.uri.port)


def test_name_addr_claims_the_common_shapes(c):
    for text in (
        '"Reception" <sip:2001@pbx.example.com>;tag=1834027512',
        '<sip:2001@192.0.2.10:5060>;reg-id=1;+sip.instance="<urn:uuid:00000000-0000-1000-8000-805ec0aa1b2c>"',
        "sip:100@127.0.0.1;tag=3130303a31",
        "Bob  Smith <sip:b@[2001:db8::1]:5070;transport=TCP;lr>;expires=60",
    ):
        assert c.name_addr(text) is not None, text
        assert c.name_addr(text) == name_addr_parts_py(text)


# --- via ------------------------------------------------------------------------------


@SETTINGS
@given(vias())
def test_via_c_equals_python(c, text):
    assert c.via(text) == via_parts_py(text)


@SETTINGS
@given(vias())
def test_simple_via_equals_general_parse(text):
    parts = via_parts_py(text)
    if parts is not None:
        via = _general_via(text)
        assert (via.transport, via.host, via.port) == parts[:3]
        assert (via.branch, via.rport, via.received) == parts[4:]


# --- scan -------------------------------------------------------------------------------


def view_of(view: Peek) -> tuple:
    return (
        view.method,
        view.uri_text,
        view.status,
        view.reason,
        view.body_at,
        view.body_end,
        tuple(view._values),
    )


def agree(c, data: bytes) -> None:
    try:
        python = ("ok", view_of(peek_python(data)))
    except SipError as exc:
        python = ("error", exc.reason)
    found = c.scan(data)
    if found is not None:
        assert python == ("ok", found[:7])
        layout_agrees(data, found[6], found[7])


def layout_agrees(data: bytes, values: tuple, layout: tuple) -> None:
    """The offsets the splice path edits at point at exactly those values."""
    line_end, repeated, *bounds = layout
    assert data[line_end : line_end + 2] == b"\r\n" and b"\r\n" not in data[:line_end]
    pairs = list(zip(bounds[::2], bounds[1::2], strict=True))
    for slot, (start, end) in zip(
        (VIA, MAX_FORWARDS, SERVER, USER_AGENT, CONTACT), pairs, strict=True
    ):
        if values[slot] is None:
            assert (start, end) == (-1, -1)
        else:
            assert data[start:end].decode("utf-8", "surrogateescape") == values[slot]
    counts: dict[str, int] = {}
    for h in parse_python(data).headers:
        counts[h.key] = counts.get(h.key, 0) + 1
    expected = sum(1 << i for i, key in enumerate(KEYS) if counts.get(key, 0) > 1)
    assert repeated == expected


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_scan_agrees_on_corpus(c, path):
    agree(c, path.read_bytes())


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_public_accessors_agree_on_both_paths(c, path):
    """What the policy reads through Peek's public accessors is the same
    whether the C scanner or the Python twin indexed the message."""
    data = path.read_bytes()
    if c.scan(data) is None:
        return  # left to Python: one path only
    fast, slow = peek(data), peek_python(data)
    assert fast.missing_mandatory() == slow.missing_mandatory()
    assert [fast.raw(i) for i in range(len(PEEKED_HEADERS))] == [
        slow.raw(i) for i in range(len(PEEKED_HEADERS))
    ]
    assert fast.message().headers == slow.message().headers


def test_scan_claims_real_scanner_traffic(c):
    claimed = [p.name for p in SCANNERS.glob("*.sip") if c.scan(p.read_bytes()) is not None]
    assert len(claimed) >= 12, claimed


LINES = st.sampled_from(
    [
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport",
        b"v: SIP/2.0/TCP h;branch=z9hG4bK2",
        b"vIa: SIP/2.0/UDP h",
        b"Via : SIP/2.0/UDP h",
        b" folded",
        b"From: <sip:a@b>;tag=1",
        b"f: sip:x@y",
        b"To: <sip:b@c>",
        b"Call-ID: abc",
        b"i: def",
        b"CSeq: 1 OPTIONS",
        b"User-Agent: friendly-scanner",
        b"Contact: <sip:a@192.0.2.1>",
        b"Max-Forwards: 70",
        b"Expires: 3600",
        b'Authorization: Digest username="a"',
        b"Accept: application/sdp",
        b"X-Weird:\xff\xfe",
        b"NoColon",
        b": empty name",
        b"Content-Length: 0",
        b"Content-Length: 2",
        b"l: 00",
        b"Content-Length: abc",
        b"Content-Length:  0 ",
        b"Server: x\rbad",
    ]
)
START = st.sampled_from(
    [
        b"OPTIONS sip:a@b SIP/2.0",
        b"INVITE sip:x SIP/2.0",
        b"REGISTER  sip:x SIP/2.0",
        b"REGISTER sip:x sip/2.0",
        b"SIP/2.0 200 OK",
        b"SIP/2.0 100 ",
        b"SIP/2.0 100",
        b"SIP/2.0 999 No",
        b"SIP/7.0 200 OK",
        b"BAD\x01 sip:x SIP/2.0",
        b"",
    ]
)


# near-miss datagrams: every framing quirk, odd start lines, odd header lines
GENERATED = st.builds(
    lambda lead, start, lines, end, body: lead + b"\r\n".join([start, *lines]) + end + body,
    st.sampled_from([b"", b"\r\n"]),
    START,
    st.lists(LINES, max_size=10),
    st.sampled_from([b"\r\n\r\n", b"\r\n", b"\n\n", b""]),
    st.sampled_from([b"", b"hi", b"\x00\x01"]),
)


@settings(max_examples=1500, deadline=None)
@given(GENERATED)
def test_scan_agrees_on_generated_messages(c, data):
    agree(c, data)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300))
def test_scan_agrees_on_arbitrary_bytes(c, data):
    agree(c, data)


# --- split (parse's framing and header split) -------------------------------------------


def parse_outcome(fn, data: bytes):
    try:
        msg = fn(data)
    except SipError as exc:
        return ("error", exc.reason)
    return (
        "ok",
        msg.start_line,
        [(h.name, h.key, h.value, h.render()) for h in msg.headers],
        msg.body,
        msg.defects,
        msg.to_bytes(),
    )


def split_agrees(c, data: bytes) -> None:
    expected = parse_outcome(parse_python, data)
    assert parse_outcome(parse, data) == expected
    found = c.split(data)
    if found is None or expected[0] == "error":
        return  # (the start line is checked by Message itself, on both paths)
    start_line, fields, index, body_at, body_end = found
    _, *expected_parts = expected
    # (start-line defects are Message's own and were compared above)
    assert expected_parts[:3] + expected_parts[4:] == [
        start_line,
        [tuple(f) for f in fields],
        data[body_at:body_end],
        data[:body_end],
    ]
    keys: dict[str, list[str]] = {}
    for _, key, value, _ in fields:
        keys.setdefault(key, []).append(value)
    assert index == keys


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_split_agrees_on_corpus(c, path):
    split_agrees(c, path.read_bytes())


def test_split_claims_real_scanner_traffic(c):
    claimed = [p.name for p in SCANNERS.glob("*.sip") if c.split(p.read_bytes()) is not None]
    assert len(claimed) >= 12, claimed


@settings(max_examples=1500, deadline=None)
@given(GENERATED)
def test_split_agrees_on_generated_messages(c, data):
    split_agrees(c, data)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300))
def test_split_agrees_on_arbitrary_bytes(c, data):
    split_agrees(c, data)


# --- digest parameters -------------------------------------------------------------------

AUTH_ITEM = st.builds(
    lambda name, sp1, eq, sp2, value: f"{name}{sp1}{eq}{sp2}{value}",
    st.sampled_from(
        ["username", "realm", "nonce", "uri", "response", "qop", "nc", "x y", "", "NC"]
    ),
    st.sampled_from(["", " ", "\t"]),
    st.sampled_from(["=", "", "=="]),
    st.sampled_from(["", " "]),
    st.one_of(WORD, st.sampled_from(['"a,b"', '"x\\"y"', '"unterminated', "sip:a@b", "abc=="])),
)


@SETTINGS
@given(st.lists(AUTH_ITEM, max_size=5), st.sampled_from([",", ", ", ",,", " ,"]))
def test_simple_auth_params_equal_general(items, sep):
    rest = sep.join(items).strip()
    simple = _simple_auth_params(rest) if rest else None
    if simple is not None:
        general = general_or_error(
            lambda t: parse_auth(t), "Digest " + rest + ","
        )  # trailing comma: general path
        assert general == ("ok", parse_auth("Digest " + rest)), rest
        assert general[1].params == tuple(simple)
