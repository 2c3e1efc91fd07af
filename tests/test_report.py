"""`sipwarden report` over a store filled through the real store APIs (the
flow table's minutes, the event queue's drains with a flood's summary, the
kernel's drop readings, the honeypot's records, the ban book's changes),
with a GeoIP database: every section is there, the numbers agree with
`bans list`, `flows` and `honeypot calls` over the same window, every plot
decodes as a real PNG, attacker text is escaped, and the JSON says the same.
"""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from sipwarden.cli import main
from sipwarden.observe import Event, EventQueue
from sipwarden.observe.drops import KernelDrops
from sipwarden.observe.flows import FlowKey, FlowTable
from sipwarden.observe.report import SECTIONS
from sipwarden.store import BanStore, HoneypotStore, ObserveStore
from sipwarden.values import Ban, Change

from .intel.geodata import write_mmdb

EVIL_UA = 'friendly-scanner <script>alert("x")</script> $\\alpha$'
NUMBERS = {"00972597562518": 3, "011447700900123": 2}


def fill(path: Path, now: float) -> None:
    """Two hours of a scanner, a guesser, a phone and a toll-fraud caller,
    in time order, drained each minute as the observe keeper does. The
    start is on a minute: the guesser's 12 s fall in one drain whatever
    ``now`` is (split over two, the queue's folding, and so the accounts'
    counts, would depend on the second the test ran)."""
    start = now // 60 * 60 - 7200
    packets: list[tuple[float, FlowKey, int, str, Event | None]] = []
    for i in range(600):  # the scanner: every 10 s, dropped by the pack
        t = start + i * 10
        event = Event(t, "verdict", "203.0.113.7", "scan.sipvicious",
                      (("verdict", "drop"), ("user_agent", EVIL_UA)))  # fmt: skip
        packets.append((t, FlowKey("203.0.113.7", 5070, "192.0.2.1", 5060, "udp"), 420,
                        "OPTIONS", event))  # fmt: skip
    for i in range(12):  # the guesser: failed logins for two accounts
        t = start + 3600 + i
        event = Event(t, "login-failed", "198.51.100.9", "auth.failed",
                      (("account", "100" if i % 3 else "<admin>"), ("status", 401)))  # fmt: skip
        packets.append((t, FlowKey("198.51.100.9", 5060, "192.0.2.1", 5060, "udp"), 600,
                        "REGISTER", event))  # fmt: skip
    phone = FlowKey("192.0.3.5", 5060, "192.0.2.1", 5060, "tcp")  # forwarded, no event
    packets.extend((start + 60 * i + 0.5, phone, 500, "REGISTER", None) for i in range(30))
    flows, queue, store = FlowTable(), EventQueue(sample=5), ObserveStore(path)
    minute = -1
    for t, key, size, method, event in sorted(packets, key=lambda p: p[0]):
        if int(t // 60) != minute:  # the keeper's drain, once a minute
            minute = int(t // 60)
            store.write_events(queue.drain())
            store.write_flows(flows.drain(t))
        verdict = event.reason if event is not None and event.kind == "verdict" else None
        flows.record(key, t, size, method=method, verdict=verdict)
        if event is not None:
            queue.push(event)
    store.write_events(queue.drain())
    store.write_flows(flows.drain(now + 120))
    drops = KernelDrops(started=start)  # the guesser, banned, counted by the kernel
    store.write_flows(drops.read({"198.51.100.9": (40, 24000)}, start + 4000))
    store.write_flows(drops.read({"198.51.100.9": (90, 54000)}, start + 5000))
    store.close()
    honeypot = HoneypotStore(path)
    honeypot.add([
        {"source": "203.0.113.8", "number": number, "count": count, "first_seen": now - 600,
         "last_seen": now - 300, "normalised": None, "country": "IL" if "972" in number else "GB",
         "user_agent": EVIL_UA}
        for number, count in NUMBERS.items()
    ])  # fmt: skip
    honeypot.close()
    bans = BanStore(path)
    bans.apply([Change("add", Ban("198.51.100.9", "12 failed logins", "failures",
                                  start + 3612, now + 3600))], start + 3612)  # fmt: skip
    bans.apply([Change("add", Ban("203.0.113.8", "a prefix walk", "tollfraud.prefix-walk",
                                  now - 200, now + 3600))], now - 200)  # fmt: skip
    bans.apply([Change("add", Ban("203.0.113.99", "old", "failures", start - 86400 * 30,
                                  start - 86400 * 29))], start - 86400 * 30)  # fmt: skip
    bans.close()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    write_mmdb(tmp_path / "countries.mmdb")
    path = tmp_path / "sipwarden.toml"
    path.write_text(
        '[storage]\npath = "store.db"\n[control]\nsocket = "none.sock"\n'
        '[intel.geoip]\ndatabase = "countries.mmdb"\n'
        '[schedule]\ntimezone = "Europe/Berlin"\nquiet_hours = "22:00-06:00"\n'
    )
    fill(tmp_path / "store.db", time.time())
    return path


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def png_size(data: bytes) -> tuple[int, int]:
    """The PNG signature and IHDR chunk, read by hand: (width, height)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


def test_the_report_has_every_section_and_agrees_with_the_lists(
    config: Path, tmp_path: Path
) -> None:
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3 * 3600))
    out = tmp_path / "report.html"
    run("report", "-c", str(config), "--since", since, "-o", str(out))
    report: dict[str, Any] = json.loads(
        run("report", "-c", str(config), "--since", since, "--json")
    )
    flows = json.loads(run("flows", "-c", str(config), "--since", since, "--json"))
    bans = json.loads(run("bans", "list", "-c", str(config), "--json"))
    calls = json.loads(run("honeypot", "calls", "-c", str(config), "--since", since, "--json"))
    events = json.loads(run("events", "-c", str(config), "--since", since, "--json"))

    summary = report["summary"]
    # flows: every packet, per source, and what the kernel dropped
    assert summary["packets"] == sum(f["packets"] for f in flows) == 600 + 12 + 30 + 90
    assert summary["flows"] == len(flows)
    per_source: dict[str, int] = {}
    for f in flows:
        per_source[f["source"]] = per_source.get(f["source"], 0) + f["packets"]
    assert {r["source"]: r["packets"] for r in report["sources"]} == per_source
    kernel = [f for f in flows if f["transport"] == "kernel"]
    assert report["kernel"]["packets"] == sum(f["packets"] for f in kernel) == 90
    assert report["kernel"]["top"] == [{"source": "198.51.100.9", "packets": 90}]
    assert sum(report["volume"]["packets"]) + sum(report["volume"]["kernel"]) == summary["packets"]
    # bans: in force as `bans list`; made in the window by reason (not the old one)
    assert report["bans"]["in_force"] == bans and summary["bans_in_force"] == len(bans) == 2
    assert sorted((r["detector"], r["count"]) for r in report["bans"]["by_reason"]) == [
        ("failures", 1), ("tollfraud.prefix-walk", 1)
    ]  # fmt: skip
    # honeypot calls: every call, per number
    assert summary["honeypot_calls"] == sum(c["count"] for c in calls) == sum(NUMBERS.values())
    assert {r["number"]: r["calls"] for r in report["dialled"]} == NUMBERS
    # events: a flood's summary counts its repeated
    weighted = sum(e.get("repeated", 1) for e in events if e["kind"] == "verdict")
    assert report["tools"]["rules"] == [{"rule": "scan.sipvicious", "count": weighted}]
    assert weighted == 600 and summary["attacks"] == 612
    # accounts: a folded flood counts for its last event's account (the queue keeps no more)
    failed = sum(e.get("repeated", 1) for e in events if e["kind"] == "login-failed")
    assert sum(r["count"] for r in report["accounts"]) == failed == 12
    assert [r["account"] for r in report["accounts"]] == ["100", "<admin>"]
    # countries from the GeoIP database (unknown where it has none)
    assert {r["source"]: r["country"] for r in report["sources"]} == {
        "203.0.113.7": "XA", "198.51.100.9": "XB", "192.0.3.5": "unknown"
    }  # fmt: skip
    assert report["week"]["timezone"] == "Europe/Berlin" and sum(report["week"]["quiet"]) == 56
    assert report["notes"] == []

    html = out.read_text()
    for section in SECTIONS:
        assert f"<section id='{section}'>" in html, section
    images = re.findall(
        r"<img id='plot-(\w+)' alt='[^']*' src='data:image/png;base64,([^']+)'", html
    )
    assert {name for name, _ in images} == set(SECTIONS) - {"summary"}
    for name, data in images:
        png = base64.b64decode(data)
        width, height = png_size(png)
        with Image.open(io.BytesIO(png)) as image:
            image.load()  # decodes every pixel
            assert image.format == "PNG" and image.size == (width, height), name
            assert width >= 400 and height >= 100, name
            darkest, lightest = image.convert("L").getextrema()
            assert lightest - darkest > 100, f"{name}: a blank image"
    # self-contained, attacker text escaped
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&lt;admin&gt;" in html


def test_without_a_country_database_countries_are_unknown_and_a_note_says_why(
    config: Path,
) -> None:
    text = config.read_text().replace('database = "countries.mmdb"', "")
    config.write_text(text)
    report = json.loads(run("report", "-c", str(config), "--json"))
    assert {r["country"] for r in report["countries"]} == {"unknown"}
    assert report["notes"] == ["countries unknown: no [intel.geoip] database or zones configured"]


def test_an_unreadable_store_is_one_line_and_a_bad_since_names_the_option(tmp_path: Path) -> None:
    (tmp_path / "store.db").write_text("not a database")
    config = tmp_path / "c.toml"
    config.write_text('[storage]\npath = "store.db"\n[control]\nsocket = "none.sock"\n')
    result = CliRunner().invoke(main, ["report", "-c", str(config)])
    assert result.exit_code == 1 and "store.db" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    result = CliRunner().invoke(main, ["report", "-c", str(config), "--since", "last week"])
    assert result.exit_code == 2 and "--since" in result.output
