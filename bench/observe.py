"""µs per packet of flow accounting and event queuing (issue 15's goal: at
most 1 µs per message together), and the flow table's memory under spoofed
sources.

Cases, each the loop that calls minus the same loop doing nothing:
- ``FlowTable.record`` for phones: 1,000 flows, a REGISTER each, round robin
  (a dict hit, the counts);
- ``FlowTable.record`` for a flood from 1,000,000 spoofed sources at
  100,000 a second (the minute fills at ``max_flows``: the rest goes to
  the overflow flow), and the table's memory under tracemalloc;
- ``EventQueue.push`` of one source's drops (the sample, then counting),
  and of 100,000 sources' drops between two drains (a tally each), with a
  drain every 50,000 pushes as a writer would;
- 1,000,000 spoofed sources within one minute: the flow table's and the
  event queue's memory together (both bounded);
- the writer: events and a full minute of flows into a store on this disk,
  and reading that minute back merged.

Run: .venv/bin/python bench/observe.py [--sources N]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from sipwarden.observe import VERDICT, Event, EventQueue, FlowKey, FlowTable
from sipwarden.store import ObserveStore

T0 = 1_800_000_000.0


def per_call(loop: Callable[[], int], empty: Callable[[], int]) -> float:
    """µs per iteration of ``loop`` beyond ``empty`` (best of 3)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        n = loop()
        spent = time.perf_counter() - start
        start = time.perf_counter()
        empty()
        spent -= time.perf_counter() - start
        best = min(best, spent / n)
    return best * 1e6


def spoofed(n: int) -> list[FlowKey]:
    return [
        FlowKey(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 5060, "198.51.100.1", 5060, "udp")
        for i in range(n)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=1_000_000)
    args = ap.parse_args()
    print(f"python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M')}")

    phones = spoofed(1000)
    table = FlowTable()

    def phones_loop() -> int:
        record = table.record
        for r in range(200):
            now = T0 + r * 0.25
            for key in phones:
                record(key, now, 600, method="REGISTER")
        return 200 * len(phones)

    def phones_empty() -> int:
        for r in range(200):
            now = T0 + r * 0.25
            for key in phones:
                (key, now, 600)  # noqa: B018 (the loop's own cost)
        return 200 * len(phones)

    print(
        f"flows, phones (1,000 flows, REGISTER):  {per_call(phones_loop, phones_empty):.3f} µs/packet"
    )

    flood = spoofed(args.sources)

    def flood_loop() -> int:
        fresh = FlowTable()
        record = fresh.record
        for i, key in enumerate(flood):
            record(key, T0 + i / 100_000, 400, method="REGISTER", verdict="rate")
        return len(flood)

    def flood_empty() -> int:
        for i, key in enumerate(flood):
            (key, T0 + i / 100_000, 400)
        return len(flood)

    print(
        f"flows, {len(flood):,} spoofed sources:     {per_call(flood_loop, flood_empty):.3f} µs/packet"
    )
    tracemalloc.start()
    held = FlowTable()
    for i, key in enumerate(flood[:100_000]):
        held.record(key, T0 + 1 + i / 1e6, 400, method="REGISTER", verdict="rate")
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"flows, memory of a full minute (100,000 flows): {size / 1e6:.1f} MB")

    queue = EventQueue()
    one = Event(T0, VERDICT, "192.0.2.7", "scanner.sipvicious", (("verdict", "drop"),))

    def one_source() -> int:
        push = queue.push
        for i in range(200_000):
            if i % 50_000 == 0:
                queue.drain()
            push(one)
        return 200_000

    def nothing() -> int:
        for i in range(200_000):
            if i % 50_000 == 0:
                pass
            (one,)  # noqa: B018
        return 200_000

    print(f"events, one source's drops:           {per_call(one_source, nothing):.3f} µs/push")
    many = [Event(T0, VERDICT, key.source, "rate", ()) for key in flood[:100_000]]

    def many_sources() -> int:
        q = EventQueue()
        push = q.push
        for i, event in enumerate(many):
            if i % 50_000 == 0:
                q.drain()
            push(event)
        return len(many)

    def many_empty() -> int:
        for i, event in enumerate(many):
            if i % 50_000 == 0:
                pass
            (event,)  # noqa: B018
        return len(many)

    print(f"events, 100,000 sources' drops:       {per_call(many_sources, many_empty):.3f} µs/push")
    print("events made on the packet path cost their creation too:", end=" ")
    start = time.perf_counter()
    for i in range(200_000):
        Event(T0 + i, VERDICT, "192.0.2.7", "rate", (("verdict", "drop"),))
    print(f"{(time.perf_counter() - start) / 200_000 * 1e6:.3f} µs/Event")

    # 1,000,000 spoofed sources in one minute: the flow table (bounded by
    # max_flows) and the event queue (bounded by max_events) together
    tracemalloc.start()
    table, events = FlowTable(), EventQueue()
    for i, key in enumerate(flood):
        now = T0 + 1 + i / 1e6 * 50  # all within the minute
        table.record(key, now, 400, method="REGISTER", verdict="rate")
        events.push(Event(now, VERDICT, key.source, "rate", (("verdict", "drop"),)))
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{len(flood):,} spoofed sources in a minute: {size / 1e6:.1f} MB (flows tracked"
        f" {len(table):,}, untracked {table.counters['untracked']:,}; events queued"
        f" {len(events):,}, dropped {events.dropped:,})"
    )
    writer(flood)


def writer(flood: list[FlowKey]) -> None:
    """The writer's throughput: batches into a store on this disk."""
    with tempfile.TemporaryDirectory() as tmp:
        store = ObserveStore(Path(tmp) / "bench.db")
        batch = [
            Event(T0 + i, VERDICT, key.source, "rate", (("verdict", "drop"), ("port", 5060)))
            for i, key in enumerate(flood[:50_000])
        ]
        start = time.perf_counter()
        store.write_events(batch)
        took = time.perf_counter() - start
        print(f"writer, events: {len(batch) / took:,.0f}/s (a batch of {len(batch):,})")
        table = FlowTable()
        for i, key in enumerate(flood[:100_000]):
            table.record(key, T0 + 1 + i / 1e5, 400, method="REGISTER", verdict="rate")
        records = table.drain(T0 + 120)
        start = time.perf_counter()
        store.write_flows(records)
        took = time.perf_counter() - start
        print(
            f"writer, flows: {len(records) / took:,.0f} records/s (a full minute, {len(records):,})"
        )
        start = time.perf_counter()
        merged = store.flows(since=T0, limit=10_000)
        took = time.perf_counter() - start
        print(f"reading a minute's 100,000 flows merged, the busiest {len(merged):,}: {took:.2f} s")
        store.close()


if __name__ == "__main__":
    main()
