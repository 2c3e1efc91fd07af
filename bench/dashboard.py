"""The dashboard's cost: its page load with 1,000 bans and 100,000 flow
records in the store, and the daemon's CPU while ten dashboards are open.

A `sipwarden run` (an edge on loopback, enforcer "none", events and flows
kept) starts on a store filled beforehand with 100,000 flow records over
the last hour (512 sources, many ports each); 1,000 bans are then made
through the REST API. Figures:

- the API calls the page makes at load, each timed alone (the first and
  the best of 3: /api/v1/sources answers again from a 5 s memo);
- the page load in a real browser (Debian's chromium through selenium,
  when installed): from navigation until every panel is drawn (1,000 ban
  rows and the top sources), best of 3;
- the daemon's CPU (utime + stime from /proc/PID/stat) over ``--seconds``
  with no dashboard, then with ``--dashboards`` open. A dashboard here is
  what the page's script does, replayed by a client: the live event stream
  held open, /api/v1/status every 2 s, and every 15 s the bans, a day of
  events, the hour's busiest sources, the feeds, the profile and the top sources'
  countries (the browser's own CPU is not the daemon's: it is left out).

Run: .venv/bin/python bench/dashboard.py [--dashboards 10] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from sipwarden.store import ObserveStore

TICK = os.sysconf("SC_CLK_TCK")
FLOWS = 100_000
BANS = 1_000
PAGE_CALLS = (  # what app.js reads at load (and every 15 s)
    "/api/v1/bans",
    "/api/v1/events?since=1d&limit=20000",
    "/api/v1/sources?since=1h&limit=15",
    "/api/v1/intel",
    "/api/v1/profile",
    "/api/v1/status",
)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def source(i: int) -> str:  # documentation ranges only
    return f"{'203.0.113' if i % 2 else '198.51.100'}.{i // 2 % 256}"


def fill_flows(db: Path, now: float) -> None:
    minute0 = int(now // 60) * 60 - 3600
    records = []
    for i in range(FLOWS):
        minute = minute0 + (i % 60) * 60
        records.append(
            {
                "minute": minute,
                "source": source(i % 512),
                "source_port": 1024 + i // 512,
                "destination": "127.0.0.1",
                "destination_port": 5060,
                "transport": "udp",
                "first_seen": minute + 1.0,
                "last_seen": minute + 30.0,
                "packets": 1 + i % 7,
                "bytes": 400 * (1 + i % 7),
                "peak_pps": 1,
                "methods": {"REGISTER": 1 + i % 7},
                "answers": {"401": 1},
                "verdicts": {"scan.sipvicious-tag": 1} if i % 3 == 0 else {},
            }
        )
    store = ObserveStore(db)
    try:
        for start in range(0, FLOWS, 10_000):
            store.write_flows(records[start : start + 10_000])
    finally:
        store.close()


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def start(tmp: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    config = tmp / "edge.toml"
    config.write_text(
        f'[edge]\nlisten = ["udp:127.0.0.1:{free_udp_port()}"]\n'
        f'backend = "udp:127.0.0.1:{free_udp_port()}"\nflow_key_file = "flow.key"\n'
        '[storage]\npath = "bench.db"\n[control]\nsocket = "sipwarden.sock"\n'
        '[api]\nlisten = "127.0.0.1:0"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipwarden.cli", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=(tmp / "edge.log").open("wb"),
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else b""
    found = re.search(rb"API (http://\S+)/api/v1", line)
    if not found:
        proc.kill()
        sys.exit(f"sipwarden run did not start: {line!r}\n{(tmp / 'edge.log').read_text()}")
    return proc, found.group(1).decode(), (tmp / "bench.token").read_text().strip()


def make_bans(api: str, token: str) -> None:
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        for i in range(BANS):
            ip = source(i) if i < 512 else f"2001:db8::{i:x}"
            made = client.post(f"{api}/api/v1/bans", json={"ip": ip, "for": "1d"})
            assert made.status_code == 201, made.text


def calls(api: str) -> None:
    with httpx.Client(timeout=60) as client:
        for path in PAGE_CALLS:
            took = []
            for _ in range(3):
                t = time.perf_counter()
                answer = client.get(api + path)
                took.append(time.perf_counter() - t)
            print(
                f"  GET {path:<38} first {took[0] * 1000:7.1f} ms, best {min(took) * 1000:7.1f} ms,"
                f" {len(answer.content) / 1024:5.0f} KiB"
            )


def page_load(api: str) -> None:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        print("  page load in a browser: selenium is not installed (skipped)")
        return
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,720"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            driver.get(api + "/")
            WebDriverWait(driver, 120, poll_frequency=0.02).until(
                lambda d: (
                    len(d.find_elements(By.CSS_SELECTOR, "#bans tbody tr")) >= BANS
                    and d.find_elements(By.CSS_SELECTOR, "#sources tbody tr[data-ip]")
                )
            )
            best = min(best, time.perf_counter() - t)
        print(f"  page load in chromium, every panel drawn: {best * 1000:.0f} ms (best of 3)")
    finally:
        driver.quit()


async def dashboard(api: str, until: float) -> None:
    """One open dashboard, as app.js behaves."""
    async with httpx.AsyncClient(timeout=60) as client:

        async def stream() -> None:
            async with client.stream("GET", api + "/api/v1/events/stream") as answer:
                async for _ in answer.aiter_bytes():
                    pass

        async def counters() -> None:
            while time.monotonic() < until:
                await client.get(api + "/api/v1/status")
                await asyncio.sleep(2)

        async def panels() -> None:
            while time.monotonic() < until:
                await asyncio.gather(*(client.get(api + p) for p in PAGE_CALLS[:-1]))
                await asyncio.sleep(15)

        held = asyncio.create_task(stream())
        await asyncio.gather(counters(), panels())
        held.cancel()


def daemon_cpu(proc: subprocess.Popen[bytes], api: str, dashboards: int, seconds: float) -> float:
    before = cpu(proc.pid)
    until = time.monotonic() + seconds
    if dashboards:

        async def all_of_them() -> None:
            await asyncio.gather(*(dashboard(api, until) for _ in range(dashboards)))

        asyncio.run(all_of_them())
    else:
        time.sleep(seconds)
    return (cpu(proc.pid) - before) / seconds * 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dashboards", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument(
        "--replay",
        metavar="API",
        help="only hold --dashboards open on this daemon for --seconds (bench/proxy.py uses it)",
    )
    args = ap.parse_args()
    if args.replay:
        daemon_cpu_while = time.monotonic() + args.seconds

        async def replay() -> None:
            await asyncio.gather(
                *(dashboard(args.replay, daemon_cpu_while) for _ in range(args.dashboards))
            )

        asyncio.run(replay())
        return
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        fill_flows(Path(tmp) / "bench.db", time.time())
        print(f"{FLOWS:,} flow records written in {time.perf_counter() - t:.1f} s")
        proc, api, token = start(Path(tmp))
        try:
            t = time.perf_counter()
            make_bans(api, token)
            print(f"{BANS:,} bans made through the API in {time.perf_counter() - t:.1f} s")
            print("the page's API calls, each alone (the first, and the best of 3):")
            calls(api)
            page_load(api)
            idle = daemon_cpu(proc, api, 0, args.seconds)
            print(f"daemon CPU, no dashboard open:      {idle:5.1f} % of a core")
            busy = daemon_cpu(proc, api, args.dashboards, args.seconds)
            print(f"daemon CPU, {args.dashboards} dashboards open:     {busy:5.1f} % of a core")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


if __name__ == "__main__":
    main()
