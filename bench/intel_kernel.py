"""What the feeds' kernel sets cost: loading, refreshing and reading them.

With the nftables enforcer, worker 0 keeps the sets feed4/feed6 equal to
the disjoint list of what the feeds list (``intel/kernel.py``). This
measures, in a network namespace of its own, for N feed entries shaped as
in ``bench/intel.py`` (70 % IPv4, 30 % IPv6, half addresses, half networks),
each with an expiry as APIBAN's entries have:

- ``targets``: ``kernel_targets`` making the disjoint list;
- ``first load``: ``load_feeds`` into empty sets (one ``nft -f`` transaction);
- two refreshes: 1 % new entries (APIBAN's, new addresses only), then 1 %
  of the entries gone and 1 % new (a list feed's day); each sent as a
  difference or loaded whole, as ``load_feeds`` judges (printed);
- ``unchanged``: ``load_feeds`` with nothing moved (no nft call);
- ``listing``: reading the feed sets back (``feed_elements``, what
  ``sipwarden firewall show`` does, through ``nft -j``);
- ``kernel memory``: the growth of the kernel's unreclaimable slab and
  vmalloc at the first load (anything else the kernel allocates meanwhile
  counts too: run it on a quiet machine).

Needs root, iproute2 and nftables; nothing leaves the namespace, which is
removed on exit, errors included.

Run: .venv/bin/python bench/intel_kernel.py [--entries 100000 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.intel import feed_entries

from sipwarden.enforce import NftablesEnforcer
from sipwarden.intel.kernel import kernel_targets

WEEK = 7 * 86400.0
EXCLUDE = ["203.0.113.0/24", "2001:db8::/32"]  # an allow list, as the keeper passes it


def kernel_memory() -> int:
    """Bytes of the kernel's own allocations that set elements live in
    (/proc/meminfo: unreclaimable slab and vmalloc)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return sum(int(fields[k].split()[0]) * 1024 for k in ("SUnreclaim", "VmallocUsed"))


@contextmanager
def namespace() -> Iterator[str]:
    name = f"swbenchk{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def with_expiry(entries: list[str], rng: random.Random, now: float) -> dict[str, float | None]:
    """Each entry expiring within the week, as APIBAN's do."""
    return {e: now + rng.uniform(3600, WEEK) for e in entries}


async def measure(count: int, netns: str) -> None:
    rng = random.Random(count)
    now = time.time()
    entries = feed_entries(rng, count)
    fresh = sorted(set(feed_entries(random.Random(count + 1), count // 100)) - set(entries))
    expiry = with_expiry(entries + fresh, rng, now)  # an entry keeps its expiry across loads
    began = time.perf_counter()
    first = kernel_targets({e: expiry[e] for e in entries}, EXCLUDE)
    targets_s = time.perf_counter() - began
    # APIBAN's refresh: new entries only; a list feed's: 1 % gone and 1 % new
    grown = kernel_targets({e: expiry[e] for e in entries + fresh}, EXCLUDE)
    churned = kernel_targets({e: expiry[e] for e in entries[len(fresh) :] + fresh}, EXCLUDE)

    enforcer = NftablesEnforcer(
        table="swbench", command_prefix=["ip", "netns", "exec", netns], timeout=600
    )
    await enforcer.start([], now)
    before = kernel_memory()
    load_s = await timed(enforcer.load_feeds(first, now))
    kernel_bytes = kernel_memory() - before
    rows = [("first load", f"{len(first):,} targets into empty sets", load_s)]
    previous = first
    for what, wanted in (("new entries only", grown), ("1 % gone, 1 % new", churned)):
        counters = dict(enforcer.counters)
        took = await timed(enforcer.load_feeds(wanted, now))
        replaced = enforcer.counters["feed-replaced"] > counters.get("feed-replaced", 0)
        refused = enforcer.counters["feed-batches-failed"] > counters.get("feed-batches-failed", 0)
        moved = len(set(previous) ^ set(wanted))
        how = "refused, replaced" if refused else "replaced whole" if replaced else "a difference"
        rows.append((what, f"{moved:,} targets moved, {how}", took))
        previous = wanted
    batches = enforcer.counters["feed-batches"]
    rows.append(("unchanged", "no nft call", await timed(enforcer.load_feeds(churned, now + 1))))
    assert enforcer.counters["feed-batches"] == batches, "an unchanged load called nft"
    began = time.perf_counter()
    listed = await enforcer.feed_elements()
    rows.append(("listing", "feed_elements (nft -j)", time.perf_counter() - began))
    assert len(listed) == len(churned), (len(listed), len(churned))
    await enforcer.stop()

    print(f"{count:,} feed entries: kernel_targets {targets_s * 1e3:.0f} ms")
    for what, how, took in rows:
        print(f"  {what:<18} {how:<45} {took * 1e3:8.1f} ms")
    print(
        f"  kernel memory   {kernel_bytes / 1e6:.1f} MB (slab and vmalloc growth at the first load)"
    )


async def timed(work: Awaitable[object]) -> float:
    began = time.perf_counter()
    await work
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--entries", type=int, nargs="+", default=[100_000], help="feed sizes to measure"
    )
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None:
        sys.exit("bench/intel_kernel.py needs root, iproute2 and nftables")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a kill still removes the namespace
    for count in args.entries:
        with namespace() as netns:
            asyncio.run(measure(count, netns))


if __name__ == "__main__":
    main()
