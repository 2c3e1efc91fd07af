"""The kernel's cumulative drop counts as per-reading flow records: deltas,
counters that restart, elements that time out and come back, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipwarden.observe import FlowTable, KernelDrops, aggregate
from sipwarden.observe.drops import DESTINATION, REASON, TRANSPORT

T0 = 1_800_000_000.0 - 1_800_000_000.0 % 60  # the start of a minute
BANNED = "203.0.113.9"
LISTED = "2001:db8::7"


def test_a_reading_becomes_one_record_per_source_that_dropped_more() -> None:
    drops = KernelDrops(started=T0)
    first = drops.read({BANNED: (1000, 128_000), LISTED: (10, 1480)}, T0 + 60)
    assert first[0] == {
        "minute": T0,
        "source": BANNED,
        "source_port": None,
        "destination": DESTINATION,
        "destination_port": 0,
        "transport": TRANSPORT,
        "first_seen": T0,
        "last_seen": T0 + 60,
        "packets": 1000,
        "bytes": 128_000,
        "peak_pps": 17,  # 1,000 in 60 s: the mean, rounded up
        "methods": {},
        "answers": {},
        "verdicts": {REASON: 1000},
    }
    assert (first[1]["source"], first[1]["packets"], first[1]["bytes"]) == (LISTED, 10, 1480)
    second = drops.read({BANNED: (1500, 192_000), LISTED: (10, 1480)}, T0 + 120)
    assert [(r["source"], r["packets"], r["bytes"], r["minute"]) for r in second] == [
        (BANNED, 500, 64_000, T0 + 60)  # the listed source sent nothing more: no record
    ]
    assert second[0]["first_seen"] == T0 + 60


def test_a_count_below_the_last_one_starts_again_from_zero() -> None:
    drops = KernelDrops(started=T0)
    drops.read({BANNED: (1000, 128_000)}, T0 + 60)
    (record,) = drops.read({BANNED: (30, 3840)}, T0 + 120)  # a new element (or a new table)
    assert (record["packets"], record["bytes"]) == (30, 3840)
    assert drops.counters["restarted"] == 1


def test_a_source_that_timed_out_is_forgotten_and_counted_whole_when_back() -> None:
    drops = KernelDrops(started=T0)
    drops.read({BANNED: (1000, 128_000)}, T0 + 60)
    assert drops.read({}, T0 + 120) == []  # its element timed out
    assert len(drops) == 0
    (record,) = drops.read({BANNED: (1200, 153_600)}, T0 + 180)  # more than before: all new
    assert (record["packets"], record["bytes"]) == (1200, 153_600)


def test_memory_is_bounded_and_the_excess_counted() -> None:
    drops = KernelDrops(started=T0, max_sources=3)
    reading = {f"198.51.100.{i}": (5, 500) for i in range(10)}
    records = drops.read(reading, T0 + 60)
    assert len(records) == 3 and len(drops) == 3
    assert drops.counters["untracked"] == 7
    with pytest.raises(ValueError, match="max_sources"):
        KernelDrops(started=T0, max_sources=0)


def test_records_merge_with_the_edges_flows() -> None:
    drops = KernelDrops(started=T0)
    records = drops.read({BANNED: (100, 12_800)}, T0 + 60)
    records += drops.read({BANNED: (250, 32_000)}, T0 + 120)
    table = FlowTable()
    (merged,) = aggregate(records + table.drain(T0 + 120))
    assert (merged["packets"], merged["bytes"], merged["verdicts"]) == (250, 32_000, {REASON: 250})
    assert (merged["first_seen"], merged["last_seen"]) == (T0, T0 + 120)


counts = st.tuples(st.integers(0, 10**6), st.integers(0, 10**9))


@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "c", "*"]), counts), max_size=8))
def test_never_negative_and_never_more_than_the_kernel_counted(readings) -> None:
    drops = KernelDrops(started=T0)
    for i, reading in enumerate(readings):
        for record in drops.read(reading, T0 + 60 * (i + 1)):
            packets, size = reading[record["source"]]
            assert 0 < record["packets"] <= packets
            assert 0 <= record["bytes"] <= size
