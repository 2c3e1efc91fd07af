"""The fake answers, byte by byte: what they echo, what they add, what they
leave out; the discovery predicate; the stopper's choice and pace; the
answer limits. The real tools' reactions are in test_tools.py."""

from __future__ import annotations

from binascii import unhexlify
from pathlib import Path

import pytest

from sipwarden.deception.answers import (
    SIPVICIOUS_RULES,
    SVCRASH,
    SVCRASH_TAG,
    ScannerStopper,
    challenge,
    fingerprinted_as_sipvicious,
    is_discovery,
    register_answer,
    register_ok,
    sipvicious_payload,
    stopper,
    stopper_kind,
)
from sipwarden.deception.limits import AnswerLimiter, OncePer
from sipwarden.policy.pack import __file__ as pack_init
from sipwarden.sip import parse, peek

from ..conftest import SCANNERS

CAPTURED = SCANNERS / "captured"


def request(name: str) -> bytes:
    path = SCANNERS / name
    return (path if path.exists() else CAPTURED / name).read_bytes()


def header_lines(data: bytes, name: bytes) -> list[bytes]:
    head = data.split(b"\r\n\r\n", 1)[0]
    return [line for line in head.split(b"\r\n")[1:] if line.split(b":", 1)[0].lower() == name]


REGISTERS = [
    "svwar_0.3.8_REGISTER_100.sip",
    "svwar_0.3.8_REGISTER_initial_random_ext.sip",
    "svcrack_0.3.8_REGISTER_initial.sip",
    "sipsak_0.9.8.1_REGISTER.sip",
    "svwar_0.3.8_compact_REGISTER_100_udp.sip",
    "sipsak_0.9.8.1_usrloc_REGISTER_initial_udp.sip",
]
GUESSES = [
    "svcrack_0.3.8_REGISTER_auth_pw100.sip",
    "svcrack_0.3.8_REGISTER_auth_pwsecret_udp.sip",
    "sipsak_0.9.8.1_usrloc_REGISTER_auth_udp.sip",
]


@pytest.mark.parametrize("name", REGISTERS)
def test_register_ok_echoes_the_transaction_byte_for_byte(name):
    data = request(name)
    answer = register_ok(parse(data), to_tag="f00d")
    assert answer.startswith(b"SIP/2.0 200 OK\r\n")
    for field in (b"via", b"v", b"from", b"f", b"call-id", b"i", b"cseq"):
        assert header_lines(answer, field) == header_lines(data, field), field
    # the From tag SIPVicious reads back, exactly
    assert parse(answer).from_.tag == parse(data).from_.tag
    (to,) = header_lines(answer, b"to") or header_lines(answer, b"t")
    (asked,) = header_lines(data, b"to") or header_lines(data, b"t")
    assert to == asked + b";tag=f00d"
    reply = parse(answer)
    reply.validate()
    assert reply.status == 200 and reply.to.tag == "f00d"
    # no binding claimed, nothing naming the edge or any product
    for absent in (b"contact", b"m", b"server", b"user-agent", b"warning"):
        assert header_lines(answer, absent) == [], absent
    assert b"sipwarden" not in answer.lower()
    # within the reflection budget's ratio 1.0 for deception
    assert len(answer) < len(data)


def test_register_ok_expires_echoed_and_capped_or_a_sane_default():
    sipsak = parse(request("sipsak_0.9.8.1_REGISTER.sip"))  # Expires: 15
    assert header_lines(register_ok(sipsak), b"expires") == [b"Expires: 15"]
    svwar = parse(request("svwar_0.3.8_REGISTER_100.sip"))  # none
    assert header_lines(register_ok(svwar), b"expires") == [b"Expires: 3600"]
    long = parse(request("sipsak_0.9.8.1_REGISTER.sip").replace(b"Expires: 15", b"Expires: 86400"))
    assert header_lines(register_ok(long), b"expires") == [b"Expires: 3600"]
    contact = parse(
        request("svwar_0.3.8_REGISTER_100.sip").replace(
            b"Contact: sip:100@127.0.0.1", b"Contact: <sip:100@127.0.0.1>;expires=60"
        )
    )
    assert header_lines(register_ok(contact), b"expires") == [b"Expires: 60"]


def test_a_generic_server_header_only_when_configured():
    svwar = parse(request("svwar_0.3.8_REGISTER_100.sip"))
    answer = register_ok(svwar, server="PBX")
    assert header_lines(answer, b"server") == [b"Server: PBX"]
    assert parse(answer).server == "PBX"


def test_a_to_tag_already_there_is_kept():
    data = request("svwar_0.3.8_REGISTER_100.sip").replace(
        b'To: "100"<sip:100@127.0.0.1>', b'To: "100"<sip:100@127.0.0.1>;tag=abc'
    )
    assert parse(register_ok(parse(data), to_tag="new")).to.tag == "abc"


@pytest.mark.parametrize("name", GUESSES)
def test_a_guess_with_credentials_is_challenged_never_accepted(name):
    data = request(name)
    answer = register_answer(parse(data), nonce="0123abcd")
    assert answer.kind == "challenge"
    reply = parse(answer.data)
    reply.validate()
    assert reply.status == 401
    (www,) = reply.www_authenticate
    asked = parse(data).authorization
    assert (www.realm, www.nonce, www.get("qop")) == (asked.realm, "0123abcd", "auth")
    for field in (b"via", b"from", b"call-id", b"cseq"):
        assert header_lines(answer.data, field) == header_lines(data, field), field
    assert reply.to.tag and len(answer.data) < len(data)


def test_register_answer_without_credentials_is_the_200():
    answer = register_answer(parse(request("svcrack_0.3.8_REGISTER_initial.sip")))
    assert answer.kind == "register-ok" and answer.data.startswith(b"SIP/2.0 200 OK\r\n")


def test_challenge_realm_defaults_to_the_request_uri_host():
    www = parse(challenge(parse(request("svwar_0.3.8_REGISTER_100.sip")))).www_authenticate[0]
    assert www.realm == "127.0.0.1" and len(www.nonce) == 32


def test_svcrash_constant_is_svcrashs_message():
    assert request("svcrash_crashmsg_RESPONSE.sip") == SVCRASH
    assert len(SVCRASH) == 283
    assert unhexlify(SVCRASH_TAG) == b"h:e:y\x01there\x01bye"


@pytest.mark.parametrize(
    "name", ["svwar_0.3.8_REGISTER_100.sip", "svcrack_0.3.8_REGISTER_initial.sip"]
)
def test_the_stoppers_echo_the_transaction_but_not_the_from_tag(name):
    data = request(name)
    asked = parse(data)
    for kind in ("svcrash", "non-hex-tag"):
        answer = stopper(asked, kind)
        reply = parse(answer)
        reply.validate()
        assert reply.status == 200 and reply.to.tag
        for field in (b"via", b"call-id", b"cseq"):
            assert header_lines(answer, field) == header_lines(data, field), field
        (line,) = header_lines(answer, b"from")
        (was,) = header_lines(data, b"from")
        # only the tag differs: the name as written, display name and URI kept
        assert line.split(b";tag=")[0] == was.split(b";tag=")[0]
        tag = reply.from_.tag
        assert tag != asked.from_.tag
        if kind == "svcrash":
            assert tag == SVCRASH_TAG
        else:
            with pytest.raises(ValueError):
                unhexlify(tag)  # what SIPVicious's getTag does with it
        assert len(answer) < len(data)


def test_a_stopper_for_a_from_without_a_tag_adds_one():
    data = request("svwar_0.3.8_REGISTER_100.sip").replace(b";tag=31303001383436303032303731", b"")
    assert parse(stopper(parse(data), "svcrash")).from_.tag == SVCRASH_TAG


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("svcrack_0.3.8_REGISTER_initial.sip", "svcrash"),
        ("svcrack_0.3.8_REGISTER_auth_pw100.sip", "svcrash"),
        ("svcrack_0.3.8_INVITE_auth_pwpassword_udp.sip", "svcrash"),
        ("svwar_0.3.8_REGISTER_100.sip", "non-hex-tag"),
        ("svwar_0.3.8_INVITE_100.sip", "non-hex-tag"),
        ("svwar_0.3.8_compact_REGISTER_100_udp.sip", "non-hex-tag"),
    ],
)
def test_stopper_kind_crashes_svcrack_and_stops_svwar(name, kind):
    assert stopper_kind(peek(request(name))) == kind


def test_the_scanner_stopper_is_paced_per_source():
    stopping = ScannerStopper(interval=5.0, max_sources=2)
    data = request("svwar_0.3.8_REGISTER_100.sip")
    asked, view = parse(data), peek(data)
    first = stopping.answer(asked, view, "203.0.113.1", 100.0)
    assert first is not None and first.kind == "non-hex-tag"
    assert stopping.answer(asked, view, "203.0.113.1", 104.9) is None
    assert stopping.answer(asked, view, "203.0.113.2", 104.9) is not None  # another source
    assert stopping.answer(asked, view, "203.0.113.1", 105.0) is not None
    assert len(stopping.due) == 2
    stopping.answer(asked, view, "203.0.113.3", 105.0)
    assert len(stopping.due) == 2  # bounded: the oldest forgotten


DISCOVERY = [
    "nmap_7.93_sV_SIPOptions_udp.sip",
    "shodan_style_OPTIONS_udp_no_rport.sip",
    "sipsak_0.9.8.1_OPTIONS.sip",
    "svmap_0.3.8_OPTIONS.sip",
    "svmap_0.3.8_INVITE.sip",
    "svmap_0.3.8_REGISTER.sip",
    "svmap_0.3.8_compact_REGISTER_udp.sip",
    "svmap_0.3.8_compact_INVITE_udp.sip",
    "svwar_0.3.8_OPTIONS_100.sip",
    "nmap_7.93_nse_sip-methods_OPTIONS_udp.sip",
    "nmap_7.93_nse_sip-enum-users_REGISTER_random_ext_udp.sip",
    "nmap_7.93_nse_sip-brute_REGISTER_auth_pw100_udp.sip",
    "nmap_7.93_nse_sip-call-spoof_INVITE_udp.sip",
]
ENGAGED = [
    "svwar_0.3.8_REGISTER_100.sip",
    "svwar_0.3.8_REGISTER_initial_random_ext.sip",
    "svwar_0.3.8_INVITE_100.sip",
    "svwar_0.3.8_compact_REGISTER_random_ext_udp.sip",
    "svcrack_0.3.8_REGISTER_initial.sip",
    "svcrack_0.3.8_REGISTER_auth_pw100.sip",
    "sipsak_0.9.8.1_REGISTER.sip",
    "sipp_3.6.1_uac_INVITE_udp.sip",
]


@pytest.mark.parametrize("name", DISCOVERY)
def test_discovery_probes_are_recognised(name):
    assert is_discovery(peek(request(name)))


@pytest.mark.parametrize("name", ENGAGED)
def test_enumeration_and_cracking_are_not_discovery(name):
    assert not is_discovery(peek(request(name)))


def test_a_sipvicious_tag_reads_as_the_tool_reads_it():
    assert sipvicious_payload("3130303a31303001393430373437383831") == b"100:100"
    assert sipvicious_payload("31303001383436303032303731") == b"100"
    for other in (None, "", "3206210844", "as7f3a", SVCRASH_TAG, "abc", "0001"):
        assert sipvicious_payload(other) is None, other


def test_the_sipvicious_rules_exist_in_the_pack():
    pack = "".join(p.read_text() for p in Path(pack_init).parent.glob("*.toml"))
    for rule in SIPVICIOUS_RULES:
        assert f'id = "{rule}"' in pack, rule
    assert fingerprinted_as_sipvicious(["scan.nmap-nse", "ua.friendly-scanner"])
    assert not fingerprinted_as_sipvicious(["scan.nmap-nse", "scan.sipsak"])


def test_answer_limiter_per_source_and_in_total():
    limits = AnswerLimiter(rate=2.0, burst=3, total=5.0, max_sources=3)
    assert [limits.take("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limits.take("a", 0.5) is True  # 2 a second: one more after 0.5 s
    assert limits.take("a", 0.5) is False
    # the total (5 a second, one second deep) is shared: 3.5 left at 0.5 s
    assert [limits.take("b", 0.5) for _ in range(3)] == [True, True, True]
    assert limits.take("c", 0.5) is False  # c's own bucket is full, the total is not
    assert limits.withheld == 3
    assert limits.take("c", 1.0) is True  # the total refilled
    limits.take("d", 2.0)
    limits.take("e", 2.0)
    assert len(limits) == 3  # bounded
    # a clock that goes back earns nothing
    assert [limits.take("z", 10.0) for _ in range(3)] == [True] * 3
    assert limits.take("z", 9.0) is False
    with pytest.raises(ValueError):
        AnswerLimiter(rate=0, burst=1, total=1)


def test_once_per_interval_per_key():
    once = OncePer(2.0, max_sources=2)
    assert once.take("a", 0.0) and not once.take("a", 1.9) and once.take("a", 2.0)
    assert once.take("b", 0.0) and once.take("c", 0.0)
    assert len(once) == 2
    with pytest.raises(ValueError):
        OncePer(0)
