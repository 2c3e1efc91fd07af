"""`sipwarden run` with a config it cannot start with: one line on stderr
naming the key, the value and what to do, a non-zero exit, no traceback
(issue 14, item 6). Each test runs the real command, as an operator does."""

from __future__ import annotations

import errno
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import free_udp_port


def config(tmp_path: Path, text: str = "", *, listen: str = "", edge: str = "") -> Path:
    """A config whose files all live in tmp_path: an edge on a free UDP port
    (or ``listen``) with ``edge`` added to its table, then ``text``."""
    listen = listen or f"udp:127.0.0.1:{free_udp_port()}"
    control = "" if "[control]" in text else '[control]\nsocket = "sipwarden.sock"\n'
    api = "" if "[api]" in text else '[api]\nlisten = ""\n'
    path = tmp_path / "edge.toml"
    path.write_text(f'[edge]\nlisten = ["{listen}"]\n{edge}{control}{api}{text}')
    return path


def refused(path: Path, *lines: str) -> str:
    """Run `sipwarden run -c path`: it must stop at once with exit 1 (2 for
    a bad policy) and say it in one line on stderr holding every one of
    ``lines``; returns that line."""
    done = subprocess.run(
        [sys.executable, "-m", "sipwarden.cli", "run", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode in (1, 2), done
    assert "Traceback" not in done.stderr, done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("sipwarden: ")]
    assert len(said) == 1, done.stderr
    for words in lines:
        assert words in said[0], (words, said[0])
    return said[0]


def test_storage_path_in_a_missing_directory(tmp_path):
    where = tmp_path / "nodir" / "sipwarden.db"
    refused(
        config(tmp_path, f'[storage]\npath = "{where}"\n'),
        f"storage.path = '{where}'",
        f"the directory '{tmp_path / 'nodir'}' does not exist",
        "create it",
    )


def test_storage_path_on_a_directory(tmp_path):
    (tmp_path / "db").mkdir()
    refused(
        config(tmp_path, '[storage]\npath = "db"\n'),
        f"storage.path = '{tmp_path / 'db'}': is a directory",
        f"'{tmp_path / 'db' / 'sipwarden.db'}'",
    )


def test_a_rule_file_that_is_not_utf8(tmp_path):
    (tmp_path / "local.toml").write_bytes(b'[[rule]]\nid = "caf\xe9"\n')  # Latin-1
    refused(
        config(tmp_path, '[policy]\nrule_files = ["local.toml"]\n'),
        "policy.rule_files",
        str(tmp_path / "local.toml"),
        "not UTF-8",
        "0xe9",
        "save the file as UTF-8",
    )


def test_a_flow_key_file_shorter_than_16_bytes(tmp_path):
    (tmp_path / "flow.key").write_bytes(b"short")
    refused(
        config(tmp_path, edge='flow_key_file = "flow.key"\n'),
        f"edge.flow_key_file = '{tmp_path / 'flow.key'}'",
        "holds 5 bytes",
        "at least 16",
        "delete the file",
    )
    assert (tmp_path / "flow.key").read_bytes() == b"short"  # never replaced behind one's back


def test_a_missing_tls_certificate(tmp_path):
    (tmp_path / "key.pem").write_text("a key\n")
    line = refused(
        config(
            tmp_path,
            listen=f"tls:127.0.0.1:{free_udp_port()}",
            edge='tls_certificate = "cert.pem"\ntls_key = "key.pem"\n',
        ),
        f"edge.tls_certificate = '{tmp_path / 'cert.pem'}': no such file",
        "give the PEM certificate",
    )
    assert "tls_key" not in line  # it is there: not named


def test_a_tls_key_that_does_not_match_the_certificate(tmp_path):
    from ..edge.test_edge import make_certificate

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cert, _ = make_certificate(tmp_path / "a")
    _, key = make_certificate(tmp_path / "b")
    refused(
        config(
            tmp_path,
            listen=f"tls:127.0.0.1:{free_udp_port()}",
            edge=f'tls_certificate = "{cert}"\ntls_key = "{key}"\n',
        ),
        f"edge.tls_certificate = '{cert}', edge.tls_key = '{key}'",
        "KEY_VALUES_MISMATCH",
    )


def test_a_control_socket_in_a_missing_directory(tmp_path):
    where = tmp_path / "run" / "sipwarden.sock"
    refused(
        config(tmp_path, f'[control]\nsocket = "{where}"\n'),
        f"control.socket = '{where}'",
        f"the directory '{tmp_path / 'run'}' does not exist",
    )


def test_a_control_socket_path_too_long_for_a_unix_socket(tmp_path):
    where = tmp_path / ("s" * 120)
    refused(
        config(tmp_path, f'[control]\nsocket = "{where}"\n'),
        f"control.socket = '{where}'",
        "at most 107",
    )


def not_on_this_machine() -> str:
    """A documentation address this machine does not hold (tests elsewhere
    may give one to an interface, so ask the kernel)."""
    for address in ("192.0.2.254", "198.51.100.254", "203.0.113.254"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((address, 0))
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    return address
    pytest.fail("every documentation address is on this machine")


def test_a_listen_address_not_on_this_machine(tmp_path):
    address = not_on_this_machine()
    refused(
        config(tmp_path, listen=f"udp:{address}:5060"),
        f"edge.listen[0] = 'udp:{address}:5060': cannot listen",
        "not one of this machine's",
    )


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_listen_port_in_use(tmp_path, transport):
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as holder:
        holder.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            holder.listen(1)
        port = holder.getsockname()[1]
        refused(
            config(tmp_path, listen=f"{transport}:127.0.0.1:{port}"),
            f"edge.listen[0] = '{transport}:127.0.0.1:{port}': cannot listen",
            "Address already in use",
            "choose another port",
        )


def test_every_problem_is_a_line_of_its_own(tmp_path):
    from sipwarden.config import load_config
    from sipwarden.daemon.preflight import problems

    path = config(
        tmp_path,
        '[storage]\npath = "nodir/x.db"\n[control]\nsocket = "nodir/x.sock"\n',
    )
    found = problems(load_config(path))
    assert [line.split(" = ")[0] for line in found] == ["storage.path", "control.socket"]
    assert all("\n" not in line for line in found)


def started(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipwarden.cli", "run", "-c", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    if not ready:
        proc.kill()
        pytest.fail("sipwarden run printed nothing in 15 s")
    assert "listening" in proc.stdout.readline()
    return proc


def stopped(proc: subprocess.Popen[str]) -> str:
    """SIGTERM it; its stderr (the log)."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    return err


def test_a_backend_that_refuses_connections_is_named_and_the_edge_still_starts(tmp_path):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    # it connects before it says it listens: the line is logged by then
    log = stopped(started(config(tmp_path, edge=f'backend = "tcp:127.0.0.1:{port}"\n')))
    (line,) = [line for line in log.splitlines() if "edge.backend" in line]
    assert f"edge.backend = 'tcp:127.0.0.1:{port}': cannot connect (Connection refused)" in line
    assert "WARNING" in line and "tries again" in line


def test_an_api_port_in_use_is_named_and_the_edge_still_starts(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        proc = started(config(tmp_path, f'[api]\nlisten = "127.0.0.1:{port}"\n'))
        log = stopped(proc)
    (line,) = [line for line in log.splitlines() if "api.listen" in line]
    assert f"api.listen = '127.0.0.1:{port}': cannot listen (Address already in use)" in line
    assert "sipwarden runs without the API" in line


def test_a_second_daemon_on_the_same_config_says_the_first_is_running(tmp_path):
    path = config(tmp_path)
    first = started(path)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "sipwarden.cli", "run", "-c", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        stopped(first)
    assert second.returncode == 1 and "Traceback" not in second.stderr
    lines = second.stderr.splitlines()
    assert lines[0] == (
        f"sipwarden: cannot start: control.socket = '{tmp_path / 'sipwarden.sock'}': another"
        " sipwarden is running with this control socket: stop it, or give this one a control"
        " socket (and ports) of its own"
    )
    assert "edge.listen[0]" in lines[1] and "Address already in use" in lines[1]


def test_a_missing_cap_net_admin_is_named_with_the_way_to_grant_it(monkeypatch):
    """With the nftables enforcer (nft and conntrack are children: a non-root
    user's capability must be ambient) and with host mode's NFQUEUE."""
    from sipwarden.config import config_from_dict
    from sipwarden.daemon import preflight

    config = config_from_dict({"firewall": {"enforcer": "nftables"}})
    admin = 1 << preflight.CAP_NET_ADMIN
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(preflight, "capability_sets", lambda: (admin, admin))
    assert preflight.missing_capabilities(config, queue=True) == []
    monkeypatch.setattr(preflight, "capability_sets", lambda: (admin, 0))
    [line] = preflight.missing_capabilities(config)
    assert "firewall.enforcer = 'nftables'" in line and "not as an ambient capability" in line
    monkeypatch.setattr(preflight, "capability_sets", lambda: (0, 0))
    lines = preflight.missing_capabilities(config, queue=True)
    assert [line.split(":")[0] for line in lines] == [
        "host.enabled = true",
        "firewall.enforcer = 'nftables'",
    ]
    assert all(
        "lacks CAP_NET_ADMIN" in line and "sipwarden service install" in line for line in lines
    )
    none = config_from_dict({"firewall": {"enforcer": "none"}})
    assert preflight.missing_capabilities(none) == []
