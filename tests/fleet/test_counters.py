"""Failure counts shared through a real redis-server: three nodes' trackers
tapped, five failures over three nodes one ban (made by the node whose
event crossed the threshold, worded as fleet-wide), four none, a success
wiping that account's failures fleet-wide, enumeration across nodes, the
tap surviving a reload, and Redis away: counted locally, the batch bounded
and sent when Redis returns."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sipwarden.config import FleetConfig, config_from_dict
from sipwarden.fleet import FleetLink
from sipwarden.fleet.counters import FleetCounters
from sipwarden.policy import Policy, build_policy

from .redis_server import PASSWORD, USER, Redis, redis_server

NOW = time.time()  # the keeper sends only what counts in a window of now
GUESSER = "203.0.113.5"


def node(server: Redis, name: str, queue: int = 10_000, **failures: object) -> FleetCounters:
    policy = build_policy(config_from_dict({"failures": failures}))
    link = FleetLink(
        FleetConfig(
            redis=server.url,
            node=name,
            username=USER,
            password=PASSWORD,
            queue=queue,
            timeout=0.5,
        )
    )
    return FleetCounters(link, lambda: policy)


def fail(counters: FleetCounters, host: str, when: float, user: str = "100") -> None:
    """A 401 to a REGISTER with credentials, as the edge tells the policy."""
    tracker = counters.policy().failures
    assert tracker is not None
    assert tracker.answer(host, 401, "REGISTER", user, True, when) is None  # not locally


def bans(counters: FleetCounters) -> list[tuple[str, str, str]]:
    policy: Policy = counters.policy()
    assert policy.bans is not None
    return [(b.target, b.detector, b.reason) for b in policy.bans.active(NOW + 60)]


def test_five_failures_over_three_nodes_are_one_ban_made_once(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:

        async def scenario() -> None:
            a, b, c = (node(server, name) for name in "abc")
            for n in (a, b, c):
                n.attach()
                assert await n.link.connect()
            t = NOW
            for n in (a, a, b, b):
                fail(n, GUESSER, t := t + 1)
                await n.flush()
            assert all(bans(n) == [] for n in (a, b, c))  # four: nobody bans
            assert a.accounts["100"] == 4 or b.accounts["100"] == 4
            fail(c, GUESSER, t := t + 1)
            fail(c, "203.0.113.6", t)  # another source's one failure: no ban
            assert await c.flush() == 2
            [(target, detector, reason)] = bans(c)
            assert (target, detector) == (GUESSER, "auth.brute-force")
            assert reason.startswith("5 failed logins across the fleet (1 here) for 100 within")
            policy = c.policy()
            assert policy.bans is not None
            ban = policy.bans.get(GUESSER)
            assert ban is not None and any("at node a (fleet-wide)" in e for e in ban.evidence)
            assert bans(a) == [] and bans(b) == []  # one node decides; the stream tells the rest
            assert c.status()["decisions:auth.brute-force"] == 1
            # counted afresh after the crossing: one more elsewhere is one
            fail(a, GUESSER, t := t + 1)
            await a.flush()
            assert server.cli("ZCARD", f"sipwarden:fail:{GUESSER}").strip() == "1"
            assert int(server.cli("TTL", f"sipwarden:fail:{GUESSER}")) > 0  # it expires
            for n in (a, b, c):
                await n.stop()

        asyncio.run(scenario())


def test_a_success_wipes_that_accounts_failures_fleet_wide(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:

        async def scenario() -> None:
            a, b = node(server, "a"), node(server, "b")
            for n in (a, b):
                n.attach()
                await n.link.connect()
            t = NOW
            for user in ("100", "100", "200", "100"):
                fail(a, GUESSER, t := t + 1, user)
            await a.flush()
            tracker = b.policy().failures
            assert tracker is not None  # b never saw the source: the success still counts
            tracker.answer(GUESSER, 200, "REGISTER", "100", True, t := t + 1)
            await b.flush()
            assert server.cli("ZCARD", f"sipwarden:fail:{GUESSER}").strip() == "1"  # 200's
            for _ in range(3):
                fail(b, GUESSER, t := t + 1, "300")
            await b.flush()
            assert bans(b) == []  # 1 + 3: not five
            fail(b, GUESSER, t := t + 1, "300")
            await b.flush()
            [(_, detector, reason)] = bans(b)
            assert detector == "auth.brute-force" and "(4 here) for 200, 300" in reason
            for n in (a, b):
                await n.stop()

        asyncio.run(scenario())


def test_enumeration_and_a_slow_guesser_keep_the_trackers_meanings(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:

        async def scenario() -> None:
            a, b = (node(server, n, enumeration=4, distinct_users=3, burst=10) for n in "ab")
            for n in (a, b):
                n.attach()
                await n.link.connect()
            tracker_a, tracker_b = a.policy().failures, b.policy().failures
            assert tracker_a is not None and tracker_b is not None
            t = NOW
            for n, tracker, user in ((a, tracker_a, "x1"), (b, tracker_b, "x2")) * 2:
                tracker.answer("203.0.113.7", 404, "REGISTER", user, False, t := t + 1)
                await n.flush()
            [(_, detector, reason)] = bans(b)
            assert detector == "enum.not-found"
            assert reason.startswith("4 unknown users or extensions across the fleet (2 here)")
            # three users challenged (no credentials) from one source over two nodes
            for n, tracker, user in (
                (a, tracker_a, "u1"),
                (b, tracker_b, "u2"),
                (a, tracker_a, "u3"),
            ):
                tracker.answer("203.0.113.8", 401, "REGISTER", user, False, t := t + 1)
                await n.flush()
            [(_, detector, reason)] = bans(a)
            assert detector == "enum.users" and reason.startswith("3 different users refused")
            # five failures 30 s apart (burst 10 s): a phone's pace, the short fixed ban
            for i in range(5):
                n, tracker = (a, tracker_a) if i % 2 else (b, tracker_b)
                tracker.answer("203.0.113.9", 401, "REGISTER", "100", True, t := t + 30)
                await n.flush()
            made = [x for x in bans(b) if x[0] == "203.0.113.9"]
            assert [d for _, d, _ in made] == ["auth.failures"], bans(a) + bans(b)
            for n in (a, b):
                await n.stop()

        asyncio.run(scenario())


def test_the_tap_survives_a_reload_and_costs_nothing_unset() -> None:
    config = config_from_dict({})
    first = build_policy(config)
    told: list[tuple[str, str, str, float]] = []
    assert first.failures is not None and first.failures.tap is None
    first.failures.tap = lambda *event: told.append(event)
    again = build_policy(config_from_dict({"failures": {"maxretry": 3}}), previous=first)
    assert again.failures is first.failures and again.failures.tap is not None
    again.failures.answer("203.0.113.1", 401, "REGISTER", "100", False, NOW)  # a challenge
    again.failures.answer("203.0.113.1", 401, "REGISTER", "100", True, NOW)
    again.failures.answer("203.0.113.1", 404, "REGISTER", "101", False, NOW)
    again.failures.answer("203.0.113.2", 200, "REGISTER", "100", True, NOW)
    again.failures.answer("203.0.113.2", 200, "OPTIONS", "", False, NOW)  # no account: untold
    empty = build_policy(config_from_dict({"fingerprints": {"ban": False}}))  # no known-good
    assert empty.failures is not None and not empty.reads_answer(200)  # nothing to clear here
    empty.failures.tap = lambda *event: None
    assert empty.reads_answer(200)  # ... but the fleet may track the source: told
    assert [kind for _, kind, _, _ in told] == [
        "auth.refused",
        "auth.failed",
        "auth.not-found",
        "auth.ok",
    ]


def test_redis_away_the_node_counts_alone_and_catches_up(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:

        async def scenario() -> None:
            a, b = node(server, "a", queue=3), node(server, "b")
            for n in (a, b):
                n.attach()
                await n.link.connect()
            server.stop()
            t = NOW
            for _ in range(4):  # the oldest of four goes: the batch holds three
                fail(a, GUESSER, t := t + 1)
            assert await a.flush() == 0
            status = a.status()
            assert status["workers-down"] == 1 and status["pending"] == 3
            assert status["dropped"] == 1 and status["redis-errors"] == 1
            # alone, the node's own tracker still bans on its own count
            tracker = a.policy().failures
            assert tracker is not None
            decision = tracker.answer(GUESSER, 401, "REGISTER", "100", True, t := t + 1)
            assert decision is not None and decision.detector == "auth.brute-force"
            server.start()
            assert await a.flush() == 3  # the newest three held (the fifth too)
            assert a.status()["workers-up"] == 1 and a.status()["dropped"] == 2
            fail(b, GUESSER, t := t + 1)
            fail(b, GUESSER, t := t + 1)
            await b.flush()  # the 3 held over the outage + 2
            assert [d for _, d, _ in bans(b)] == ["auth.brute-force"]
            for n in (a, b):
                await n.stop()

        asyncio.run(scenario())


def test_the_status_adds_up_over_workers_and_becomes_metrics() -> None:
    from sipwarden.daemon.stats import add_stats
    from sipwarden.observe.metrics import metric_families

    one = {"sent": 7, "flushes": 2, "pending": 1, "workers-up": 1, "workers-down": 0}
    two = {"sent": 3, "pending": 0, "workers-up": 0, "workers-down": 1, "redis-errors": 4}
    one["decisions:auth.brute-force"] = 1
    total: dict[str, object] = {}
    for part in (one, two):
        add_stats(total, {"fleet-counters": part})
    summed = total["fleet-counters"]
    assert isinstance(summed, dict) and summed["sent"] == 10 and summed["workers-down"] == 1
    families = {f.name: f for f in metric_families(total, "0")}
    sent = families["sipwarden_fleet_counters_events_sent_total"]
    assert sent.kind == "counter" and sent.samples[0].value == 10
    down = families["sipwarden_fleet_counters_workers_down"]
    assert down.kind == "gauge" and down.samples[0].value == 1
    made = families["sipwarden_fleet_counters_decisions_total"]
    assert made.labels == ("detector",) and made.samples[0].labels == ("auth.brute-force",)
