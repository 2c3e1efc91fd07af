"""Policy.report: a log's failures go to the same tracker and ban book as the
edge's answers; trusted peers and the allow list are never banned; a success
makes the source known-good; the events say where they were read."""

from __future__ import annotations

import ipaddress

import pytest

from sipwarden.observe import EventQueue
from sipwarden.policy import LOGGED_IN, LOGIN_FAILED, NOT_FOUND, Policy, TrustedPeers
from sipwarden.policy.bans import BanBook
from sipwarden.policy.failures import FailureTracker
from sipwarden.policy.known_good import KnownGood


def policy() -> Policy:
    p = Policy(
        trusted=TrustedPeers([ipaddress.ip_network("198.51.100.7/32")]),
        bans=BanBook(allow=[ipaddress.ip_network("198.51.100.8/32")]),
        failures=FailureTracker(maxretry=3, enumeration=4),
        known_good=KnownGood(),
    )
    p.events = EventQueue()
    return p


def test_failures_ban_through_the_book() -> None:
    p = policy()
    made = [p.report("203.0.113.7", LOGIN_FAILED, "301", 100.0 + i, "line") for i in range(3)]
    assert made == [False, False, True]
    ban = p.bans.banned("203.0.113.7", 103.0) if p.bans else None
    assert ban is not None and ban.detector == "auth.brute-force"
    assert any("line" in e for e in ban.evidence)


def test_probes_count_as_enumeration() -> None:
    p = policy()
    made = [p.report("203.0.113.9", NOT_FOUND, f"u{i}", 10.0, "x") for i in range(4)]
    assert made[-1] and p.bans is not None and p.bans.banned("203.0.113.9", 11.0) is not None


def test_trusted_and_allowed_never_banned() -> None:
    p = policy()
    for host in ("198.51.100.7", "198.51.100.8"):
        assert not any(p.report(host, LOGIN_FAILED, "1", 5.0 + i, "x") for i in range(10))
        assert p.bans is not None and p.bans.banned(host, 20.0) is None
    assert p.decisions["refused"] >= 1  # the allowed office was asked for, and refused


def test_the_lines_own_time_counts_and_the_ban_runs_from_now() -> None:
    p = policy()
    # three failures 10 minutes apart by their lines' times: outside findtime
    for i in range(3):
        assert not p.report("203.0.113.5", LOGIN_FAILED, "1", 5000.0, "x", at=1000.0 + 600 * i)
    # three within a second, read late: banned from now, not from the lines' time
    for i in range(3):
        p.report("203.0.113.6", LOGIN_FAILED, "1", 5000.0, "x", at=1000.0 + i)
    ban = p.bans.banned("203.0.113.6", 5000.0) if p.bans else None
    assert ban is not None and ban.created_at == 5000.0


def test_success_makes_known_good_and_clears_that_account() -> None:
    p = policy()
    p.report("203.0.113.4", LOGIN_FAILED, "301", 1.0, "x")
    p.report("203.0.113.4", LOGIN_FAILED, "301", 2.0, "x")
    p.report("203.0.113.4", LOGGED_IN, "301", 3.0, "x")
    assert p.known_good is not None and p.known_good.known("203.0.113.4", 3.0)
    assert not p.report("203.0.113.4", LOGIN_FAILED, "301", 4.0, "x")  # counted afresh


def test_events_say_the_log() -> None:
    p = policy()
    p.report("203.0.113.3", NOT_FOUND, "100", 7.0, "x", origin="log:/var/log/asterisk/messages")
    assert p.events is not None
    (event,) = p.events.drain()
    assert event.kind == "login-failed" and event.reason == NOT_FOUND
    assert ("origin", "log:/var/log/asterisk/messages") in event.fields


def test_unknown_kind_refused() -> None:
    with pytest.raises(ValueError, match=r"auth\.challenge"):
        policy().report("203.0.113.2", "auth.challenge", "", 1.0, "x")
