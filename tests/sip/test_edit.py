"""Building responses and editing messages while keeping untouched bytes."""

from __future__ import annotations

import pytest

from sipwarden.sip import SipError, make_request, make_response, parse

from ..conftest import SCANNERS, TORTURE

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKnashds8;rport, SIP/2.0/TCP p2.example.com;branch=z9hG4bK2\r\n"
    b"v:   SIP/2.0/UDP   p3.example.com ;branch=z9hG4bK3\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@example.com>\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.example.com>\r\n"
    b"X-Odd:    spaced   value \r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n\r\n"
    b"v=0\n"
)


def fields(msg):
    return [h.render() for h in msg.headers]


def test_unedited_message_serialises_to_the_same_bytes():
    for path in [*SCANNERS.glob("*.sip"), TORTURE / "wsinv.dat", TORTURE / "longreq.dat"]:
        data = path.read_bytes()
        assert parse(data).to_bytes() == data


def test_prepend_via_keeps_everything_else():
    msg = parse(INVITE)
    before = fields(msg)
    msg.prepend_via("SIP/2.0/UDP edge.example.net:5060;branch=z9hG4bKedge")
    out = msg.to_bytes()
    assert out.startswith(
        b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP edge.example.net:5060;branch=z9hG4bKedge\r\n"
    )
    assert out.endswith(INVITE[INVITE.index(b"Via:") :])
    again = parse(out)
    assert again == msg
    assert fields(again)[1:] == before
    assert [v.branch for v in again.vias] == [
        "z9hG4bKedge",
        "z9hG4bKnashds8",
        "z9hG4bK2",
        "z9hG4bK3",
    ]


def test_pop_via_from_a_multi_value_line():
    msg = parse(INVITE)
    top = msg.pop_via()
    assert top.branch == "z9hG4bKnashds8" and top.host == "pc33.example.com"
    assert [v.branch for v in msg.vias] == ["z9hG4bK2", "z9hG4bK3"]
    # the third Via, on its own line, is byte-identical
    assert b"v:   SIP/2.0/UDP   p3.example.com ;branch=z9hG4bK3\r\n" in msg.to_bytes()
    msg.pop_via()
    top = msg.pop_via()
    assert top.branch == "z9hG4bK3"
    assert msg.vias == []
    with pytest.raises(SipError):
        msg.pop_via()


def test_set_via_param_received_and_rport():
    msg = parse(INVITE)
    msg.set_via_param("received", "192.0.2.4")
    msg.set_via_param("rport", "5066")
    via = parse(msg.to_bytes()).via
    assert via.received == "192.0.2.4"
    assert via.rport == "5066"
    assert via.params == (
        ("branch", "z9hG4bKnashds8"),
        ("rport", "5066"),
        ("received", "192.0.2.4"),
    )
    msg.set_via_param("maddr", None, index=2)
    assert parse(msg.to_bytes()).vias[2].maddr == ""


def test_max_forwards_and_header_edits():
    msg = parse(INVITE)
    msg.set_max_forwards(69)
    msg.add_header("Record-Route", "<sip:edge.example.net;lr>", first=True)
    msg.add_header("X-Extra", "1")
    msg.replace_header("x-odd", "tidy")
    assert msg.remove_header("contact") == 1
    assert msg.remove_header("contact") == 0
    out = parse(msg.to_bytes())
    assert out.max_forwards == 69
    assert out.headers[0].name == "Record-Route"
    assert out.get("X-Extra") == "1"
    assert out.get("X-Odd") == "tidy"
    assert "contact" not in out
    assert out.body == b"v=0\n"
    # untouched fields keep their exact text
    untouched = {"via", "to", "from", "call-id", "cseq", "content-type", "content-length"}
    assert [h.render() for h in out.headers if h.key in untouched] == [
        h.render() for h in parse(INVITE).headers if h.key in untouched
    ]


def test_replace_header_collapses_duplicates_in_place():
    msg = parse(b"OPTIONS sip:a@b SIP/2.0\r\nX-A: 1\r\nX-B: 2\r\nx-a: 3\r\nl: 0\r\n\r\n")
    msg.replace_header("X-A", "9")
    assert [(h.name, h.value) for h in msg.headers] == [("X-A", "9"), ("X-B", "2"), ("l", "0")]


def test_set_body_updates_content_length():
    msg = parse(INVITE)
    msg.set_body(b"v=0\r\ns=-\r\n", "application/sdp")
    out = parse(msg.to_bytes())
    assert out.content_length == 10 and out.body == b"v=0\r\ns=-\r\n"


def test_make_response_copies_the_right_headers():
    req = parse(INVITE)
    resp = make_response(req, 180, to_tag="abc")
    out = parse(resp.to_bytes()).validate()
    assert out.status == 180 and out.reason == "Ringing"
    assert [v.branch for v in out.vias] == ["z9hG4bKnashds8", "z9hG4bK2", "z9hG4bK3"]
    assert out.to.tag == "abc"
    assert out.from_ == req.from_
    assert out.call_id == req.call_id and out.cseq == req.cseq
    assert out.content_length == 0
    assert "contact" not in out
    # 100 Trying gets no To tag; an existing tag is kept
    assert parse(make_response(req, 100).to_bytes()).to.tag is None
    tagged = parse(
        make_response(
            parse(
                make_response(req, 200, to_tag="x")
                .to_bytes()
                .replace(b"SIP/2.0 200 OK", b"INVITE sip:a@b SIP/2.0")
            ),
            200,
        ).to_bytes()
    )
    assert tagged.to.tag == "x"


def test_make_response_extra_headers_and_body():
    req = parse((SCANNERS / "svmap_0.3.8_OPTIONS.sip").read_bytes())
    resp = make_response(req, 401, headers=[("WWW-Authenticate", 'Digest realm="x", nonce="n"')])
    out = parse(resp.to_bytes()).validate()
    assert out.reason == "Unauthorized"
    assert out.www_authenticate[0].realm == "x"
    assert out.from_.tag == req.from_.tag


def test_make_request():
    req = make_request(
        "OPTIONS",
        "sip:a@example.com",
        [
            ("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx"),
            ("From", "<sip:b@example.com>;tag=1"),
            ("To", "<sip:a@example.com>"),
            ("Call-ID", "c1"),
            ("CSeq", "1 OPTIONS"),
            ("Max-Forwards", "70"),
        ],
    )
    out = parse(req.to_bytes()).validate()
    assert out.method == "OPTIONS" and out.content_length == 0
    with pytest.raises(ValueError):
        make_response(make_response(out, 200), 200)
