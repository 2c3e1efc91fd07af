"""The operator's report (`sipwarden report`, the weekly mail): what the
store recorded over a window, added up into one plain value.

Pure: the caller reads the stores (bans made and in force, events, flows
merged over the window, the hourly traffic, the honeypot's call records)
and hands the rows in, with the country lookup and the schedule it opened;
``build_report`` returns a dict of lists and numbers that the HTML and the
JSON renderings share, so both say the same thing. The numbers are the
stores' own: packets are the flows' (what `sipwarden flows` lists), bans in
force what `bans list` lists, calls the honeypot's records' counts (what
`honeypot calls` lists); an event that stands for a flood counts its
``repeated``.

Bounds: one pass over each input; the lists kept are the ``top`` largest
(sources, countries, tools, User-Agents, accounts, numbers); the volume has
at most ``MAX_BUCKETS`` buckets. Attacker-chosen text (User-Agents,
accounts, numbers) is kept as given: the renderer escapes it.

Also here: when the weekly report is next due (``next_due``), in the
timezone the caller hands in.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from .events import LOGIN_FAILED, VERDICT, WOULD_BAN
from .schedule import WEEK_HOURS, Schedule, week_profile

KERNEL: Final = "kernel"  # the transport of the kernel's drop counts as flows (drops.py)
UNKNOWN: Final = "unknown"  # a country no database names (or no database)
ATTACKS: Final = (VERDICT, LOGIN_FAILED, WOULD_BAN)  # the events that count as attack volume
TOOL_RULES: Final = ("scan.", "ua.")  # the built-in pack's rules that name a tool
MAX_BUCKETS: Final = 400  # the volume over time: at most this many bars
SECTIONS: Final = (
    "summary",
    "volume",
    "week",
    "sources",
    "countries",
    "tools",
    "bans",
    "accounts",
    "dialled",
    "kernel",
)


def weight(event: dict[str, Any]) -> int:
    """How many events a stored row stands for (a flood's summary: its ``repeated``)."""
    repeated = event.get("repeated")
    return repeated if isinstance(repeated, int) and repeated > 0 else 1


def bucket_step(since: float, until: float) -> int:
    """Seconds per bar of the volume: an hour, or whole hours making at
    most ``MAX_BUCKETS`` bars."""
    hours = math.ceil(max(until - since, 1.0) / 3600 / MAX_BUCKETS)
    return 3600 * max(1, hours)


def _top(counter: Counter[str], top: int, key: str, value: str) -> list[dict[str, Any]]:
    return [{key: name, value: n} for name, n in counter.most_common(top)]


def build_report(
    *,
    since: float,
    until: float,
    events: Iterable[dict[str, Any]],
    flows: Iterable[dict[str, Any]],
    traffic: Iterable[tuple[float, str, int]],
    bans_made: Sequence[dict[str, Any]],
    bans_in_force: Sequence[dict[str, Any]],
    calls: Sequence[dict[str, Any]],
    country_of: Callable[[str], str | None] | None = None,
    schedule: Schedule | None = None,
    top: int = 20,
) -> dict[str, Any]:
    """The report over [``since``, ``until``] (see the module doc).
    ``traffic``: (minute, transport, packets) rows of the flows table in the
    window; ``country_of``: an address's country code, None when unknown
    (no lookup: every country unknown)."""
    step = bucket_step(since, until)
    buckets = math.ceil((until - since) / step) or 1

    def bucket(when: float) -> int | None:
        i = int((when - since) // step)
        return i if 0 <= i < buckets else None

    # ---------------------------------------------------------------- events
    attacks = [0] * buckets
    attack_times: list[tuple[float, float]] = []
    by_kind: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    agents: Counter[str] = Counter()
    verdict_reasons: Counter[str] = Counter()
    would_ban: Counter[str] = Counter()
    accounts: Counter[str] = Counter()
    account_sources: defaultdict[str, set[str]] = defaultdict(set)
    events_of: Counter[str] = Counter()
    for event in events:
        when, kind, n = event["time"], event["kind"], weight(event)
        if not since <= when <= until:
            continue
        by_kind[kind] += n
        if kind not in ATTACKS:
            continue
        events_of[event["source"]] += n
        attack_times.append((when, float(n)))
        if (i := bucket(when)) is not None:
            attacks[i] += n
        reason = event["reason"]
        if kind == VERDICT:
            verdict_reasons[reason] += n
            if reason.startswith(TOOL_RULES):
                rules[reason] += n
            if agent := event.get("user_agent"):
                agents[str(agent)] += n
        elif kind == WOULD_BAN:
            would_ban[reason] += n
        else:  # a failed login, or a probe for a user that is not there
            account = str(event.get("account") or "")
            accounts[account] += n
            account_sources[account].add(event["source"])

    # ----------------------------------------------------------------- flows
    per_source: dict[str, dict[str, Any]] = {}
    kernel_sources: Counter[str] = Counter()
    kernel_bytes = 0
    flow_count = 0
    for flow in flows:
        flow_count += 1
        source = flow["source"]
        row = per_source.get(source)
        if row is None:
            row = per_source[source] = {
                "source": source,
                "packets": 0,
                "bytes": 0,
                "stopped": 0,
                "kernel": 0,
                "flows": 0,
            }
        row["packets"] += flow["packets"]
        row["bytes"] += flow["bytes"]
        row["flows"] += 1
        if flow["transport"] == KERNEL:
            row["kernel"] += flow["packets"]
            kernel_sources[source] += flow["packets"]
            kernel_bytes += flow["bytes"]
        else:
            row["stopped"] += sum(flow.get("verdicts", {}).values())
    packets = [0] * buckets
    kernel_packets = [0] * buckets
    for minute, transport, n in traffic:
        # a minute begun before the window's start (a flow the window holds) counts in its first bar
        if (i := bucket(max(minute, since))) is not None:
            (kernel_packets if transport == KERNEL else packets)[i] += n

    # ------------------------------------------------------------- countries
    banned = {ban["ip"] for ban in bans_in_force}
    lookup = country_of or (lambda host: None)
    countries: dict[str, dict[str, Any]] = {}
    for source, row in per_source.items():
        code = lookup(source) or UNKNOWN
        row["country"] = code
        row["events"] = events_of.get(source, 0)
        row["banned"] = source in banned
        place = countries.setdefault(code, {"country": code, "sources": 0, "packets": 0})
        place["sources"] += 1
        place["packets"] += row["packets"]
    sources = sorted(per_source.values(), key=lambda r: (-r["packets"], r["source"]))

    # ---------------------------------------------------------------- honeypot
    numbers: dict[str, dict[str, Any]] = {}
    callers: defaultdict[str, set[str]] = defaultdict(set)
    for call in calls:
        number = call["number"]
        row = numbers.setdefault(
            number,
            {
                "number": number,
                "normalised": call.get("normalised"),
                "country": call.get("country"),
                "calls": 0,
                "sources": 0,
            },
        )
        row["calls"] += call["count"]
        callers[number].add(call["source"])
    for number, row in numbers.items():
        row["sources"] = len(callers[number])
    dialled = sorted(numbers.values(), key=lambda r: (-r["calls"], r["number"]))

    # ------------------------------------------------------------------ bans
    by_reason: Counter[tuple[str, str]] = Counter(
        (ban["detector"], ban["reason"]) for ban in bans_made
    )
    weeks = max(1, math.ceil((until - since) / (WEEK_HOURS * 3600)))
    profile = week_profile(attack_times, until, weeks, schedule)
    return {
        "window": {"since": since, "until": until},
        "summary": {
            "attacks": sum(attacks),
            "events": dict(sorted(by_kind.items())),
            "packets": sum(r["packets"] for r in sources),
            "bytes": sum(r["bytes"] for r in sources),
            "flows": flow_count,
            "sources": len(sources),
            "kernel_packets": sum(kernel_sources.values()),
            "bans_made": len(bans_made),
            "bans_in_force": len(bans_in_force),
            "honeypot_calls": sum(r["calls"] for r in dialled),
            "countries_known": country_of is not None,
        },
        "volume": {
            "step": step,
            "start": [since + i * step for i in range(buckets)],
            "attacks": attacks,
            "packets": packets,
            "kernel": kernel_packets,
        },
        "week": {
            **profile,
            "timezone": str(schedule.timezone) if schedule is not None else "UTC",
        },
        "sources": sources[:top],
        "countries": sorted(countries.values(), key=lambda r: (-r["packets"], r["country"]))[:top],
        "tools": {
            "rules": _top(rules, top, "rule", "count"),
            "user_agents": _top(agents, top, "user_agent", "count"),
            "verdicts": _top(verdict_reasons, top, "reason", "count"),
        },
        "bans": {
            "in_force": list(bans_in_force),
            "by_reason": [
                {"detector": detector, "reason": reason, "count": n}
                for (detector, reason), n in by_reason.most_common(top)
            ],
            "would_ban": _top(would_ban, top, "reason", "count"),
        },
        "accounts": [
            {"account": account, "count": n, "sources": len(account_sources[account])}
            for account, n in accounts.most_common(top)
        ],
        "dialled": dialled[:top],
        "kernel": {
            "packets": sum(kernel_sources.values()),
            "bytes": kernel_bytes,
            "sources": len(kernel_sources),
            "top": _top(kernel_sources, top, "source", "packets"),
        },
    }


def next_due(now: float, weekday: int, minute: int, timezone: dt.tzinfo) -> float:
    """The first moment after ``now`` that is ``weekday`` (0 Monday .. 6
    Sunday) at ``minute`` of the day in ``timezone`` (the wall clock: a
    DST change moves it with the clock)."""
    local = dt.datetime.fromtimestamp(now, timezone)
    day = local.date() + dt.timedelta(days=(weekday - local.weekday()) % 7)
    for _ in range(3):  # today's time already past: the same day next week
        due = dt.datetime.combine(
            day, dt.time(minute // 60, minute % 60), tzinfo=timezone
        ).timestamp()
        if due > now:
            return due
        day += dt.timedelta(days=7)
    raise AssertionError("unreachable: a week later is later")
