"""Ban propagation across a fleet: three real `sipwarden run` nodes on
loopback (no kernel enforcement: the figures are the fleet's, not nft's)
and a real redis-server (ACL user and password, as a fleet runs it).

Two figures:

- propagation: ``--bans`` operator bans made one after the other on node A
  (``bans-add`` over its control socket, which answers once A enforced and
  stored it), each then waited for in B's and C's ban books (their control
  sockets' ``bans-show``, asked in a tight loop). Printed: p50/p99 from the
  ban asked on A to B and C holding it, as this script sees it (the loop's
  round trip included), and the daemons' own measure (``status`` ->
  fleet: from A's publication, on Redis's clock, to the ban applied on B
  and C: ``delay-median-ms``, ``delay-p99-ms``).
- absorbed: a burst of ``--burst`` operator bans on A (``--senders``
  control connections at once, ``publish_limit`` raised on every node) and
  the time from the first asked to B and C holding all of them (their
  ``applied`` counters): bans per second the fleet absorbs, A's own
  operator path included.

Targets are in 2001:db8::/32 (documentation addresses: never this
machine's). Run as root or not (nothing touches the kernel):

    python bench/fleet.py [--bans 200] [--burst 2000] [--senders 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fleet.loopback import LoopbackNode
from tests.fleet.redis_server import redis_server

LIMIT = 100_000  # [fleet] publish_limit (bans a minute, each way): out of the way


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def held(node: LoopbackNode, target: str) -> bool:
    return bool(node.ask({"cmd": "bans-show", "target": target})["banned"])


def propagation(a: LoopbackNode, others: list[LoopbackNode], bans: int) -> list[float]:
    """Seconds from each ban asked on A to every other node holding it."""
    delays = []
    for n in range(bans):
        target = f"2001:db8::1:{n:x}"
        start = time.perf_counter()
        answer = a.ask({"cmd": "bans-add", "target": target, "duration": 3600})
        assert answer.get("ok"), answer
        waiting = list(others)
        deadline = start + 10
        while waiting:
            waiting = [node for node in waiting if not held(node, target)]
            if time.perf_counter() > deadline:
                raise SystemExit(f"{target} did not reach {[n.name for n in waiting]} in 10 s")
        delays.append(time.perf_counter() - start)
        time.sleep(0.02)  # one at a time: a delay, not a queue
    return delays


def applied(node: LoopbackNode) -> int:
    return int(node.ask({"cmd": "stats"})["fleet"]["counters"].get("applied", 0))


def absorbed(a: LoopbackNode, others: list[LoopbackNode], burst: int, senders: int) -> float:
    """Seconds from the burst's first ban asked on A to the others holding all."""
    before = {node.name: applied(node) for node in others}
    targets = [f"2001:db8::2:{n:x}" for n in range(burst)]

    def ban(target: str) -> None:
        answer = a.ask({"cmd": "bans-add", "target": target, "duration": 3600}, timeout=30)
        assert answer.get("ok"), answer

    start = time.perf_counter()
    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(ban, targets))
    asked = time.perf_counter() - start
    deadline = start + 120
    waiting = list(others)
    while waiting:
        waiting = [n for n in waiting if applied(n) - before[n.name] < burst]
        if time.perf_counter() > deadline:
            raise SystemExit(f"the burst did not reach {[n.name for n in waiting]} in 120 s")
        time.sleep(0.005)
    took = time.perf_counter() - start
    print(f"  asked on A in {asked:.2f} s ({burst / asked:.0f} bans/s through A's control socket)")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bans", type=int, default=200, help="bans timed one by one")
    parser.add_argument("--burst", type=int, default=2000, help="bans in the burst")
    parser.add_argument("--senders", type=int, default=8, help="control connections at once")
    args = parser.parse_args()
    print(
        f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
        f" load {' '.join(f'{x:.2f}' for x in os.getloadavg())}, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="sipwarden-bench-fleet-") as tmp:
        folder = Path(tmp)
        with redis_server(folder / "redis") as redis:
            nodes = [LoopbackNode(folder, name, redis, publish_limit=LIMIT) for name in "abc"]
            try:
                for node in nodes:
                    node.start()
                a, others = nodes[0], nodes[1:]
                time.sleep(1.5)  # every node followed the stream and beat once
                delays = propagation(a, others, args.bans)
                print(
                    f"propagation, {args.bans} bans, A -> B and C books (seen by this script):"
                    f" p50 {1000 * quantile(delays, 0.5):.1f} ms,"
                    f" p99 {1000 * quantile(delays, 0.99):.1f} ms,"
                    f" worst {1000 * max(delays):.1f} ms"
                )
                for node in others:
                    fleet = node.ask({"cmd": "stats"})["fleet"]
                    print(
                        f"  node {node.name}'s own measure (A's publication to applied here):"
                        f" median {fleet['delay-median-ms']} ms, p99 {fleet['delay-p99-ms']} ms"
                    )
                took = absorbed(a, others, args.burst, args.senders)
                print(
                    f"absorbed: {args.burst} bans on A held by B and C in {took:.2f} s:"
                    f" {args.burst / took:.0f} bans/s"
                )
            finally:
                for node in nodes:
                    node.stop()
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
