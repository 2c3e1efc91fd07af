"""The schedule: quiet time (business hours, quiet hours across midnight,
weekends, holidays) in the schedule's timezone, and the hour of the week."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipwarden.observe.schedule import Schedule, in_span, utc_hour_of_week, week_profile

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def at(text: str, tz: dt.tzinfo = BERLIN) -> float:
    """Epoch seconds of a local time, "2026-12-08 14:00" (a Tuesday)."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def test_no_rules_is_never_quiet() -> None:
    schedule = Schedule()
    assert not schedule.configured
    assert not any(schedule.quiet(at("2026-12-06 03:00") + h * 3600) for h in range(24 * 7))


def test_outside_business_hours_is_quiet_in_the_schedules_timezone() -> None:
    schedule = Schedule(timezone=BERLIN, business_hours=(8 * 60, 18 * 60))
    assert schedule.configured
    assert not schedule.quiet(at("2026-12-08 08:00"))
    assert not schedule.quiet(at("2026-12-08 17:59"))
    assert schedule.quiet(at("2026-12-08 18:00"))
    assert schedule.quiet(at("2026-12-08 07:59"))
    # 07:30 UTC is 08:30 in Berlin in winter: business hours there
    assert not schedule.quiet(at("2026-12-08 07:30", dt.UTC))
    assert schedule.why_quiet(at("2026-12-08 20:00")) == "outside business hours (08:00-18:00)"


def test_quiet_hours_may_cross_midnight() -> None:
    schedule = Schedule(timezone=BERLIN, quiet_hours=(22 * 60, 6 * 60))
    assert schedule.quiet(at("2026-12-08 22:00"))
    assert schedule.quiet(at("2026-12-09 00:30"))
    assert schedule.quiet(at("2026-12-09 05:59"))
    assert not schedule.quiet(at("2026-12-09 06:00"))
    assert not schedule.quiet(at("2026-12-08 21:59"))
    assert not schedule.quiet(at("2026-12-08 12:00"))


def test_weekend_days_and_holidays_are_quiet_all_day() -> None:
    christmas = dt.date(2026, 12, 25)  # a Friday
    schedule = Schedule(
        timezone=BERLIN, business_hours=(8 * 60, 18 * 60), weekend=(5, 6), holidays={christmas}
    )
    assert schedule.quiet(at("2026-12-12 11:00"))  # Saturday
    assert schedule.quiet(at("2026-12-13 11:00"))  # Sunday
    assert not schedule.quiet(at("2026-12-14 11:00"))  # Monday
    assert schedule.quiet(at("2026-12-25 11:00"))
    assert schedule.why_quiet(at("2026-12-25 11:00")) == "a holiday (2026-12-25)"
    assert schedule.why_quiet(at("2026-12-12 11:00")) == "the weekend (sat)"
    # the holiday is the local date: 23:30 UTC on the 24th is already the 25th in Berlin
    assert schedule.quiet(at("2026-12-24 23:30", dt.UTC))
    assert not Schedule(timezone=dt.UTC, holidays={christmas}).quiet(at("2026-12-24 23:30", dt.UTC))


def test_the_answer_is_the_same_whichever_order_times_are_asked_in() -> None:
    schedule = Schedule(timezone=BERLIN, business_hours=(8 * 60, 18 * 60), weekend=(6,))
    start = at("2026-12-07 00:00")
    times = [start + k * 37.0 for k in range(7 * 24 * 100)]
    expected = [schedule.why_quiet(t) is not None for t in times]
    assert [schedule.quiet(t) for t in times] == expected
    assert [schedule.quiet(t) for t in reversed(times)] == expected[::-1]
    assert 0 < sum(expected) < len(expected)


def test_the_hour_of_the_week_is_local() -> None:
    schedule = Schedule(timezone=BERLIN)
    assert schedule.hour_of_week(at("2026-12-07 00:00")) == 0  # Monday
    assert schedule.hour_of_week(at("2026-12-08 03:59")) == 27
    assert schedule.hour_of_week(at("2026-12-13 23:30")) == 167  # Sunday
    # in summer Berlin is UTC+2: Monday 01:00 local is Sunday 23:00 UTC
    assert schedule.hour_of_week(at("2026-07-06 01:00")) == 1
    assert utc_hour_of_week(at("2026-07-06 01:00")) == 167


@given(st.floats(min_value=0, max_value=4e9))
def test_utc_hour_of_week_agrees_with_the_calendar(now: float) -> None:
    assert utc_hour_of_week(now) == Schedule().hour_of_week(now)


def test_spans_and_days_are_checked() -> None:
    assert in_span(0, (22 * 60, 6 * 60)) and not in_span(12 * 60, (22 * 60, 6 * 60))
    with pytest.raises(ValueError, match="business_hours"):
        Schedule(business_hours=(600, 600))
    with pytest.raises(ValueError, match="quiet_hours"):
        Schedule(quiet_hours=(0, 1500))
    with pytest.raises(ValueError, match="weekend"):
        Schedule(weekend=(7,))


def test_describe() -> None:
    schedule = Schedule(timezone=BERLIN, quiet_hours=(22 * 60, 6 * 60), weekend=(5, 6))
    assert schedule.describe() == {
        "timezone": "Europe/Berlin",
        "business_hours": None,
        "quiet_hours": "22:00-06:00",
        "weekend": ["sat", "sun"],
        "holidays": 0,
    }


def test_the_week_profile_sums_the_attack_volume_per_hour_and_marks_quiet_hours() -> None:
    schedule = Schedule(timezone=dt.UTC, business_hours=(8 * 60, 18 * 60))
    now = at("2026-12-09 12:30", dt.UTC)  # a Wednesday
    rows = [
        (at("2026-12-09 03:10", dt.UTC), 40.0),  # this week, Wednesday 03:00
        (at("2026-12-02 03:20", dt.UTC), 20.0),  # last week, same hour
        (at("2026-12-08 10:00", dt.UTC), 5.0),  # Tuesday 10:00
        (at("2026-10-01 03:00", dt.UTC), 999.0),  # older than the weeks asked for
    ]
    profile = week_profile(rows, now, 4, schedule)
    assert profile["weeks"] == 2  # the rows cover two weeks
    wednesday_3am, tuesday_10am = 2 * 24 + 3, 1 * 24 + 10
    assert profile["hours"][wednesday_3am] == 30.0  # (40 + 20) / 2
    assert profile["hours"][tuesday_10am] == 2.5
    assert sum(profile["hours"]) == 32.5
    assert profile["quiet"][wednesday_3am] and not profile["quiet"][tuesday_10am]
    assert week_profile([], now, 4)["quiet"] == [False] * 168  # no schedule: never quiet
