"""The built-in registrar/UAS, message by message."""

from __future__ import annotations

from sipwarden.demo.registrar import Registrar
from sipwarden.sip import parse
from sipwarden.values import Peer

from ..edge.harness import REALM, USERS, authorization, register_request

PHONE = Peer("udp", "127.0.0.1", 40000)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def answers(registrar, data, source=PHONE):
    return [parse(a.data) for a in registrar.handle(data, source)]


def register(registrar, user="100"):
    (challenge,) = answers(registrar, register_request(user, port=40000))
    assert challenge.status == 401
    auth = authorization(user, challenge.www_authenticate[0])
    return answers(registrar, register_request(user, port=40000, cseq=2, auth=auth))


def test_digest_registration_and_binding():
    clock = Clock()
    reg = Registrar(REALM, USERS, clock=clock)
    (ok,) = register(reg)
    assert ok.status == 200
    (binding,) = reg.lookup("100")
    assert binding.contact == "sip:100@192.168.1.50:40000;transport=udp"
    clock.now += 3601
    assert reg.lookup("100") == []


def test_wrong_password_is_challenged_again_and_counted():
    reg = Registrar(REALM, {"100": "other-password"})
    (challenge,) = answers(reg, register_request("100", port=40000))
    auth = authorization("100", challenge.www_authenticate[0])  # computed with USERS' password
    (again,) = answers(reg, register_request("100", port=40000, cseq=2, auth=auth))
    assert again.status == 401 and reg.failures == 1 and reg.lookup("100") == []


def test_stale_nonce_is_refused():
    clock = Clock()
    reg = Registrar(REALM, USERS, clock=clock)
    (challenge,) = answers(reg, register_request("100", port=40000))
    clock.now += 301
    auth = authorization("100", challenge.www_authenticate[0])
    (again,) = answers(reg, register_request("100", port=40000, cseq=2, auth=auth))
    assert again.status == 401


def test_path_is_kept_and_expires_zero_removes():
    reg = Registrar(REALM, USERS)
    (challenge,) = answers(reg, register_request("100", port=40000))
    auth = authorization("100", challenge.www_authenticate[0])
    data = register_request("100", port=40000, cseq=2, auth=auth).replace(
        b"Content-Length: 0", b"Path: <sip:tok@127.0.0.1:5062;lr>\r\nContent-Length: 0"
    )
    (ok,) = answers(reg, data)
    assert ok.status == 200 and reg.lookup("100")[0].path == ("<sip:tok@127.0.0.1:5062;lr>",)
    (ok,) = answers(
        reg, data.replace(b"Expires: 600", b"Expires: 0").replace(b"CSeq: 2", b"CSeq: 3")
    )
    assert ok.status == 200 and reg.lookup("100") == []


def invite(method="INVITE", to_tag=""):
    return (
        f"{method} sip:200@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKi;rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:100@{REALM}>;tag=a\r\nTo: <sip:200@{REALM}>{to_tag}\r\n"
        f"Call-ID: call-9\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_uas_answers_invite_cancel_bye_and_options():
    reg = Registrar(REALM, USERS)
    statuses = [a.status for a in answers(reg, invite())]
    assert statuses == [100, 180, 200]
    assert answers(reg, invite("ACK", ";tag=x")) == []
    assert [a.status for a in answers(reg, invite("BYE", ";tag=x"))] == [200]
    assert [a.status for a in answers(reg, invite("OPTIONS"))] == [200]
    assert [a.status for a in answers(reg, invite("CANCEL"))] == [200]
    assert [a.status for a in answers(reg, invite())] == [487]  # the cancelled call
    assert [a.status for a in answers(reg, invite("PUBLISH"))] == [501]
    assert answers(reg, b"garbage") == []
