"""The operator's intel commands as an operator runs them (subprocesses):
`intel sync` against the APIBAN mock (paged under the rate limit, then
only the new entries, a refused key), `intel lookup` and `status` with no
daemon; and two sipwardens: one reads the other's bans as a feed over the
REST export, and answers /api/v1/intel and lookups."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from ..conftest import free_udp_port, start_edge_process
from ..test_bans_daemon import api_url, stop
from .mock_apiban import mock_thread

KEY = "s3cr3t-k3y-0123456789"


def sipwarden(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipwarden.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def as_json(*args: str) -> Any:
    done = sipwarden(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def write_config(tmp_path: Path, base: str, key: str = KEY) -> str:
    (tmp_path / "list.txt").write_text("198.51.100.0/24\n")
    config = tmp_path / "edge.toml"
    config.write_text(
        f"""
[storage]
path = "sipwarden.db"
[control]
socket = "none.sock"
[intel.apiban]
key = "{key}"
url = "{base}"
rate_window = "1s"
[[intel.feeds]]
name = "local"
path = "list.txt"
"""
    )
    return str(config)


def test_intel_sync_pages_then_fetches_only_the_new(tmp_path: Path) -> None:
    with mock_thread(key=KEY, rate_window=1.0) as mock:
        start = int(time.time()) - 3600
        for i in range(600):
            mock.add(f"45.3.{i // 250}.{i % 250 + 1}", start + i)
        c = write_config(tmp_path, mock.base)
        first = {o["feed"]: o for o in as_json("intel", "sync", "-c", c)}
        assert first["apiban:sip"]["ok"] and first["apiban:sip"]["entries"] == 600
        assert first["apiban:sip"]["requests"] == 4  # three pages and the end of the list
        assert first["local"] == {
            **first["local"],
            "ok": True,
            "entries": 1,
            "error": None,
            "bad_lines": 0,
        }
        for i in range(10):
            mock.add(f"45.4.0.{i + 1}", start + 1000 + i)
        asked = len(mock.requests)
        (again,) = as_json("intel", "sync", "--feed", "apiban:sip", "-c", c)
        assert (again["added"], again["entries"]) == (10, 610)
        assert mock.ids_asked()[asked] == str(start + 600)  # on from where it stopped
        assert mock.max_in_window <= 11 and mock.rate_limited == 0

        status = as_json("status", "-c", c)
        assert status["running"] is False
        feeds = {f["feed"]: f for f in status["intel"]["feeds"]}
        assert feeds["apiban:sip"]["entries"] == 610 and feeds["local"]["entries"] == 1
        looked = as_json("intel", "lookup", "45.4.0.3", "-c", c)
        assert looked["verdict"] == "drop (intel.apiban-sip)"
        # APIBAN's own time: its IDs are times, one per page (not the sync's clock)
        assert start + 1000 <= looked["listed"][0]["first_seen"] <= start + 1010

        text = sipwarden("intel", "lookup", "198.51.100.77", "-c", c)
        assert text.returncode == 0
        assert "198.51.100.77: drop (intel.local)" in text.stdout
        assert "local lists 198.51.100.0/24 since" in text.stdout

        unknown = sipwarden("intel", "sync", "--feed", "nope", "-c", c)
        assert unknown.returncode == 2
        assert "not a configured feed: nope (configured: apiban:sip, local)" in unknown.stderr
        bad = sipwarden("intel", "lookup", "not-an-ip", "-c", c)
        assert bad.returncode == 2 and "'not-an-ip' is not an IP address" in bad.stderr


def test_a_refused_key_is_reported_and_the_list_kept(tmp_path: Path) -> None:
    with mock_thread(key=KEY, rate_window=1.0) as mock:
        mock.add("45.5.0.1", int(time.time()) - 60)
        good = write_config(tmp_path, mock.base)
        assert as_json("intel", "sync", "-c", good)[0]["entries"] == 1
        wrong = "wr0ng-k3y-9876543210"
        bad = write_config(tmp_path, mock.base, key=wrong)
        done = sipwarden("intel", "sync", "--feed", "apiban:sip", "-c", bad)
        assert done.returncode == 1
        assert "refused the key" in done.stderr and "1 entries kept" in done.stderr
        assert wrong not in done.stderr + done.stdout
        (feed, _) = as_json("status", "-c", bad)["intel"]["feeds"]
        assert feed["entries"] == 1 and "refused the key" in feed["last_error"]


def test_no_feed_configured_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(f'[storage]\npath = "{tmp_path / "db"}"\n')
    env = {k: v for k, v in __import__("os").environ.items() if k != "SIPWARDEN_APIBAN_KEY"}
    done = sipwarden("intel", "sync", "-c", str(config), env=env)
    assert done.returncode == 2 and "no feed is configured" in done.stderr


def test_one_sipwarden_reads_anothers_bans_as_a_feed(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    proc, line = start_edge_process(
        first,
        free_udp_port(),
        free_udp_port(),
        extra='[api]\nlisten = "127.0.0.1:0"\ntoken = "t0k-0123456789abcdef"\n',
    )
    other = None
    try:
        api = api_url(line)
        a = httpx.Client(base_url=api, headers={"Authorization": "Bearer t0k-0123456789abcdef"})
        for ban in (
            {"ip": "203.0.113.0/28", "for": "1h"},
            {"ip": "2001:db8::66", "permanent": True},
        ):
            assert a.post("/api/v1/bans", json=ban).status_code == 201
        feed = (
            f'[[intel.feeds]]\nname = "edge-a"\nurl = "{api}/api/v1/export/bans.txt"\n'
            'refresh = "1s"\nheaders = { Authorization = "Bearer t0k-0123456789abcdef" }\n'
            '[api]\nlisten = "127.0.0.1:0"\n'
        )
        other, other_line = start_edge_process(second, free_udp_port(), free_udp_port(), extra=feed)
        b = httpx.Client(base_url=api_url(other_line))

        def feeds() -> list[dict[str, Any]]:
            return b.get("/api/v1/intel").json()["feeds"]  # type: ignore[no-any-return]

        for _ in range(100):  # at most 10 s
            if feeds()[0]["in_force"] == 2:
                break
            time.sleep(0.1)
        (shown,) = feeds()
        assert shown["in_force"] == 2 and shown["last_error"] is None, shown
        assert "t0k-0123456789abcdef" not in json.dumps(b.get("/api/v1/status").json())
        looked = b.get("/api/v1/intel/lookup/203.0.113.9").json()
        assert looked["verdict"] == "drop (intel.edge-a)"
        assert looked["listed"][0]["target"] == "203.0.113.0/28"
        assert b.get("/api/v1/intel/lookup/nope").status_code == 400
        # a ban lifted on A leaves B's list at its next refresh
        assert a.delete("/api/v1/bans/2001:db8::66").status_code == 200
        for _ in range(100):
            if feeds()[0]["in_force"] == 1:
                break
            time.sleep(0.1)
        assert feeds()[0]["in_force"] == 1
    finally:
        if other is not None:
            stop(other)
        stop(proc)
