"""The event queue: a sample and the exact count under a flood, bounded,
never blocking."""

from __future__ import annotations

import gc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipwarden.observe.events import BAN, VERDICT, Event, EventQueue

from ..conftest import tracked_after_collection


def drop(source: str, t: float, reason: str = "scanner.sipvicious") -> Event:
    return Event(t, VERDICT, source, reason, (("verdict", "drop"),))


def test_a_flood_of_one_source_is_a_sample_and_a_count() -> None:
    q = EventQueue(sample=3)
    for i in range(1000):
        q.push(drop("192.0.2.7", float(i)))
    q.push(Event(1000.0, BAN, "192.0.2.7", "rate.requests"))
    events = q.drain()
    assert [e.time for e in events[:4]] == [0.0, 1.0, 2.0, 1000.0]  # three, then the ban
    summary = events[4]
    assert summary.time == 999.0 and dict(summary.fields) == {"verdict": "drop", "repeated": 997}
    assert len(events) == 5 and q.dropped == 0
    assert q.drain() == []  # each drain starts afresh
    q.push(drop("192.0.2.7", 2000.0))
    assert q.drain() == [drop("192.0.2.7", 2000.0)]


def test_sources_and_reasons_are_sampled_apart() -> None:
    q = EventQueue(sample=1)
    for source in ("192.0.2.1", "192.0.2.2"):
        for reason in ("a", "b"):
            q.push(drop(source, 0.0, reason))
            q.push(drop(source, 1.0, reason))
    events = q.drain()
    assert len(events) == 8
    assert sum(dict(e.fields).get("repeated", 0) for e in events) == 4  # type: ignore[misc]


def test_past_its_bounds_an_event_is_dropped_and_counted() -> None:
    q = EventQueue(sample=10, max_events=5, max_keys=3)
    for n in range(4):  # a fourth key is one too many
        q.push(drop(f"192.0.2.{n}", 0.0))
    assert q.dropped == 1 and len(q) == 3
    for _ in range(3):
        q.push(drop("192.0.2.0", 1.0))
    assert len(q) == 5 and q.dropped == 2  # the queue is full: the last one is lost
    events = q.drain()
    assert len(events) == 5 and not any("repeated" in dict(e.fields) for e in events)


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        EventQueue(sample=0)


@given(
    st.lists(
        st.tuples(st.sampled_from(["192.0.2.1", "192.0.2.2", "192.0.2.3"]), st.sampled_from("ab")),
        max_size=300,
    ),
    st.integers(1, 5),
)
def test_every_event_is_queued_summarised_or_dropped_never_lost(
    pushes: list[tuple[str, str]], sample: int
) -> None:
    q = EventQueue(sample=sample, max_events=50, max_keys=4)
    for i, (source, reason) in enumerate(pushes):
        q.push(drop(source, float(i), reason))
    events = q.drain()
    # a summary stands for the events it counts (its own included: the last one)
    told = sum(int(dict(e.fields).get("repeated") or 1) for e in events)  # type: ignore[arg-type]
    assert told + q.dropped == len(pushes)
    assert len(events) <= 50 + 4


def test_many_sources_cost_the_collector_nothing_per_source_or_event() -> None:
    """A spoofed flood's sources each get a (kind, source, reason) tally (a
    count under a string key) and their events wait as exact tuples of
    atomics, so 5,000 more sources add no object a full collection walks,
    and the tables are never tracked (Events, NamedTuples, stayed tracked:
    two per source; a slots tally made it three)."""
    queue = EventQueue(sample=1, max_events=20_000, max_keys=20_000)

    def flood(first: int, count: int) -> None:
        for i in range(first, first + count):
            source = f"198.18.{i >> 8}.{i & 255}"
            for n in range(3):  # one queued, two counted
                event = Event(float(i + n), "login-failed", source, "auth.failed")
                queue.push(event._replace(fields=(("user", f"u{i}"), ("port", 5060))))

    flood(0, 100)
    before = tracked_after_collection()
    flood(100, 5_000)
    assert len(queue) == 5_100
    assert not gc.is_tracked(queue._counts)
    gc.collect(0)  # one young collection: every row waiting is untracked by it
    assert not any(gc.is_tracked(row) for row in queue._queued)
    assert tracked_after_collection() - before < 100
    events = queue.drain()
    assert len(events) == 2 * 5_100  # each source: its first, then a summary of two
    assert all(type(e) is Event for e in events)
    assert events[-1].fields == (("user", "u5099"), ("port", 5060), ("repeated", 2))
    assert events[-1].weight == 2 and events[-1].time == 5_101.0
