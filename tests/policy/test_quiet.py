"""Quiet time: the failure tracker and the rate limiter stricter while the
schedule says nobody watches, as ``[schedule.quiet]`` asks; the same
traffic only counted by day."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipwarden.config import config_from_dict
from sipwarden.observe.schedule import Schedule
from sipwarden.policy import build_policy
from sipwarden.policy.failures import FailureTracker
from sipwarden.policy.limits import Limit, QuietLimits, RateLimiter

SRC = "203.0.113.9"
DAY = dt.datetime(2026, 12, 8, 12, 0, tzinfo=dt.UTC).timestamp()  # a Tuesday noon
NIGHT = DAY + 12 * 3600  # midnight
NIGHTS = Schedule(quiet_hours=(22 * 60, 6 * 60))


# ------------------------------------------------------------- failures


def failures_at(tracker: FailureTracker, start: float, n: int, pace: float = 40.0) -> list:
    return [tracker.answer(SRC, 401, "REGISTER", "100", True, start + i * pace) for i in range(n)]


def quiet_tracker() -> FailureTracker:
    return FailureTracker(
        maxretry=5, findtime=600, quiet=NIGHTS.quiet, quiet_maxretry=3, quiet_findtime=1800
    )


def test_three_failures_are_counted_by_day_and_banned_at_night() -> None:
    assert failures_at(quiet_tracker(), DAY, 3) == [None] * 3
    decisions = failures_at(quiet_tracker(), NIGHT, 3)
    assert decisions[:2] == [None, None]
    decision = decisions[2]
    assert decision is not None and decision.detector == "auth.failures"
    assert "in quiet time" in decision.reason and "30 min" in decision.reason


def test_quiet_time_has_its_own_findtime() -> None:
    # three failures 8 minutes apart: past findtime (10 min) by day, within 30 at night
    assert failures_at(quiet_tracker(), DAY, 5, pace=480) == [None] * 5
    assert failures_at(quiet_tracker(), NIGHT, 3, pace=480)[2] is not None


def test_a_count_begun_by_day_carries_into_the_night() -> None:
    tracker = quiet_tracker()
    start = NIGHT - 2 * 3600 - 90  # 21:58:30
    assert failures_at(tracker, start, 2) == [None, None]  # by day: two of five
    assert tracker.answer(SRC, 401, "REGISTER", "100", True, start + 100) is not None  # 22:00:10


def test_without_a_schedule_the_tracker_is_as_before() -> None:
    tracker = FailureTracker(maxretry=5, quiet_maxretry=2)  # no quiet callable: never quiet
    assert failures_at(tracker, NIGHT, 4) == [None] * 4


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=4000), min_size=1, max_size=30))
def test_never_quiet_decides_exactly_as_no_schedule(gaps: list[float]) -> None:
    plain = FailureTracker(maxretry=4, findtime=600)
    never = FailureTracker(
        maxretry=4, findtime=600, quiet=lambda now: False, quiet_maxretry=2, quiet_findtime=60
    )
    now = DAY
    for gap in gaps:
        now += gap
        assert plain.answer(SRC, 401, "REGISTER", "1", True, now) == never.answer(
            SRC, 401, "REGISTER", "1", True, now
        )


# ---------------------------------------------------------------- limits


def limiter(**more) -> RateLimiter:
    quiet = QuietLimits(NIGHTS.quiet, requests=50, methods={"REGISTER": 10})
    return RateLimiter(
        window=2.0, requests=100, methods={"REGISTER": 20, "INVITE": 20}, quiet=quiet, **more
    )


def burst(lim: RateLimiter, start: float, n: int, method: str = "REGISTER"):
    """``n`` requests within one window; the first limit hit, if any."""
    for i in range(n):
        hit = lim.hit(SRC, method, start + i * 0.01)
        if hit is not None:
            return i + 1, hit
    return None


def test_fifteen_registers_pass_by_day_and_are_limited_at_night() -> None:
    assert burst(limiter(), DAY, 15) is None
    over = burst(limiter(), NIGHT, 15)
    assert over is not None
    count, limit = over
    assert count == 11 and (limit.name, limit.count) == ("REGISTER", 10)
    # a method without a quiet count of its own keeps the day's
    assert burst(limiter(), NIGHT, 20, "INVITE") is None
    # all requests together: 50 at night
    assert burst(limiter(), NIGHT, 60, "SUBSCRIBE") == (51, Limit("requests", 50))


def test_the_limits_change_when_a_window_ends_after_quiet_time_begins() -> None:
    lim = limiter()
    evening = NIGHT - 2 * 3600 - 1.0  # 21:59:59, by day
    assert burst(lim, evening, 15) is None
    # the next window starts in quiet time: its counts are compared with the quiet limits
    assert burst(lim, NIGHT - 2 * 3600 + 10, 15) is not None
    assert lim.rate(SRC, "REGISTER", NIGHT - 2 * 3600 + 10.2) > 0


def test_a_reload_keeps_or_replaces_the_quiet_limits() -> None:
    lim = limiter()
    lim.hit(SRC, "REGISTER", NIGHT)
    kept = lim.reconfigured(requests=90)
    assert kept.quiet is not None and burst(kept, NIGHT + 0.5, 15) is not None
    gone = kept.reconfigured(quiet=None)
    assert gone.quiet is None and burst(gone, NIGHT + 10, 15) is None


def test_quiet_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="not limited by day"):
        RateLimiter(methods={"REGISTER": 20}, quiet=QuietLimits(NIGHTS.quiet, 50, {"INVITE": 5}))
    with pytest.raises(ValueError, match="quiet requests"):
        RateLimiter(quiet=QuietLimits(NIGHTS.quiet, -1))


# ----------------------------------------------------------------- build


def test_build_policy_takes_the_schedule_and_the_quiet_section() -> None:
    config = config_from_dict(
        {
            "schedule": {
                "quiet_hours": "22:00-06:00",
                "quiet": {"maxretry": 2, "methods": {"INVITE": 3}},
            },
            "limits": {"requests": 100, "methods": {"REGISTER": 20, "INVITE": 20}},
        }
    )
    policy = build_policy(config, schedule=NIGHTS)
    tracker, lim = policy.failures, policy.limiter
    assert tracker is not None and lim is not None
    assert tracker.quiet is not None and tracker.quiet(NIGHT) and not tracker.quiet(DAY)
    assert (tracker.quiet_maxretry, tracker.quiet_findtime) == (2, 1800.0)
    assert lim.quiet is not None
    # own values where given, the day's times limits_factor (0.5) elsewhere
    assert (lim.quiet.requests, dict(lim.quiet.methods)) == (50, {"REGISTER": 10, "INVITE": 3})
    # a reload with no schedule (or one without a rule): never quiet
    again = build_policy(config, previous=policy, schedule=Schedule())
    assert again.failures is tracker and tracker.quiet is None
    assert again.limiter is not None and again.limiter.quiet is None
    fresh = build_policy(config).limiter
    assert fresh is not None and fresh.quiet is None
