"""The hour-of-week profile: how much of something (failed logins, attack
volume) usually happens in each hour of the week, so that a rise tonight is
measured against other Tuesdays at 3 a.m., not against the afternoon.

Kept as a weight per hour (epoch hour -> weight) for the last ``weeks``
weeks, each hour labelled with its hour of the week in the schedule's
timezone (``Schedule.hour_of_week``; UTC by default). ``usual(how, now)``
is the mean weight of that hour of the week over the complete weeks seen
before ``now``'s hour (the hour under way is not its own baseline); None
until a whole week has been seen. ``week(now)`` gives all 168 usual levels
(the dashboard's and reports' weekly profile).

Bounded: at most ``weeks × 168 + 1`` hours are held; an add older than
that is ignored. Rebuilt from rows (``from_rows``: (hour start, weight),
as ``as_dict`` gives them or a store's GROUP BY gives them), so the caller
can persist it or recount it from stored events. Sans-I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from ..schedule import WEEK_HOURS, utc_hour_of_week

HOUR: Final = 3600
MAX_WEEKS: Final = 52


class HourOfWeekProfile:
    """Weights per hour over the last ``weeks`` weeks (see the module doc)."""

    __slots__ = ("_how", "_latest", "hour_of_week", "hours", "since", "weeks")

    def __init__(
        self,
        *,
        weeks: int = 4,
        hour_of_week: Callable[[float], int] = utc_hour_of_week,
        since: float | None = None,
    ) -> None:
        if not 1 <= weeks <= MAX_WEEKS:
            raise ValueError(f"weeks: 1 to {MAX_WEEKS}")
        self.weeks = weeks
        self.hour_of_week = hour_of_week
        self.since = since  # when counting began (None: at the first add)
        self.hours: dict[int, float] = {}  # epoch hour -> weight
        self._how: dict[int, int] = {}  # epoch hour -> its hour of the week
        self._latest = -1  # the latest hour counted

    def __len__(self) -> int:
        return len(self.hours)

    def add(self, time: float, weight: float = 1.0) -> None:
        """Count ``weight`` at ``time`` (epoch seconds)."""
        if self.since is None or time < self.since:
            self.since = time
        hour = int(time // HOUR)
        if hour < self._latest - self.weeks * WEEK_HOURS:
            return  # older than what is kept
        if hour not in self.hours:
            self.hours[hour] = 0.0
            self._how[hour] = self.hour_of_week(hour * HOUR) % WEEK_HOURS
            if hour > self._latest:
                self._latest = hour
                self._prune(hour)
        self.hours[hour] += weight

    def weeks_seen(self, now: float) -> int:
        """Complete weeks counted before ``now``'s hour, at most ``weeks``."""
        if self.since is None:
            return 0
        elapsed = int(now // HOUR) - int(self.since // HOUR)
        return max(0, min(self.weeks, elapsed // WEEK_HOURS))

    def usual(self, hour_of_week: int, now: float) -> float | None:
        """The mean weight of ``hour_of_week`` over the complete weeks before
        ``now``'s hour; None before a whole week was seen."""
        seen = self.weeks_seen(now)
        if seen == 0:
            return None
        current = int(now // HOUR)
        start = current - seen * WEEK_HOURS
        total = sum(
            w
            for h, w in self.hours.items()
            if start <= h < current and self._how[h] == hour_of_week
        )
        return total / seen

    def week(self, now: float) -> list[float] | None:
        """The usual level of each hour of the week (0 = Monday 00:00), over
        the complete weeks before ``now``'s hour; None before a whole week."""
        seen = self.weeks_seen(now)
        if seen == 0:
            return None
        current = int(now // HOUR)
        start = current - seen * WEEK_HOURS
        sums = [0.0] * WEEK_HOURS
        for h, w in self.hours.items():
            if start <= h < current:
                sums[self._how[h]] += w
        return [s / seen for s in sums]

    def as_dict(self) -> dict[str, Any]:
        """What ``from_dict`` takes back: ``weeks``, ``since`` and ``hours``
        ([hour start in epoch seconds, weight], oldest first)."""
        return {
            "weeks": self.weeks,
            "since": self.since,
            "hours": [[h * HOUR, w] for h, w in sorted(self.hours.items())],
        }

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[tuple[float, float]],
        *,
        weeks: int = 4,
        hour_of_week: Callable[[float], int] = utc_hour_of_week,
        since: float | None = None,
    ) -> HourOfWeekProfile:
        """A profile of (time, weight) rows: hour starts and their sums, or
        single events' times and weights. ``since``: when counting began (the
        store's oldest event of the kind, or the profile's own ``since``);
        None: the oldest row."""
        profile = cls(weeks=weeks, hour_of_week=hour_of_week, since=since)
        for time, weight in sorted(rows):
            profile.add(time, weight)
        if since is not None:
            profile.since = since
        return profile

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, hour_of_week: Callable[[float], int] = utc_hour_of_week
    ) -> HourOfWeekProfile:
        """The profile ``as_dict`` gave (ValueError if it is not one)."""
        try:
            rows = [(float(t), float(w)) for t, w in data["hours"]]
            since = data.get("since")
            return cls.from_rows(
                rows,
                weeks=int(data.get("weeks", 4)),
                hour_of_week=hour_of_week,
                since=None if since is None else float(since),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an hour-of-week profile: {exc}") from None

    def _prune(self, latest: int) -> None:
        oldest = latest - self.weeks * WEEK_HOURS
        for hour in [h for h in self.hours if h < oldest]:
            del self.hours[hour]
            del self._how[hour]
