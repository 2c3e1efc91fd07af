"""`sipwarden init` against the sample machines in tests/data/init (Asterisk
with PJSIP, Asterisk with chan_sip, FreePBX, FreeSWITCH, Kamailio): what it
finds, the configs it writes for each mode (they load and build a policy, as
`run` does), and the printed change, applied with patch(1) to a copy of the
tree, leaves nothing of the PBX on the public 5060. The sample files
themselves are never touched."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from sipwarden.cli import main
from sipwarden.config import Config, load_config
from sipwarden.policy import build_policy
from sipwarden.survey import look

from ..conftest import DATA, need

TREES = DATA / "init"
MACHINES = ["asterisk-pjsip", "asterisk-chansip", "freepbx", "freeswitch", "kamailio"]
HOST_KEYS = {"enabled", "ports", "tls_ports", "fail"}  # DESIGN.md's [host] contract


def digest(tree: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(tree.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(tree)).encode() + path.read_bytes())
    return h.hexdigest()


def init(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["init", *args], input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def loads_as_run_does(path: Path) -> Config | None:
    """The config loads and its policy builds (``run``'s checks before any
    port or file is touched). A [host] section this build does not know yet
    (host mode is merged separately) is checked against the contract instead;
    None then."""
    data = tomllib.loads(path.read_text())
    if "host" in data and "host" not in Config.model_fields:
        assert set(data["host"]) <= HOST_KEYS, data["host"]
        assert data["host"]["enabled"] is True
        assert "edge" not in data  # host mode: no edge on the PBX's port
        return None
    config = load_config(path)
    build_policy(config)
    return config


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("mode", ["edge", "host", "logwatch"])
def test_every_machine_and_mode_writes_a_config_run_accepts(
    machine: str, mode: str, tmp_path: Path
) -> None:
    before = digest(TREES / machine)
    out = tmp_path / "sipwarden.toml"
    code, stdout, stderr = init(
        "--root", str(TREES / machine), "--mode", mode, "--yes", "-o", str(out)
    )
    assert code == 0, stderr
    text = out.read_text()
    assert text.startswith("# sipwarden: written by `sipwarden init`")
    config = loads_as_run_does(out)
    if mode == "edge":
        assert config is not None
        assert stdout.startswith("--- a/etc/"), stdout  # the diff, alone on stdout
        assert config.edge.backend.host == "127.0.0.1"
        assert {ep.port for ep in config.edge.listen} == {5060}
        assert config.firewall.enforcer == "nftables"
    else:
        assert stdout == ""
        assert "needs no change" in stderr
    if mode == "logwatch":
        assert config is not None and config.logwatch.sources
        assert "edge" not in tomllib.loads(text)  # no edge on the PBX's port
    assert digest(TREES / machine) == before, "init changed the PBX's files"


def test_asterisk_pjsip_is_read() -> None:
    machine = look(TREES / "asterisk-pjsip")
    (pbx,) = machine.pbxs
    assert pbx.kind == "asterisk"
    assert {(ls.transport, ls.host, ls.port) for ls in pbx.listeners} == {
        ("udp", "0.0.0.0", 5060),
        ("tcp", "0.0.0.0", 5060),
        ("tls", "0.0.0.0", 5061),
    }
    assert pbx.external == "203.0.113.10"
    assert pbx.trunks == ("198.51.100.20", "198.51.100.21")  # identify match: trusted peers
    assert pbx.rtp_ports == (10000, 10999)
    # the security log, not messages too: one failure counted once
    assert [(log.format, log.path) for log in pbx.logs] == [
        ("asterisk-security", "/var/log/asterisk/security")
    ]
    assert any("tls on 0.0.0.0:5061 stays public" in note for note in pbx.notes)
    # /proc/net: the UDP socket and the listening TCP ones, not the connection
    assert {(s.transport, s.host, s.port) for s in machine.on_sip_ports()} == {
        ("udp", "0.0.0.0", 5060),
        ("tcp", "0.0.0.0", 5060),
        ("tcp", "0.0.0.0", 5061),
    }


def test_a_driver_modules_conf_does_not_load_is_left_out() -> None:
    (pbx,) = look(TREES / "asterisk-chansip").pbxs
    assert pbx.files == ("/etc/asterisk/sip.conf",)  # pjsip.conf is there, res_pjsip is not loaded
    assert {(ls.transport, ls.port) for ls in pbx.listeners} == {("udp", 5060), ("tcp", 5060)}
    assert pbx.external == "198.51.100.44"


def test_freepbx_is_told_apart_and_its_includes_read() -> None:
    (pbx,) = look(TREES / "freepbx").pbxs
    assert pbx.kind == "freepbx"
    assert "/etc/asterisk/pjsip.transports.conf" in pbx.files
    # chan_sip's options come in bare through an #include inside [general]
    assert ("udp", "0.0.0.0", 5160) in {(ls.transport, ls.host, ls.port) for ls in pbx.listeners}
    assert pbx.trunks == ("198.51.100.60/32",)
    assert any("5160 stays public" in note for note in pbx.notes)


def test_freeswitch_variables_are_expanded_and_the_new_port_avoids_5080(tmp_path: Path) -> None:
    (pbx,) = look(TREES / "freeswitch").pbxs
    assert {(ls.transport, ls.port) for ls in pbx.listeners} == {
        ("udp", 5060),
        ("tcp", 5060),
        ("udp", 5080),
        ("tcp", 5080),
    }
    assert pbx.external == "203.0.113.30"
    assert pbx.rtp_ports == (16384, 32768)
    out = tmp_path / "fs.toml"
    code, _, stderr = init("--root", str(TREES / "freeswitch"), "--yes", "-o", str(out))
    assert code == 0, stderr
    config = load_config(out)
    assert config.edge.backend.port == 5090  # the external profile keeps 5080


def test_kamailio_listens_and_aliases_are_read() -> None:
    (pbx,) = look(TREES / "kamailio").pbxs
    assert pbx.domains == ("sip.example.org",)
    assert pbx.external == "203.0.113.40"
    assert [log.journal for log in pbx.logs] == ["kamailio.service"]


def _listeners_after_patch(machine: str, tmp_path: Path) -> tuple[set[tuple[str, str, int]], str]:
    copy = tmp_path / machine
    shutil.copytree(TREES / machine, copy)
    code, diff, stderr = init(
        "--root", str(copy), "--mode", "edge", "--yes", "-o", str(tmp_path / "x.toml")
    )
    assert code == 0, stderr
    need(shutil.which("patch") is not None, "patch is not installed (apt-get install patch)")
    done = subprocess.run(
        ["patch", "-p1", "-d", str(copy)], input=diff, text=True, capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (pbx,) = look(copy).pbxs
    return {(ls.transport, ls.host, ls.port) for ls in pbx.listeners}, diff


@pytest.mark.parametrize(
    ("machine", "moved"),
    [
        ("asterisk-pjsip", {("udp", "127.0.0.1", 5080), ("tcp", "127.0.0.1", 5080)}),
        ("asterisk-chansip", {("udp", "127.0.0.1", 5080), ("tcp", "127.0.0.1", 5080)}),
        ("freepbx", {("udp", "127.0.0.1", 5080)}),
        ("freeswitch", {("udp", "127.0.0.1", 5090), ("tcp", "127.0.0.1", 5090)}),
        ("kamailio", {("udp", "127.0.0.1", 5080), ("tcp", "127.0.0.1", 5080)}),
    ],
)
def test_the_printed_change_moves_the_pbx_off_the_public_5060(
    machine: str, moved: set[tuple[str, str, int]], tmp_path: Path
) -> None:
    after, _ = _listeners_after_patch(machine, tmp_path)
    assert moved <= after
    public_5060 = {ls for ls in after if ls[2] == 5060}
    assert public_5060 == set(), public_5060


def test_the_asterisk_change_keeps_the_edge_in_the_path(tmp_path: Path) -> None:
    _, diff = _listeners_after_patch("asterisk-pjsip", tmp_path)
    added = {line[1:] for line in diff.splitlines() if line.startswith("+") and "=" in line}
    removed = {line[1:] for line in diff.splitlines() if line.startswith("-") and "=" in line}
    assert {"support_path=yes", "rewrite_contact=no", "local_net=127.0.0.0/8"} <= added
    assert "media_address=203.0.113.10" in added  # the SDP still names the public address
    assert "external_signaling_address=203.0.113.10" in removed
    # once, in the endpoints' template, not in each endpoint
    assert diff.count("+media_address=") == 2  # the phones' template and the trunk


def test_freepbx_says_where_to_make_the_change(tmp_path: Path) -> None:
    code, _, stderr = init(
        "--root", str(TREES / "freepbx"), "--mode", "edge", "--yes", "-o", str(tmp_path / "f.toml")
    )
    assert code == 0
    assert "FreePBX writes /etc/asterisk/pjsip.transports.conf itself" in stderr


def test_without_a_public_address_yes_names_the_flag(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/kamailio").mkdir(parents=True)
    (root / "etc/kamailio/kamailio.cfg").write_text('#!KAMAILIO\nloadmodule "sl.so"\n')
    code, _, stderr = init(
        "--root", str(root), "--mode", "edge", "--yes", "-o", str(tmp_path / "k.toml")
    )
    assert code == 2
    assert "--public-ip" in stderr
    code, diff, stderr = init(
        "--root", str(root), "--mode", "edge", "--yes", "--public-ip", "192.0.2.80",
        "-o", str(tmp_path / "k.toml"),
    )  # fmt: skip
    assert code == 0, stderr
    # Kamailio listened by default on every address: the listens are added
    assert "+listen=udp:127.0.0.1:5080" in diff and "+listen=tcp:127.0.0.1:5080" in diff
    assert load_config(tmp_path / "k.toml").edge.advertise == "192.0.2.80"


def test_it_asks_what_it_was_not_told(tmp_path: Path) -> None:
    out = tmp_path / "asked.toml"
    code, diff, stderr = init(
        "--root", str(TREES / "kamailio"), "-o", str(out), input="edge\n5095\n"
    )
    assert code == 0, stderr
    assert "Mode" in stderr and "new port" in stderr
    assert load_config(out).edge.backend.port == 5095
    assert "+listen=udp:127.0.0.1:5095" in diff
    # an existing file is not overwritten without a yes
    code, _, stderr = init("--root", str(TREES / "kamailio"), "-o", str(out), input="logwatch\nn\n")
    assert code == 1
    assert "overwrite" in stderr
    assert load_config(out).edge.backend.port == 5095


def test_nothing_found_suggests_logwatch_with_the_path_to_check(tmp_path: Path) -> None:
    out = tmp_path / "none.toml"
    code, _, stderr = init("--root", str(tmp_path), "--yes", "-o", str(out))
    assert code == 0, stderr
    assert "no PBX configuration found" in stderr
    assert "NOT FOUND on this machine" in out.read_text()
    assert load_config(out).logwatch.sources
    code, _, stderr = init("--root", str(tmp_path), "--mode", "edge", "--yes", "-o", str(out))
    assert code == 2 and "none was found" in stderr


def test_a_freeswitch_profile_without_sip_ip_is_bound_to_loopback(tmp_path: Path) -> None:
    copy = tmp_path / "fs"
    shutil.copytree(TREES / "freeswitch", copy)
    internal = copy / "etc/freeswitch/sip_profiles/internal.xml"
    internal.write_text(
        "\n".join(line for line in internal.read_text().splitlines() if '"sip-ip"' not in line)
    )
    (before,) = look(copy).pbxs
    assert ("udp", "0.0.0.0", 5060) in {(ls.transport, ls.host, ls.port) for ls in before.listeners}
    code, diff, stderr = init(
        "--root", str(copy), "--mode", "edge", "--yes", "-o", str(tmp_path / "f.toml")
    )
    assert code == 0, stderr
    assert '+    <param name="sip-ip" value="127.0.0.1"/>' in diff
    need(shutil.which("patch") is not None, "patch is not installed (apt-get install patch)")
    subprocess.run(
        ["patch", "-p1", "-d", str(copy)], input=diff, text=True, check=True, capture_output=True
    )
    (after,) = look(copy).pbxs
    assert ("udp", "127.0.0.1", 5090) in {
        (ls.transport, ls.host, ls.port) for ls in after.listeners
    }


def test_a_public_ip_that_is_no_address_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "k.toml"
    code, _, stderr = init(
        "--root", str(TREES / "kamailio"), "--yes", "--public-ip", "pbx example", "-o", str(out)
    )
    assert code == 2
    assert "'pbx example' is not an IP address" in stderr
    assert not out.exists()
