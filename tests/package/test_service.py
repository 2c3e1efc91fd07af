"""The systemd unit shipped in the package, `sipwarden service install`,
the packaged config, and the readiness notifications (sd_notify)."""

from __future__ import annotations

import configparser
import grp
import os
import pwd
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sipwarden.api.token import token_file
from sipwarden.config import load_config
from sipwarden.daemon.readiness import notify
from sipwarden.service import ServiceError, packaged_config, plan, render_unit

from ..conftest import need

CAPABILITIES = "CAP_NET_ADMIN CAP_NET_BIND_SERVICE"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipwarden.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def service_section(unit: str) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string(unit)
    return dict(parser["Service"])


def test_the_unit_is_hardened_as_the_contract_says():
    unit = service_section(render_unit("/usr/local/bin/sipwarden", "sw", "sw", Path("/etc/s.toml")))
    assert unit["Type"] == "notify"
    assert unit["ExecStart"] == "/usr/local/bin/sipwarden run -c /etc/s.toml"
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["Restart"] == "on-failure"
    assert (unit["User"], unit["Group"]) == ("sw", "sw")
    assert unit["AmbientCapabilities"] == CAPABILITIES
    assert unit["CapabilityBoundingSet"] == CAPABILITIES
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert unit[key] == "yes", key
    assert unit["ProtectSystem"] == "strict"
    assert unit["StateDirectory"] == unit["RuntimeDirectory"] == "sipwarden"


def test_the_packaged_config_keeps_everything_it_writes_in_the_units_directories(tmp_path):
    """ProtectSystem=strict leaves /etc read-only: the store, the flow key, the
    API token and the control socket are under /var/lib/sipwarden and /run/sipwarden."""
    path = tmp_path / "sipwarden.toml"
    path.write_text(packaged_config())
    config = load_config(path)  # absolute paths stay as written
    state, runtime = Path("/var/lib/sipwarden"), Path("/run/sipwarden")
    assert config.storage.path.parent == state
    assert config.edge.flow_key_file.parent == state
    assert token_file(config).parent == state
    assert config.control.socket.parent == runtime
    assert config.firewall.enforcer == "nftables"


def test_systemd_analyze_verify_accepts_the_unit_and_refuses_a_broken_one(tmp_path):
    need(shutil.which("systemd-analyze") is not None, "systemd is not installed (systemd-analyze)")
    command = Path(sys.executable).parent / "sipwarden"  # it must exist: verify checks ExecStart
    need(command.exists(), f"{command} is not installed")
    good = tmp_path / "good" / "sipwarden.service"
    good.parent.mkdir()
    good.write_text(render_unit(str(command), "sipwarden", "sipwarden", Path("/etc/s.toml")))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(good)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "sipwarden.service" not in done.stderr, done.stderr  # no warning about our unit
    # the check can fail: a command that does not exist
    bad = tmp_path / "bad" / "sipwarden.service"
    bad.parent.mkdir()
    bad.write_text(good.read_text().replace(str(command), "/nonexistent/sipwarden"))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "/nonexistent/sipwarden" in done.stderr


def test_dry_run_prints_the_unit_and_changes_nothing(tmp_path):
    config = tmp_path / "etc" / "sipwarden.toml"
    done = cli(
        "service", "install", "--dry-run", "--unit-dir", str(tmp_path / "units"),
        "--config", str(config), "--user", "sw-not-here",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "# would create the system user 'sw-not-here' (useradd --system" in done.stdout
    assert f"# would write the config '{config}'" in done.stdout
    unit = done.stdout.split("[Unit]", 1)[1]
    assert service_section("[Unit]" + unit)["User"] == "sw-not-here"
    assert f"run -c {config}" in unit
    assert not (tmp_path / "units").exists() and not config.parent.exists()


def test_install_writes_the_unit_and_a_config_it_never_overwrites(tmp_path):
    need(os.geteuid() == 0, "the config is given to the service's group: needs root")
    config = tmp_path / "etc" / "sipwarden.toml"
    units = tmp_path / "units"
    args = ["service", "install", "--unit-dir", str(units), "--config", str(config)]
    done = cli(*args, "--user", "nobody")  # exists: no useradd
    assert done.returncode == 0, done.stderr
    unit = service_section((units / "sipwarden.service").read_text())
    assert unit["User"] == "nobody"
    gid = pwd.getpwnam("nobody").pw_gid
    assert unit["Group"] == grp.getgrgid(gid).gr_name
    assert config.read_text() == packaged_config()
    assert config.stat().st_mode & 0o777 == 0o640  # it may hold secrets: the group reads it
    assert config.stat().st_gid == gid
    config.write_text(packaged_config().replace("127.0.0.1:5080", "127.0.0.1:5070"))
    done = cli(*args, "--user", "nobody")
    assert done.returncode == 0, done.stderr
    assert "keep the config" in done.stdout
    assert "127.0.0.1:5070" in config.read_text()  # the operator's edit stays


def test_a_missing_user_is_created_with_useradd_system(tmp_path):
    """A stand-in useradd on PATH records what it is asked (the machine's
    accounts are not the test's to change)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    record = tmp_path / "useradd.args"
    (fake / "useradd").write_text(f'#!/bin/sh\necho "$@" > {record}\n')
    (fake / "useradd").chmod(0o755)
    config = tmp_path / "sipwarden.toml"
    config.write_text(packaged_config())  # exists: kept, so no group is looked up
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    done = cli(
        "service", "install", "--unit-dir", str(tmp_path / "units"),
        "--config", str(config), "--user", "sw-made-here", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    argv = record.read_text().split()
    assert argv[0] == "--system" and argv[-1] == "sw-made-here"
    assert "/usr/sbin/nologin" in argv
    assert "User=sw-made-here" in (tmp_path / "units" / "sipwarden.service").read_text()


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"user": "Bad User"}, "--user 'Bad User': not a system user name"),
        (
            {"config_path": Path("relative.toml")},
            "--config 'relative.toml': the unit needs an absolute path",
        ),
        ({"exec_start": "/root/.local/bin/sipwarden"}, "ProtectHome=yes"),
        ({"exec_start": "/home/ann/.local/bin/sipwarden"}, "pipx install"),
    ],
)
def test_a_setting_the_service_cannot_use_is_one_line_naming_it(kwargs, says):
    with pytest.raises(ServiceError) as caught:
        plan(**kwargs)
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------- readiness


def test_notify_sends_one_datagram_to_the_socket_systemd_names(tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert notify("READY=1", "STATUS=serving")
        assert server.recv(4096) == b"READY=1\nSTATUS=serving"


def test_notify_reaches_an_abstract_socket(monkeypatch):
    name = f"sipwarden-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("STOPPING=1")
        assert server.recv(4096) == b"STOPPING=1"


def test_notify_without_systemd_or_with_its_socket_gone_is_quiet(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not notify("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert not notify("READY=1")  # no exception: readiness never stops the daemon
