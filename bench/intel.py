"""µs per packet for the intel stage: the feed lookup and the country check.

Loaded: 100,000 feed entries (70 % IPv4, 30 % IPv6; half single addresses,
half networks of many prefix lengths: IPv4 /10–/31, mostly /16–/24 as block
lists have them; IPv6 /29–/127) from two
feeds, and a country database of 50,000 networks (40,000 IPv4, 10,000
IPv6) written with mmdb_writer in GeoLite2-Country's record shape (names in
several languages, continent, registered country: the decode cost of a real
record). Rows:

- ``feed``: ``AddressIndex.lookup`` alone: a listed address, an address in a
  listed network, and a miss;
- ``country``: ``Countries.country`` from the MaxMind reader and from the
  preloaded range table, cached (a source seen before) and uncached (a
  spoofed source per packet: every lookup misses the cache);
- ``packet``: feed lookup then country check (``CountryPolicy.allowed``)
  by hand, for a miss in the feeds (the common case) with the cache warm
  and with a new source every packet;
- ``stage``: ``IntelScreen.check`` as the pipeline calls it (the address
  parsed once, the answer cached per host);
- ``pipeline``: ``Policy.judge_bytes`` on a phone's REGISTER with the stage
  off and on (IPv4 column: a source seen before; IPv6 column: a new source
  every packet), and a listed source, dropped before its message is parsed.

Then what the daemon pays off the packet path: a worker's start (100,000
entries read from the store into the index) and the kernel's list.

Memory: tracemalloc's count of what building the index and opening the
databases allocated (the MMDB file itself is memory-mapped, so its pages
are counted apart as the file size).

Run: .venv/bin/python bench/intel.py [--seconds S]
"""

from __future__ import annotations

import argparse
import functools
import gc
import ipaddress
import itertools
import platform
import random
import socket
import sys
import tempfile
import time
import timeit
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sipwarden.fetch.geoip import MaxMindCountries
from sipwarden.intel.geo import Countries, CountryPolicy, CountryRanges
from sipwarden.intel.index import AddressIndex
from sipwarden.intel.screen import IntelScreen
from sipwarden.policy import Policy
from sipwarden.values import Peer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.intel.geodata import record

ENTRIES = 100_000
NETWORKS = 50_000
SPOOFED = 200_000  # distinct sources cycled (over 3× the country cache) for the "new source every packet" rows


def feed_entries(rng: random.Random, count: int = ENTRIES) -> list[str]:
    out: set[str] = set()
    while len(out) < count:
        if rng.random() < 0.7:
            n, width, spell = rng.getrandbits(32), 32, _v4
            prefix = 32 if rng.random() < 0.5 else _v4_prefix(rng)
        else:
            n, width, spell = (0x2000 << 112) | rng.getrandbits(116), 128, _v6
            prefix = 128 if rng.random() < 0.5 else rng.choice([29, 32, 40, 48, 56, 64, 96, 127])
        shift = width - prefix
        out.add(spell(n >> shift << shift) + ("" if prefix == width else f"/{prefix}"))
    return sorted(out)


def _v4_prefix(rng: random.Random) -> int:
    """As block lists have them: mostly /24 and /16–/23, a few longer, rare
    short ones (a hosting provider's /12)."""
    x = rng.random()
    if x < 0.4:
        return 24
    if x < 0.85:
        return rng.randint(16, 23)
    if x < 0.997:
        return rng.randint(25, 31)
    return rng.randint(10, 15)


def _v4(n: int) -> str:
    return ".".join(str(n >> s & 255) for s in (24, 16, 8, 0))


def _v6(n: int) -> str:
    return str(ipaddress.IPv6Address(n))


def _inside(cidr: str) -> str:
    """An address in ``cidr`` (the edge's spelling)."""
    net = ipaddress.ip_network(cidr)
    ip = net.network_address + 1
    return socket.inet_ntop(socket.AF_INET6, ip.packed) if net.version == 6 else str(ip)


def write_countries(path: Path, rng: random.Random) -> None:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    codes = [f"X{chr(65 + i)}" for i in range(26)]
    by_code: dict[str, list[str]] = {c: [] for c in codes}
    for i in range(NETWORKS):
        if i < NETWORKS * 4 // 5:  # /20s all over the IPv4 space
            by_code[rng.choice(codes)].append(f"{_v4(rng.getrandbits(20) << 12)}/20")
        else:
            by_code[rng.choice(codes)].append(
                f"{_v6((0x2000 << 112) | rng.getrandbits(20) << 96)}/32"
            )
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    for code, cidrs in by_code.items():
        writer.insert_network(IPSet(cidrs), record(code))
    writer.to_db_file(str(path))


def measure(fn: Callable[[], object], seconds: float) -> float:
    timer = timeit.Timer(fn)
    n, _ = timer.autorange()
    repeats = max(3, int(seconds / max(timer.timeit(n), 1e-3)))
    return min(timer.repeat(repeats, n)) / n * 1e6


def per_call(fn: Callable[[Any], object], hosts: Sequence[Any], seconds: float) -> float:
    """µs per call of ``fn`` over ``hosts`` in turn (loop overhead subtracted)."""
    cycle = itertools.cycle(hosts)
    nxt = cycle.__next__

    def call() -> object:
        return fn(nxt())

    def empty() -> object:
        return nxt()

    return measure(call, seconds) - measure(empty, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="time per measurement")
    args = parser.parse_args()
    rng = random.Random(6)
    entries = feed_entries(rng)
    tmp = Path(tempfile.mkdtemp(prefix="sipwarden-bench-"))
    mmdb = tmp / "countries.mmdb"
    write_countries(mmdb, rng)

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    index = AddressIndex()
    half = len(entries) // 2
    index.replace("feed-a", entries[:half])
    index.replace("feed-b", entries[half - 5000 :])  # some targets on both feeds
    build = time.perf_counter() - started
    index_bytes = tracemalloc.get_traced_memory()[0] - base
    base = tracemalloc.get_traced_memory()[0]
    reader = MaxMindCountries(mmdb)
    reader_bytes = tracemalloc.get_traced_memory()[0] - base
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    table = reader.ranges()
    preload = time.perf_counter() - started
    table_bytes = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    started = time.perf_counter()
    index.replace("feed-a", entries[1000:half])  # a refresh: 1,000 gone
    index.replace("feed-a", entries[:half])  # and back
    refresh = (time.perf_counter() - started) / 2
    gc.collect()
    gc.collect()
    started = time.perf_counter()
    gc.collect()
    full_gc = time.perf_counter() - started

    # hosts: listed addresses, addresses inside listed networks, misses
    hosts4 = [e for e in entries if ":" not in e and "/" not in e][:1000]
    hosts6 = [e for e in entries if ":" in e and "/" not in e][:1000]
    inside4 = [_inside(e) for e in entries if ":" not in e and "/" in e][:1000]
    inside6 = [_inside(e) for e in entries if ":" in e and "/" in e][:1000]
    miss4 = [
        h for h in (_v4(rng.getrandbits(32)) for _ in range(SPOOFED)) if index.lookup(h, 0) is None
    ]
    miss6 = [
        h
        for h in (_v6((0x2000 << 112) | rng.getrandbits(116)) for _ in range(SPOOFED))
        if index.lookup(h, 0) is None
    ]
    assert all(index.lookup(h, 0) for h in hosts4 + hosts6 + inside4 + inside6)

    s = args.seconds
    print(
        f"intel stage, µs per packet; Python {platform.python_version()}; "
        f"{len(index):,} feed entries, {NETWORKS:,} country networks"
    )
    print(f"{'':50}{'IPv4':>8}{'IPv6':>8}")

    def row(label: str, v4: float, v6: float) -> None:
        print(f"{label:50}{v4:>8.2f}{v6:>8.2f}", flush=True)

    def lookup(h: str) -> object:
        return index.lookup(h, 0.0)

    row("feed: listed address", per_call(lookup, hosts4, s), per_call(lookup, hosts6, s))
    row("feed: in a listed network", per_call(lookup, inside4, s), per_call(lookup, inside6, s))
    row("feed: miss", per_call(lookup, miss4, s), per_call(lookup, miss6, s))

    policy = CountryPolicy(deny=["XZ"], unknown="allow")
    for name, source in (("mmdb reader", reader), ("preloaded table", table)):
        warm = Countries(source)
        for h in miss4[:1000] + miss6[:1000]:
            warm.country(h)
        row(
            f"country ({name}): cached",
            per_call(warm.country, miss4[:1000], s),
            per_call(warm.country, miss6[:1000], s),
        )
        cold = Countries(source)  # a new source every packet: the cache never hits
        row(
            f"country ({name}): new source",
            per_call(cold.country, miss4, s),
            per_call(cold.country, miss6, s),
        )

        def packet(h: str, c: Countries = warm) -> bool:
            return index.lookup(h, 0.0) is None and policy.allowed(c.country(h))

        def spoofed(h: str, c: Countries = cold) -> bool:
            return index.lookup(h, 0.0) is None and policy.allowed(c.country(h))

        row(
            f"packet ({name}): feed miss, cached country",
            per_call(packet, miss4[:1000], s),
            per_call(packet, miss6[:1000], s),
        )
        row(
            f"packet ({name}): new source every packet",
            per_call(spoofed, miss4, s),
            per_call(spoofed, miss6, s),
        )
        # the stage itself, as the pipeline calls it: address parsed once,
        # the answer cached per host
        known = IntelScreen(index, countries=Countries(source), country_policy=policy)
        seen_before = functools.partial(known.check, now=0.0)
        for h in miss4[:1000] + miss6[:1000]:
            seen_before(h)
        row(
            f"stage ({name}): source seen before",
            per_call(seen_before, miss4[:1000], s),
            per_call(seen_before, miss6[:1000], s),
        )
        # a one-entry cache: every packet is a new source (a spoofed flood)
        fresh = IntelScreen(index, countries=Countries(source), country_policy=policy, cache_size=1)
        new_source = functools.partial(fresh.check, now=0.0)
        row(
            f"stage ({name}): new source every packet",
            per_call(new_source, miss4, s),
            per_call(new_source, miss6, s),
        )
        row(
            f"stage ({name}): listed, new source every packet",
            per_call(new_source, inside4 + hosts4, s),
            per_call(new_source, inside6 + hosts6, s),
        )

    pipeline_rows(index, table, policy, miss4, hosts4, s, row)

    print(
        f"memory: index {index_bytes / 1e6:.1f} MB ({index_bytes / len(index):.0f} B/entry); "
        f"mmdb reader {reader_bytes / 1e6:.2f} MB + {mmdb.stat().st_size / 1e6:.1f} MB mapped file; "
        f"preloaded table {table_bytes / 1e6:.1f} MB ({len(table):,} ranges); "
        f"country cache ≤ 65,536 hosts (~6 MB full)"
    )
    print(
        f"time: build index {build * 1e3:.0f} ms; refresh (replace 50k, 1k changed) "
        f"{refresh * 1e3:.0f} ms; preload mmdb {preload * 1e3:.0f} ms; full gc.collect() "
        f"{full_gc * 1e3:.1f} ms"
    )
    reader.close()
    daemon_costs(entries, tmp)


def pipeline_rows(
    index: AddressIndex,
    table: CountryRanges,
    policy: CountryPolicy,
    unlisted: list[str],
    listed: list[str],
    seconds: float,
    row: Callable[[str, float, float], None],
) -> None:
    """The stage inside the pipeline: ``Policy.judge_bytes`` on a phone's
    REGISTER with the stage loaded and without it (IPv4 column: a source
    seen before; IPv6 column: a new source every packet)."""
    from messages import REGISTER  # bench/ is on sys.path when run as a script
    from sipwarden.config import PolicyConfig
    from sipwarden.policy import rules_policy
    from sipwarden.policy.stages import IntelStage

    off = rules_policy(PolicyConfig())  # no ban book, no limiter: the pipeline's stages alone
    base = rules_policy(PolicyConfig())  # the same stages, with the intel stage before them
    screen = IntelScreen(index, countries=Countries(table), country_policy=policy)
    on = Policy(trusted=base.trusted, screens=[IntelStage(screen)], stages=base.stages)
    seen = [Peer("udp", unlisted[0], 5060)]
    new = [Peer("udp", h, 5060) for h in unlisted]
    bad = [Peer("udp", h, 5060) for h in listed]

    def judged(p: Policy, flows: list[Peer]) -> float:
        return per_call(lambda f: p.judge_bytes(REGISTER, f, 5060), flows, seconds)

    off_seen, on_seen = judged(off, seen), judged(on, seen)
    off_new, on_new = judged(off, new), judged(on, new)
    row("pipeline: clean REGISTER, stage off", off_seen, off_new)
    row("pipeline: clean REGISTER, stage on", on_seen, on_new)
    row("pipeline: what the stage adds", on_seen - off_seen, on_new - off_new)
    listed_cost = judged(on, bad)
    row("pipeline: a listed source (dropped unparsed)", listed_cost, listed_cost)


def daemon_costs(entries: list[str], tmp: Path) -> None:
    """What the keeper pays off the packet path: a worker's start (the
    store read into the index) and the kernel's list (kernel_targets)."""
    import asyncio

    from sipwarden.config import config_from_dict
    from sipwarden.daemon.intel import IntelKeeper
    from sipwarden.intel.kernel import kernel_targets
    from sipwarden.store.intel import IntelStore

    db = tmp / "sipwarden.db"
    store = IntelStore(db)
    store.replace("bench", entries, time.time(), {})
    store.close()
    config = config_from_dict({"intel": {"feeds": [{"name": "bench", "path": "x"}]}}).intel

    async def start(traced: bool) -> tuple[float, int]:
        """Seconds a worker's start takes; with ``traced``, the bytes it
        holds afterwards (the index and the keeper's copy it diffs against;
        tracemalloc slows it, so the time is taken apart)."""
        keeper = IntelKeeper(config, db, AddressIndex())
        gc.collect()
        if traced:
            tracemalloc.start()
        began = time.perf_counter()
        await keeper.start()
        took = time.perf_counter() - began
        held = tracemalloc.get_traced_memory()[0] if traced else 0
        tracemalloc.stop()
        await keeper.stop()
        return took, held

    loaded, _ = asyncio.run(start(False))
    _, held = asyncio.run(start(True))
    began = time.perf_counter()
    kernel = kernel_targets(dict.fromkeys(entries), ["203.0.113.0/24", "2001:db8::/32"])
    targets = time.perf_counter() - began
    print(
        f"daemon: a worker loads {len(entries):,} entries from the store in {loaded:.2f} s"
        f" and holds {held / 1e6:.1f} MB for them (index and keeper); "
        f"kernel_targets {targets * 1e3:.0f} ms ({len(kernel):,} disjoint targets)"
    )


if __name__ == "__main__":
    main()
