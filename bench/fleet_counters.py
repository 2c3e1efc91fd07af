"""The shared failure counters' cost (issue 20, item 2): what the packet
path pays for the tap, and what a flush to Redis costs per event.

- Per failure answer, in process: ``Policy.answer`` (the edge's call for
  each final answer from the PBX: peeked, the failure tracker, the uniform
  answers) for a 401 to a REGISTER with credentials, over ``--sources``
  sources taking turns (four failures each: no ban), with the
  tracker's tap unset, set to a no-op, and set to ``FleetCounters.record``
  (the pending batch; its bound above the events, so none is dropped);
  best of ``--repeat``, interleaved. The difference is the tap's cost.
- The flush: a real ``redis-server`` (started here on a free loopback
  port, no persistence), batches of ``--batch`` events (a challenge and a
  failed login per source, spread over sources), each one round trip of the
  script; µs per event (the round trip's wall time, the script's time in
  Redis included, divided by the events), best of ``--repeat``.

Run: .venv/bin/python bench/fleet_counters.py [--sources N] [--batch N] [--repeat R]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sipwarden.config import FleetConfig, config_from_dict
from sipwarden.fleet import FleetLink
from sipwarden.fleet.counters import FleetCounters
from sipwarden.policy import build_policy
from sipwarden.policy.failures import LOGIN_FAILED, REFUSED
from sipwarden.sip import peek

ANSWER = (
    b"SIP/2.0 401 Unauthorized\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-swabc;swf=t\r\n"
    b"From: <sip:100@pbx.test>;tag=a\r\nTo: <sip:100@pbx.test>;tag=b\r\n"
    b'Call-ID: c1\r\nCSeq: 2 REGISTER\r\nWWW-Authenticate: Digest realm="pbx.test",'
    b' nonce="5f3a9c1e.a1b2c3d4e5f60718", algorithm=MD5, qop="auth"\r\nContent-Length: 0\r\n\r\n'
)


def per_answer(tap: str, hosts: list[str], repeat: int) -> float:
    """µs per ``Policy.answer`` of a failed login (best of ``repeat``)."""
    view = peek(ANSWER)
    best = float("inf")
    for _ in range(repeat):
        policy = build_policy(config_from_dict({}))
        tracker = policy.failures
        assert tracker is not None
        keeper = None
        if tap == "no-op":
            tracker.tap = lambda host, kind, user, now: None
        elif tap == "record":
            link = FleetLink(FleetConfig(redis="redis://127.0.0.1:1/0"))
            keeper = FleetCounters(link, lambda p=policy: p, bound=len(hosts) * 5)
            tracker.tap = keeper.record
        answer, now = policy.answer, 1_000.0
        gc.collect()
        gc.disable()
        start = time.perf_counter()
        for host in hosts:
            answer(ANSWER, view, host, True, now)
        best = min(best, (time.perf_counter() - start) / len(hosts) * 1e6)
        gc.enable()
        if keeper is not None:
            assert len(keeper.pending) == len(hosts) and keeper.dropped == 0
    return best


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def flushes(url: str, batch: int, repeat: int) -> tuple[float, float]:
    """µs per event of one flush of ``batch`` events (best, median)."""
    policy = build_policy(config_from_dict({"failures": {"maxretry": 1_000_000}}))
    keeper = FleetCounters(FleetLink(FleetConfig(redis=url, node="bench")), lambda: policy)
    assert await keeper.link.connect()
    times = []
    for round_ in range(repeat):
        now = time.time()
        for i in range(batch // 2):
            host = f"198.51.{(round_ * 7 + i // 250) % 256}.{i % 250}"
            keeper.record(host, REFUSED, "100", now)
            keeper.record(host, LOGIN_FAILED, "100", now)
        start = time.perf_counter()
        sent = await keeper.flush()
        times.append((time.perf_counter() - start) / sent * 1e6)
    await keeper.link.close()
    times.sort()
    return times[0], times[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} on {platform.machine()}")
    # four failed logins per source (maxretry 5: no ban), the sources taking turns
    hosts = [f"203.0.{(i // 250) % 256}.{i % 250}" for i in range(args.sources)]
    hosts = [h for _ in range(4) for h in hosts[: args.sources // 4]]
    results: dict[str, float] = {"unset": 1e9, "no-op": 1e9, "record": 1e9}
    for _ in range(args.repeat):  # interleaved: the machine's drift hits all three
        for tap in results:
            results[tap] = min(results[tap], per_answer(tap, hosts, 1))
    print(f"Policy.answer, a 401 to a REGISTER with credentials ({len(hosts):,} answers):")
    for tap, value in results.items():
        extra = f"  (+{value - results['unset']:.3f})" if tap != "unset" else ""
        print(f"  tap {tap:6}: {value:.3f} µs{extra}")
    if shutil.which("redis-server") is None:
        print("redis-server is not installed: no flush figures")
        return
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        conf = Path(workdir) / "redis.conf"
        conf.write_text(f'bind 127.0.0.1\nport {port}\nsave ""\nappendonly no\ndir {workdir}\n')
        server = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL)
        try:
            for _ in range(100):
                done = subprocess.run(
                    ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True
                )
                if done.stdout.strip() == "PONG":
                    break
                time.sleep(0.05)
            for batch in (100, args.batch, 5_000):
                best, median = asyncio.run(flushes(f"redis://127.0.0.1:{port}/0", batch, 15))
                print(
                    f"flush of {batch:,} events (half challenges, half failed logins):"
                    f" {best:.2f} µs per event best, {median:.2f} median"
                )
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
