"""`sipwarden run` as an unprivileged user holding only the unit's two
capabilities (CAP_NET_ADMIN, CAP_NET_BIND_SERVICE), as systemd would start
it (no PID 1 systemd here: ``setpriv`` gives the same credentials), in a
namespace of the test's: readiness sent to a NOTIFY_SOCKET the test
provides once the ports are open; port 5060 bound; bans in nftables and
the banned source's conntrack entries deleted (nft and conntrack run as
children: the capabilities are ambient); SIGHUP reloads, SIGTERM stops,
each told to systemd. Without either capability the start-up error names it.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ..conftest import need
from ..edge.harness import register_request
from .install import Installed, clean_env
from .site import PORT, Site, first_line

USER = "nobody"
BANNED = "203.0.113.9"  # a documentation address: never this machine's
CAPS = ("net_admin", "net_bind_service")


def setpriv(caps: tuple[str, ...]) -> list[str]:
    """The unit's credentials: its own user, ``caps`` inheritable, ambient
    and the whole bounding set; no new privileges."""
    listed = ",".join(f"+{c}" for c in caps)
    return [
        "setpriv",
        f"--reuid={USER}",
        f"--regid={pwd.getpwnam(USER).pw_gid}",
        "--init-groups",
        f"--inh-caps=-all{',' + listed if caps else ''}",
        f"--ambient-caps=-all{',' + listed if caps else ''}",
        f"--bounding-set=-all{',' + listed if caps else ''}",
        "--no-new-privs",
    ]


@pytest.fixture
def state(installed: Installed) -> Iterator[Path]:
    """The service's directory (as StateDirectory= and RuntimeDirectory=
    make them: owned by its user), under a directory it may reach."""
    need(os.geteuid() == 0, "changing user and capabilities needs root")
    need(shutil.which("setpriv") is not None, "setpriv is not installed (util-linux)")
    need(shutil.which("nft") is not None, "nftables is not installed (apt-get install nftables)")
    need(shutil.which("conntrack") is not None, "conntrack is not installed")
    directory = installed.home / f"state-{os.getpid()}-{time.monotonic_ns()}"
    directory.mkdir(mode=0o750)
    user = pwd.getpwnam(USER)
    os.chown(directory, user.pw_uid, user.pw_gid)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def notify_socket(directory: Path) -> Iterator[socket.socket]:
    """The socket systemd would listen on for the service's notifications."""
    path = directory / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        os.chmod(path, 0o666)  # the service's user sends to it
        server.settimeout(0.5)
        yield server


def notifications(server: socket.socket, until: str, timeout: float = 30) -> list[str]:
    """The notifications received until one holds ``until`` (bounded)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(server.recv(4096).decode())
        except TimeoutError:
            continue
        if until in seen[-1].splitlines():
            return seen
    raise AssertionError(f"no {until} in {timeout:g} s; got {seen}")


def in_ns(site: Site, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(site.ns.command(*argv), capture_output=True, text=True, timeout=30)


def eventually(predicate, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def test_the_unit_s_user_and_capabilities_are_enough(installed: Installed, site: Site, state: Path):
    table = f"swcap{os.getpid() % 100000}"
    config = site.config(state, enforcer="nftables", table=table)
    with notify_socket(state) as notified:
        env = {**clean_env(), "NOTIFY_SOCKET": str(state / "notify.sock")}
        proc = subprocess.Popen(
            site.ns.command(*setpriv(CAPS), str(installed.sipwarden), "run", "-c", str(config)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        try:
            seen = notifications(notified, "READY=1")
            # READY=1 comes once the ports are open: a phone registers at once
            assert site.register() == [401, 200]
            assert b"listening on" in first_line(proc, 5)
            status = Path(f"/proc/{proc.pid}/status").read_text()
            assert re.search(rf"^Uid:\s+{pwd.getpwnam(USER).pw_uid}\s", status, re.M)
            caps = 1 << 10 | 1 << 12  # CAP_NET_BIND_SERVICE, CAP_NET_ADMIN
            for line in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
                held = re.search(rf"^{line}:\s+([0-9a-f]+)", status, re.M)
                assert held and int(held.group(1), 16) == caps, (line, held)
            assert any(s.startswith("STATUS=") for m in seen for s in m.splitlines())

            # a flow the banned source already has, in the namespace's conntrack
            added = in_ns(
                site, "conntrack", "-I", "-p", "udp", "-s", BANNED, "-d", site.ns.inside,
                "--sport", "40000", "--dport", str(PORT), "--timeout", "300",
            )  # fmt: skip
            assert added.returncode == 0, added.stderr
            ban = subprocess.run(
                [str(installed.sipwarden), "bans", "add", BANNED, "-c", str(config)],
                capture_output=True, text=True, timeout=60, env=clean_env(),
            )  # fmt: skip
            assert ban.returncode == 0, ban.stderr

            def in_kernel() -> bool:
                listed = in_ns(site, "nft", "list", "set", "inet", table, "ban4")
                return BANNED in listed.stdout

            def flow_gone() -> bool:
                return BANNED not in in_ns(site, "conntrack", "-L", "-s", BANNED).stdout

            assert eventually(in_kernel), "the ban did not reach nftables"
            assert eventually(flow_gone), "the banned source's conntrack entry is still there"

            proc.send_signal(signal.SIGHUP)  # ExecReload
            seen = notifications(notified, "READY=1")
            assert "RELOADING=1" in [s for m in seen for s in m.splitlines()]
            proc.send_signal(signal.SIGTERM)
            notifications(notified, "STOPPING=1")
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            assert proc.stderr is not None
            print(proc.stderr.read().decode(errors="replace")[-4000:])
            in_ns(site, "nft", "delete", "table", "inet", table)


@pytest.mark.parametrize(
    ("held", "missing", "says"),
    [
        (("net_bind_service",), "CAP_NET_ADMIN", "firewall.enforcer = 'nftables'"),
        (("net_admin",), "CAP_NET_BIND_SERVICE", "edge.listen[0] = 'udp:"),
    ],
)
def test_without_a_capability_the_error_names_it(
    installed: Installed, site: Site, state: Path, held: tuple[str, ...], missing: str, says: str
):
    config = site.config(state, enforcer="nftables", table=f"swcap{os.getpid() % 100000}")
    done = subprocess.run(
        site.ns.command(*setpriv(held), str(installed.sipwarden), "run", "-c", str(config)),
        capture_output=True, text=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert missing in done.stderr and says in done.stderr, done.stderr
    assert "sipwarden service install" in done.stderr  # how to grant it
    assert "Traceback" not in done.stderr


HOST_PORT = 5062  # host mode's PBX port in the namespace (nothing listens: packets are judged only)


def host_config(site: Site, directory: Path, table: str) -> Path:
    """Host mode alone (no [edge]), the files under ``directory``."""
    path = directory / "host.toml"
    path.write_text(
        f"""
[host]
enabled = true
ports = [{HOST_PORT}]
tls_ports = []

[firewall]
enforcer = "nftables"
table = "{table}"

[storage]
path = "{directory / "sipwarden.db"}"

[control]
socket = "{directory / "sipwarden.sock"}"

[api]
listen = ""
"""
    )
    return path


def test_host_mode_queues_with_the_unit_s_capabilities(
    installed: Installed, site: Site, state: Path
):
    need(
        shutil.which("iptables") is not None, "iptables is not installed (apt-get install iptables)"
    )
    table = f"swcaph{os.getpid() % 100000}"
    config = host_config(site, state, table)
    with notify_socket(state) as notified:
        env = {**clean_env(), "NOTIFY_SOCKET": str(state / "notify.sock")}
        proc = subprocess.Popen(
            site.ns.command(*setpriv(CAPS), str(installed.sipwarden), "run", "-c", str(config)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        try:
            notifications(notified, "READY=1")  # the queue is bound, its rules in the kernel
            assert b"host mode on" in first_line(proc, 5)
            # a phone's REGISTER and a scanner's, from our end to the host port: both queued
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                sender.bind((site.ns.outside, 0))
                for ua in ("Yealink SIP-T46S", "friendly-scanner"):
                    message = register_request("100", port=sender.getsockname()[1], ua=ua)
                    sender.sendto(message, (site.ns.inside, HOST_PORT))

            def judged() -> dict[str, int]:
                done = subprocess.run(
                    [str(installed.sipwarden), "status", "--json", "-c", str(config)],
                    capture_output=True, text=True, timeout=30, env=clean_env(),
                )  # fmt: skip
                return (json.loads(done.stdout).get("host") or {}) if done.stdout else {}

            assert eventually(lambda: judged().get("received", 0) >= 2), judged()
            assert judged().get("dropped", 0) == 1, judged()  # the scanner's
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            assert proc.stderr is not None
            print(proc.stderr.read().decode(errors="replace")[-4000:])
            subprocess.run(
                [str(installed.sipwarden), "firewall", "flush", "-c", str(config)],
                capture_output=True, timeout=60, env=clean_env(),
            )  # fmt: skip


def test_host_mode_without_cap_net_admin_names_it(installed: Installed, site: Site, state: Path):
    config = host_config(site, state, f"swcaph{os.getpid() % 100000}")
    done = subprocess.run(
        site.ns.command(*setpriv(("net_bind_service",)), str(installed.sipwarden), "run", "-c",
                        str(config)),
        capture_output=True, text=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "host.enabled = true" in done.stderr and "CAP_NET_ADMIN" in done.stderr, done.stderr
    assert "NFQUEUE" in done.stderr and "Traceback" not in done.stderr, done.stderr
