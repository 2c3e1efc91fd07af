"""`sipwarden demo`, run as a user runs it: on loopback, by itself, to the end."""

from __future__ import annotations

import ipaddress
import json
import os
import select
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

import httpx
import pytest

from sipwarden.demo.cast import ENUMERATOR, GUESSER, PHONE, PROBES, USERS, probe_bytes

from .conftest import SCANNERS


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    # the timeout is a bound on a hung demo, not a speed test
    return subprocess.run(
        [sys.executable, "-m", "sipwarden.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_demo_json_summary():
    out = demo("--json")
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout)  # nothing but the JSON on stdout
    assert summary["ok"] is True and summary["problems"] == []

    # every scanner probe was dropped silently, by a scanner verdict
    assert len(summary["scanners"]) == len(PROBES) >= 6
    for probe in summary["scanners"]:
        assert probe["answers"] == 0, probe
        assert probe["verdict"].startswith("drop:scan."), probe
    assert {p["transport"] for p in summary["scanners"]} == {"udp", "tcp"}

    # the enumerator saw the same 401 for every user until it was banned
    enum = summary["enumerator"]
    assert enum["source"] == ENUMERATOR
    assert enum["banned"] and enum["detector"] in ("enum.not-found", "enum.users")
    assert set(enum["answers"]) == {"401"} and enum["unanswered"] > 0
    assert enum["pbx_404s_made_uniform"] == enum["answers"]["401"]
    answered = [r for r in enum["requests"] if r["answer"] is not None]
    silent = [r for r in enum["requests"] if r["answer"] is None]
    assert all(r["verdict"] == "drop:banned" for r in silent)
    assert enum["requests"].index(silent[0]) == len(answered)  # silence only after the ban

    # the guesser was banned for brute force before its 7th guess, the real password
    guess = summary["guesser"]
    assert guess["source"] == GUESSER
    assert guess["banned"] and guess["detector"] == "auth.brute-force"
    assert not guess["found_password"] and not guess["real_password_reached_pbx"]
    failed = [r for r in guess["requests"] if r["with_credentials"] and r["answer"] == 401]
    assert len(failed) == 5
    real = next(r for r in guess["requests"] if r["real_password"])
    assert real["password"] == USERS[guess["user"]]
    assert real["answer"] is None and real["verdict"] == "drop:banned"

    # the phone, on the account under attack, registered every time
    phone = summary["phone"]
    assert phone["source"] == PHONE and phone["user"] == guess["user"]
    assert phone["attempts"] >= 3 and phone["registered"] == phone["attempts"]

    # the ban store, the API and the counters agree with what the actors saw
    assert {b["ip"]: b["detector"] for b in summary["bans"]} == {
        ENUMERATOR: enum["detector"],
        GUESSER: "auth.brute-force",
    }
    api = summary["api"]
    assert api["answered"] and api["bans"] == 2
    parts = urlsplit(api["url"])
    assert parts.scheme == "http" and parts.path == "/api/v1"
    assert ipaddress.ip_address(parts.hostname or "").is_loopback
    for listener in summary["edge"]["listen"]:
        assert ipaddress.ip_address(listener.rsplit(":", 1)[0].split(":", 1)[1]).is_loopback
    verdicts = summary["verdicts"]
    assert verdicts["drop:banned"] == len(silent) + sum(
        1 for r in guess["requests"] if r["answer"] is None
    )
    assert sum(v for k, v in verdicts.items() if k.startswith("drop:scan.")) == len(PROBES)
    assert summary["edge_counters"]["answers-made-uniform"] == enum["pbx_404s_made_uniform"]


def test_demo_plain_output():
    out = demo()
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    for phrase in (
        "sipwarden demo",
        "dropped: scan.nmap-options-probe",
        "dropped: scan.sipvicious-tag",
        f"banned {ENUMERATOR}",
        "enum.not-found",
        f"banned {GUESSER}",
        "auth.brute-force",
        "it never reached the PBX",
        "registered",
        "Bans in force",
        "/api/v1/bans",
        "curl http://127.0.0.1:",
        "as expected",
        "The dashboard: http://127.0.0.1:",
        "`sipwarden demo --hold` keeps it up until Ctrl-C",
    ):
        assert phrase in text, phrase
    assert "Traceback" not in out.stderr


def test_probes_are_the_captured_bytes():
    """The demo replays the real captures, unchanged."""
    for probe in PROBES:
        assert probe_bytes(probe) == (SCANNERS / "captured" / probe.file).read_bytes()


def test_demo_hold_keeps_the_api_up_until_sigterm():
    """`demo --hold` (no seconds): the summary names the dashboard, then the
    edge and its API stay up until SIGTERM, and the demo ends cleanly."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipwarden.cli", "demo", "--hold", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        out = b""
        deadline = time.monotonic() + 60  # a bound on a hung demo, not a speed test
        while not out.endswith(b"\n}\n"):  # the summary's JSON, printed before holding
            left = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([proc.stdout], [], [], left)
            assert ready, f"the demo printed no summary in 60 s: {out!r}"
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"the demo ended before its summary: {out!r}"
            out += chunk
        summary = json.loads(out)
        assert summary["ok"] is True, summary["problems"]
        api = summary["api"]["url"]
        assert summary["dashboard"] == api.removesuffix("api/v1")
        assert urlsplit(summary["dashboard"]).path == "/"
        page = httpx.get(summary["dashboard"], timeout=5)  # the URL it points at is the dashboard
        assert page.status_code == 200 and 'src="/static/app.js"' in page.text, page.text[:300]
        for _ in range(3):  # held: it keeps answering, with the demo's bans
            bans = httpx.get(f"{api}/bans", timeout=5)
            assert bans.status_code == 200 and len(bans.json()) == 2
            assert proc.poll() is None
            time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{api}/bans", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
