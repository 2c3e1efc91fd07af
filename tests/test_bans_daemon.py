"""The ban book in the running daemon (`sipwarden run`, the built-in
registrar as the PBX): a password-guessing source is banned and stays
banned across a restart; operators list, show, add and remove bans with the
CLI and the REST API, which agree; a ban's expiry is honoured."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sipwarden.sip import parse
from sipwarden.sip.fields import parse_auth

from .conftest import free_udp_port, start_edge_process
from .edge.harness import UdpPhone, authorization, register_request, registrar_thread


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipwarden.cli", *args], capture_output=True, text=True, timeout=30
    )


def api_url(line: bytes) -> str:
    found = re.search(rb"API (http://[^/\s]+)/api/v1", line)
    assert found, line
    return found.group(1).decode()


def bearer(tmp_path: Path) -> dict[str, str]:
    """The header a state-changing request needs: the token the daemon made
    beside its store (``sipwarden.db``, as start_edge_process configures it)."""
    return {"Authorization": f"Bearer {(tmp_path / 'sipwarden.token').read_text().strip()}"}


def answered(phone: UdpPhone, port: int, user: str = "100", cseq: int = 1) -> bool:
    phone.send(register_request(user, port=phone.port, cseq=cseq), port)
    return phone.recv(0.5) is not None


def guess_passwords(attacker: UdpPhone, port: int, tries: int) -> None:
    attacker.send(register_request("100", port=attacker.port, cseq=1), port)
    challenge = attacker.recv(1.0)
    assert challenge is not None
    auth = parse_auth(parse(challenge).fields("www-authenticate")[0].value)
    wrong = authorization("100", auth).replace('response="', 'response="f')
    for cseq in range(2, 2 + tries):
        attacker.send(register_request("100", port=attacker.port, cseq=cseq, auth=wrong), port)
        attacker.recv(0.3)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


def test_bans_survive_a_restart_and_the_cli_and_api_agree(tmp_path: Path):
    port = free_udp_port()
    config = str(tmp_path / "edge.toml")
    with registrar_thread() as (backend, _):
        proc, line = start_edge_process(tmp_path, port, backend)
        phone, attacker = UdpPhone(), UdpPhone("127.0.0.2")
        try:
            api = api_url(line)
            guess_passwords(attacker, port, 6)
            assert not answered(attacker, port, cseq=50)
            assert answered(phone, port)

            listed = cli("bans", "list", "--json", "-c", config)
            assert listed.returncode == 0, listed.stderr
            bans = json.loads(listed.stdout)
            assert [b["ip"] for b in bans] == ["127.0.0.2"]
            ban = bans[0]
            assert ban["detector"] == "auth.brute-force"
            assert "failed logins for 100" in ban["reason"]
            assert ban["expires_at"] - ban["created_at"] == 600
            assert httpx.get(f"{api}/api/v1/bans").json() == bans  # the same array

            shown = cli("bans", "show", "127.0.0.2", "-c", config)
            assert "banned" in shown.stdout and "401 to REGISTER for 100" in shown.stdout

            # operators: the CLI through the daemon, and the API
            added = cli("bans", "add", "203.0.113.0/24", "--for", "1h", "-c", config)
            assert added.returncode == 0, added.stderr
            made = httpx.post(
                f"{api}/api/v1/bans",
                json={"ip": "198.51.100.9", "permanent": True, "reason": "known fraudster"},
                headers=bearer(tmp_path),
            )
            assert made.status_code == 201, made.text
            assert made.json()["expires_at"] is None
            refused = httpx.post(
                f"{api}/api/v1/bans", json={"ip": "not-an-address"}, headers=bearer(tmp_path)
            )
            assert refused.status_code == 400 and "not an IP" in refused.json()["error"]
            assert httpx.get(f"{api}/api/v1/bans/203.0.113.0/24").json()["banned"] is True
            before = json.loads(cli("bans", "list", "--json", "-c", config).stdout)
            assert {b["ip"] for b in before} == {"127.0.0.2", "203.0.113.0/24", "198.51.100.9"}
        finally:
            stop(proc)

        # restarted: the same bans, the same expiry; the attacker still gets nothing
        proc, line = start_edge_process(tmp_path, port, backend)
        try:
            after = json.loads(cli("bans", "list", "--json", "-c", config).stdout)
            assert after == before
            assert not answered(attacker, port, cseq=60)
            assert answered(phone, port, cseq=2)
            api = api_url(line)
            lifted = httpx.delete(f"{api}/api/v1/bans/127.0.0.2", headers=bearer(tmp_path))
            assert lifted.status_code == 200, lifted.text
            assert answered(attacker, port, cseq=61)
            again = httpx.delete(f"{api}/api/v1/bans/127.0.0.2", headers=bearer(tmp_path))
            assert again.status_code == 404
            removed = cli("bans", "remove", "203.0.113.0/24", "-c", config)
            assert removed.returncode == 0, removed.stderr
            left = json.loads(cli("bans", "list", "--json", "-c", config).stdout)
            assert [b["ip"] for b in left] == ["198.51.100.9"]
            history = json.loads(cli("bans", "show", "127.0.0.2", "--json", "-c", config).stdout)
            assert history["banned"] is False
            assert history["history"][0]["ended_at"] is not None
        finally:
            stop(proc)
            phone.close()
            attacker.close()


def test_a_bans_expiry_is_honoured(tmp_path: Path):
    port = free_udp_port()
    config = str(tmp_path / "edge.toml")
    with registrar_thread() as (backend, _):
        proc, _line = start_edge_process(tmp_path, port, backend)
        phone = UdpPhone("127.0.0.6")
        try:
            added = cli("bans", "add", "127.0.0.6", "--for", "2s", "-c", config)
            assert added.returncode == 0, added.stderr
            assert not answered(phone, port)
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline and not answered(phone, port, cseq=2):
                time.sleep(0.2)
            assert answered(phone, port, cseq=3)
            assert json.loads(cli("bans", "list", "--json", "-c", config).stdout) == []
            history = json.loads(cli("bans", "show", "127.0.0.6", "--json", "-c", config).stdout)
            ended = history["history"][0]
            assert ended["ended_at"] == ended["expires_at"]
        finally:
            stop(proc)
            phone.close()


def test_bans_added_with_no_daemon_are_enforced_when_it_starts(tmp_path: Path):
    port = free_udp_port()
    config = tmp_path / "edge.toml"
    with registrar_thread() as (backend, _):
        proc, _line = start_edge_process(tmp_path, port, backend)
        stop(proc)  # (wrote the config; the daemon is gone)
        added = cli("bans", "add", "127.0.0.7", "--permanent", "-c", str(config))
        assert added.returncode == 0, added.stderr
        assert "until never" in added.stdout
        bad = cli("bans", "add", "300.1.2.3", "-c", str(config))
        assert bad.returncode == 2 and "not an IP address or a CIDR" in bad.stderr
        for target in ("203.0.113.0/24", "203.0.113.9"):  # added, then lifted, offline
            assert cli("bans", "add", target, "--for", "1h", "-c", str(config)).returncode == 0
        assert cli("bans", "remove", "203.0.113.0/24", "-c", str(config)).returncode == 0
        gone = cli("bans", "remove", "203.0.113.0/24", "-c", str(config))
        assert gone.returncode == 1 and "203.0.113.0/24 is not banned" in gone.stderr
        listed = json.loads(cli("bans", "list", "--json", "-c", str(config)).stdout)
        assert {b["ip"] for b in listed} == {"127.0.0.7", "203.0.113.9"}
        proc, _line = start_edge_process(tmp_path, port, backend)
        phone = UdpPhone("127.0.0.7")
        try:
            assert not answered(phone, port)
        finally:
            stop(proc)
            phone.close()


def test_nftables_without_the_right_to_use_it_is_a_clear_error(tmp_path: Path):
    import os
    import shutil

    from .conftest import need

    need(os.geteuid() == 0, "dropping CAP_NET_ADMIN needs root")
    need(shutil.which("setpriv") is not None, "setpriv is not installed (util-linux)")
    need(shutil.which("nft") is not None, "nftables is not installed (apt-get install nftables)")
    config = tmp_path / "edge.toml"
    config.write_text('[edge]\n[firewall]\nenforcer = "nftables"\n[api]\nlisten = ""\n')
    done = subprocess.run(
        [
            "setpriv",
            "--inh-caps=-all",
            "--bounding-set=-net_admin",
            sys.executable,
            "-m",
            "sipwarden.cli",
            "run",
            "-c",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1, done.stderr
    # said before anything starts (daemon/preflight.py), naming the capability and the ways out
    assert "lacks CAP_NET_ADMIN" in done.stderr
    assert "sipwarden service install" in done.stderr
    assert '[firewall] enforcer = "none"' in done.stderr
    assert "Traceback" not in done.stderr


def test_a_ban_added_offline_with_an_unreadable_country_database_is_a_clear_error(
    tmp_path: Path,
):
    """With no daemon, `bans add` arms the policy as the daemon would; a broken
    [intel.geoip] database is the daemon's one-line error naming the key, and
    nothing is stored."""
    bad = tmp_path / "not.mmdb"
    bad.write_bytes(b"not a database")
    config = tmp_path / "edge.toml"
    config.write_text(
        f'[storage]\npath = "{tmp_path / "bans.db"}"\n'
        f'[control]\nsocket = "{tmp_path / "none.sock"}"\n'
        f'[api]\nlisten = ""\n'
        f'[intel.geoip]\ndatabase = "{bad}"\nallow_countries = ["XA"]\n'
    )
    added = cli("bans", "add", "192.0.2.7", "-c", str(config))
    assert added.returncode == 1, added.stderr
    assert "Traceback" not in added.stderr
    assert "intel.geoip.database" in added.stderr and len(added.stderr.splitlines()) == 1
    listed = cli("bans", "list", "--json", "-c", str(config))
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
