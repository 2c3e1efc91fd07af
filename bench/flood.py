"""Phones under a spoofed REGISTER flood: the edge's capacity, and how a
registered phone fares at ten times it, without and with the kernel lane.

The site is the flood test's (``tests/edge/flood.py``): two network
namespaces of its own, `sipwarden run` (one worker, UDP) in front of a real
Kamailio with digest auth, and ``tests/edge/flooder.py``
sending raw REGISTERs from ``--sources`` spoofed sources (100,000 by
default, from 198.18.0.0/15; shuffled: every source sends the same request
a few times a second or less, so no per-source limit trips).

1. capacity: with no lane, a flood well above what the edge can take; the
   edge's capacity is the answers it relayed from Kamailio per second
   (over 5 s, after 3 s of the flood);
2. the flood at ``--times`` (10) that capacity, ``--seconds`` long, while
   a phone that registered before it logs in every second (REGISTER, 401,
   REGISTER with credentials, 200; no retransmissions, 1 s per answer: a
   lost request is a failed login) and, from 2 s into the flood, a
   newcomer (a phone that never logged in) tries the same: first with
   ``enforcer = "none"`` (no lane), then with the lane's defaults and
   each ``--totals`` rate.

Printed per run: the phone's and the newcomer's logins that succeeded, the
datagrams the edge read and the answers it relayed per second (over the
flood's length, the backlog read after it included), the datagrams its socket
had no room for (RcvbufErrors), the edge's CPU (user and system) per
datagram it read (what a flood packet costs once it reaches user space:
issue 21), and the lane's kernel counters (what it absorbed).

Run (root; kamailio, nft, ip): .venv/bin/python bench/flood.py [--times 10]
[--seconds 15] [--totals 1000,4000] [--sources 100000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.edge.flood import (
    EdgeDaemon,
    FloodSite,
    Phone,
    Registering,
    flood,
    flood_result,
    flood_site,
    socket_drops,
    success,
)

NO_LANE = '[firewall]\nenforcer = "none"'
LANE = '[firewall]\nenforcer = "nftables"'
PROBE_RATE = 20_000  # packets a second for the capacity: several times what the edge takes
NEWCOMER_AFTER = 2.0  # seconds into the flood the newcomer starts trying
MAX_RATE = 120_000  # what the flooder sends on this machine at most (it needs a core)


def capacity(site: FloodSite, seconds: float, warm: float = 3.0) -> dict[str, float]:
    """Answers relayed (Kamailio's 401s to the flood) and datagrams read per
    second, with the edge's socket never empty: over ``seconds`` of a
    flood, after ``warm`` seconds of it."""
    with EdgeDaemon(site, "capacity", NO_LANE) as edge:
        flooder = flood(site, PROBE_RATE, warm + seconds + 1)
        time.sleep(warm)
        before, began = edge.stats()["edge"], time.monotonic()
        time.sleep(seconds)
        after, took = edge.stats()["edge"], time.monotonic() - began
        sent = flood_result(flooder, seconds + 30)
    return {
        "relayed": (after.get("to-client", 0) - before.get("to-client", 0)) / took,
        "received": (after.get("received", 0) - before.get("received", 0)) / took,
        "offered": sent["rate"],
    }


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    site: FloodSite, name: str, firewall: str, rate: int, seconds: float, sources: int
) -> dict[str, Any]:
    with EdgeDaemon(site, name, firewall) as edge:
        assert edge.proc is not None
        pid = edge.proc.pid  # (`ip netns exec` execs sipwarden: the same process)
        phone = Phone(site, site.phone_ip, "100")
        newcomer = Phone(site, site.newcomer_ip, "200")
        assert phone.login() == 200, edge.log()
        time.sleep(1.0)  # the lane keeper's batch (a fraction of a second)
        before, drops = edge.stats()["edge"], socket_drops(site)
        cpu = cpu_seconds(pid)
        flooder = flood(site, rate, seconds, sources)
        start = time.monotonic()
        with Registering(phone) as registered:
            time.sleep(NEWCOMER_AFTER)  # the limit's first burst is spent: the flood is steady
            with Registering(newcomer) as unknown:
                sent = flood_result(flooder, seconds + 30)
        end = time.monotonic()
        after = edge.stats()["edge"]
        cpu = cpu_seconds(pid) - cpu
        received = after.get("received", 0) - before.get("received", 0)
        relayed = after.get("to-client", 0) - before.get("to-client", 0)
        drops = socket_drops(site) - drops
        lane = edge.cli("firewall", "lane") if "nftables" in firewall else None
        phone.close()
        newcomer.close()
    tries = unknown.within(start, end)
    firsts = [a.at - tries[0].at for a in tries if a.status == 200]
    return {
        "name": name,
        "sent": sent,
        "phone": registered.within(start, end),
        "newcomer": unknown.within(start, end),
        "newcomer_first": firsts[0] if firsts else None,
        "received": received / sent["seconds"],
        "relayed": relayed / sent["seconds"],
        "socket_drops": drops,
        # the edge's CPU per datagram it read (the flood's and the phones')
        "us_per_read": cpu / max(1, received) * 1e6,
        "core": cpu / (end - start),
        "lane": lane,
    }


def show(result: dict[str, Any]) -> None:
    phone, newcomer = result["phone"], result["newcomer"]
    first = result["newcomer_first"]
    ok = sum(a.status == 200 for a in phone)
    print(
        f"| {result['name']} | {result['sent']['rate']:,} | {ok}/{len(phone)}"
        f" ({success(phone):.0%}) | {sum(a.status == 200 for a in newcomer)}/{len(newcomer)}"
        f" ({'never' if first is None else f'in after {first:.0f} s'})"
        f" | {result['received']:,.0f} / {result['relayed']:,.0f}"
        f" | {result['us_per_read']:.1f} µs ({result['core']:.2f} core)"
        f" | {result['socket_drops']:,} | "
        + (
            "no lane"
            if result["lane"] is None
            else "known-good {good:,}, passed {unknown-passed:,}, dropped per prefix"
            " {prefix-dropped:,}, over the total {total-dropped:,}".format(
                **result["lane"]["counters"]
            )
        )
        + " |",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--times", type=float, default=10.0, help="the flood, times the capacity")
    parser.add_argument("--seconds", type=float, default=15.0, help="each flood's length")
    parser.add_argument("--totals", default="", help="lane total rates to try besides the default")
    parser.add_argument(
        "--sources", type=int, default=100_000, help="spoofed source addresses (up to 131,072)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("network namespaces and nftables need root")
    tmp = Path(tempfile.mkdtemp(prefix="sipwarden-flood-"))
    with flood_site(tmp) as site:
        cap = capacity(site, 5.0)
        print(
            f"capacity: the edge relayed {cap['relayed']:,.0f} answers/s (read"
            f" {cap['received']:,.0f} REGISTERs/s of {cap['offered']:,} offered)",
            flush=True,
        )
        rate = min(int(args.times * cap["relayed"]), MAX_RATE)
        print(
            f"flood: {rate:,} REGISTERs/s ({rate / cap['relayed']:.1f}x) from {args.sources:,}"
            f" spoofed sources, {args.seconds:g} s each"
        )
        print(
            "\n| run | flood /s | registered phone | newcomer | edge read / relayed, per s"
            " | edge CPU per datagram read | socket overflows | kernel lane (packets) |"
            "\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
        )
        runs = [("no lane", NO_LANE), ("lane, defaults", LANE)] + [
            (f"lane, total {int(t):,}/s", f"{LANE}\nlane = {{ total_rate = {int(t)} }}")
            for t in filter(None, args.totals.split(","))
        ]
        for i, (name, firewall) in enumerate(runs):
            show(run(site, f"run{i}", firewall, rate, args.seconds, args.sources) | {"name": name})
            subprocess.run(  # the next run starts from no table
                site.pair.in_edge("nft", "delete", "table", "inet", "sipwarden"),
                capture_output=True,
                timeout=10,
            )
            time.sleep(2)  # Kamailio drains what it still holds
    return 0


if __name__ == "__main__":
    sys.exit(main())
