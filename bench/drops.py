"""The kernel's cost of counting a banned flood per source (enforce/drops.py).

Two network namespaces of its own (``tests/edge/netns.py``); nft in the
edge's, with 198.18.0.0/16 banned (the bans' network set) and the drop
rules' target as configured; ``tests/edge/flooder.py`` sends raw UDP
datagrams from ``--sources`` spoofed addresses of it at ``--rate`` for
``--seconds``. On a veth pair the receiving side's softirq, nft's rules
included, runs in the sending process's context (this kernel has no
IRQ_TIME_ACCOUNTING), so the flooder's system CPU time (from wait4) per
datagram is the sending plus the dropping; the cases differ only in the
dropping:

- ``plain``: ``... counter drop`` (the previous release's rule);
- ``counted``: ``... counter jump dropped4``, each source's element updated;
- ``full``: the same with a counting set of one element: every datagram
  fails to be added and falls to the ``drops_uncounted`` rule.

Rounds are interleaved (plain, counted, full, plain, ...): the machine is
shared. Printed: µs of CPU per datagram per case, the best of each and its
difference to ``plain``'s, and the median of the rounds' differences; then the kernel memory (Slab +
Percpu from /proc/meminfo) taken by a counting set filled with
``--fill`` sources (noisy: the whole machine's), the time ``drop_counts``
takes to read them and the longest stall of the event loop meanwhile.

Run (root; nft, ip): .venv/bin/python bench/drops.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.edge.flood import FLOODER
from tests.edge.netns import Pair, namespace_pair

from sipwarden.enforce import DropCounting, NftablesEnforcer
from sipwarden.values import Ban

TABLE = "swbench"
SOURCES = "198.18.0.0/16"


def enforcer(pair: Pair, counting: DropCounting | None) -> NftablesEnforcer:
    return NftablesEnforcer(
        table=TABLE,
        ports=[("udp", 5060)],
        command_prefix=pair.in_edge(),
        conntrack=False,
        drop_counting=counting,
    )


def flood(pair: Pair, sources: int, rate: int, seconds: float) -> tuple[int, float]:
    """Datagrams sent, and the flooder's system CPU seconds (its user time,
    the Python loop, is the same in every case and only adds noise)."""
    argv = pair.in_clients(
        sys.executable,
        str(FLOODER),
        "--target",
        pair.edge_ip,
        "--sources",
        SOURCES,
        "--count",
        str(sources),
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
    )
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"flooder failed: {err}")
    sent = json.loads(out.strip().splitlines()[-1])["sent"]
    return sent, usage.ru_stime


async def reading(e: NftablesEnforcer) -> tuple[float, float]:
    """Seconds one drop_counts() takes, and the longest the event loop went
    without running a 1 ms ticker meanwhile (what the edge's packets wait)."""
    stall = 0.0
    done = False

    async def tick() -> None:
        nonlocal stall
        last = time.monotonic()
        while not done:
            await asyncio.sleep(0.001)
            now = time.monotonic()
            stall, last = max(stall, now - last), now

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    await e.drop_counts()
    took = time.monotonic() - started
    done = True
    await ticker
    return took, stall


def meminfo() -> int:
    """Slab + Percpu, bytes."""
    found = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, value = line.split(":", 1)
        found[name] = int(value.split()[0]) * 1024
    return found["Slab"] + found["Percpu"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sources", type=int, default=1000, help="spoofed sources in the flood")
    parser.add_argument("--rate", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--fill", type=int, default=65_024, help="sources for the memory figure")
    args = parser.parse_args()
    cases = {
        "plain": None,
        "counted": DropCounting(),
        "full": DropCounting(size=1),
    }
    runs: dict[str, list[float]] = {name: [] for name in cases}
    with namespace_pair() as pair:
        now = time.time()
        ban = Ban(SOURCES, "bench", "bench", now, None)
        for _ in range(args.rounds):
            for name, counting in cases.items():
                e = enforcer(pair, counting)
                asyncio.run(e.start([ban], now))
                sent, cpu = flood(pair, args.sources, args.rate, args.seconds)
                counts = asyncio.run(e.drop_counts())
                counted = sum(p for p, _ in counts.values())
                assert counting is None or counted == sent, (name, counted, sent)
                per = cpu / sent * 1e6
                runs[name].append(per)
                print(f"{name:8} {sent:>8} datagrams, {per:.3f} µs system CPU each", flush=True)
        print()
        for name, pers in runs.items():
            paired = statistics.median(a - b for a, b in zip(pers, runs["plain"], strict=True))
            print(
                f"{name:8} best {min(pers):.3f} µs/datagram"
                f" ({min(pers) - min(runs['plain']):+.3f} vs plain's best;"
                f" median of the rounds' differences {paired:+.3f})"
            )

        e = enforcer(pair, DropCounting())
        asyncio.run(e.start([ban], now))
        time.sleep(1)
        before = meminfo()
        flood(pair, args.fill, 50_000, args.fill / 40_000)
        time.sleep(1)
        after = meminfo()
        held = len(asyncio.run(e.drop_counts()))
        took, stall = asyncio.run(reading(e))
        print(
            f"\n{held} sources counted: kernel memory +{(after - before) / 1e6:.1f} MB"
            f" (~{(after - before) / max(held, 1):.0f} bytes each, {os.cpu_count()} CPUs);"
            f" drop_counts() read them in {took:.2f} s, the loop's longest stall"
            f" meanwhile {stall * 1000:.0f} ms"
        )
        subprocess.run(pair.in_edge("nft", "delete", "table", "inet", TABLE), timeout=10)


if __name__ == "__main__":
    main()
