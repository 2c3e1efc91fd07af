"""The alert keeper's ``offer`` (what the daemon calls after each drain of
the event queue), µs per event, and one target's memory at its bounds.

Cases, three targets each (the keeper's tasks not running: ``offer`` alone,
as the drain loop pays it), each the loop minus the same loop doing nothing:
- a flood of one (kind, reason): drains of 1,000 events from 1,000 sources,
  every target wanting them (folded into a count);
- events no target wants (verdicts, with targets wanting bans and health);
- the worst memory of one target: ``max_keys`` (kind, reason) folding at
  once, each with ``COUNTED_SOURCES`` distinct sources (tracemalloc).

Run: .venv/bin/python bench/alerts.py
"""

from __future__ import annotations

import platform
import time
import tracemalloc

from sipwarden.daemon.alerts import AlertKeeper
from sipwarden.observe.alerts import COUNTED_SOURCES, Alert, AlertTarget, Route
from sipwarden.observe.events import BAN, LOGIN_FAILED, VERDICT, Event

T0 = 1_800_000_000.0


class Idle:
    """A sender never called: ``offer`` does not send."""

    name, timeout = "idle", 1.0

    async def send(self, alert: Alert) -> None:  # pragma: no cover
        raise AssertionError

    async def close(self) -> None:
        pass

    def describe(self) -> str:
        return "nowhere"


def keeper(kinds: frozenset[str]) -> AlertKeeper:
    routes = [(Route(f"t{i}", kinds, min_interval=300.0), Idle(), "webhook") for i in range(3)]
    return AlertKeeper(routes, clock=lambda: T0)  # type: ignore[arg-type]


def per_event(k: AlertKeeper, batches: list[list[Event]]) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for batch in batches:
            k.offer(batch)
        spent = time.perf_counter() - start
        start = time.perf_counter()
        for _batch in batches:
            pass
        spent -= time.perf_counter() - start
        best = min(best, spent / sum(map(len, batches)))
    return best * 1e6


def main() -> None:
    print(f"python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M')}")
    flood = [
        [
            Event(T0 + j, LOGIN_FAILED, f"10.0.{i >> 8}.{i & 255}", "brute-force")
            for i in range(1000)
        ]
        for j in range(100)
    ]
    print(
        f"offer, a flood of one reason, 3 targets: {per_event(keeper(frozenset({LOGIN_FAILED})), flood):.2f} µs/event"
    )
    unwanted = [[e._replace(kind=VERDICT) for e in batch] for batch in flood]
    print(
        f"offer, events no target wants, 3 targets: {per_event(keeper(frozenset({BAN})), unwanted):.2f} µs/event"
    )

    route = Route("worst", frozenset({BAN}))
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    target = AlertTarget(route)
    for r in range(route.max_keys):
        target.offer(
            [Event(T0, BAN, f"2001:db8:{r:x}::{s:x}", f"rule-{r}") for s in range(COUNTED_SOURCES)],
            T0,
        )
    after = tracemalloc.take_snapshot()
    size = sum(s.size_diff for s in after.compare_to(before, "filename"))
    tracemalloc.stop()
    print(
        f"one target at its bounds ({route.max_keys} reasons x {COUNTED_SOURCES} sources):"
        f" {size / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    main()
