"""The hot-path view agrees with the full parse on every real message we have."""

from __future__ import annotations

import pytest

from sipwarden.sip import PEEKED_HEADERS, SipError, parse, peek

from ..conftest import SCANNERS, TORTURE

SCANNER_FILES = sorted(SCANNERS.glob("*.sip"))
CORPUS = (
    SCANNER_FILES + sorted(TORTURE.glob("*.dat")) + sorted((TORTURE / "rfc5118-wire").iterdir())
)


def outcome(fn):
    try:
        return ("ok", fn())
    except SipError as exc:
        return ("error", exc.reason)


SCALARS = [
    ("via", ("via_transport", "transport"), ("via_host", "host"), ("via_port", "port")),
    ("via", ("via_branch", "branch"), ("via_rport", "rport"), ("via_received", "received")),
    ("from_", ("from_user", "uri.user"), ("from_tag", "tag")),
    ("to", ("to_user", "uri.user"), ("to_tag", "tag")),
    ("contact", ("contact_user", "uri.user")),
    ("cseq", ("cseq_method", "method")),
]


def _field(value, path: str):
    for part in path.split("."):
        value = None if value is None else getattr(value, part)
    return value


def scalars_agree(view) -> None:
    """The scalar accessors give what the view's typed values give (and fail alike)."""
    for typed, *pairs in SCALARS:
        expected = outcome(lambda t=typed: getattr(view, t))
        for scalar, path in pairs:
            got = outcome(lambda s=scalar: getattr(view, s))
            if expected[0] == "error":
                assert got == expected, scalar
            else:
                assert got == ("ok", _field(expected[1], path)), scalar
    if view.is_request:
        uri = outcome(lambda: view.uri)
        for scalar, field in (("ruri_user", "user"), ("ruri_host", "host"), ("ruri_port", "port")):
            got = outcome(lambda s=scalar: getattr(view, s))
            assert got == (uri if uri[0] == "error" else ("ok", getattr(uri[1], field))), scalar


def same_view(data: bytes) -> None:
    msg = parse(data)
    view = peek(data)
    assert (view.method, view.uri_text, view.status, view.reason) == (
        msg.method,
        msg.uri_text,
        msg.status,
        msg.reason,
    )
    assert view.call_id == msg.call_id
    assert view.user_agent == msg.user_agent
    assert view.server == msg.server
    assert view.body == msg.body
    assert view.has_credentials == ("authorization" in msg or "proxy-authorization" in msg)
    assert outcome(lambda: view.via) == outcome(lambda: msg.via)
    assert outcome(lambda: view.from_) == outcome(lambda: msg.from_)
    assert outcome(lambda: view.to) == outcome(lambda: msg.to)
    assert outcome(lambda: view.cseq) == outcome(lambda: msg.cseq)
    assert outcome(lambda: view.max_forwards) == outcome(lambda: msg.max_forwards)
    assert outcome(lambda: view.expires) == outcome(lambda: msg.expires)
    assert outcome(lambda: view.content_length) == outcome(lambda: msg.content_length)
    assert outcome(lambda: view.authorization) == outcome(lambda: msg.authorization)
    first_contact = outcome(lambda: msg.contacts[0] if msg.contacts else None)
    if first_contact[0] == "ok":
        assert outcome(lambda: view.contact) == first_contact
    if msg.is_request:
        assert outcome(lambda: view.uri) == outcome(lambda: msg.uri)
    scalars_agree(peek(data))  # a fresh view: scalars first, before any typed read


@pytest.mark.parametrize("path", SCANNER_FILES, ids=lambda p: p.name)
def test_every_scanner_message_parses_and_peek_agrees(path):
    data = path.read_bytes()
    msg = parse(data)
    if msg.is_request:  # (svcrash's crafted response hides its headers in the body)
        assert msg.call_id and msg.cseq is not None
    same_view(data)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_peek_agrees_with_parse_on_corpus(path):
    data = path.read_bytes()
    parsed = outcome(lambda: parse(data))
    if parsed[0] == "error":
        assert outcome(lambda: peek(data)) == parsed
    else:
        same_view(data)


def test_nmap_probe_fields():
    view = peek((SCANNERS / "nmap_7.93_sV_SIPOptions_udp.sip").read_bytes())
    assert view.method == "OPTIONS"
    assert view.uri.host == "nm" and view.uri.user is None
    assert view.via.branch == "foo"
    assert view.from_.uri.user == "nm" and view.from_.tag == "root"
    assert view.to.uri.user == "nm2" and view.to.tag is None
    assert view.call_id == "50000"
    assert (view.cseq.number, view.cseq.method) == (42, "OPTIONS")


def test_svcrack_guess_is_visible():
    view = peek((SCANNERS / "svcrack_0.3.8_REGISTER_auth_pw100.sip").read_bytes())
    assert view.user_agent == "friendly-scanner"
    assert view.has_credentials
    assert view.authorization.username == "100"
    assert bytes.fromhex(view.from_.tag).startswith(b"100:100")


def test_odd_spellings_take_the_exact_path():
    data = (
        b"OPTIONS sip:a@b SIP/2.0\r\n"
        b"vIa : SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"FROM: <sip:x@y>;tag=1\r\nt: <sip:a@b>\r\ni: abc\r\n"
        b"cseq: 1\r\n OPTIONS\r\nl: 0\r\n\r\n"
    )
    view = peek(data)
    assert view.via.branch == "z9hG4bK1"
    assert view.from_.tag == "1"
    assert view.call_id == "abc"
    assert view.cseq.number == 1
    same_view(data)


def test_odd_case_name_without_spaces():
    data = b"OPTIONS sip:a@b SIP/2.0\r\nVIa: SIP/2.0/UDP h;branch=z9hG4bK9\r\nl: 0\r\n\r\n"
    assert peek(data).via.branch == "z9hG4bK9"


def test_peek_rejects_duplicate_content_length():
    data = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\nl: 0\r\n\r\n"
    with pytest.raises(SipError) as info:
        peek(data)
    assert info.value.reason == "duplicate-content-length"


MANDATORY = ("via", "from", "to", "call-id", "cseq")


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_public_accessors_agree_with_parse(path):
    """``missing_mandatory``, ``raw`` by ``PEEKED_HEADERS`` and ``message``
    (what the policy reads) say what the full parse says."""
    data = path.read_bytes()
    parsed = outcome(lambda: parse(data))
    if parsed[0] == "error":
        return
    msg = parsed[1]
    view = peek(data)
    assert view.missing_mandatory() == next((k for k in MANDATORY if k not in msg), None)
    for slot, key in enumerate(PEEKED_HEADERS):
        assert view.raw(slot) == msg.get(key), key
    full = view.message()
    assert full is view.message()  # parsed once, then kept
    assert [(h.key, h.value) for h in full.headers] == [(h.key, h.value) for h in msg.headers]


def test_missing_mandatory_names_the_first_missing():
    data = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\nl: 0\r\n\r\n"
    assert peek(data).missing_mandatory() == "from"
    assert PEEKED_HEADERS[:5] == MANDATORY


@pytest.mark.parametrize(
    "cseq",
    [
        "1 REGISTER",
        "7 OPTIONS",
        "102 INVITE",
        "0 BYE",
        "999999999 CANCEL",
        "1 FOO",
        "1  INVITE",
        "1234567890 INVITE",
        "4294967296 INVITE",
        "1 invite",
        "x INVITE",
        "1 INVITE ",
    ],
)
def test_a_responses_cseq_method_is_what_the_full_parse_says(cseq: str) -> None:
    """In an answer (no method of its own to compare with) the quick read of
    the CSeq method takes only the standard methods, and agrees with the
    CSeq parser on every shape, broken ones included."""
    data = (
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
        "From: <sip:a@192.0.2.1>;tag=1\r\nTo: <sip:b@192.0.2.2>;tag=2\r\nCall-ID: c\r\n"
        f"CSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    try:
        full = peek(data).cseq
    except SipError as exc:
        with pytest.raises(SipError) as quick:
            _ = peek(data).cseq_method
        assert quick.value.reason == exc.reason
        return
    assert peek(data).cseq_method == (None if full is None else full.method)
