"""Reloading a running `sipwarden run` (two workers): `sipwarden reload` and
SIGHUP put new rules in force in every worker without a restart, a broken
rule file is refused and the old rules stay, and `sipwarden rules list`
shows the hits summed over the workers."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from sipwarden.sip import parse

from ..conftest import free_udp_port, start_edge_process
from .harness import register_request, registrar_thread

BLOCK_100 = '[[rule]]\nid = "block-100"\ndescription = "ext 100 is retired"\nmatch = { "from.user" = "100" }\n'
BLOCK_200 = '[[rule]]\nid = "block-200"\nmatch = { "from.user" = "200" }\n'


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipwarden.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def answered(port: int, user: str, sources: int = 12) -> int:
    """How many of ``sources`` phones (distinct source ports, so both workers
    see some) get an answer to a REGISTER as ``user`` within half a second."""
    phones = []
    for n in range(sources):
        phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        phone.bind(("127.0.0.1", 0))
        phone.sendto(
            register_request(user, port=phone.getsockname()[1], cseq=n + 1), ("127.0.0.1", port)
        )
        phones.append(phone)
    count, deadline = 0, time.monotonic() + 0.5
    try:
        for phone in phones:
            phone.settimeout(max(0.01, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                count += parse(phone.recv(65535)).status == 401
    finally:
        for phone in phones:
            phone.close()
    return count


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_reload_and_sighup_swap_the_rules_in_every_worker(tmp_path: Path):
    rules = tmp_path / "local.toml"
    rules.write_text(BLOCK_100)
    config = tmp_path / "edge.toml"
    with registrar_thread() as (backend_port, _seen):
        port = free_udp_port()
        # every phone here is 127.0.0.1, and they send more REGISTERs in a
        # second than the rate limit lets one address send: limits off
        proc, line = start_edge_process(
            tmp_path,
            port,
            backend_port,
            workers=2,
            extra='[policy]\nrule_files = ["local.toml"]\n[limits]\nenabled = false\n',
        )
        try:
            assert b"2 workers" in line
            assert answered(port, "100") == 0
            assert answered(port, "200") == 12

            # `rules list` while the daemon runs: hits summed over both workers
            listed = cli("rules", "list", "-c", str(config), "--json")
            assert listed.returncode == 0, listed.stderr
            rows = {row["id"]: row for row in json.loads(listed.stdout)}
            assert rows["block-100"]["hits"] == 12
            assert rows["block-100"]["description"] == "ext 100 is retired"
            assert "ua.friendly-scanner" in rows and rows["ua.friendly-scanner"]["hits"] == 0

            # a new rule through `sipwarden reload`
            rules.write_text(BLOCK_200)
            done = cli("reload", "-c", str(config))
            assert done.returncode == 0, done.stderr
            assert "rules in force" in done.stdout
            assert wait_until(lambda: answered(port, "100") == 12)
            assert answered(port, "200") == 0

            # a broken file is refused with the file, rule and field; the old rules stay
            rules.write_text('[[rule]]\nid = "bad"\nmatch = { "from.usr" = "1" }\n')
            refused = cli("reload", "-c", str(config))
            assert refused.returncode == 1
            assert "local.toml: rule bad.match.from.usr: unknown field" in refused.stderr
            assert "old rules stay in force" in refused.stderr
            assert answered(port, "200") == 0 and answered(port, "100") == 12

            # SIGHUP to the main process: it reloads and passes it on to the worker
            rules.write_text(BLOCK_100)
            proc.send_signal(signal.SIGHUP)
            assert wait_until(lambda: answered(port, "100") == 0)
            assert answered(port, "200") == 12
            assert proc.poll() is None
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
    assert not (tmp_path / "sipwarden.sock").exists()


def test_commands_say_when_no_daemon_runs(tmp_path: Path):
    config = tmp_path / "edge.toml"
    config.write_text(f'[control]\nsocket = "{tmp_path / "none.sock"}"\n')
    done = cli("reload", "-c", str(config))
    assert done.returncode == 1
    assert f"no sipwarden daemon is listening on {tmp_path / 'none.sock'}" in done.stderr
    listed = cli("rules", "list", "-c", str(config))
    assert listed.returncode == 0
    assert "daemon not running: no hit counts" in listed.stdout
    assert "ua.friendly-scanner" in listed.stdout


def test_a_second_daemon_does_not_steal_a_running_ones_control_socket(tmp_path: Path):
    with registrar_thread() as (backend_port, _seen):
        first, line = start_edge_process(tmp_path, free_udp_port(), backend_port)
        try:
            assert b"listening" in line
            config = tmp_path / "second.toml"  # another port, the same control socket
            config.write_text(
                f'[edge]\nlisten = ["udp:127.0.0.1:{free_udp_port()}"]\n'
                f'backend = "udp:127.0.0.1:{backend_port}"\n'
                f'flow_key_file = "{tmp_path / "flow.key"}"\n'
                f'[control]\nsocket = "{tmp_path / "sipwarden.sock"}"\n'
            )
            second = cli("run", "-c", str(config))
            assert second.returncode == 1
            assert "another sipwarden is running with this control socket" in second.stderr
            assert cli("rules", "list", "-c", str(config), "--json").returncode == 0
            assert first.poll() is None
            assert cli("reload", "-c", str(config)).returncode == 0  # still the first one's
        finally:
            first.send_signal(signal.SIGTERM)
            assert first.wait(timeout=15) == 0
