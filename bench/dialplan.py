"""µs per dial string classified (``intel.numbers``) and per INVITE seen by
the toll-fraud detectors (``policy.tollfraud``), and the detectors' memory.

The dialplan is the contract's (GB, ``00``, trunk ``9``). Cases:
- classify, cached: one phone redialling a few numbers (every call a hit);
- classify, uncached: distinct dial strings, each its first time (a fresh
  plan with a cache too small to help): the research's toll-fraud shapes
  (prefix, then an international number), national numbers, extensions and
  junk, each measured apart; this is what an attacker's spray of new
  strings costs;
- the detectors per INVITE (classification cached, as at the edge): a phone
  redialling one international number (known-good: returns at once), an
  unknown source dialling national numbers, and 100,000 spoofed sources
  each dialling a new international number (every call makes a source, the
  table at ``max_sources``); the memory the detectors then hold, under
  tracemalloc.

The figure is the loop that calls minus the same loop doing nothing, best
of ``--repeat``.

Run: .venv/bin/python bench/dialplan.py [--repeat R]
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from sipwarden.intel.numbers import Dialplan, Number
from sipwarden.policy.tollfraud import TollFraud


def per_call(call: Callable[[Any], object], items: Sequence[Any], repeat: int) -> float:
    """µs per ``call(item)`` over ``items`` (best of ``repeat``)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter_ns()
        for item in items:
            call(item)
        spent = time.perf_counter_ns() - start
        start = time.perf_counter_ns()
        for _item in items:
            pass
        spent -= time.perf_counter_ns() - start
        best = min(best, spent / len(items) / 1000)
    return best


def uncached(make: Callable[[int], str], n: int, repeat: int) -> float:
    """µs per first classification of ``n`` distinct strings."""
    best = float("inf")
    for r in range(repeat):
        plan = Dialplan("GB", ["00"], ["9"], cache_size=1)
        strings = [make(r * n + i) for i in range(n)]
        best = min(best, per_call(plan.classify, strings, 1))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    repeat = args.repeat
    print(f"Python {sys.version.split()[0]}, {platform.machine()}, best of {repeat}")

    plan = Dialplan("GB", ["00"], ["9"])
    phone = ["00972597562518", "02037690000", "100", "+442037690000"] * 25_000
    print(
        f"classify, cached (a phone redialling):  {per_call(plan.classify, phone, repeat):6.2f} µs"
    )
    shapes: dict[str, Callable[[int], str]] = {
        "00 + international": lambda i: f"009725975{i % 1_000_000:06d}",
        "9011 + international": lambda i: f"90119725975{i % 1_000_000:06d}",
        "+ international": lambda i: f"+4420376{i % 100_000:05d}",
        "national (0...)": lambda i: f"020376{i % 100_000:05d}",
        "bare E.164 (44...)": lambda i: f"4420376{i % 100_000:05d}",
        "no plan places it": lambda i: f"0075346{i % 10_000_000:07d}85",
        "extension": lambda i: f"{100 + i % 900}x{i}",
        "junk (letters)": lambda i: f"admin{i}",
    }
    for name, make in shapes.items():
        print(f"classify, uncached, {name + ':':22} {uncached(make, 5000, repeat):6.2f} µs")

    walk_plan = Dialplan("GB", ["00"], ["9"])
    intl = walk_plan.classify("00972597562518")

    def phone_calls() -> Callable[[Number], object]:
        tf = TollFraud()
        return lambda n: tf.invite("198.51.100.7", n, 0.0, True)

    def unknown_national() -> Callable[[Number], object]:
        tf = TollFraud(international=10**9)
        return lambda n: tf.invite("203.0.113.9", n, 0.0)

    known = phone_calls()
    print(
        f"detectors, a known-good phone:          {per_call(known, [intl] * 100_000, repeat):6.2f} µs"
    )
    national = [walk_plan.classify(f"020376{i:05d}") for i in range(16)] * 6_250
    one = unknown_national()
    print(f"detectors, unknown source, national:    {per_call(one, national, repeat):6.2f} µs")

    sources = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(100_000)]
    numbers = [walk_plan.classify(f"009725975{i % 1_000_000:06d}") for i in range(100_000)]
    best = float("inf")
    for _ in range(repeat):
        tf = TollFraud(max_sources=100_000)
        invite = tf.invite
        gc.collect()
        start = time.perf_counter_ns()
        for host, number in zip(sources, numbers, strict=True):
            invite(host, number, 0.0)
        best = min(best, (time.perf_counter_ns() - start) / len(sources) / 1000)
    print(f"detectors, 100,000 spoofed sources:     {best:6.2f} µs")
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tf = TollFraud(max_sources=100_000)
    for i, (host, number) in enumerate(zip(sources, numbers, strict=True)):
        tf.invite(host, number, float(i))
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(
        f"detectors' memory, 100,000 sources:     {held / 1e6:6.1f} MB ({held / len(tf):.0f} B each)"
    )


if __name__ == "__main__":
    main()
