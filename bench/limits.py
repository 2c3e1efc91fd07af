"""ns per ``RateLimiter.hit()``, and the limiter's memory under a spoofed flood.

Default limits (2 s window, 100 requests, REGISTER and INVITE 20 each, IPv4
per address, IPv6 per /64, 100,000 sources per window). Cases:
- 10,000 phones, each a REGISTER and its re-send after the challenge every
  minute: nearly every request is its key's first in the window (the usual
  case at a real edge);
- one source at a steady 8 REGISTERs a second (16 a window, near the limit
  of 20: the packed bounds are brought down every few requests), 1,000 such
  sources taking turns, the same with a method that has no limit of its
  own, and one source flooding (over the limit: every hit works out the
  estimate and answers a Limit);
- 1,000,000 distinct spoofed sources, one request each (100,000 a second of
  simulated time, so the table fills and a window ends early every second):
  the time per hit; under tracemalloc, the memory the limiter then holds
  (tables, the key strings it keeps alive, the IPv6 key cache); untraced,
  the slowest single call (a table resized as it grows, a full one dropped
  when a window ends; on a busy machine, the scheduler's time slices too)
  and whether the cyclic GC has the tables to walk;
- the same for IPv6 with /64 aggregation (random addresses in random /64s:
  every one misses the key cache), with ipaddress's cost for comparison;
- other keys: IPv6 per address, IPv4 per /24 (through the key cache);
- ``reconfigured()`` when the limited methods change, with full tables;
- with a quiet-time schedule (``QuietLimits``; the simulated clock starts at
  the epoch, 00:00 UTC, inside the schedule's quiet hours; the quiet counts
  are the day's, so only the cost of asking the schedule shows): phones,
  one flooding source, spoofed sources (each early rotation asks too).

The figure is the loop that calls hit() minus the same loop doing nothing:
it includes the call, as the pipeline pays it.

Run: .venv/bin/python bench/limits.py [--sources N] [--repeat R]
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import platform
import random
import socket
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from functools import partial

from sipwarden.observe.schedule import Schedule
from sipwarden.policy.limits import QuietLimits, RateLimiter

Stream = tuple[Sequence[str], Sequence[float]]


def per_hit(make: Callable[[], RateLimiter], stream: Stream, method: str, repeat: int) -> float:
    """ns per hit() over the stream, on a fresh limiter each time (best of
    ``repeat``)."""
    hosts, times = stream
    best = float("inf")
    for _ in range(repeat):
        limiter = make()
        hit = limiter.hit
        gc.collect()
        start = time.perf_counter_ns()
        for host, now in zip(hosts, times, strict=True):
            hit(host, method, now)
        spent = time.perf_counter_ns() - start
        start = time.perf_counter_ns()
        for _host, _now in zip(hosts, times, strict=True):
            pass
        spent -= time.perf_counter_ns() - start
        best = min(best, spent / len(hosts))
        del limiter, hit
    return best


def steady(hosts: Sequence[str], rate: float, n: int) -> Stream:
    """``hosts`` taking turns, each at ``rate`` per second."""
    step = 1 / (rate * len(hosts))
    return [hosts[i % len(hosts)] for i in range(n)], [i * step for i in range(n)]


def phones_registering(hosts: Sequence[str], n: int) -> Stream:
    """Each of ``hosts`` sends a REGISTER and its re-send after the challenge
    (40 ms later) every 60 s, spread evenly: nearly every request is its
    key's first in the window."""
    gap = 60.0 / len(hosts)
    events = sorted(
        (cycle * 60.0 + i * gap + resend * 0.04, host)
        for cycle in range(n // (2 * len(hosts)) + 1)
        for i, host in enumerate(hosts)
        for resend in (0, 1)
    )[:n]
    return [host for _, host in events], [now for now, _ in events]


def spoofed_v4(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [socket.inet_ntop(socket.AF_INET, rng.randbytes(4)) for _ in range(n)]


def spoofed_v6(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [socket.inet_ntop(socket.AF_INET6, b"\x20\x01" + rng.randbytes(14)) for _ in range(n)]


def held(make: Callable[[], RateLimiter], hosts: Sequence[str], step: float) -> str:
    """What the limiter holds after the spoofed stream (tracemalloc), and
    its slowest call (in a second run, untraced). Addresses are copied one
    at a time, as the edge makes them, so the strings the limiter keeps are
    counted against it."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    limiter = make()
    hit = limiter.hit
    for i, host in enumerate(hosts):
        hit("".join(host), "REGISTER", i * step)  # a fresh string, not the list's
    gc.collect()
    size = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    entries, cached, rotations = (
        len(limiter),
        len(limiter._cache),
        limiter.counters["early-rotations"],
    )
    del limiter, hit
    limiter = make()
    hit = limiter.hit
    clock = time.perf_counter_ns
    slowest = 0
    for i, host in enumerate(hosts):
        start = clock()
        hit(host, "REGISTER", i * step)
        slowest = max(slowest, clock() - start)
    tracked = any(map(gc.is_tracked, (limiter._current, limiter._previous, limiter._cache)))
    return (
        f"{size / 2**20:.1f} MiB held: {entries:,} entries and {cached:,} cached keys, "
        f"{size / max(entries, 1):.0f} B per entry; {rotations} early rotations; "
        f"slowest call {slowest / 1e6:.1f} ms; tables seen by the cyclic GC: "
        f"{'yes' if tracked else 'no'}"
    )


def ipaddress_cost(hosts: Sequence[str]) -> float:
    start = time.perf_counter_ns()
    for host in hosts:
        str(ipaddress.ip_network((host, 64), strict=False))
    return (time.perf_counter_ns() - start) / len(hosts)


def reload_cost(entries: int) -> float:
    """µs for reconfigured() with other limited methods and thresholds,
    with ``entries`` held (it rewrites none of them)."""
    limiter = RateLimiter(max_sources=entries // 2)
    for i, host in enumerate(spoofed_v4(entries, seed=7)):
        limiter.hit(host, "REGISTER", i * 1e-6)
    held, best = len(limiter), float("inf")
    for methods in ({"INVITE": 10, "SUBSCRIBE": 50}, {"REGISTER": 20, "INVITE": 20}) * 3:
        start = time.perf_counter_ns()
        limiter = limiter.reconfigured(requests=50, methods=methods)
        best = min(best, time.perf_counter_ns() - start)
    assert len(limiter) == held  # kept, not rewritten
    return best / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", type=int, default=1_000_000, help="spoofed sources")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    n, repeat = args.sources, args.repeat
    spoof_step = 1e-5  # 100,000 new sources a second
    spoof_times = [i * spoof_step for i in range(n)]
    desk4 = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(10_000)]
    desk24 = [f"10.{i >> 8 & 255}.{i & 255}.1" for i in range(10_000)]  # one a /24
    desk6 = spoofed_v6(10_000, seed=4)
    turns4 = [f"198.51.{i >> 8}.{i & 255}" for i in range(1000)]
    turns6 = spoofed_v6(1000, seed=3)
    per_v6 = partial(RateLimiter, prefix_v6=128)
    per_24 = partial(RateLimiter, prefix_v4=24)

    print(f"RateLimiter.hit(), ns per call; Python {platform.python_version()}")

    def row(label: str, make: Callable[[], RateLimiter], stream: Stream, method: str) -> None:
        print(f"  {label:52}{per_hit(make, stream, method, repeat):>8.0f}", flush=True)

    print("IPv4, per address")
    row(
        "10,000 phones, a challenged REGISTER a minute each",
        RateLimiter,
        phones_registering(desk4, 200_000),
        "REGISTER",
    )
    row(
        "one source, steady 8 REGISTER/s",
        RateLimiter,
        steady(["192.0.2.10"], 8, 200_000),
        "REGISTER",
    )
    row(
        "1,000 sources taking turns, 8 REGISTER/s each",
        RateLimiter,
        steady(turns4, 8, 200_000),
        "REGISTER",
    )
    row(
        "the same, SUBSCRIBE (no method limit)",
        RateLimiter,
        steady(turns4, 8, 200_000),
        "SUBSCRIBE",
    )
    row(
        "one source flooding, 1,000 REGISTER/s (limited)",
        RateLimiter,
        steady(["192.0.2.66"], 1000, 200_000),
        "REGISTER",
    )
    hosts = spoofed_v4(n)
    row(f"{n:,} spoofed sources, one request each", RateLimiter, (hosts, spoof_times), "REGISTER")
    print(f"    {held(RateLimiter, hosts, spoof_step)}", flush=True)

    print("IPv6, per /64")
    row(
        "10,000 phones, a challenged REGISTER a minute each",
        RateLimiter,
        phones_registering(desk6, 200_000),
        "REGISTER",
    )
    row(
        "one source, steady 8 REGISTER/s",
        RateLimiter,
        steady(["2001:db8:1:2::10"], 8, 200_000),
        "REGISTER",
    )
    row(
        "1,000 sources taking turns, 8 REGISTER/s each",
        RateLimiter,
        steady(turns6, 8, 200_000),
        "REGISTER",
    )
    hosts = spoofed_v6(n)
    row(f"{n:,} spoofed sources, one request each", RateLimiter, (hosts, spoof_times), "REGISTER")
    print(f"    {held(RateLimiter, hosts, spoof_step)}", flush=True)
    print(f"    ipaddress.ip_network((host, 64)) alone: {ipaddress_cost(hosts[:100_000]):.0f} ns")
    del hosts

    print("other keys")
    row(
        "IPv6 per address, 10,000 phones as above",
        per_v6,
        phones_registering(desk6, 200_000),
        "REGISTER",
    )
    row(
        "IPv4 per /24, 10,000 phones as above, one a /24",
        per_24,
        phones_registering(desk24, 200_000),
        "REGISTER",
    )

    print(f"reconfigured() with other methods, 200,000 entries held: {reload_cost(200_000):.0f} µs")

    def quiet_limiter() -> RateLimiter:
        schedule = Schedule(quiet_hours=(22 * 60, 6 * 60))
        quiet = QuietLimits(schedule.quiet, 100, {"REGISTER": 20, "INVITE": 20})
        return RateLimiter(quiet=quiet)

    assert quiet_limiter().quiet.when(spoof_times[-1])  # type: ignore[union-attr]
    print("IPv4, per address, with a quiet-time schedule (in quiet time, the same counts)")
    row(
        "10,000 phones, a challenged REGISTER a minute each",
        quiet_limiter,
        phones_registering(desk4, 200_000),
        "REGISTER",
    )
    row(
        "one source flooding, 1,000 REGISTER/s (limited)",
        quiet_limiter,
        steady(["192.0.2.66"], 1000, 200_000),
        "REGISTER",
    )
    hosts = spoofed_v4(n)
    row(f"{n:,} spoofed sources, one request each", quiet_limiter, (hosts, spoof_times), "REGISTER")


if __name__ == "__main__":
    sys.exit(main())
