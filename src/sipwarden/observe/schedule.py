"""The schedule: when nobody watches (quiet time), in the operator's own
timezone, and which hour of the week a moment is.

Attacks come at night, at weekends and on holidays, when nobody reads the
alerts; during quiet time the policy can be stricter (``[schedule.quiet]``)
and findings weigh more. ``Schedule.quiet(now)`` is true when **any** of:

- business hours are set and the local time is outside them;
- quiet hours are set and the local time is inside them;
- the local day is a weekend day;
- the local date is a public holiday (or one of the operator's own dates).

A schedule with none of these set is never quiet (the default: no
``[schedule]``). Spans are ``[start, end)`` in minutes of the local day and
may cross midnight (``22:00-06:00``: from 22:00 to 06:00 the next morning,
whatever the day). ``hour_of_week(now)`` is ``weekday × 24 + hour`` in the
schedule's timezone, Monday 00:00-00:59 being 0 and Sunday 23:00-23:59 167.

Sans-I/O: the timezone is a ``tzinfo`` the caller made (``zoneinfo`` reads
files: ``fetch/calendar.py`` does it), the holidays a set of dates it handed
in. Cheap enough for every packet: the answer is kept for the minute it was
worked out in (zones' offsets are whole minutes), so a call is one division
and one comparison until the minute changes.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Any, Final

DAY_MINUTES: Final = 24 * 60
WEEK_HOURS: Final = 7 * 24
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # as date.weekday()

Span = tuple[int, int]  # [start, end) in minutes of the day, 0-1440; may cross midnight


def in_span(minute: int, span: Span) -> bool:
    """Whether ``minute`` of the day lies in ``span`` (crossing midnight if
    its end is not after its start)."""
    start, end = span
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


def utc_hour_of_week(now: float) -> int:
    """The hour of the week of ``now`` in UTC (Monday 00:00 is 0); the
    1970-01-01 epoch was a Thursday."""
    return (int(now // 3600) + 3 * 24) % WEEK_HOURS


class Schedule:
    """Business hours, quiet hours, weekend days and holidays in one
    timezone (see the module doc for the rules)."""

    __slots__ = (
        "_answer",
        "_minute",
        "business_hours",
        "holidays",
        "quiet_hours",
        "timezone",
        "weekend",
    )

    def __init__(
        self,
        *,
        timezone: dt.tzinfo = dt.UTC,
        business_hours: Span | None = None,
        quiet_hours: Span | None = None,
        weekend: Iterable[int] = (),  # days as date.weekday(): 0 Monday .. 6 Sunday
        holidays: Iterable[dt.date] = (),
    ) -> None:
        for name, span in (("business_hours", business_hours), ("quiet_hours", quiet_hours)):
            if span is not None and (
                not all(0 <= m <= DAY_MINUTES for m in span) or span[0] == span[1]
            ):
                raise ValueError(f"{name}: two different minutes of the day, 0 to 1440")
        days = frozenset(weekend)
        if not days <= set(range(7)):
            raise ValueError("weekend: days 0 (Monday) to 6 (Sunday)")
        self.timezone = timezone
        self.business_hours = business_hours
        self.quiet_hours = quiet_hours
        self.weekend = days
        self.holidays = frozenset(holidays)
        self._minute = -1  # the minute (epoch // 60) _answer holds
        self._answer = False

    @property
    def configured(self) -> bool:
        """Whether any rule is set (otherwise never quiet)."""
        return bool(self.business_hours or self.quiet_hours or self.weekend or self.holidays)

    def local(self, now: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(now, self.timezone)

    def quiet(self, now: float) -> bool:
        """Whether ``now`` (epoch seconds) is quiet time; kept per minute."""
        minute = int(now // 60)
        if minute != self._minute:
            self._answer = self.why_quiet(now) is not None
            self._minute = minute
        return self._answer

    def why_quiet(self, now: float) -> str | None:
        """The first rule that makes ``now`` quiet, for people (None: not
        quiet). Not cached: for status and findings, not per packet."""
        local = self.local(now)
        of_day = local.hour * 60 + local.minute
        if local.date() in self.holidays:
            return f"a holiday ({local.date().isoformat()})"
        if local.weekday() in self.weekend:
            return f"the weekend ({WEEKDAYS[local.weekday()]})"
        if self.quiet_hours is not None and in_span(of_day, self.quiet_hours):
            return f"quiet hours ({format_span(self.quiet_hours)})"
        if self.business_hours is not None and not in_span(of_day, self.business_hours):
            return f"outside business hours ({format_span(self.business_hours)})"
        return None

    def hour_of_week(self, now: float) -> int:
        """``weekday × 24 + hour`` of ``now`` in this timezone (0-167)."""
        local = self.local(now)
        return local.weekday() * 24 + local.hour

    def describe(self) -> dict[str, object]:
        """The schedule as `status` shows it."""
        return {
            "timezone": str(self.timezone),
            "business_hours": self.business_hours and format_span(self.business_hours),
            "quiet_hours": self.quiet_hours and format_span(self.quiet_hours),
            "weekend": [WEEKDAYS[d] for d in sorted(self.weekend)],
            "holidays": len(self.holidays),
        }


def format_span(span: Span) -> str:
    return "-".join(f"{m // 60:02d}:{m % 60:02d}" for m in span)


def week_profile(
    rows: Iterable[tuple[float, float]],
    now: float,
    weeks: int,
    schedule: Schedule | None = None,
) -> dict[str, Any]:
    """The attack volume by hour of the week (for the dashboard and the
    reports): the (time, weight) ``rows`` of the last ``weeks`` weeks summed
    per hour of the week in the schedule's timezone (UTC without one) and
    divided by the weeks they cover, with each hour's quiet-time flag as the
    schedule says this week."""
    hour_of = schedule.hour_of_week if schedule is not None else utc_hour_of_week
    since = now - weeks * WEEK_HOURS * 3600
    sums = [0.0] * WEEK_HOURS
    first = now
    for when, weight in rows:
        if since <= when <= now:
            sums[hour_of(when) % WEEK_HOURS] += weight
            first = min(first, when)
    covered = max(1, min(weeks, math.ceil((now - first) / (WEEK_HOURS * 3600))))
    quiet = [False] * WEEK_HOURS
    if schedule is not None:
        for back in range(WEEK_HOURS):  # one moment of each hour of this past week
            moment = now - back * 3600
            quiet[hour_of(moment) % WEEK_HOURS] = schedule.quiet(moment)
    return {
        "hours": [round(s / covered, 3) for s in sums],
        "quiet": quiet,
        "weeks": covered,
    }
