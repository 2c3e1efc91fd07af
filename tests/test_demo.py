"""`sipwarden demo`, run as a user runs it: on loopback, by itself, to the end."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from urllib.parse import urlsplit

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
    ):
        assert phrase in text, phrase
    assert "Traceback" not in out.stderr


def test_probes_are_the_captured_bytes():
    """The demo replays the real captures, unchanged."""
    for probe in PROBES:
        assert probe_bytes(probe) == (SCANNERS / "captured" / probe.file).read_bytes()
