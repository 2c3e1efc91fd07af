"""Brute force and floods through the running edge (in-process, loopback):
failed logins, enumeration and floods end in a ban; phones and allow-listed
addresses keep working; the PBX's 404 to an unknown user is made uniform.

Sources are told apart by loopback address (127.0.0.2, .3, ... are all
ours), so a ban on the attacker leaves the phone on 127.0.0.1 alone."""

from __future__ import annotations

from sipwarden.sip import parse

from .harness import (
    REALM,
    UdpPhone,
    authorization,
    register_request,
    running_edge,
    wait_for,
)


def _register(phone: UdpPhone, port: int, user: str, cseq: int, auth: str = "") -> bytes | None:
    phone.send(register_request(user, port=phone.port, cseq=cseq, auth=auth), port)
    return phone.recv(1.0)


def _login(phone: UdpPhone, port: int, user: str = "100", cseq: int = 1) -> int:
    """A phone's whole login: challenge, answer; the final status."""
    challenge = _register(phone, port, user, cseq)
    assert challenge is not None, "no challenge"
    auth = parse(challenge).fields("www-authenticate")[0].value
    from sipwarden.sip.fields import parse_auth

    answer = _register(phone, port, user, cseq + 1, authorization(user, parse_auth(auth)))
    assert answer is not None, "no answer to the credentials"
    return parse(answer).status or 0


def _wrong_password(user: str, challenge: bytes) -> str:
    from sipwarden.sip.fields import parse_auth

    auth = parse_auth(parse(challenge).fields("www-authenticate")[0].value)
    good = authorization(user, auth)
    return good.replace('response="', 'response="0')[:-1] + '"'  # a different digest


def test_password_guessing_is_banned_while_a_phone_keeps_registering(tmp_path):
    with running_edge(tmp_path, listen=("udp",), armed={}) as run:
        port = run.ports["udp"]
        phone, attacker = UdpPhone(), UdpPhone("127.0.0.2")
        try:
            assert _login(phone, port) == 200
            challenge = _register(attacker, port, "100", 1)
            assert challenge is not None
            answers = []
            for cseq in range(2, 12):
                attacker.send(
                    register_request(
                        "100",
                        port=attacker.port,
                        cseq=cseq,
                        auth=_wrong_password("100", challenge),
                    ),
                    port,
                )
                answers.append(attacker.recv(0.5))
            # five failures, then silence: the source is banned
            assert all(a is not None for a in answers[:5]), answers
            assert answers[5:] == [None] * 5
            book = run.edge.policy.bans
            ban = run.call(book.banned, "127.0.0.2", run.edge.now())
            assert ban is not None and ban.detector == "auth.brute-force", ban
            assert ban.expires_at is not None and 590 < ban.expires_at - ban.created_at <= 600
            assert "with credentials" in ban.evidence[-1]
            assert run.edge.policy.counters["drop:banned"] >= 5
            # the phone on another address is untouched
            assert _login(phone, port, cseq=20) == 200
            assert run.call(book.banned, "127.0.0.1", run.edge.now()) is None
        finally:
            phone.close()
            attacker.close()


def test_unknown_users_get_the_same_challenge_and_enumeration_is_banned(tmp_path):
    with running_edge(tmp_path, listen=("udp",), armed={}, reveal_unknown=True) as run:
        port = run.ports["udp"]
        phone, scanner = UdpPhone(), UdpPhone("127.0.0.3")
        try:
            assert _login(phone, port) == 200  # the edge learns the real challenge
            real = parse(_register(phone, port, "100", 50) or b"")
            answers = [_register(scanner, port, str(1000 + i), 1) for i in range(12)]
            first = parse(answers[0] or b"")
            # the PBX said 404; the scanner sees the 401 a real user gets
            assert first.status == 401
            fake = first.fields("www-authenticate")[0].value
            genuine = real.fields("www-authenticate")[0].value
            assert fake.split("nonce=")[0] == genuine.split("nonce=")[0]  # same realm
            assert f'realm="{REALM}"' in fake
            assert fake != genuine  # a nonce of its own
            assert run.edge.counters["answers-made-uniform"] >= 1
            # ten unknown users: banned
            assert all(a is not None for a in answers[:10]), answers
            assert answers[10:] == [None, None]
            ban = run.call(run.edge.policy.bans.banned, "127.0.0.3", run.edge.now())
            assert ban is not None and ban.detector == "enum.not-found"
        finally:
            phone.close()
            scanner.close()


def test_a_register_flood_is_banned_and_a_phone_keeps_registering(tmp_path):
    armed = {"limits": {"window": 2, "methods": {"REGISTER": 20}}}
    with running_edge(tmp_path, listen=("udp",), armed=armed) as run:
        port = run.ports["udp"]
        phone, flood = UdpPhone(), UdpPhone("127.0.0.4")
        try:
            for cseq in range(1, 101):  # as fast as a socket sends
                flood.send(register_request("100", port=flood.port, cseq=cseq), port)
            assert wait_for(
                lambda: (
                    run.call(run.edge.policy.bans.banned, "127.0.0.4", run.edge.now()) is not None
                ),
                5,
            )
            ban = run.call(run.edge.policy.bans.banned, "127.0.0.4", run.edge.now())
            assert ban.detector == "rate.register", ban
            verdicts = run.edge.policy.counters
            assert verdicts["ban:rate.register"] == 1
            assert verdicts["forward:"] <= 21  # the limit, and not one more
            assert _login(phone, port) == 200
        finally:
            phone.close()
            flood.close()


def test_an_allow_listed_address_is_never_banned(tmp_path):
    armed = {"bans": {"allow": ["127.0.0.5"]}, "limits": {"methods": {"REGISTER": 5}}}
    with running_edge(tmp_path, listen=("udp",), armed=armed) as run:
        port = run.ports["udp"]
        office = UdpPhone("127.0.0.5")
        try:
            challenge = _register(office, port, "100", 1)
            assert challenge is not None
            for cseq in range(2, 40):  # failures and a flood
                reply = _register(office, port, "100", cseq, _wrong_password("100", challenge))
                assert reply is not None, f"answered nothing at {cseq}"
            assert run.call(run.edge.policy.bans.banned, "127.0.0.5", run.edge.now()) is None
            assert run.edge.policy.decisions["refused"] >= 1  # asked, refused
        finally:
            office.close()
