"""The report's generation time (`sipwarden report`): a store with 100,000
flows and 10,000 events over a week (plus 1,000 bans and 1,000 honeypot
records), from 2,000 sources, with a GeoIP database of the test ranges.

Prints, best of ``--runs``: the stores' reads and the aggregation
(``reports.gather``), the plots (matplotlib, Agg), the HTML, the JSON, and
the HTML file's size. The store is made once in a temporary directory.

Run: .venv/bin/python bench/report.py [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.intel.geodata

from tests.intel.geodata import write_mmdb

from sipwarden.config import config_from_dict
from sipwarden.observe import Event
from sipwarden.reports import gather, plots, render_html, render_json
from sipwarden.store import BanStore, HoneypotStore, ObserveStore
from sipwarden.values import Ban, Change

FLOWS, EVENTS, BANS, CALLS, SOURCES = 100_000, 10_000, 1_000, 1_000, 2_000
WEEK = 7 * 86400


def fill(path: Path, now: float) -> None:
    rng = random.Random(19)
    sources = [f"203.0.113.{i % 250}" if i < 250 else f"198.51.{100 + i // 250}.{i % 250}"
               for i in range(SOURCES)]  # fmt: skip
    rules = ["scan.sipvicious", "ua.friendly-scanner", "scan.nmap-nse", "rate", "sanity"]
    store = ObserveStore(path)
    events = []
    for _ in range(EVENTS):
        t = now - rng.random() * WEEK
        if rng.random() < 0.7:
            events.append(Event(t, "verdict", rng.choice(sources), rng.choice(rules),
                                (("verdict", "drop"), ("user_agent", f"scanner/{rng.randrange(20)}"),
                                 ("repeated", rng.randrange(1, 50)))))  # fmt: skip
        else:
            events.append(Event(t, "login-failed", rng.choice(sources), "auth.failed",
                                (("account", str(100 + rng.randrange(200))),)))  # fmt: skip
    store.write_events(events)
    flows: list[dict[str, Any]] = []
    for i in range(FLOWS):
        minute = (now - rng.random() * WEEK) // 60 * 60
        kernel = i % 5 == 0
        flows.append({
            "minute": minute, "source": rng.choice(sources),
            "source_port": None if kernel else 5060 + rng.randrange(1000),
            "destination": "192.0.2.1", "destination_port": 5060,
            "transport": "kernel" if kernel else "udp", "first_seen": minute,
            "last_seen": minute + 59, "packets": rng.randrange(1, 500), "bytes": 50_000,
            "peak_pps": 10, "methods": {} if kernel else {"REGISTER": 3},
            "answers": {}, "verdicts": {} if kernel else {"rate": 2},
        })  # fmt: skip
        if len(flows) == 10_000:
            store.write_flows(flows)
            flows = []
    store.close()
    bans = BanStore(path)
    bans.apply([Change("add", Ban(sources[i], "failed logins", "failures",
                                  now - rng.random() * WEEK, now + 86400))
                for i in range(BANS)], now - WEEK)  # fmt: skip
    bans.close()
    honeypot = HoneypotStore(path)
    honeypot.add([{"source": rng.choice(sources), "number": f"00972{rng.randrange(10**8)}",
                   "count": rng.randrange(1, 5), "first_seen": now - WEEK, "last_seen": now - 60}
                  for _ in range(CALLS)])  # fmt: skip
    honeypot.close()


def best(runs: int, work: Any) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        now = time.time()
        started = time.perf_counter()
        fill(Path(tmp) / "store.db", now)
        print(
            f"store filled: {FLOWS} flows, {EVENTS} events in {time.perf_counter() - started:.1f} s"
        )
        config = config_from_dict({
            "storage": {"path": f"{tmp}/store.db"},
            "intel": {"geoip": {"database": str(write_mmdb(Path(tmp) / "geo.mmdb"))}},
            "schedule": {"timezone": "Europe/Berlin", "quiet_hours": "22:00-06:00"},
        })  # fmt: skip
        read, report = best(runs, lambda: gather(config, now - WEEK, now))
        drawn, images = best(runs, lambda: plots(report))
        made, html = best(runs, lambda: render_html(report, images))
        as_json, _ = best(runs, lambda: render_json(report))
    print(f"reads and aggregation (gather): {read * 1000:8.0f} ms")
    print(f"plots ({len(images)}, matplotlib Agg):  {drawn * 1000:8.0f} ms")
    print(f"HTML:                           {made * 1000:8.0f} ms")
    print(f"JSON:                           {as_json * 1000:8.0f} ms")
    print(f"total:                          {(read + drawn + made + as_json) * 1000:8.0f} ms")
    print(f"HTML file: {len(html) / 1024:.0f} KiB; sources {report['summary']['sources']},"
          f" flows {report['summary']['flows']}")  # fmt: skip


if __name__ == "__main__":
    main()
