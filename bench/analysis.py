"""ms per ``Analysis.run`` (all four analysers, the default config) over a
15-minute window of a busy site under attack, and per schedule question.

The window: 2,000 phones registering every minute (a record a minute each:
30,000 flow records), 1,000 scanner sources dropped by a pack rule (a
verdict event and a flow record each), a distributed guesser (12 addresses
of a /24, 3 failed logins each), and ``--events`` failed-login events from
spoofed sources spread over 1,000 /24s. A profile of four weeks and a
country lookup are handed in, as the daemon's runner will.

Run: .venv/bin/python bench/analysis.py [--events 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
import timeit
import zoneinfo

from sipwarden.config import Config
from sipwarden.observe.analysis import HourOfWeekProfile, Window, build_analysis
from sipwarden.observe.events import LOGIN_FAILED, VERDICT, Event
from sipwarden.observe.schedule import Schedule

NOW = 1_800_000_000.0
WEEK = 7 * 86400.0


def flow(source: str, minute: float, methods: dict[str, int], answers: dict[str, int]) -> dict:
    return {
        "minute": minute,
        "source": source,
        "source_port": 5060,
        "destination": "198.51.100.1",
        "destination_port": 5060,
        "transport": "udp",
        "first_seen": minute,
        "last_seen": minute + 1,
        "packets": sum(methods.values()),
        "bytes": 500,
        "peak_pps": 1,
        "methods": methods,
        "answers": answers,
        "verdicts": {},
    }


def window(events: int) -> Window:
    flows = [
        flow(f"10.{p >> 8}.{p & 255}.1", NOW - 60 * m, {"REGISTER": 2}, {"401": 1, "200": 1})
        for p in range(2000)
        for m in range(1, 16)
    ]
    evs = [
        Event(
            NOW - i % 900,
            VERDICT,
            f"198.18.{i >> 8}.{i & 255}",
            "scan.sipvicious-tag",
            (("verdict", "drop"), ("user_agent", "friendly-scanner")),
        )
        for i in range(1000)
    ]
    flows += [flow(e.source, NOW - 60, {"OPTIONS": 1}, {}) for e in evs]
    evs += [
        Event(NOW - 300 + k, LOGIN_FAILED, f"203.0.113.{i}", "auth.failed", (("account", "1"),))
        for i in range(12)
        for k in range(3)
    ]
    evs += [
        Event(
            NOW - i % 900,
            LOGIN_FAILED,
            f"100.{i % 64}.{i >> 6 & 255}.{i >> 14}",
            "auth.failed",
            (("account", str(i % 500)),),
        )
        for i in range(events)
    ]
    profile = HourOfWeekProfile(since=NOW - 4 * WEEK)
    for hour in range(4 * 168):
        profile.add(NOW - 4 * WEEK + hour * 3600, 5)
    return Window(
        now=NOW,
        events=evs,
        flows=flows,
        profile=profile,
        country=lambda host: host.split(".")[0],
        known_countries=frozenset({"10", "100"}),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    w = window(args.events)
    analysis = build_analysis(Config().analysis, Config().bans)
    found = analysis.run(w)
    print(f"window: {len(w.events):,} events, {len(w.flows):,} flow records")
    names = [f"{f.analyser} {f.target or 'site'}" for f in found]
    print(f"findings: {', '.join(names)}")
    best = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        analysis.run(w)
        best = min(best, time.perf_counter() - start)
    print(f"Analysis.run: {best * 1000:.0f} ms (best of {args.repeat})")
    for analyser in analysis.analysers:
        t = min(timeit.repeat(lambda a=analyser: a.run(w), number=1, repeat=args.repeat))
        print(f"  {analyser.name:22}{t * 1000:>8.0f} ms")
    schedule = Schedule(
        timezone=zoneinfo.ZoneInfo("Europe/Berlin"),
        business_hours=(480, 1080),
        quiet_hours=(1320, 360),
        weekend=(5, 6),
    )
    quiet = schedule.quiet
    n = 1_000_000
    cached = min(
        timeit.repeat("quiet(NOW)", globals={"quiet": quiet, "NOW": NOW}, number=n, repeat=5)
    )
    fresh = min(timeit.repeat(lambda: schedule.why_quiet(NOW), number=50_000, repeat=5))
    print(f"Schedule.quiet, the minute's answer kept: {cached / n * 1e9:.0f} ns")
    print(f"Schedule.why_quiet (a new minute): {fresh / 50_000 * 1e9:.0f} ns")


if __name__ == "__main__":
    main()
