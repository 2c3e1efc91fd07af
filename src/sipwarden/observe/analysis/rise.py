"""A sudden rise: more failed logins than usual for this hour of the week,
or sources from countries never seen before.

- Failed logins: the window's ``login-failed`` events (weighted) over its
  last hour at most, scaled to an hour, against the profile's usual level
  for ``now``'s hour of the week (``HourOfWeekProfile.usual``, in the
  schedule's timezone: the caller hands in ``Window.hour_of_week``; UTC if
  it does not). A finding when the count is at least ``min_count`` and at
  least ``factor`` times the usual level (a profile younger than a week
  has no usual level yet: the minimum alone decides).
- New countries: the countries (``Window.country``) of the window's
  sources, events' and flows', that ``Window.known_countries`` does not
  hold; ``new_countries`` or more of them make a finding. Without a
  country lookup or a known set (a first run) nothing is said.

Alerts only: a rise is the whole site's, not a source's, so there is
nothing to ban (``target`` is ""). ``source_countries(window)`` gives the
caller the countries to add to its known set after the run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar, Final

from ..events import LOGIN_FAILED, VERDICT
from ..schedule import WEEKDAYS, utc_hour_of_week
from .base import Finding, Severity, Window, field_of, span_text, weight

HOUR: Final = 3600.0


@dataclass(frozen=True)
class Rise:
    name: ClassVar[str] = "rise"
    factor: float = 3.0  # times the usual level for this hour of the week
    min_count: int = 20  # failed logins in an hour, at least
    new_countries: int = 3  # countries never seen before, at least (0: not checked)

    def run(self, window: Window) -> list[Finding]:
        findings = []
        rise = self._failed_logins(window)
        if rise is not None:
            findings.append(rise)
        if self.new_countries > 0:
            countries = self._new_countries(window)
            if countries is not None:
                findings.append(countries)
        return findings

    def _failed_logins(self, window: Window) -> Finding | None:
        span = min(window.span, HOUR)
        since = window.now - span
        counted = 0
        accounts: Counter[str] = Counter()
        sources: set[str] = set()
        for event in window.events:
            if event.kind == LOGIN_FAILED and event.time >= since:
                counted += weight(event)
                sources.add(event.source)
                account = field_of(event, "account")
                if account:
                    accounts[str(account)] += weight(event)
        per_hour = counted * HOUR / span
        if per_hour < self.min_count:
            return None
        how = window.hour_of_week
        if how is None:
            how = utc_hour_of_week(window.now)
        usual = None if window.profile is None else window.profile.usual(how, window.now)
        if usual is not None and per_hour < self.factor * usual:
            return None
        when = f"{WEEKDAYS[how // 24]} {how % 24:02d}:00"
        if usual is None:
            against = "no usual level yet"
        else:
            against = f"usually {usual:.0f} an hour on {when}"
        summary = (
            f"{counted} failed logins from {len(sources)} addresses within"
            f" {span_text(span)} ({per_hour:.0f} an hour; {against})"
        )
        evidence = (
            *(f"{a}: {n} failed" for a, n in accounts.most_common(3)),
            f"hour of the week: {when}",
        )
        severity: Severity = (
            "critical" if usual is not None and per_hour >= 3 * self.factor * usual else "warning"
        )
        return Finding(self.name, "", summary, severity, evidence)

    def _new_countries(self, window: Window) -> Finding | None:
        known = window.known_countries
        if known is None or window.country is None:
            return None
        per_country = source_countries(window)
        new = {c: hosts for c, hosts in per_country.items() if c not in known}
        if len(new) < self.new_countries:
            return None
        ranked = sorted(new.items(), key=lambda item: (-len(item[1]), item[0]))
        summary = (
            f"sources from {len(new)} countries not seen before within"
            f" {span_text(window.span)}: {', '.join(c for c, _ in ranked[:8])}"
        )
        evidence = tuple(
            f"{c}: {len(hosts)} addresses, e.g. {min(hosts)}" for c, hosts in ranked[:5]
        )
        return Finding(self.name, "", summary, "warning", evidence)


def source_countries(window: Window) -> dict[str, set[str]]:
    """The countries of the window's sources (events' and flows'), each with
    its addresses; empty without a country lookup. A source the lookup
    cannot place is left out."""
    lookup = window.country
    if lookup is None:
        return {}
    hosts = {e.source for e in window.events if e.kind in (LOGIN_FAILED, VERDICT) and e.source}
    hosts.update(
        f["source"]
        for f in window.flows
        if isinstance(f.get("source"), str) and f["source"] not in ("", "*")
    )
    countries: dict[str, set[str]] = {}
    for host in hosts:
        try:
            code = lookup(host)
        except ValueError:
            continue
        if code:
            countries.setdefault(code, set()).add(host)
    return countries
