"""The report's aggregation (observe/report.py): flood summaries counted by
their ``repeated``, the volume's bars, sources and countries from the flows,
the kernel's drops apart, tools from the pack's rules and User-Agents,
accounts, numbers dialled, bans by reason; and when the weekly mail is due."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from sipwarden.observe.report import (
    SECTIONS,
    UNKNOWN,
    bucket_step,
    build_report,
    next_due,
)
from sipwarden.observe.schedule import Schedule

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
SINCE = dt.datetime(2026, 11, 30, tzinfo=dt.UTC).timestamp()  # a Monday, 00:00 UTC
UNTIL = SINCE + 7 * 86400


def flow(source: str, packets: int, transport: str = "udp", **verdicts: int) -> dict[str, Any]:
    return {
        "source": source,
        "source_port": None if transport == "kernel" else 5060,
        "destination": "192.0.2.1",
        "destination_port": 5060,
        "transport": transport,
        "packets": packets,
        "bytes": packets * 100,
        "verdicts": dict(verdicts),
    }


def report(**kwargs: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "since": SINCE,
        "until": UNTIL,
        "events": [],
        "flows": [],
        "traffic": [],
        "bans_made": [],
        "bans_in_force": [],
        "calls": [],
    }
    values.update(kwargs)
    return build_report(**values)


def test_an_empty_store_gives_every_section_with_zeros() -> None:
    found = report()
    assert set(SECTIONS) <= set(found)
    assert found["summary"]["attacks"] == found["summary"]["packets"] == 0
    assert len(found["volume"]["attacks"]) == 168  # hourly bars over a week
    assert found["week"]["hours"] == [0.0] * 168
    assert found["sources"] == [] and found["dialled"] == []


def test_events_count_their_repeated_and_fall_into_their_bar_and_hour_of_week() -> None:
    events = [
        {"time": SINCE + 3600 * 5 + 10, "kind": "verdict", "source": "203.0.113.7",
         "reason": "scan.sipvicious", "user_agent": "friendly-scanner", "repeated": 40},
        {"time": SINCE + 3600 * 5 + 20, "kind": "verdict", "source": "203.0.113.7",
         "reason": "rate", "user_agent": None},
        {"time": SINCE + 86400 + 60, "kind": "login-failed", "source": "198.51.100.2",
         "reason": "auth.failed", "account": "100"},
        {"time": SINCE + 86400 + 61, "kind": "login-failed", "source": "198.51.100.3",
         "reason": "auth.failed", "account": "100", "repeated": 4},
        {"time": SINCE + 100, "kind": "would-ban", "source": "198.51.100.3",
         "reason": "failures", "detector": "failures"},
        {"time": SINCE + 100, "kind": "feed", "source": "", "reason": "apiban"},  # not an attack
        {"time": SINCE - 1, "kind": "verdict", "source": "x", "reason": "rate"},  # before
    ]  # fmt: skip
    found = report(events=events)
    assert found["summary"]["attacks"] == 40 + 1 + 1 + 4 + 1
    assert found["summary"]["events"] == {
        "feed": 1, "login-failed": 5, "verdict": 41, "would-ban": 1
    }  # fmt: skip
    assert found["volume"]["attacks"][5] == 41 and found["volume"]["attacks"][24] == 5
    assert found["week"]["hours"][5] == 41  # Monday 05:00 UTC
    assert found["tools"]["rules"] == [{"rule": "scan.sipvicious", "count": 40}]
    assert found["tools"]["user_agents"] == [{"user_agent": "friendly-scanner", "count": 40}]
    assert found["accounts"] == [{"account": "100", "count": 5, "sources": 2}]
    assert found["bans"]["would_ban"] == [{"reason": "failures", "count": 1}]


def test_sources_countries_and_the_kernels_drops_come_from_the_flows() -> None:
    flows = [
        flow("203.0.113.7", 500, rate=480),
        flow("203.0.113.7", 2000, "kernel"),
        flow("198.51.100.2", 30),
        flow("192.0.3.9", 10),
    ]
    countries = {"203.0.113.7": "XA", "198.51.100.2": "XB"}
    banned = [{"ip": "203.0.113.7", "reason": "rate", "detector": "limits"}]
    found = report(flows=flows, country_of=countries.get, bans_in_force=banned)
    top = found["sources"][0]
    assert top == {
        "source": "203.0.113.7", "packets": 2500, "bytes": 250000, "stopped": 480,
        "kernel": 2000, "flows": 2, "country": "XA", "events": 0, "banned": True,
    }  # fmt: skip
    assert [r["country"] for r in found["countries"]] == ["XA", "XB", UNKNOWN]
    assert found["kernel"] == {
        "packets": 2000, "bytes": 200000, "sources": 1,
        "top": [{"source": "203.0.113.7", "packets": 2000}],
    }  # fmt: skip
    assert found["summary"]["packets"] == 2540 and found["summary"]["flows"] == 4
    no_database = report(flows=flows)
    assert {r["country"] for r in no_database["sources"]} == {UNKNOWN}


def test_traffic_fills_the_bars_and_a_minute_begun_before_the_window_counts_in_the_first() -> None:
    traffic = [(SINCE - 30, "udp", 7), (SINCE + 7200, "udp", 5), (SINCE + 7260, "kernel", 9)]
    volume = report(traffic=traffic)["volume"]
    assert volume["packets"][0] == 7 and volume["packets"][2] == 5 and volume["kernel"][2] == 9


def test_numbers_dialled_and_bans_by_reason() -> None:
    calls = [
        {"source": "203.0.113.7", "number": "00972597562518", "count": 3,
         "normalised": "972597562518", "country": "IL"},
        {"source": "203.0.113.8", "number": "00972597562518", "count": 1,
         "normalised": "972597562518", "country": "IL"},
        {"source": "203.0.113.8", "number": "011447700900123", "count": 2,
         "normalised": None, "country": None},
    ]  # fmt: skip
    made = [
        {"ip": "203.0.113.7", "reason": "prefix walk", "detector": "tollfraud.prefix-walk"},
        {"ip": "203.0.113.8", "reason": "prefix walk", "detector": "tollfraud.prefix-walk"},
        {"ip": "198.51.100.2", "reason": "5 failed logins", "detector": "failures"},
    ]
    found = report(calls=calls, bans_made=made)
    assert found["dialled"][0] == {
        "number": "00972597562518", "normalised": "972597562518", "country": "IL",
        "calls": 4, "sources": 2,
    }  # fmt: skip
    assert found["summary"]["honeypot_calls"] == 6
    assert found["bans"]["by_reason"][0] == {
        "detector": "tollfraud.prefix-walk", "reason": "prefix walk", "count": 2
    }  # fmt: skip
    assert found["summary"]["bans_made"] == 3


def test_quiet_hours_are_marked_in_the_schedules_timezone() -> None:
    schedule = Schedule(timezone=BERLIN, quiet_hours=(22 * 60, 6 * 60))
    week = report(schedule=schedule)["week"]
    assert week["timezone"] == "Europe/Berlin"
    assert week["quiet"][23] and week["quiet"][5] and not week["quiet"][12]


def test_the_bars_are_bounded_over_a_long_window() -> None:
    assert bucket_step(SINCE, SINCE + 7 * 86400) == 3600
    assert (SINCE + 365 * 86400 - SINCE) / bucket_step(SINCE, SINCE + 365 * 86400) <= 400
    assert len(report(until=SINCE + 365 * 86400)["volume"]["attacks"]) <= 400


def test_the_weekly_report_is_due_on_its_weekday_and_wall_clock_time() -> None:
    monday_8 = dt.datetime(2026, 12, 7, 8, 0, tzinfo=BERLIN).timestamp()
    assert next_due(monday_8 - 60, 0, 8 * 60, BERLIN) == monday_8
    assert next_due(monday_8, 0, 8 * 60, BERLIN) == monday_8 + 7 * 86400  # just sent: next week
    # across the spring DST change (2027-03-28): still 08:00 on the wall clock
    after = next_due(dt.datetime(2027, 3, 23, tzinfo=BERLIN).timestamp(), 0, 8 * 60, BERLIN)
    assert dt.datetime.fromtimestamp(after, BERLIN).replace(tzinfo=None) == dt.datetime(
        2027, 3, 29, 8, 0
    )
