"""The schedule's outside facts: timezones from the system's tz database,
public holidays from the ``holidays`` library, errors that name the key."""

from __future__ import annotations

import datetime as dt

import pytest

from sipwarden.config import ConfigError, config_from_dict
from sipwarden.fetch.calendar import holiday_dates, open_schedule, timezone_named

NOON = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC).timestamp()  # a Monday


def schedule_config(**schedule):
    return config_from_dict({"schedule": schedule}).schedule


def test_holidays_of_a_country_and_a_subdivision() -> None:
    german = holiday_dates("DE", None, [2026])
    bavarian = holiday_dates("de", "by", [2026])
    assert dt.date(2026, 10, 3) in german and dt.date(2026, 12, 25) in german
    assert dt.date(2026, 1, 6) in bavarian and dt.date(2026, 1, 6) not in german  # Epiphany
    assert dt.date(2026, 6, 15) not in german


def test_the_schedule_config_becomes_a_schedule() -> None:
    config = schedule_config(
        timezone="Europe/Berlin",
        business_hours="08:00-18:00",
        quiet_hours="22:00-06:00",
        weekend=["Saturday", "sun"],
        holidays={"country": "DE", "dates": [dt.date(2026, 6, 16)]},
    )
    schedule = open_schedule(config, NOON)
    assert str(schedule.timezone) == "Europe/Berlin"
    assert (schedule.business_hours, schedule.quiet_hours) == ((480, 1080), (1320, 360))
    assert schedule.weekend == {5, 6}
    # the years around now: last year's Christmas and next year's New Year too
    assert {dt.date(2025, 12, 25), dt.date(2027, 1, 1), dt.date(2026, 6, 16)} <= schedule.holidays
    assert not schedule.quiet(NOON)  # 14:00 in Berlin, a Monday
    assert schedule.quiet(NOON + 86400)  # the site's own closing day
    assert schedule.quiet(NOON + 5 * 3600)  # 19:00 in Berlin


def test_no_schedule_is_never_quiet() -> None:
    config = schedule_config()
    assert not config.configured
    schedule = open_schedule(config, NOON)
    assert not schedule.configured and not schedule.quiet(NOON)


def test_a_bad_timezone_country_or_subdivision_names_the_key_and_what_is_valid() -> None:
    with pytest.raises(ConfigError, match=r"schedule.timezone: 'Mars/Olympus' .* IANA name"):
        open_schedule(schedule_config(timezone="Mars/Olympus"), NOON)
    with pytest.raises(ConfigError, match=r"schedule.timezone: '\.\./etc/passwd'"):
        timezone_named("../etc/passwd")
    with pytest.raises(ConfigError, match=r"schedule.holidays.country: 'XX' .* such as"):
        open_schedule(schedule_config(holidays={"country": "XX"}), NOON)
    with pytest.raises(
        ConfigError, match=r"schedule.holidays.subdivision: 'ZZ' is not a subdivision of DE: .*BY"
    ):
        open_schedule(schedule_config(holidays={"country": "DE", "subdivision": "ZZ"}), NOON)
