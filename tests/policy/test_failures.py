"""The failure tracker: failed logins and enumeration, read off answers."""

from __future__ import annotations

import gc

from hypothesis import given, settings
from hypothesis import strategies as st

from sipwarden.policy.failures import FailureTracker

from ..conftest import tracked_after_collection

SRC = "203.0.113.9"


def test_a_first_challenge_is_not_a_failure():
    tracker = FailureTracker(maxretry=2)
    for i in range(20):  # a login, many times: challenge, then success
        assert tracker.answer(SRC, 401, "REGISTER", "100", False, i * 60.0) is None
        assert tracker.answer(SRC, 200, "REGISTER", "100", True, i * 60.0 + 0.1) is None


def test_a_success_without_credentials_wipes_nothing():
    """A guesser cannot reset its count with a 200 anyone gets (an OPTIONS
    naming the account, a REGISTER the PBX lets through without a login)."""
    tracker = FailureTracker(maxretry=5)
    for k in range(4):
        assert tracker.answer(SRC, 401, "REGISTER", "100", True, k * 0.1) is None
        assert tracker.answer(SRC, 200, "OPTIONS", "100", False, k * 0.1 + 0.05) is None
        assert tracker.answer(SRC, 200, "REGISTER", "100", False, k * 0.1 + 0.06) is None
    decision = tracker.answer(SRC, 401, "REGISTER", "100", True, 0.5)
    assert decision is not None and decision.detector == "auth.brute-force"


def test_a_phone_that_fails_once_or_twice_is_not_banned():
    tracker = FailureTracker()
    now = 0.0
    for _ in range(2):
        assert tracker.answer(SRC, 401, "REGISTER", "100", False, now) is None
        assert tracker.answer(SRC, 401, "REGISTER", "100", True, now + 0.05) is None
        now += 30
    assert tracker.answer(SRC, 200, "REGISTER", "100", True, now) is None  # fixed
    # the next day's typo starts from zero
    for k in range(4):
        assert tracker.answer(SRC, 401, "REGISTER", "100", True, now + 10 + k) is None


def test_guessing_fast_is_brute_force_with_a_progressive_ban():
    tracker = FailureTracker(maxretry=5)
    decisions = [tracker.answer(SRC, 401, "REGISTER", "100", True, i * 0.01) for i in range(5)]
    assert decisions[:4] == [None] * 4
    decision = decisions[4]
    assert decision is not None
    assert decision.target == SRC
    assert decision.detector == "auth.brute-force"
    assert decision.duration == "progressive"
    assert "5 failed logins for 100" in decision.reason
    assert (
        len(decision.evidence) == 5
        and "401 to REGISTER for 100 with credentials" in (decision.evidence[-1])
    )
    assert len(tracker) == 0  # forgotten once decided: the ban book takes over


def test_a_stale_password_at_a_phones_pace_gets_a_short_fixed_ban():
    tracker = FailureTracker(maxretry=5, findtime=600, burst=60, slow_bantime=300)
    decisions = [tracker.answer(SRC, 403, "REGISTER", "100", True, i * 40.0) for i in range(5)]
    decision = decisions[-1]
    assert decisions[:4] == [None] * 4 and decision is not None
    assert decision.detector == "auth.failures"
    assert decision.duration == 300


def test_failures_outside_findtime_do_not_add_up():
    tracker = FailureTracker(maxretry=3, findtime=60)
    for i in range(10):
        assert tracker.answer(SRC, 401, "REGISTER", "100", True, i * 31.0) is None


def test_success_clears_only_that_accounts_failures():
    """An attacker holding one cracked account must not reset its count
    between guesses at another one."""
    tracker = FailureTracker(maxretry=4)
    now = 0.0
    for _ in range(3):
        assert tracker.answer(SRC, 401, "REGISTER", "200", True, now) is None
        assert tracker.answer(SRC, 200, "REGISTER", "100", True, now + 0.01) is None
        now += 0.1
    decision = tracker.answer(SRC, 401, "REGISTER", "200", True, now)
    assert decision is not None and decision.detector == "auth.brute-force"


def test_a_success_for_the_failing_account_resets_it():
    tracker = FailureTracker(maxretry=3)
    assert tracker.answer(SRC, 401, "REGISTER", "100", True, 0) is None
    assert tracker.answer(SRC, 401, "REGISTER", "100", True, 1) is None
    assert tracker.answer(SRC, 200, "REGISTER", "100", True, 2) is None
    assert tracker.answer(SRC, 401, "REGISTER", "100", True, 3) is None
    assert tracker.answer(SRC, 401, "REGISTER", "100", True, 4) is None


def test_404s_to_register_are_enumeration():
    tracker = FailureTracker(enumeration=3, distinct_users=100)
    assert tracker.answer(SRC, 404, "REGISTER", "1000", False, 0) is None
    assert tracker.answer(SRC, 404, "REGISTER", "1001", False, 1) is None
    decision = tracker.answer(SRC, 404, "REGISTER", "1002", False, 2)
    assert decision is not None and decision.detector == "enum.not-found"


def test_a_logged_in_phone_that_misdials_is_not_enumerating():
    tracker = FailureTracker(enumeration=2)
    for i in range(10):  # an INVITE with credentials to a number that does not exist
        assert tracker.answer(SRC, 404, "INVITE", "100", True, i) is None
    tracker2 = FailureTracker(enumeration=2, distinct_users=100)
    assert tracker2.answer(SRC, 404, "INVITE", "300", False, 0) is None
    assert tracker2.answer(SRC, 404, "INVITE", "301", False, 1) is not None


def test_many_users_refused_from_one_source_is_enumeration():
    """svwar against a PBX that challenges every user (alwaysauthreject):
    every answer is a 401, but the users differ and none ever logs in."""
    tracker = FailureTracker(distinct_users=10, users_window=60)
    decisions = [
        tracker.answer(SRC, 401, "REGISTER", str(1000 + i), False, i * 0.05) for i in range(10)
    ]
    assert decisions[:9] == [None] * 9
    assert decisions[9] is not None and decisions[9].detector == "enum.users"


def test_an_office_whose_phones_all_boot_at_once_is_not_enumerating():
    tracker = FailureTracker(distinct_users=10)
    for i in range(50):  # 50 phones behind one NAT, each challenged then logged in
        user = str(100 + i)
        assert tracker.answer(SRC, 401, "REGISTER", user, False, i * 0.02) is None
        assert tracker.answer(SRC, 200, "REGISTER", user, True, i * 0.02 + 0.01) is None


def test_other_answers_say_nothing():
    tracker = FailureTracker(maxretry=1, enumeration=1, distinct_users=2)
    for status in (200, 202, 480, 486, 487, 500, 503, 603):
        for method in ("REGISTER", "INVITE", "OPTIONS"):
            assert tracker.answer(SRC, status, method, "x", True, 0) is None
    assert tracker.answer(SRC, 401, "OPTIONS", "x", False, 0) is None
    assert len(tracker) == 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=400), st.integers(1, 50))
def test_memory_is_bounded_whatever_the_sources(sources, cap):
    tracker = FailureTracker(max_sources=cap, max_accounts=cap, maxretry=10**6)
    for i, n in enumerate(sources):
        tracker.answer(
            f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 401, "REGISTER", str(n), True, i
        )
    assert len(tracker) <= cap
    assert len(tracker.accounts) <= cap


def test_many_sources_leave_nothing_per_source_for_the_collector_to_walk():
    """A brute force from spoofed sources fills the tracker: what it keeps
    per source (failures, probes, users refused, evidence) are tuples of
    atomics, so 5,000 more sources add no object a full collection walks
    (a slots object per source added 5,000: 100+ ms a collection at 100,000)."""
    tracker = FailureTracker(max_sources=10_000)

    def brute_force(first: int, count: int) -> None:
        for i in range(first, first + count):
            host = f"198.18.{i >> 8}.{i & 255}"
            assert tracker.answer(host, 401, "REGISTER", f"u{i % 7}", True, float(i)) is None
            assert tracker.answer(host, 404, "REGISTER", "ghost", False, i + 0.5) is None
            assert tracker.answer(host, 401, "INVITE", "", False, i + 0.6) is None
            tracker.answer(host, 200, "REGISTER", f"u{i % 5}", True, i + 0.7)

    brute_force(0, 100)
    before = tracked_after_collection()
    brute_force(100, 5_000)
    assert len(tracker) == 5_100
    # nor is any table of it tracked, between collections (an OrderedDict,
    # or a dict given a fresh tuple, would be walked entry by entry)
    for table in (tracker._sources.young, tracker._sources.old, tracker.accounts.young):
        assert not gc.is_tracked(table)
    assert tracked_after_collection() - before < 100
