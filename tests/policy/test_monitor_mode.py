"""Monitor mode in the policy: verdicts as ever, would-be bans as events, the book untouched."""

from __future__ import annotations

from sipwarden.config import config_from_dict
from sipwarden.observe import WOULD_BAN, EventQueue
from sipwarden.policy import build_policy
from sipwarden.values import Decision, Peer

ATTACKER = "203.0.113.9"
REGISTER = (
    b"REGISTER sip:pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bK-1\r\n"
    b"From: <sip:100@pbx.example.com>;tag=a\r\nTo: <sip:100@pbx.example.com>\r\n"
    b"Call-ID: c1\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def policy(mode: str):  # type: ignore[no-untyped-def]
    built = build_policy(
        config_from_dict(
            {
                "policy": {"mode": mode, "pack": False},
                "limits": {"window": 1, "methods": {"REGISTER": 3}},
            }
        )
    )
    built.events = EventQueue()
    return built


def test_the_mode_comes_from_the_config() -> None:
    assert policy("monitor").monitor and not policy("enforce").monitor


def test_a_would_be_ban_is_an_event_once_and_never_in_the_book() -> None:
    p = policy("monitor")
    decision = Decision(
        ATTACKER,
        detector="auth.brute-force",
        reason="5 failed logins",
        duration="progressive",
        evidence=(),
    )
    assert p.ban(decision, 1000.0) is False
    assert p.ban(decision, 1001.0) is False  # still "banned": not told twice
    assert p.bans is not None and p.bans.active(1001.0) == [] and not p.bans.changes
    assert p.decisions["would-ban:auth.brute-force"] == 1
    assert p.events is not None
    (event,) = [e for e in p.events.drain() if e.kind == WOULD_BAN]
    assert event.source == ATTACKER and event.reason == "5 failed logins"
    assert dict(event.fields) == {
        "detector": "auth.brute-force",
        "duration": 600.0,
        "enforced": "no",
    }
    assert p.ban(decision, 1000.0 + 601) is False  # its ban would have ended: told again
    assert p.decisions["would-ban:auth.brute-force"] == 2


def test_a_protected_target_is_refused_as_the_book_would() -> None:
    p = policy("monitor")
    assert (
        p.ban(
            Decision("127.0.0.1", detector="rule", reason="x", duration="progressive", evidence=()),
            0.0,
        )
        is False
    )
    assert p.decisions["refused"] == 1 and not p.decisions["would-ban:rule"]


def test_verdicts_are_the_same_as_in_enforce_mode() -> None:
    """A flood over the limit gets the same verdicts either way; only enforce bans."""
    source = Peer("udp", ATTACKER, 5060)
    kinds = {}
    for mode in ("enforce", "monitor"):
        p = policy(mode)
        kinds[mode] = [p.judge_bytes(REGISTER, source, 5060, 100.0)[0].kind for _ in range(6)]
        banned = p.bans is not None and p.bans.banned(ATTACKER, 100.0) is not None
        assert banned == (mode == "enforce")
    assert kinds["enforce"][:4] == kinds["monitor"][:4]
    assert "ban" in kinds["monitor"]  # judged as it would be: the edge forwards it all the same
