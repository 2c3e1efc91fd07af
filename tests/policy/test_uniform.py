"""Uniform answers: a 404 that tells a scanner a user does not exist
becomes the challenge a real user gets."""

from __future__ import annotations

import re

from sipwarden.policy.uniform import UniformAnswers
from sipwarden.sip import parse, peek

CHALLENGE = 'Digest realm="pbx.test", nonce="5f3a9c1e.a1b2c3d4e5f60718", algorithm=MD5, qop="auth"'


def answer(status: str, method: str = "REGISTER", extra: str = "") -> bytes:
    return (
        f"SIP/2.0 {status}\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-swabc;swf=t\r\n"
        "From: <sip:1000@pbx.test>;tag=a\r\nTo: <sip:1000@pbx.test>;tag=b\r\n"
        f"Call-ID: c1\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def test_a_404_to_register_becomes_the_real_challenge_with_a_fresh_nonce():
    uniform = UniformAnswers()
    real = answer("401 Unauthorized", extra=f"WWW-Authenticate: {CHALLENGE}\r\n")
    uniform.learn(real, peek(real))
    not_found = answer("404 Not Found")
    made = uniform.rewrite(not_found, peek(not_found), credentials=False)
    assert made is not None
    msg = parse(made).validate()
    assert msg.status == 401 and msg.reason == "Unauthorized"
    value = msg.fields("www-authenticate")[0].value
    nonce = re.search(r'nonce="([^"]*)"', value).group(1)
    assert value.replace(nonce, "N") == CHALLENGE.replace("5f3a9c1e.a1b2c3d4e5f60718", "N")
    assert nonce != "5f3a9c1e.a1b2c3d4e5f60718"
    assert re.fullmatch(r"[0-9a-f]{8}\.[0-9a-f]{16}", nonce)  # shaped like the PBX's
    assert msg.get("call-id") == "c1" and msg.get("cseq") == "1 REGISTER"
    assert uniform.rewrite(not_found, peek(not_found), credentials=False) != made  # fresh


def test_before_any_real_challenge_the_domain_is_the_realm():
    uniform = UniformAnswers()
    not_found = answer("404 Not Found")
    made = uniform.rewrite(not_found, peek(not_found), credentials=False)
    assert made is not None
    assert 'realm="pbx.test"' in parse(made).fields("www-authenticate")[0].value


def test_what_is_left_alone():
    uniform = UniformAnswers()
    for data, credentials in (
        (answer("404 Not Found", "INVITE"), True),  # a logged-in phone misdialled
        (answer("404 Not Found", "OPTIONS"), False),
        (answer("486 Busy Here", "INVITE"), False),
        (answer("200 OK"), False),
    ):
        assert uniform.rewrite(data, peek(data), credentials) is None
    invite = answer("404 Not Found", "INVITE")
    assert uniform.rewrite(invite, peek(invite), credentials=False) is not None
    assert uniform.rewrite(invite, peek(invite), credentials=False).startswith(b"SIP/2.0 401 ")


def test_an_invite_gets_the_invite_challenge_the_pbx_uses():
    uniform = UniformAnswers()
    proxy_auth = 'Digest realm="pbx.test", nonce="0123456789abcdef0123"'
    real = answer(
        "407 Proxy Authentication Required", "INVITE", f"Proxy-Authenticate: {proxy_auth}\r\n"
    )
    uniform.learn(real, peek(real))
    invite = answer("404 Not Found", "INVITE")
    made = parse(uniform.rewrite(invite, peek(invite), credentials=False))
    assert made.status == 407 and made.fields("proxy-authenticate")
