"""The pure alert state: routing by kind, one alert per interval per (kind,
reason) with the rest folded into a count, backoff after failures, and the
bounds on what waits; and an alert's renderings."""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from typing import get_args

import pytest

from sipwarden.config import AlertKind, SyslogFacility
from sipwarden.observe.alerts import (
    COUNTED_SOURCES,
    EXAMPLES,
    FACILITIES,
    HEALTH,
    KINDS,
    SOURCES,
    Alert,
    AlertTarget,
    Route,
    weight,
)
from sipwarden.observe.events import BAN, LOGIN_FAILED, VERDICT, Event, EventQueue


def failed_login(t: float, source: str = "203.0.113.5", **fields: int) -> Event:
    return Event(t, LOGIN_FAILED, source, "brute-force", tuple(fields.items()))


def target(**kw: object) -> AlertTarget:
    settings: dict[str, object] = {"kinds": frozenset({LOGIN_FAILED, BAN, HEALTH})}
    settings.update(kw)
    return AlertTarget(Route("hook", **settings))  # type: ignore[arg-type]


def send_all(t: AlertTarget, now: float) -> list[Alert]:
    out = []
    while (alert := t.take(now)) is not None:
        t.sent(now)
        out.append(alert)
    return out


def test_config_and_core_agree_on_kinds_and_facilities():
    assert set(get_args(AlertKind)) == set(KINDS)
    assert set(get_args(SyslogFacility)) == set(FACILITIES)


def test_weight_is_the_queues_repeated_count():
    queue = EventQueue(sample=2)
    for i in range(10):
        queue.push(failed_login(100.0 + i))
    events = queue.drain()
    assert sum(weight(e) for e in events) == 10
    assert weight(failed_login(1.0)) == 1


def test_only_the_wanted_kinds_reach_a_target():
    t = target(kinds=frozenset({BAN}))
    ready = t.offer([failed_login(1.0), Event(1.0, VERDICT, "203.0.113.5", "scan.sipvicious")], 1.0)
    assert not ready and t.take(1.0) is None and t.next_time() is None
    assert t.offer([Event(2.0, BAN, "203.0.113.5", "brute-force")], 2.0)
    [alert] = send_all(t, 2.0)
    assert (alert.kind, alert.reason, alert.count) == (BAN, "brute-force", 1)


def test_quiet_kinds_reach_a_target_only_in_quiet_time():
    # failed logins are noise by day and news at night (quiet from t = 100 on)
    t = target(kinds=frozenset({BAN}), quiet_kinds=frozenset({LOGIN_FAILED}))

    def quiet(when: float) -> bool:
        return when >= 100

    assert not t.offer([failed_login(50.0)], 50.0, quiet)  # by day: not wanted
    assert t.offer([failed_login(50.0)], 50.0) is False  # no schedule: never quiet
    assert t.offer([failed_login(120.0)], 120.0, quiet)  # at night: an alert
    [alert] = send_all(t, 120.0)
    assert (alert.kind, alert.count) == (LOGIN_FAILED, 1)
    with pytest.raises(ValueError, match="unknown event kinds"):
        Route("x", frozenset(), quiet_kinds=frozenset({"logins"}))


def test_a_burst_is_its_first_event_at_once_then_one_alert_with_the_count():
    t = target(min_interval=60.0)
    assert t.offer([failed_login(100.0)], 100.0)  # the first: at once
    [first] = send_all(t, 100.0)
    assert first.count == 1 and first.sources == ("203.0.113.5",)
    # ten thousand more within the interval, from 40 sources, some as the queue's summaries
    for i in range(40):
        burst = [failed_login(101.0 + i, f"198.51.100.{i}") for _ in range(5)]
        burst.append(failed_login(101.5 + i, f"198.51.100.{i}", repeated=245))
        assert not t.offer(burst, 101.0 + i)
    assert t.take(150.0) is None  # folded until the interval has passed
    assert t.next_time() == 160.0
    [second] = send_all(t, 160.0)
    assert second.count == 40 * 250
    assert second.source_count == 40 and len(second.sources) == SOURCES
    assert len(second.examples) == EXAMPLES
    assert (second.first, second.last) == (101.0, 140.5)
    assert t.status()["folded"] == 40 * 250 - 1
    assert t.status()["sent"] == 2
    # the burst is over: the next event waits for the interval after the last alert
    assert not t.offer([failed_login(200.0)], 200.0)
    assert t.next_time() == 220.0
    assert send_all(t, 219.0) == []
    assert [a.count for a in send_all(t, 220.0)] == [1]


def test_each_kind_and_reason_has_its_own_interval():
    t = target(min_interval=60.0)
    t.offer([failed_login(1.0), Event(1.0, BAN, "203.0.113.5", "brute-force")], 1.0)
    t.offer([Event(1.0, HEALTH, "", "store-not-writable")], 1.0)
    alerts = send_all(t, 1.0)
    assert sorted((a.kind, a.reason) for a in alerts) == [
        (BAN, "brute-force"),
        (HEALTH, "store-not-writable"),
        (LOGIN_FAILED, "brute-force"),
    ]


def test_a_failing_target_backs_off_exponentially_to_the_cap_and_keeps_folding():
    t = target(min_interval=10.0, retry_first=5.0, retry_cap=40.0)
    t.offer([failed_login(0.0)], 0.0)
    now, delays = 0.0, []
    for _ in range(6):
        alert = t.take(now)
        assert alert is not None and alert.count == 1  # the same alert, retried
        t.failed(now, "connection refused")
        delays.append(t.retry_at - now)
        assert t.take(now + delays[-1] - 0.1) is None  # not before its time
        # meanwhile the flood goes on: folded, not queued
        t.offer([failed_login(now + 1, "198.51.100.1", repeated=100)], now + 1)
        now += delays[-1]
    assert delays == [5.0, 10.0, 20.0, 40.0, 40.0, 40.0]
    status = t.status()
    assert status["failed"] == 6 and status["failures"] == 6
    assert status["last-error"] == "connection refused" and status["next-attempt"] == now
    assert status["waiting"] == 1 and status["folding"] == 1
    alerts = send_all(t, now)  # back: the old alert, then the whole flood in one
    assert [a.count for a in alerts] == [1, 600]
    status = t.status()
    assert status["failures"] == 0 and status["next-attempt"] is None and status["sent"] == 2


def test_what_waits_is_bounded_the_oldest_dropped_and_announced():
    t = target(min_interval=0.0, max_waiting=3, retry_first=5.0)
    reasons = [f"rule-{i}" for i in range(5)]
    t.offer([Event(0.0, BAN, "203.0.113.9", r) for r in reasons], 0.0)
    first = t.take(0.0)  # cuts all five into a line of three: two dropped
    assert first is not None and first.reason == "rule-2"
    assert first.dropped == 2
    t.failed(0.0, "timeout")  # it waits again, first in line
    assert t.status()["dropped"] == 2 and t.status()["dropped-events"] == 2
    t.offer([Event(1.0, BAN, "203.0.113.9", "rule-9")], 1.0)
    assert t.take(4.9) is None  # backing off
    again = send_all(t, 5.0)
    assert [a.reason for a in again] == ["rule-2", "rule-3", "rule-4", "rule-9"]
    # the loss is told again by the first alert that goes out
    assert [a.dropped for a in again] == [2, 0, 0, 0]


def test_tracked_reasons_are_bounded_idle_ones_forgotten():
    t = target(min_interval=10.0, max_keys=2)
    t.offer([Event(0.0, BAN, "", "a"), Event(0.0, BAN, "", "b")], 0.0)
    send_all(t, 0.0)
    t.offer([Event(1.0, BAN, "", "c")], 1.0)  # a and b are within their interval: no room
    assert t.status()["dropped-events"] == 1
    t.offer([Event(11.0, BAN, "", "c")], 11.0)  # now they are idle: forgotten, room made
    assert [a.reason for a in send_all(t, 11.0)] == ["c"]


def test_distinct_sources_are_counted_up_to_a_bound():
    t = target(min_interval=0.0)
    events = [failed_login(1.0, f"2001:db8::{i:x}") for i in range(COUNTED_SOURCES + 50)]
    t.offer(events, 1.0)
    [alert] = send_all(t, 1.0)
    assert alert.source_count == COUNTED_SOURCES and alert.sources_capped
    assert f"{COUNTED_SOURCES}+ sources" in alert.title


def test_route_refuses_unknown_kinds_and_bad_bounds():
    with pytest.raises(ValueError, match="unknown event kinds"):
        Route("x", frozenset({"bans"}))
    with pytest.raises(ValueError):
        Route("x", frozenset({BAN}), retry_first=10, retry_cap=5)


ALERT = Alert(
    target="hook",
    kind=LOGIN_FAILED,
    reason="brute-force",
    count=1234,
    first=1_796_000_000.0,
    last=1_796_000_300.0,
    sources=("203.0.113.5", "203.0.113.6"),
    source_count=2,
    examples=(failed_login(1_796_000_000.0, port=5060),),
    dropped=1,
)


def test_the_webhook_body_is_json_with_the_facts():
    body = json.loads(ALERT.json_body("edge-1"))
    assert body["count"] == 1234 and body["host"] == "edge-1"
    assert body["kind"] == LOGIN_FAILED and body["reason"] == "brute-force"
    assert body["sources"] == ["203.0.113.5", "203.0.113.6"]
    assert body["examples"][0]["port"] == 5060 and body["dropped"] == 1
    assert body["title"] == "sipwarden: 1234 x login-failed brute-force from 2 sources"


def test_the_mail_has_a_one_line_subject_and_the_text():
    subject, text = ALERT.mail("edge-1")
    assert "\n" not in subject and subject.endswith(" on edge-1")
    assert "1234 event(s)" in text and "203.0.113.5" in text
    assert "1 earlier alert(s) were dropped" in text


def test_syslog_lines_follow_rfc5424_and_rfc3164():
    line = ALERT.syslog_line(facility="local3", host="edge-1", procid=42)
    # PRI = local3 (19) * 8 + notice (5)
    assert line.startswith("<157>1 2026-11-30T")
    _pri, stamp, host, app, pid, msgid, sd, msg = line.split(" ", 7)
    assert (host, app, pid, msgid, sd) == ("edge-1", "sipwarden", "42", LOGIN_FAILED, "-")
    assert stamp.endswith("Z") and "count=1234" in msg and "\n" not in line
    health = Alert("s", HEALTH, "feed-stale", 1, 1.0, 1.0, (), 0, ())
    old = health.syslog_line(
        facility="daemon", format="rfc3164", tz=timezone(timedelta(hours=1)), network=False
    )
    assert old == "<28>Jan  1 01:00:01 sipwarden: sipwarden health: feed-stale; count=1" + (
        " first=1970-01-01T00:00:01Z last=1970-01-01T00:00:01Z"
    )
