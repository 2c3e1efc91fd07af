"""Digest authentication: the computation against the RFCs' figures, the
header a phone sends, and the check a registrar makes."""

from __future__ import annotations

from sipwarden.demo.registrar import Registrar
from sipwarden.sip import (
    answer_challenge,
    check_digest,
    digest_authorization,
    digest_ha1,
    digest_response,
    parse,
    parse_auth,
)
from sipwarden.values import Peer

# RFC 2617 §3.5
RFC = {
    "username": "Mufasa",
    "realm": "testrealm@host.com",
    "password": "Circle Of Life",
    "method": "GET",
    "uri": "/dir/index.html",
    "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
}


def test_rfc_2617_example_with_qop_auth():
    response = digest_response(**RFC, qop="auth", nc="00000001", cnonce="0a4f113b")
    assert response == "6629fae49393a05397450978507c4ef1"


def test_without_qop_is_rfc_2069():
    # RFC 2069's printed example does not match its own formula; this is the
    # formula's value, as Python's urllib digest handler also computes it
    assert digest_response(**RFC) == "670fd8c2df070c60b045671b8b24ff02"
    assert digest_ha1("Mufasa", "testrealm@host.com", "Circle Of Life") == (
        "939e7578ed9e3c518a452acee763bce9"
    )


def test_the_header_carries_the_response_and_parses_back():
    value = digest_authorization(**RFC, qop="auth", nc="00000001", cnonce="0a4f113b")
    auth = parse_auth(value)
    assert auth.is_digest and auth.username == "Mufasa" and auth.realm == "testrealm@host.com"
    assert auth.uri == "/dir/index.html" and auth.algorithm == "MD5"
    assert auth.response == "6629fae49393a05397450978507c4ef1"
    assert (auth.qop, auth.nc, auth.cnonce) == ("auth", "00000001", "0a4f113b")
    plain = parse_auth(digest_authorization(**RFC))
    assert plain.qop is None and plain.nc is None and plain.cnonce is None
    assert plain.response == "670fd8c2df070c60b045671b8b24ff02"


def answer(challenge: str) -> str:
    return answer_challenge(
        parse_auth(challenge),
        username="Mufasa",
        password="Circle Of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce="0a4f113b",
    )


def test_answer_challenge_uses_qop_auth_only_when_offered():
    challenge = f'Digest realm="{RFC["realm"]}", nonce="{RFC["nonce"]}"'
    creds = parse_auth(answer(challenge + ', qop="auth,auth-int"'))
    assert creds.qop == "auth" and creds.response == "6629fae49393a05397450978507c4ef1"
    creds = parse_auth(answer(challenge))
    assert creds.qop is None and creds.response == "670fd8c2df070c60b045671b8b24ff02"


def test_check_digest():
    for extra in ({"qop": "auth", "nc": "00000001", "cnonce": "0a4f113b"}, {}):
        creds = parse_auth(digest_authorization(**RFC, **extra))
        assert check_digest(creds, password="Circle Of Life", method="GET")
        assert not check_digest(creds, password="Circle of Life", method="GET")
        assert not check_digest(creds, password="Circle Of Life", method="POST")
    value = digest_authorization(**RFC)
    shouty = parse_auth(
        value.replace("670fd8c2df070c60b045671b8b24ff02", "670FD8C2DF070C60B045671B8B24FF02")
    )
    assert check_digest(shouty, password="Circle Of Life", method="GET")  # hex in any case


def test_check_digest_refuses_incomplete_or_hostile_credentials():
    good = digest_authorization(**RFC, qop="auth", nc="00000001", cnonce="0a4f113b")
    for broken in (
        good.replace(', cnonce="0a4f113b"', ""),  # qop without its cnonce
        good.replace(", nc=00000001", ""),
        good.replace('response="6629fae49393a05397450978507c4ef1"', 'response="é"'),
        'Digest username="Mufasa", nonce="x"',  # no response
        'Digest realm="r", nonce="x", response="6629fae49393a05397450978507c4ef1"',  # no user
    ):
        assert not check_digest(parse_auth(broken), password="Circle Of Life", method="GET")


# ------------------------------------------------ against the built-in registrar

PHONE = Peer("udp", "127.0.0.1", 40000)


def register(cseq: int, auth: str = "") -> bytes:
    lines = [
        "REGISTER sip:pbx.test SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-{cseq};rport",
        "Max-Forwards: 70",
        "From: <sip:100@pbx.test>;tag=a1",
        "To: <sip:100@pbx.test>",
        "Call-ID: digest-test",
        f"CSeq: {cseq} REGISTER",
        "Contact: <sip:100@127.0.0.1:40000>",
        *([f"Authorization: {auth}"] if auth else []),
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def login(registrar: Registrar, password: str, qop: bool) -> int:
    (challenge,) = registrar.handle(register(1), PHONE)
    offer = parse(challenge.data).www_authenticate[0]
    if qop:
        auth = answer_challenge(
            offer,
            username="100",
            password=password,
            method="REGISTER",
            uri="sip:pbx.test",
            cnonce="0a4f113b",
        )
    else:  # an RFC 2069 phone, answering only realm and nonce
        auth = digest_authorization(
            username="100",
            realm=offer.realm or "",
            password=password,
            method="REGISTER",
            uri="sip:pbx.test",
            nonce=offer.nonce or "",
        )
    (answer,) = registrar.handle(register(2, auth), PHONE)
    status = parse(answer.data).status
    assert status is not None
    return status


def test_the_registrar_accepts_what_the_builder_makes_and_refuses_a_wrong_password():
    for qop in (True, False):
        registrar = Registrar("pbx.test", {"100": "secret100"})
        assert login(registrar, "secret100", qop) == 200
        assert registrar.lookup("100") and registrar.failures == 0
        registrar = Registrar("pbx.test", {"100": "secret100"})
        assert login(registrar, "secret101", qop) == 401
        assert registrar.lookup("100") == [] and registrar.failures == 1
