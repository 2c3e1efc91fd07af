"""TCP/TLS stream framing."""

from __future__ import annotations

import pytest

from sipwarden.sip import PING, SipError, StreamFramer, parse_frame

MSG = (
    b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n"
    b"From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c\r\n"
    b"CSeq: 1 OPTIONS\r\nContent-Length: 5\r\n\r\nhello"
)


def test_glued_and_split_messages():
    framer = StreamFramer()
    assert framer.feed(MSG + MSG[:10]) == [MSG]
    assert framer.feed(MSG[10:-1]) == []
    assert framer.feed(MSG[-1:] + MSG) == [MSG, MSG]
    assert framer.buffered == 0


def test_byte_at_a_time():
    framer = StreamFramer()
    out = []
    for i in range(len(MSG)):
        out += framer.feed(MSG[i : i + 1])
    assert out == [MSG]
    assert parse_frame(out[0]).body == b"hello"


def test_keepalives():
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [PING]
    assert framer.feed(b"\r\n") == []  # a pong, or the start of a ping
    assert framer.feed(MSG) == [MSG]
    assert framer.feed(b"\r\n\r\n\r\n\r\n") == [PING, PING]
    assert framer.pings == 3


def test_missing_content_length_is_an_error_on_streams():
    framer = StreamFramer()
    with pytest.raises(SipError) as info:
        framer.feed(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n")
    assert info.value.reason == "missing-content-length"
    with pytest.raises(SipError):  # the framer stays broken
        framer.feed(MSG)


@pytest.mark.parametrize(
    "head,reason",
    [
        (b"Content-Length: -1", "bad-content-length"),
        (b"Content-Length: five", "bad-content-length"),
        (b"Content-Length: 1\r\nl: 1", "duplicate-content-length"),
    ],
)
def test_bad_content_length(head, reason):
    with pytest.raises(SipError) as info:
        StreamFramer().feed(b"OPTIONS sip:a SIP/2.0\r\n" + head + b"\r\n\r\nx")
    assert info.value.reason == reason


def test_size_cap_on_endless_headers_and_on_declared_body():
    framer = StreamFramer(max_size=1000)
    with pytest.raises(SipError) as info:
        for _ in range(100):
            framer.feed(b"X-Junk: " + b"a" * 50 + b"\r\n")
    assert info.value.reason == "message-too-large"
    with pytest.raises(SipError) as info:
        StreamFramer(max_size=1000).feed(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 5000\r\n\r\n")
    assert info.value.reason == "message-too-large"


def test_parse_frame_requires_content_length():
    with pytest.raises(SipError) as info:
        parse_frame(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n")
    assert info.value.reason == "missing-content-length"


def test_folded_content_length():
    framer = StreamFramer()
    msg = b"OPTIONS sip:a SIP/2.0\r\nContent-Length:\r\n 2\r\n\r\nhi"
    assert framer.feed(msg) == [msg]


def test_frames_before_an_error_are_delivered_then_the_error():
    framer = StreamFramer(max_size=1024)
    frames = framer.feed(MSG + b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 5000\r\n\r\n")
    assert frames == [MSG]
    assert framer.error is not None and framer.error.reason == "message-too-large"
    with pytest.raises(SipError):
        framer.feed(b"")
