"""The observe keeper: events and flows from the queues to the store, held
while the store fails, pruned, and followed by worker 0's listeners."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sipwarden.config import ObserveConfig
from sipwarden.daemon.observe import ObserveKeeper, as_event
from sipwarden.observe import LOGIN_FAILED, VERDICT, Event, FlowKey
from sipwarden.store import ObserveStore

T0 = 1_800_000_000.0  # a minute's start
KEY = FlowKey("203.0.113.7", 5070, "10.0.0.1", 5060, "udp")


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def keeper(path: Path, clock: Clock, worker: int = 0, **settings: Any) -> ObserveKeeper:
    config = ObserveConfig(**{"write_interval": 60, **settings})  # written when the test says
    return ObserveKeeper(config, path, worker=worker, clock=clock)


def test_events_and_flows_reach_the_store_and_the_minute_under_way_is_written_at_stop(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        clock = Clock(T0 + 1)
        k = keeper(tmp_path / "s.db", clock)
        await k.start()
        k.events.push(Event(T0 + 1, VERDICT, "203.0.113.7", "scan.sipvicious-tag"))
        k.flows.record(KEY, T0 + 1, 400, method="OPTIONS", verdict="scan.sipvicious-tag")
        await k.write()
        assert [e["reason"] for e in await k.events_since(T0)] == ["scan.sipvicious-tag"]
        assert await k.flows_since(T0) == []  # its minute is not over
        clock.now = T0 + 30
        k.flows.record(KEY, T0 + 30, 600, method="REGISTER")
        await k.stop()  # the minute under way is written too

    asyncio.run(run())
    store = ObserveStore(tmp_path / "s.db")
    (flow,) = store.flows(since=T0)
    assert flow["packets"] == 2 and flow["bytes"] == 1000
    assert flow["methods"] == {"OPTIONS": 1, "REGISTER": 1}
    assert flow["verdicts"] == {"scan.sipvicious-tag": 1}
    store.close()


def test_a_store_that_cannot_be_written_holds_events_and_loses_them_only_past_the_bound(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "not-yet" / "s.db"  # its folder does not exist: the store fails

    async def run() -> None:
        clock = Clock()
        k = keeper(missing, clock, max_events=100)
        await k.start()
        for i in range(60):
            k.events.push(Event(T0, LOGIN_FAILED, f"203.0.113.{i}", "auth.failed"))
        await k.write()
        assert k.store_error is not None and "does not exist" in k.store_error
        assert k.stats()["events-held"] == 60 and k.counters["events-lost"] == 0
        for i in range(60):
            k.events.push(Event(T0 + 1, LOGIN_FAILED, f"198.51.100.{i}", "auth.failed"))
        await k.write()  # 120 held would pass the bound of 100: the 20 oldest go
        assert k.stats()["events-held"] == 100 and k.counters["events-lost"] == 20
        missing.parent.mkdir()
        await k.write()  # the store works again: all that was held is written
        assert k.store_error is None and k.stats()["events-held"] == 0
        assert len(await k.events_since(None)) == 100
        assert k.counters["observe-write-errors"] == 3  # at start, then two writes
        await k.stop()

    asyncio.run(run())


def test_worker_0_follows_every_workers_events_from_its_start(tmp_path: Path) -> None:
    async def run() -> None:
        clock = Clock()
        path = tmp_path / "s.db"
        early = ObserveStore(path)
        early.write_events([Event(T0 - 5, VERDICT, "198.51.100.1", "old")])  # history, not news
        early.close()
        zero, one = keeper(path, clock, worker=0), keeper(path, clock, worker=1)
        told: list[dict[str, Any]] = []
        zero.listeners.append(told.extend)
        await zero.start()
        await one.start()
        one.events.push(Event(T0, VERDICT, "203.0.113.9", "scan.friendly-scanner"))
        zero.events.push(
            Event(T0, LOGIN_FAILED, "203.0.113.8", "auth.failed", (("account", "100"),))
        )
        await one.write()
        await zero.write()
        await zero.follow()
        assert [(r["source"], r["reason"]) for r in told] == [
            ("203.0.113.9", "scan.friendly-scanner"),
            ("203.0.113.8", "auth.failed"),
        ]
        assert as_event(told[1]) == Event(
            T0, LOGIN_FAILED, "203.0.113.8", "auth.failed", (("account", "100"),)
        )
        await zero.follow()  # nothing new: nothing told twice
        assert len(told) == 2
        await one.stop()
        await zero.stop()

    asyncio.run(run())


def test_prune_keeps_the_retention_and_the_row_caps(tmp_path: Path) -> None:
    store = ObserveStore(tmp_path / "s.db")
    store.write_events([Event(T0 - 40 * 86400, VERDICT, "a", "old")])
    store.write_events([Event(T0 - i, VERDICT, "b", f"r{i}") for i in range(1500)])
    deleted = store.prune(
        T0,
        events_retention=30 * 86400,
        events_max_rows=1000,
        flows_retention=7 * 86400,
        flows_max_rows=1000,
    )
    assert deleted == {"events": 1 + 500, "flows": 0}
    kept = store.events(since=None, limit=100_000)
    assert len(kept) == 1000 and kept[-1]["reason"] == "r1499"  # the newest rows stay
    store.close()
