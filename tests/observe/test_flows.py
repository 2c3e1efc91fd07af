"""Traffic flows in one-minute buckets: exact counts, the peak second,
bounded for spoofed sources, merged over a window."""

from __future__ import annotations

import gc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipwarden.observe.flows import OVERFLOW, FlowKey, FlowTable, aggregate

from ..conftest import tracked_after_collection

T0 = 1_800_000_000.0 - 1_800_000_000.0 % 60  # the start of a minute
SCANNER = FlowKey("192.0.2.7", 5070, "198.51.100.1", 5060, "udp")
PHONE = FlowKey("203.0.113.5", 40000, "198.51.100.1", 5060, "udp")


def test_a_flow_counts_packets_bytes_methods_answers_verdicts_and_its_peak() -> None:
    table = FlowTable()
    for i in range(10):  # 10 OPTIONS in the same second, dropped by the pack
        table.record(SCANNER, T0 + 1 + i / 100, 400, method="OPTIONS", verdict="scanner.sipvicious")
    for i in range(3):  # then one a second
        table.record(SCANNER, T0 + 5 + i, 500, method="REGISTER")
    table.record(PHONE, T0 + 2, 600, method="REGISTER")
    table.answer(PHONE, T0 + 2.5, 401)
    assert table.drain(T0 + 59) == []  # the minute is not over
    (scanner, phone) = table.drain(T0 + 60)
    assert scanner == {
        "minute": T0,
        "source": "192.0.2.7",
        "source_port": 5070,
        "destination": "198.51.100.1",
        "destination_port": 5060,
        "transport": "udp",
        "first_seen": T0 + 1,
        "last_seen": T0 + 7,
        "packets": 13,
        "bytes": 5500,
        "peak_pps": 10,
        "methods": {"OPTIONS": 10, "REGISTER": 3},
        "answers": {},
        "verdicts": {"scanner.sipvicious": 10},
    }
    assert phone["answers"] == {"401": 1} and phone["packets"] == 1  # answers are not packets
    assert table.drain(T0 + 120) == []


def test_the_minutes_of_a_window_merge_into_one_record_per_flow() -> None:
    table = FlowTable()
    for minute in range(3):
        for i in range(minute + 1):
            table.record(SCANNER, T0 + 60 * minute + i * 0.1, 100, verdict="drop")
    records = table.drain(T0 + 180)
    assert [r["minute"] for r in records] == [T0, T0 + 60, T0 + 120]
    (merged,) = aggregate(records)
    assert merged["packets"] == 6 and merged["bytes"] == 600 and merged["peak_pps"] == 3
    assert merged["first_seen"] == T0 and merged["last_seen"] == T0 + 120.2
    assert merged["verdicts"] == {"drop": 6} and "minute" not in merged


def test_spoofed_sources_past_the_bound_add_up_in_one_overflow_flow() -> None:
    table = FlowTable(max_flows=100)
    for n in range(10_000):
        key = FlowKey(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}", 5060, "198.51.100.1", 5060, "udp")
        table.record(key, T0 + 1, 200, method="REGISTER")
    assert len(table) == 101  # 100 flows and the overflow
    records = table.drain(T0 + 60)
    assert sum(r["packets"] for r in records) == 10_000  # exact totals
    (overflow,) = [r for r in records if r["source"] == OVERFLOW]
    assert overflow["packets"] == 9_900 and overflow["source_port"] is None
    assert table.counters["untracked"] == 9_900


def test_a_slow_writer_loses_the_oldest_minutes_counted() -> None:
    table = FlowTable(max_pending=2)
    for minute in range(5):
        table.record(SCANNER, T0 + 60 * minute, 100)
    records = table.drain(T0 + 300)
    assert [r["minute"] for r in records] == [T0 + 180, T0 + 240]
    assert table.counters["minutes-lost"] == 3


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        FlowTable(max_flows=0)


@given(
    st.lists(st.tuples(st.integers(0, 5), st.floats(0, 299), st.integers(0, 1500)), max_size=200)
)
def test_aggregating_the_minutes_keeps_every_packet_and_byte(
    packets: list[tuple[int, float, int]],
) -> None:
    table = FlowTable(max_flows=3)
    for source, offset, size in sorted(packets, key=lambda p: p[1]):
        key = FlowKey(f"192.0.2.{source}", 5060, "198.51.100.1", 5060, "udp")
        table.record(key, T0 + offset, size)
    merged = aggregate(table.drain(T0 + 600))
    assert sum(r["packets"] for r in merged) == len(packets)
    assert sum(r["bytes"] for r in merged) == sum(size for _, _, size in packets)


def test_many_flows_leave_nothing_per_flow_for_the_collector_to_walk() -> None:
    """A minute of spoofed sources fills the table: keys and flows are
    tuples of atomics and the counts dicts of strings and ints, so 5,000
    more flows add no object a full collection walks (a FlowKey and a slots
    object per flow added 10,000)."""
    table = FlowTable(max_flows=10_000)

    def flood(first: int, count: int) -> None:
        for i in range(first, first + count):
            key = FlowKey(f"198.18.{i >> 8}.{i & 255}", 5060, "198.51.100.1", 5060, "udp")
            table.record(key, T0 + i / 1e4, 500, method="REGISTER")
            table.record(key, T0 + i / 1e4, 400, method="OPTIONS", verdict="limit.requests")
            table.answer(key, T0 + i / 1e4, 401)

    flood(0, 100)
    before = tracked_after_collection()
    flood(100, 5_000)
    assert len(table) == 5_100
    # nor is any dict of the minute tracked, between collections (a dict
    # given a fresh tuple would be, and walked entry by entry; an array is
    # tracked, but its traversal visits only its type)
    minute = table._now
    tables = [getattr(minute, name) for name in type(minute).__slots__]
    dicts = [d for t in tables if isinstance(t, list) for d in t]
    assert len(dicts) == 6 * 2 + 16 and not any(gc.is_tracked(d) for d in dicts)
    # (and none past a few thousand entries: a dict grows by a whole copy;
    # a chunk's items: three tables' for each of its 4,096 rows)
    assert max(len(d) for d in dicts) <= 3 * 4096
    assert tracked_after_collection() - before < 100
    records = table.drain(T0 + 60)
    assert len(records) == 5_100
    last = records[-1]
    assert (last["packets"], last["bytes"], last["peak_pps"]) == (2, 900, 2)
    assert (last["methods"], last["answers"], last["verdicts"]) == (
        {"REGISTER": 1, "OPTIONS": 1},
        {"401": 1},
        {"limit.requests": 1},
    )


def test_a_drained_minute_makes_its_records_then_releases_its_tables() -> None:
    """The writer takes ended minutes as tables, makes their records as it
    stores them, then empties them a piece at a time (off the loop)."""
    table = FlowTable()
    key = FlowKey("198.51.100.7", 5060, "198.51.100.1", 5060, "udp")
    table.record(key, T0 + 1, 300, method="INVITE", verdict="pack.scan")
    table.answer(key, T0 + 2, 403)
    (minute,) = table.drain_minutes(T0 + 60)
    assert len(minute) == 1
    (record,) = minute.records()
    assert (record["packets"], record["bytes"], record["answers"]) == (1, 300, {"403": 1})
    minute.release()
    assert len(minute) == 0 and list(minute.records()) == []
    assert table.drain_minutes(T0 + 120) == []
