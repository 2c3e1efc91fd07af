"""Shared intel (issue 20, item 3): from the fetcher's success to the other
nodes having the entries loaded, for a feed of 10,000 entries.

Three nodes in one process against a real ``redis-server`` on loopback
(started here, no persistence): node A holds the feed's lease (its
``FleetIntel``), B and C follow (their ``FleetIntel`` and an ``IntelKeeper``
loading their own store into an ``AddressIndex``, as a worker does). A
"fetch" is A's store taking a new list of 10,000 addresses
(``IntelStore.replace``, what ``refresh_list`` does after a good fetch);
the clock starts when it returns and stops when B's (and C's) keeper has
the 10,000 entries in its index.

Two figures:

- ``end to end``: with the daemon's own timings (A looks at its store every
  ``POLL`` s, B and C ask Redis every ``REMOTE_EVERY`` s, the keeper looks at
  its store every ``TICK`` s): what an operator sees;
- ``work``: the same steps made one after the other with no waiting in
  between (A's publish, B's take, B's keeper's reload): what the polls
  leave out.

Run: .venv/bin/python bench/fleet_intel.py [--rounds N] [--entries N]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sipwarden.config import FeedConfig, FleetConfig, IntelConfig
from sipwarden.daemon.intel import TICK, IntelKeeper
from sipwarden.fleet import FleetLink
from sipwarden.fleet.intel import POLL, REMOTE_EVERY, FleetIntel
from sipwarden.intel.index import AddressIndex

FEED = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(200):
        done = subprocess.run(
            ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, timeout=5
        )
        if done.stdout.strip() == "PONG":
            return proc, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not answer")


def addresses(round_: int, count: int) -> list[str]:
    """``count`` distinct addresses scattered as a real list's are (a tenth
    of them /24 networks), a new list each round."""
    pick = random.Random(round_)
    found: set[str] = set()
    while len(found) < count:
        a, b, c, d = (
            pick.randrange(1, 224),
            pick.randrange(256),
            pick.randrange(256),
            pick.randrange(256),
        )
        found.add(f"{a}.{b}.{c}.0/24" if pick.random() < 0.1 else f"{a}.{b}.{c}.{d}")
    return sorted(found)


def fleet(url: str, node: str, store: Path, *, timed: bool) -> FleetIntel:
    link = FleetLink(FleetConfig(redis=url, node=node, timeout=10.0))
    options = {} if timed else {"poll": 3600.0, "remote_every": 0.0}
    return FleetIntel(link, store, lambda: {FEED: None}, close_link=True, **options)


def keeper(tmp: Path, store: Path) -> IntelKeeper:
    intel = IntelConfig(feeds=[FeedConfig(name=FEED, path=tmp / "unused.txt")])
    return IntelKeeper(intel, store, AddressIndex(), fetch=False)


async def end_to_end(url: str, tmp: Path, rounds: int, count: int) -> list[float]:
    a = fleet(url, "a", tmp / "e-a.db", timed=True)
    followers = [fleet(url, n, tmp / f"e-{n}.db", timed=True) for n in ("b", "c")]
    keepers = [keeper(tmp, tmp / f"e-{n}.db") for n in ("b", "c")]
    await a.start()
    for part in (*followers, *keepers):
        await part.start()
    assert a.may_fetch(FEED) and not any(f.may_fetch(FEED) for f in followers)
    delays: list[float] = []
    try:
        for r in range(rounds):
            wanted = addresses(r, count)
            await asyncio.to_thread(a.store.replace, FEED, wanted, time.time(), {})
            started = time.perf_counter()
            pending = set(range(len(keepers)))
            while pending:
                await asyncio.sleep(0.005)
                for i in list(pending):
                    if keepers[i].loaded().get(FEED) == count and keepers[i].index.matches(
                        wanted[-1], time.time()
                    ):
                        delays.append(time.perf_counter() - started)
                        pending.discard(i)
                if time.perf_counter() - started > 30:
                    raise SystemExit("a follower did not load the list in 30 s")
            await asyncio.sleep(0.5)  # the rounds' phases drift against the polls
    finally:
        for part in (*keepers, *followers, a):
            await part.stop()
    return delays


async def work(url: str, tmp: Path, rounds: int, count: int) -> dict[str, list[float]]:
    a = fleet(url, "a", tmp / "w-a.db", timed=False)
    b = fleet(url, "b", tmp / "w-b.db", timed=False)
    kb = keeper(tmp, tmp / "w-b.db")
    await a.start()
    await b.start()
    await kb.start()
    steps: dict[str, list[float]] = {"publish": [], "take": [], "load": [], "total": []}
    try:
        for r in range(rounds):
            await asyncio.to_thread(a.store.replace, FEED, addresses(r, count), time.time(), {})
            t0 = time.perf_counter()
            await a.round()
            t1 = time.perf_counter()
            await b.round()
            t2 = time.perf_counter()
            await kb.sync_index()
            t3 = time.perf_counter()
            assert kb.loaded() == {FEED: count}
            for name, value in (
                ("publish", t1 - t0), ("take", t2 - t1), ("load", t3 - t2), ("total", t3 - t0)
            ):  # fmt: skip
                steps[name].append(value)
        packed = await a.client.strlen(a.key("entries", FEED))
        steps["bytes"] = [float(packed)]
    finally:
        for part in (kb, b, a):
            await part.stop()
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--entries", type=int, default=10_000)
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"# {args.entries:,} entries, {args.rounds} rounds; polls: holder {POLL} s,")
    print(f"#   followers {REMOTE_EVERY} s (Redis), keeper {TICK} s (store)")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        proc, url = start_redis(tmp)
        try:
            delays = asyncio.run(end_to_end(url, tmp, args.rounds, args.entries))
            steps = asyncio.run(work(url, tmp, args.rounds, args.entries))
        finally:
            proc.terminate()
            proc.wait(10)
    delays.sort()
    print(
        f"end to end (fetcher's success -> a follower's index), s: p50 "
        f"{statistics.median(delays):.2f}, max {delays[-1]:.2f}, min {delays[0]:.2f}"
        f" ({len(delays)} loads)"
    )
    print(f"payload: {int(steps.pop('bytes')[0]):,} bytes (zlib JSON)")
    for step, values in steps.items():
        print(f"work, {step:8}: median {statistics.median(values) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
