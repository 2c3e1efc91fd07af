"""The schedule's outside facts: the timezone's rules (zoneinfo reads the
system's tz database) and the public holidays of a country (the
``holidays`` library, which imports ``email`` and so ``socket``: it may not
be used in the pure core), made into the pure ``observe.schedule.Schedule``.

``open_schedule(config, now)`` is what ``[schedule]`` names, with errors
(``ConfigError``) that name the key, the value and what would be valid. It
takes a tenth of a second or more (the holidays of three years): call it
where the policy is built, off the packets' thread, on start and on each
reload (SIGHUP). Holidays cover the local year of ``now``, the one before
and the one after: a daemon that runs past the next New Year's Eve without
a reload needs one (the daemon can rebuild the schedule yearly).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable

import holidays

from ..config import WEEKDAY_NAMES, ConfigError, ScheduleConfig, parse_hours
from ..observe.schedule import Schedule


def timezone_named(name: str, key: str = "schedule.timezone") -> dt.tzinfo:
    """The tzinfo of an IANA name ("Europe/Berlin"; "UTC")."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(
            f"{key}: {name!r} is not a timezone this system knows: use an IANA name such as"
            " 'Europe/Berlin', 'America/New_York' or 'UTC' (see /usr/share/zoneinfo)"
        ) from None


def holiday_dates(
    country: str,
    subdivision: str | None,
    years: Iterable[int],
    key: str = "schedule.holidays",
) -> frozenset[dt.date]:
    """The public holidays of ``country`` (and ``subdivision``) in ``years``."""
    supported = holidays.list_supported_countries()
    code = country.upper()
    if code not in supported:
        raise ConfigError(
            f"{key}.country: {country!r} is not a country the holidays library knows: use an"
            f" ISO 3166-1 code such as {', '.join(sorted(supported)[:12])}, ..."
        )
    if subdivision is not None and subdivision.upper() not in supported[code]:
        known = ", ".join(supported[code]) or "none"
        raise ConfigError(
            f"{key}.subdivision: {subdivision!r} is not a subdivision of {code}: use one of {known}"
        )
    calendar = holidays.country_holidays(
        code, subdiv=None if subdivision is None else subdivision.upper(), years=list(years)
    )
    return frozenset(calendar.keys())


def open_schedule(config: ScheduleConfig, now: float) -> Schedule:
    """The schedule ``[schedule]`` describes, with the holidays of the years
    around ``now`` (epoch seconds). Never quiet if no rule is set."""
    tz = timezone_named(config.timezone)
    dates: set[dt.date] = set(config.holidays.dates)
    country = config.holidays.country
    if country is not None:
        year = dt.datetime.fromtimestamp(now, tz).year
        dates |= holiday_dates(country, config.holidays.subdivision, range(year - 1, year + 2))
    return Schedule(
        timezone=tz,
        business_hours=None
        if config.business_hours is None
        else parse_hours(config.business_hours),
        quiet_hours=None if config.quiet_hours is None else parse_hours(config.quiet_hours),
        weekend=[WEEKDAY_NAMES.index(day) for day in config.weekend],
        holidays=dates,
    )
