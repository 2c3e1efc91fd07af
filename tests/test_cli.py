"""The sipwarden command, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

from sipwarden import __version__

from .conftest import SCANNERS, TORTURE, free_udp_port, start_edge_process


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "sipwarden.cli", *args], input=stdin, capture_output=True, timeout=60
    )


def test_version_and_help():
    out = run("--version")
    assert out.returncode == 0 and __version__ in out.stdout.decode()
    out = run("--help")
    assert out.returncode == 0 and b"parse" in out.stdout
    out = run("parse", "--help")
    assert out.returncode == 0 and b"--stream" in out.stdout


def test_parse_valid_message_prints_json():
    out = run("parse", str(SCANNERS / "svcrack_0.3.8_REGISTER_auth_pw100.sip"))
    assert out.returncode == 0
    view = json.loads(out.stdout)
    assert view["valid"] is True
    assert view["method"] == "REGISTER"
    assert view["user_agent"] == "friendly-scanner"
    assert view["authorization"]["params"]["username"] == "100"
    assert view["via"][0]["branch"] == "z9hG4bK-1300158245"
    assert view["from"]["params"]["tag"] == "3130303a31303001393430373437383831"


def test_parse_from_stdin_and_non_utf8_values():
    out = run("parse", "-", stdin=(TORTURE / "escnull.dat").read_bytes())
    assert out.returncode == 0
    view = json.loads(out.stdout)
    assert [c["uri"]["user"] for c in view["contact"]] == ["\x00", "\x00\x00"]
    out = run("parse", str(TORTURE / "intmeth.dat"))
    assert out.returncode == 0, out.stderr


def test_parse_invalid_message_names_the_reason():
    out = run("parse", str(TORTURE / "mcl01.dat"))
    assert out.returncode == 1
    assert json.loads(out.stdout)["reason"] == "duplicate-content-length"
    assert b"duplicate-content-length" in out.stderr
    out = run("parse", str(TORTURE / "mismatch01.dat"))
    assert out.returncode == 1 and json.loads(out.stdout)["reason"] == "cseq-method-mismatch"


def test_parse_stream_mode_requires_content_length():
    out = run("parse", "--stream", str(TORTURE / "inv2543.dat"))
    assert out.returncode == 1
    assert json.loads(out.stdout)["reason"] == "missing-content-length"
    out = run("parse", "--lenient", str(TORTURE / "inv2543.dat"))
    assert out.returncode == 0


def test_run_serves_until_sigterm_and_names_bad_keys(tmp_path):
    import signal

    bad = tmp_path / "bad.toml"
    bad.write_text('[edge]\nlisten = ["udp:127.0.0.1:99999"]\n')
    out = run("run", "-c", str(bad))
    assert out.returncode == 2 and b"edge.listen[0]" in out.stderr and b"65535" in out.stderr

    port = free_udp_port()
    proc, line = start_edge_process(tmp_path, port, backend_port=9)
    try:
        assert f"udp:127.0.0.1:{port}".encode() in line
        assert (tmp_path / "flow.key").stat().st_mode & 0o777 == 0o600
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_explain_takes_an_ipv6_source_with_a_port():
    from click.testing import CliRunner

    from sipwarden.cli import main

    msg = SCANNERS / "svmap_0.3.8_OPTIONS.sip"
    expected = {
        "[2001:db8::7]:5070": "udp:2001:db8::7:5070",
        "2001:db8::7": "udp:2001:db8::7:5060",
        "192.0.2.7:5070": "udp:192.0.2.7:5070",
    }
    for source, shown in expected.items():
        result = CliRunner().invoke(main, ["explain", str(msg), "--source", source, "--json"])
        assert result.exit_code == 0, result.output
        said = json.loads(result.output)
        assert (said["source"], said["verdict"]) == (shown, "drop")
    result = CliRunner().invoke(main, ["explain", str(msg), "--source", "pbx.example.com"])
    assert result.exit_code == 2 and "is not an IP address" in result.output


def test_events_flows_and_analysis_read_the_store_with_no_daemon(tmp_path):
    import time as clock

    from sipwarden.observe import Event, FlowKey, FlowTable
    from sipwarden.store import ObserveStore

    now = clock.time()
    store = ObserveStore(tmp_path / "s.db")
    store.write_events(
        [Event(now - 60, "verdict", "203.0.113.4", "scan.x", (("verdict", "drop"),))]
    )
    table = FlowTable()
    table.record(FlowKey("203.0.113.4", 5070, "10.0.0.1", 5060, "udp"), now - 120, 300)
    store.write_flows(table.drain(now))
    store.close()
    config = tmp_path / "c.toml"
    config.write_text(f'[storage]\npath = "s.db"\n[control]\nsocket = "{tmp_path / "none.sock"}"\n')
    events = json.loads(run("events", "-c", str(config), "--json", "--since", "1h").stdout)
    assert [(e["source"], e["reason"], e["verdict"]) for e in events] == [
        ("203.0.113.4", "scan.x", "drop")
    ]
    assert json.loads(run("events", "-c", str(config), "--json", "--since", "30s").stdout) == []
    (flow,) = json.loads(run("flows", "-c", str(config), "--json").stdout)
    assert (flow["source_port"], flow["packets"], flow["bytes"]) == (5070, 1, 300)
    (line,) = run("flows", "-c", str(config), "--ipfix").stdout.decode().splitlines()
    assert json.loads(line)["sourceIPv4Address"] == "203.0.113.4"
    assert json.loads(run("analysis", "run", "-c", str(config), "--json").stdout) == []
    refused = run("events", "-c", str(config), "--since", "yesterday")
    assert refused.returncode == 2 and b"neither a duration" in refused.stderr


def test_honeypot_calls_and_export_read_the_store_with_no_daemon(tmp_path):
    import asyncio
    import time as clock
    from types import SimpleNamespace

    from sipwarden.config import config_from_dict
    from sipwarden.daemon.commands import run_command
    from sipwarden.store import HoneypotStore

    now = clock.time()
    store = HoneypotStore(tmp_path / "s.db")
    store.add(
        [
            {
                "source": "203.0.113.9",
                "number": "00972597562518",
                "count": 3,
                "first_seen": now - 90,
                "last_seen": now - 60,
                "user_agent": "friendly-scanner",
                "normalised": "+972597562518",
                "prefix": "00",
                "country": "PS",
            },
            {
                "source": "198.51.100.4",
                "number": "9011972597562518",
                "count": 1,
                "first_seen": now - 7200,
                "last_seen": now - 7200,
            },
        ]
    )
    store.close()
    config = tmp_path / "c.toml"
    config.write_text(f'[storage]\npath = "s.db"\n[control]\nsocket = "{tmp_path / "none.sock"}"\n')
    calls = json.loads(run("honeypot", "calls", "-c", str(config), "--json").stdout)
    assert [(c["source"], c["number"], c["count"]) for c in calls] == [
        ("203.0.113.9", "00972597562518", 3),
        ("198.51.100.4", "9011972597562518", 1),
    ]
    assert {"normalised", "prefix", "country", "user_agent", "first_seen", "last_seen"} <= set(
        calls[0]
    )
    recent = run("honeypot", "calls", "-c", str(config), "--json", "--since", "1h").stdout
    assert [c["source"] for c in json.loads(recent)] == ["203.0.113.9"]
    mine = run("honeypot", "calls", "-c", str(config), "--json", "--source", "198.51.100.4")
    assert [c["number"] for c in json.loads(mine.stdout)] == ["9011972597562518"]
    table = run("honeypot", "calls", "-c", str(config))
    assert table.returncode == 0 and b"2 honeypot call records" in table.stdout
    listed = run("honeypot", "export", "-c", str(config), "--format", "numbers")
    assert listed.stdout == b"+972597562518\n9011972597562518\n"
    out = tmp_path / "calls.jsonl"
    written = run("honeypot", "export", "-c", str(config), "-o", str(out))
    assert written.returncode == 0 and b"2 records written" in written.stderr
    assert [json.loads(line)["source_ip"] for line in out.read_text().splitlines()] == [
        "203.0.113.9",
        "198.51.100.4",
    ]
    # the daemon's command answers the same from the store, and names a bad argument
    daemon = SimpleNamespace(
        config=config_from_dict({"storage": {"path": str(tmp_path / "s.db")}}),
        honeypot=None,  # no records pending in this (stand-in) daemon
        ask_others=lambda request: asyncio.sleep(0, result=[]),
    )
    answer = asyncio.run(run_command(daemon, {"cmd": "honeypot-calls", "source": "203.0.113.9"}))
    assert answer["ok"] and [c["count"] for c in answer["calls"]] == [3]
    refused = asyncio.run(run_command(daemon, {"cmd": "honeypot-calls", "limit": 0}))
    assert not refused["ok"] and "limit" in refused["error"]
