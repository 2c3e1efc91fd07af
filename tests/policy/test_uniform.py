"""Uniform answers: a 404 that tells a scanner a user does not exist
becomes the challenge a real user gets."""

from __future__ import annotations

import functools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from sipwarden.policy.uniform import UniformAnswers
from sipwarden.sip import SipError, parse, peek

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


@functools.cache
def _armed():
    from sipwarden.config import Config
    from sipwarden.policy import build_policy

    config = Config()
    return build_policy(config)


@settings(max_examples=300, deadline=None)
@given(
    status=st.sampled_from([200, 401, 403, 404, 407, 486, 500]),
    method=st.sampled_from(["REGISTER", "INVITE", "OPTIONS", "", "REG ISTER", "INVITE\x00"]),
    to=st.text(max_size=40),
    auth=st.text(max_size=60),
    credentials=st.booleans(),
)
def test_whatever_the_pbx_answers_the_answer_path_never_raises(
    status, method, to, auth, credentials
):
    """A broken To, CSeq or challenge in the backend's answer is its
    problem: the failure tracker and the uniform rewrite take it or leave
    it, they never fail the relay (the edge would count an internal error
    and drop the answer)."""
    policy = _armed()
    to_line = to.replace("\r", "").replace("\n", "")
    auth_line = auth.replace("\r", "").replace("\n", "")
    data = (
        f"SIP/2.0 {status} X\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-swabc;swf=t;swa\r\n"
        f"From: <sip:100@pbx.test>;tag=a\r\nTo: {to_line}\r\n"
        f"Call-ID: c1\r\nCSeq: 1 {method}\r\nWWW-Authenticate: {auth_line}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode("utf-8", "surrogateescape")
    try:
        view = peek(data)
    except SipError:
        return  # not a message: the edge drops it before this path
    for n in range(6):
        made = policy.answer(data, view, "203.0.113.9", credentials, float(n))
        assert made is None or made.startswith(b"SIP/2.0 ")
