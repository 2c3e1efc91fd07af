"""sipwarden's own health, as events: what an operator must hear of even
when no attacker is about.

``HealthWatch.check(stats, now)`` reads the counters ``status`` shows (the
sum over workers) every few seconds and returns a ``health`` event when a
condition begins, and one when it ends (``fields``: ``("state",
"failing" | "recovered")`` and what was seen), never one per check while it
lasts: the alert targets turn them into mail and webhooks. The conditions:

- ``pbx-silent``: messages went to the PBX within the last ``silence``
  seconds, but no answer came back in that time (the PBX is down, or its
  answers do not reach us);
- ``kernel-failing``: the enforcer's errors grew (a ban or a feed set that
  nftables refused: what should be dropped in the kernel is not);
- ``store-failing``: the store takes no writes (bans are held in memory,
  events and flows too);
- ``feed-stale``: a feed's last success is older than ``stale`` times its
  refresh interval (or it never succeeded in that long), one per feed;
- ``events-dropped``: events were lost to the queue's bounds (a flood
  bigger than the event queue: the flows still count it).

Sans-I/O: the stats and the clock are the caller's. Memory: the last
counters seen, and the set of conditions in force.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .events import HEALTH, Event


@dataclass
class HealthWatch:
    silence: float = 60.0  # seconds of requests with no answer: the PBX is silent
    stale: float = 3.0  # a feed is stale after this many refresh intervals without success
    started: float = 0.0  # when the daemon started (a feed not fetched yet is not stale before)
    _failing: dict[str, str] = field(default_factory=dict)  # condition -> what was seen
    _last: dict[str, float] = field(default_factory=dict)  # counter -> value at the last check
    # since when requests have gone to the PBX with no answer coming back
    _waiting_since: float | None = None

    def check(self, stats: dict[str, Any], now: float) -> list[Event]:
        """The health events of this check (see the module doc)."""
        found: dict[str, str] = {}
        edge = stats.get("edge") or {}
        sent = self._grew("to-backend", edge.get("to-backend", 0))
        if self._grew("from-backend", edge.get("from-backend", 0)):
            self._waiting_since = None  # it answers
        elif sent and self._waiting_since is None:
            self._waiting_since = now  # requests went out; no answer since
        waiting = self._waiting_since
        if waiting is not None and now - waiting >= self.silence:
            found["pbx-silent"] = f"no answer from the PBX for {now - waiting:.0f} s"
        bans = stats.get("bans") or {}
        errors = sum(v for k, v in bans.items() if k.endswith(":errors") and isinstance(v, int))
        if self._grew("kernel-errors", errors):
            found["kernel-failing"] = f"{errors} changes refused by the kernel so far"
        store = stats.get("store-error")
        observe = stats.get("observe") or {}
        if store or observe.get("events-held") or observe.get("flows-held"):
            found["store-failing"] = str(store or "events and flows held: the store fails")
        if self._grew("events-dropped", observe.get("events-dropped", 0)):
            found["events-dropped"] = f"{observe.get('events-dropped')} events lost so far"
        for feed in (stats.get("intel") or {}).get("feeds") or ():
            refresh = feed.get("refresh") or 0
            last = feed.get("last_success") or self.started
            if refresh and now - last > self.stale * refresh:
                why = feed.get("last_error") or "no success"
                found[f"feed-stale:{feed['feed']}"] = f"last success {now - last:.0f} s ago: {why}"
        return self._changes(found, now)

    def _grew(self, name: str, value: int) -> bool:
        before = self._last.get(name)
        self._last[name] = value
        return (before is not None and value > before) or (before is None and value > 0)

    def _changes(self, found: dict[str, str], now: float) -> list[Event]:
        events = []
        for condition, seen in found.items():
            if condition not in self._failing:
                events.append(_event(now, condition, "failing", seen))
        for condition, seen in self._failing.items():
            if condition not in found:
                events.append(_event(now, condition, "recovered", seen))
        self._failing = found
        return events


def _event(now: float, condition: str, state: str, seen: str) -> Event:
    reason, _, feed = condition.partition(":")
    fields: tuple[tuple[str, str | int | float | None], ...] = (("state", state), ("seen", seen))
    if feed:
        fields += (("feed", feed),)
    return Event(now, HEALTH, "", reason, fields)
