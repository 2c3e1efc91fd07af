"""`sipwarden doctor` against setups the tests build in a network namespace:
a good one passes (exit 0), and each broken one (a port taken, the PBX
down or mute, no CAP_NET_ADMIN, the store read-only or missing, a bypass,
nft missing, a bad config key, a feed unreachable, APIBAN's key refused,
RTP dropped by the firewall) is found, its line names the fix, and the
exit code is 1.

The namespace (its veth address is the "public" one), Kamailio on its
loopback and the nftables rules are the test's own; doctor runs inside
with `ip netns exec`, under `setpriv` where a capability must be missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..conftest import need
from ..edge.kamailio import available as kamailio_available
from ..edge.kamailio import kamailio
from ..edge.netns import Namespace, in_namespace, namespace
from ..intel.mock_apiban import mock_thread

PORT = 5060  # the edge's, on the namespace's veth address


@dataclass
class Box:
    ns: Namespace
    pbx: int  # Kamailio's port, on the namespace's loopback
    tmp: Path


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    need(os.geteuid() == 0, "network namespaces and nftables need root")
    need(shutil.which("nft") is not None, "nftables is not installed (apt-get install nftables)")
    need(shutil.which("setpriv") is not None, "setpriv is not installed (util-linux)")
    need(kamailio_available(), "kamailio is not installed (apt-get install kamailio)")
    with namespace() as ns, kamailio(tmp_path_factory.mktemp("pbx"), netns=ns.name) as pbx:
        yield Box(ns, pbx, tmp_path_factory.mktemp("doctor"))


def config(box: Box, tmp: Path, extra: str = "", *, backend: str | None = None) -> Path:
    path = tmp / "edge.toml"
    path.write_text(
        f"""
[edge]
listen = ["udp:{box.ns.inside}:{PORT}"]
backend = "{backend or f"udp:127.0.0.1:{box.pbx}"}"
flow_key_file = "flow.key"

[firewall]
enforcer = "nftables"
table = "sipwarden"

[storage]
path = "bans.db"

[control]
socket = "sipwarden.sock"
{extra}
"""
    )
    return path


def doctor(
    box: Box, path: Path, *wrap: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, dict[str, Any]]]:
    """Run doctor in the namespace (inside ``wrap``: setpriv, env); its
    exit code and its checks by name (the JSON's shape is asserted too)."""
    argv = box.ns.command(
        *wrap,
        sys.executable,
        "-m",
        "sipwarden.cli",
        "doctor",
        "-c",
        str(path),
        "--json",
        "--timeout",
        "1",
    )
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})},
    )
    results = json.loads(done.stdout)
    assert isinstance(results, list) and results, done.stderr
    for r in results:
        assert {"check", "ok", "detail"} <= r.keys() and isinstance(r["ok"], bool)
        assert r["ok"] or r["fix"], r  # a failed check names its fix
    return done.returncode, {r["check"]: r for r in results}


def failed(checks: dict[str, dict[str, Any]]) -> set[str]:
    return {name for name, r in checks.items() if not r["ok"]}


def nft(box: Box, script: str) -> None:
    subprocess.run(
        box.ns.command("nft", "-f", "-"), input=script, text=True, check=True, timeout=10
    )


@pytest.fixture
def firewall(box: Box) -> Iterator[None]:
    """A table of the test's in the namespace, removed afterwards."""
    yield
    subprocess.run(box.ns.command("nft", "delete", "table", "inet", "filter"), capture_output=True)


def hold(box: Box, kind: int, host: str, port: int) -> socket.socket:
    """A socket in the namespace holding ``host:port`` (a program that is not sipwarden)."""

    def bind() -> socket.socket:
        sock = socket.socket(socket.AF_INET, kind)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(1)
        return sock

    return in_namespace(box.ns.name, bind)


# ------------------------------------------------------------ the good setup


def test_a_good_setup_passes_with_exit_0(box: Box, tmp_path: Path) -> None:
    """Kamailio behind the edge's config, nothing broken: every check passes
    (no feeds: that line is a skip); then, with `sipwarden run` holding the
    port, the port is found to be ours and it still passes."""
    path = config(box, tmp_path)
    code, checks = doctor(box, path)
    assert code == 0, checks
    assert not failed(checks)
    assert "answered OPTIONS" in checks["pbx"]["detail"]
    assert checks[f"port udp:{box.ns.inside}:{PORT}"]["detail"].endswith("free")
    assert {"nft binary", "CAP_NET_ADMIN", "nftables kernel", "store", "bypass", "rtp"} <= {
        n for n, r in checks.items() if r["status"] == "pass"
    }
    log = (tmp_path / "run.log").open("wb")
    run = subprocess.Popen(
        box.ns.command(sys.executable, "-m", "sipwarden.cli", "run", "-c", str(path)),
        stdout=subprocess.PIPE,
        stderr=log,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert run.stdout is not None
        line = run.stdout.readline().decode()  # "sipwarden: listening on ..."
        assert "listening on" in line, (tmp_path / "run.log").read_text()
        code, checks = doctor(box, path)
        assert code == 0, checks
        assert (
            "held by the sipwarden running" in checks[f"port udp:{box.ns.inside}:{PORT}"]["detail"]
        )
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=30)
        log.close()
        subprocess.run(
            box.ns.command("nft", "delete", "table", "inet", "sipwarden"), capture_output=True
        )


# ---------------------------------------------------------- broken setups


def test_bad_config_key(box: Box, tmp_path: Path) -> None:
    path = config(box, tmp_path, '[policy]\nmode = "watch"\n')
    code, checks = doctor(box, path)
    assert code == 1 and list(checks) == ["config"]
    assert "policy.mode" in checks["config"]["detail"] and "monitor" in checks["config"]["detail"]


def test_port_taken_by_another_program(box: Box, tmp_path: Path) -> None:
    sock = hold(box, socket.SOCK_DGRAM, box.ns.inside, PORT)
    try:
        code, checks = doctor(box, config(box, tmp_path))
    finally:
        sock.close()
    port = checks[f"port udp:{box.ns.inside}:{PORT}"]
    assert code == 1 and failed(checks) == {f"port udp:{box.ns.inside}:{PORT}"}
    assert "held by python" in port["detail"] and f"(pid {os.getpid()})" in port["detail"]
    assert "edge.listen[0]" in port["fix"]


def test_pbx_down(box: Box, tmp_path: Path) -> None:
    """Nothing on the backend's port (refused), then a PBX that never
    answers (a bound socket: no ICMP, no answer): both named."""
    down = f"udp:127.0.0.1:{box.pbx + 100}"
    code, checks = doctor(box, config(box, tmp_path, backend=down))
    assert code == 1 and "pbx" in failed(checks)
    assert f"edge.backend = '{down}'" in checks["pbx"]["detail"]
    assert "start the PBX" in checks["pbx"]["fix"]
    mute = hold(box, socket.SOCK_DGRAM, "127.0.0.1", box.pbx + 101)
    try:
        code, checks = doctor(box, config(box, tmp_path, backend=f"udp:127.0.0.1:{box.pbx + 101}"))
    finally:
        mute.close()
    assert code == 1
    assert "did not answer OPTIONS within 1 s" in checks["pbx"]["detail"]


def test_no_cap_net_admin(box: Box, tmp_path: Path) -> None:
    code, checks = doctor(box, config(box, tmp_path), "setpriv", "--bounding-set", "-net_admin")
    assert code == 1
    assert not checks["CAP_NET_ADMIN"]["ok"]
    assert "AmbientCapabilities=CAP_NET_ADMIN" in checks["CAP_NET_ADMIN"]["fix"]
    assert checks["nftables kernel"]["status"] == "skip"


def test_store_read_only(box: Box, tmp_path: Path) -> None:
    """Root without CAP_DAC_OVERRIDE meets the directory's mode like anyone."""
    store_dir = tmp_path / "state"
    store_dir.mkdir(mode=0o555)
    path = config(box, tmp_path, extra="")
    path.write_text(path.read_text().replace('path = "bans.db"', 'path = "state/bans.db"'))
    code, checks = doctor(box, path, "setpriv", "--bounding-set", "-dac_override,-dac_read_search")
    assert code == 1 and failed(checks) == {"store"}
    assert f"the directory {store_dir} is read-only" in checks["store"]["detail"]
    assert "storage.path" in checks["store"]["fix"]


def test_store_directory_missing(box: Box, tmp_path: Path) -> None:
    path = config(box, tmp_path)
    path.write_text(path.read_text().replace('path = "bans.db"', 'path = "gone/bans.db"'))
    code, checks = doctor(box, path)
    assert code == 1 and failed(checks) == {"store"}
    assert "does not exist" in checks["store"]["detail"]


def test_nft_missing_from_path(box: Box, tmp_path: Path) -> None:
    code, checks = doctor(box, config(box, tmp_path), "env", f"PATH={tmp_path}")
    assert code == 1
    assert "nft is not on PATH" in checks["nft binary"]["detail"]
    assert "apt-get install nftables" in checks["nft binary"]["fix"]


def test_bypass_open_then_limited(box: Box, tmp_path: Path, firewall: None) -> None:
    """The PBX's port bound on every address: open to scanners until a rule
    limits it to the edge."""
    port = box.pbx + 200
    pbx = hold(box, socket.SOCK_DGRAM, "0.0.0.0", port)
    try:
        path = config(box, tmp_path, backend=f"udp:127.0.0.1:{port}")
        code, checks = doctor(box, path)
        assert code == 1 and not checks["bypass"]["ok"]
        assert f"udp/{port} listens on 0.0.0.0" in checks["bypass"]["detail"]
        assert "ip saddr != 127.0.0.1 drop" in checks["bypass"]["fix"]
        nft(
            box,
            "table inet filter {\n chain input { type filter hook input priority 0; policy accept;"
            f" udp dport {port} ip saddr != 127.0.0.1 drop; }}\n}}\n",
        )
        code, checks = doctor(box, path)
        assert checks["bypass"]["ok"], checks["bypass"]
        assert "drops strangers" in checks["bypass"]["detail"]
    finally:
        pbx.close()


def test_rtp_closed_then_open(box: Box, tmp_path: Path, firewall: None) -> None:
    nft(
        box,
        "table inet filter {\n chain input { type filter hook input priority 0; policy drop;"
        f" iifname lo accept; udp dport {PORT} accept; }}\n}}\n",
    )
    path = config(box, tmp_path)
    code, checks = doctor(box, path)
    assert code == 1 and failed(checks) == {"rtp"}
    assert "udp/10000-20000 (RTP) is dropped" in checks["rtp"]["detail"]
    assert "udp dport 10000-20000 accept" in checks["rtp"]["fix"]
    nft(box, "add rule inet filter input udp dport 10000-20000 accept\n")
    code, checks = doctor(box, path)
    assert code == 0, checks


def test_feed_unreachable(box: Box, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{box.pbx + 300}/list.txt"
    path = config(box, tmp_path, f'[[intel.feeds]]\nname = "blocklist"\nurl = "{dead}"\n')
    code, checks = doctor(box, path)
    assert code == 1 and failed(checks) == {"feed blocklist"}
    assert (
        dead in checks["feed blocklist"]["detail"]
        and "unreachable" in checks["feed blocklist"]["detail"]
    )


def test_apiban_key_refused_then_accepted(box: Box, tmp_path: Path) -> None:
    with mock_thread(netns=box.ns.name, key="the-right-key-0123") as mock:
        section = f'[intel.apiban]\nurl = "{mock.base}"\nkey = "%s"\n'
        code, checks = doctor(box, config(box, tmp_path, section % "a-wrong-key-4567"))
        assert code == 1 and failed(checks) == {"feed apiban"}
        assert "APIBAN refused the key" in checks["feed apiban"]["detail"]
        assert "intel.apiban.key" in checks["feed apiban"]["fix"]
        assert "a-wrong-key" not in json.dumps(checks)  # the key is never shown
        code, checks = doctor(box, config(box, tmp_path, section % "the-right-key-0123"))
        assert code == 0, checks
        assert checks["feed apiban"]["ok"]


def test_human_output(box: Box, tmp_path: Path) -> None:
    """Without --json: one line per check, FAIL lines with their fix, the sum."""
    path = config(box, tmp_path, backend=f"udp:127.0.0.1:{box.pbx + 100}")
    done = subprocess.run(
        box.ns.command(
            sys.executable, "-m", "sipwarden.cli", "doctor", "-c", str(path), "--timeout", "0.5"
        ),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    pbx = next(line for line in lines if line.startswith("FAIL pbx:"))
    assert "-> fix: start the PBX" in pbx
    assert lines[-1].startswith("doctor: ") and "1 failed" in lines[-1]


def test_nfqueue_for_host_mode(box: Box) -> None:
    """Host mode's queue (checked when [host] is on: issue 17's config): a
    queue rule in a scratch table, or iptables' NFQUEUE target."""
    script = (
        "import shutil\n"
        "from sipwarden.doctor.probes import nfqueue\n"
        "r = nfqueue(shutil.which('nft'), 'sipwarden_doctor_test')\n"
        "print(r.status, r.detail)\n"
    )
    done = subprocess.run(
        box.ns.command(sys.executable, "-c", script),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.stdout.startswith("pass "), done.stdout + done.stderr
    left = subprocess.run(box.ns.command("nft", "list", "tables"), capture_output=True, text=True)
    assert "sipwarden_doctor" not in left.stdout  # the scratch table is gone
