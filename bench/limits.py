"""ns per ``RateLimiter.hit()``, and the limiter's memory under a spoofed flood.

Default limits (2 s window, 100 requests, REGISTER and INVITE 20 each, IPv4
per address, IPv6 per /64, 100,000 sources per window). Cases:
- one source at a steady rate under the limits (8 REGISTERs a second: its
  window rolls every 16 requests), 1,000 sources taking turns at that rate
  (the busy edge: rolls are shared), one source flooding (over the limit:
  every hit weighs the previous window and answers a Limit);
- 1,000,000 distinct spoofed sources, one request each (100,000 a second of
  simulated time, so the table fills and windows end early every second):
  the time per hit, then, in a second run under tracemalloc, the memory the
  limiter holds afterwards (tables, counts, the key strings it keeps alive,
  the IPv6 key cache) and the slowest single call (a window that ends drops
  a table of 100,000 entries);
- the same for IPv6 with /64 aggregation (spoofed: random addresses in
  random /64s, so every one misses the key cache), with what ``ipaddress``
  would cost per address for comparison.

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

from sipwarden.policy.limits import RateLimiter

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


def held(make: Callable[[], RateLimiter], hosts: Callable[[], Sequence[str]], step: float) -> str:
    """What the limiter holds after the spoofed stream (tracemalloc), and
    its slowest call. Addresses are made one at a time, as the edge does, so
    the strings the limiter keeps are counted against it."""
    source = hosts()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    limiter = make()
    hit = limiter.hit
    slowest = 0
    clock = time.perf_counter_ns
    for i, host in enumerate(source):
        host = "".join(host)  # a fresh string, not the list's
        start = clock()
        hit(host, "REGISTER", i * step)
        slowest = max(slowest, clock() - start)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del source
    size = after - before
    return (
        f"{size / 2**20:.1f} MiB held, {len(limiter):,} entries ({size / max(len(limiter), 1):.0f} B each "
        f"incl. key cache {len(limiter._cache):,}), "
        f"{limiter.counters['early-rotations']} early rotations, slowest call "
        f"{slowest / 1e6:.2f} ms (timed under tracemalloc)"
    )


def ipaddress_cost(hosts: Sequence[str]) -> float:
    start = time.perf_counter_ns()
    for host in hosts:
        str(ipaddress.ip_network((host, 64), strict=False))
    return (time.perf_counter_ns() - start) / len(hosts)


def remap_cost(entries: int) -> float:
    """ms for reconfigured() when the set of limited methods changes."""
    limiter = RateLimiter(max_sources=entries // 2)
    for i, host in enumerate(spoofed_v4(entries, seed=7)):
        limiter.hit(host, "REGISTER", i * 1e-6)
    start = time.perf_counter_ns()
    limiter.reconfigured(methods={"REGISTER": 20, "INVITE": 20, "SUBSCRIBE": 50})
    return (time.perf_counter_ns() - start) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", type=int, default=1_000_000, help="spoofed sources")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    n, repeat = args.sources, args.repeat
    spoof_step = 1e-5  # 100,000 new sources a second

    print(f"RateLimiter.hit(), ns per call; Python {platform.python_version()}")

    def row(label: str, ns: float) -> None:
        print(f"  {label:52}{ns:>8.0f}", flush=True)

    print("IPv4, per address")
    desk = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(10_000)]
    row(
        "10,000 phones, a challenged REGISTER a minute each",
        per_hit(RateLimiter, phones_registering(desk, 200_000), "REGISTER", repeat),
    )
    row(
        "one source, steady 8 REGISTER/s",
        per_hit(RateLimiter, steady(["192.0.2.10"], 8, 200_000), "REGISTER", repeat),
    )
    phones = [f"198.51.{i >> 8}.{i & 255}" for i in range(1000)]
    row(
        "1,000 sources taking turns, 8 REGISTER/s each",
        per_hit(RateLimiter, steady(phones, 8, 200_000), "REGISTER", repeat),
    )
    row(
        "the same, SUBSCRIBE (no method limit)",
        per_hit(RateLimiter, steady(phones, 8, 200_000), "SUBSCRIBE", repeat),
    )
    row(
        "one source flooding, 1,000 REGISTER/s (limited)",
        per_hit(RateLimiter, steady(["192.0.2.66"], 1000, 200_000), "REGISTER", repeat),
    )
    hosts4 = spoofed_v4(n)
    times = [i * spoof_step for i in range(n)]
    row(
        f"{n:,} spoofed sources, one request each",
        per_hit(RateLimiter, (hosts4, times), "REGISTER", repeat),
    )
    del hosts4
    print(f"    {held(RateLimiter, lambda: spoofed_v4(n), spoof_step)}", flush=True)

    print("IPv6, per /64")
    row(
        "one source, steady 8 REGISTER/s",
        per_hit(RateLimiter, steady(["2001:db8:1:2::10"], 8, 200_000), "REGISTER", repeat),
    )
    phones6 = spoofed_v6(1000, seed=3)
    desk6 = spoofed_v6(10_000, seed=4)
    row(
        "10,000 phones, a challenged REGISTER a minute each",
        per_hit(RateLimiter, phones_registering(desk6, 200_000), "REGISTER", repeat),
    )
    row(
        "1,000 sources taking turns, 8 REGISTER/s each",
        per_hit(RateLimiter, steady(phones6, 8, 200_000), "REGISTER", repeat),
    )
    hosts6 = spoofed_v6(n)
    row(
        f"{n:,} spoofed sources, one request each",
        per_hit(RateLimiter, (hosts6, times), "REGISTER", repeat),
    )
    row("  for comparison: ipaddress.ip_network((host, 64))", ipaddress_cost(hosts6[:100_000]))
    del hosts6
    print(f"    {held(RateLimiter, lambda: spoofed_v6(n), spoof_step)}", flush=True)

    print("IPv6, per address (/128)")
    row(
        "one source, steady 8 REGISTER/s",
        per_hit(
            lambda: RateLimiter(prefix_v6=128),
            steady(["2001:db8:1:2::10"], 8, 200_000),
            "REGISTER",
            repeat,
        ),
    )

    print("IPv4, per /24")
    row(
        "1,000 sources taking turns, 8 REGISTER/s each",
        per_hit(lambda: RateLimiter(prefix_v4=24), steady(phones, 8, 200_000), "REGISTER", repeat),
    )

    print(f"reconfigured() with other methods, 200,000 entries: {remap_cost(200_000):.0f} ms")


if __name__ == "__main__":
    sys.exit(main())
