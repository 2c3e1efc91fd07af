"""Following `sipwarden init`'s printed change gives a working edge (issue 18's
acceptance), with a real Kamailio in the test's own network namespaces.

    clients namespace                    edge namespace
    .3 a phone           --- veth ---    .1:5060 Kamailio, the registrar ("the PBX")
    .2 svmap, a probe                    ... then, after the change:
                                         .1:5060 `sipwarden run` with init's config
                                         127.0.0.1:5080 Kamailio, patched and restarted

init runs inside the edge namespace against a root holding Kamailio's cfg
(``etc/kamailio/kamailio.cfg``) and ``proc`` pointing at the real /proc, so
that it sees the namespace's sockets. The test applies init's stdout with
patch(1), exactly as an operator would, restarts Kamailio and runs the
written config; a phone registers through the edge; svmap and an OPTIONS
probe get nothing, and the PBX's old public port answers nothing either.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sipwarden.config import load_config

from ..conftest import need
from .harness import REALM
from .kamailio import CONFIG, MODULES, subscribers
from .kamailio import available as kamailio_available
from .netns import Pair, in_namespace, namespace_pair
from .phone import Phone
from .site import BIN

TABLE = "sipwarden"  # what init writes: the default table


@dataclass
class Site:
    pair: Pair  # what Phone needs


@contextlib.contextmanager
def kamailio_in(pair: Pair, cfg: Path, tmp: Path, name: str) -> Iterator[None]:
    """Kamailio with ``cfg`` in the edge namespace until the block ends."""
    log_path = tmp / f"kamailio-{name}.log"
    memory, folders = ("-m", "64", "-M", "8"), ("-Y", str(tmp), "-w", str(tmp))
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            pair.in_edge("kamailio", "-f", str(cfg), "-DD", "-E", *memory, *folders),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while "listening on" not in log_path.read_text().lower():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"kamailio did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        time.sleep(0.3)  # its children bind after the banner
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def sipwarden_run(pair: Pair, config: Path, tmp: Path) -> Iterator[None]:
    log_path = tmp / "edge.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            pair.in_edge(sys.executable, "-m", "sipwarden.cli", "run", "-c", str(config)),
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=tmp,
        )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else b""
        if b"listening on" not in line:
            pytest.fail(f"sipwarden run did not start: {line!r}\n{log_path.read_text()[-3000:]}")
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        print(log_path.read_text(errors="replace")[-3000:])
        subprocess.run(
            pair.in_edge("nft", "delete", "table", "inet", TABLE), capture_output=True, timeout=10
        )


def options_answered(pair: Pair, source: str, port: int) -> bool:
    """An OPTIONS from ``source`` to the edge's address, ``port``: any answer
    (or an ICMP port unreachable, which also says something is there or not)
    within 1 s is True; silence is False."""

    def probe() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((source, 0))
            s.connect((pair.edge_ip, port))
            s.settimeout(1.0)
            own = s.getsockname()[1]
            s.send(
                (
                    f"OPTIONS sip:{REALM} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {source}:{own};branch=z9hG4bKinit{own};rport\r\n"
                    f"From: <sip:probe@{REALM}>;tag=p{own}\r\nTo: <sip:{REALM}>\r\n"
                    f"Call-ID: init-{own}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                    "Content-Length: 0\r\n\r\n"
                ).encode()
            )
            try:
                return bool(s.recv(65535))
            except TimeoutError:
                return False
            except ConnectionRefusedError:
                return False  # nothing listens: nothing found either

    return in_namespace(pair.clients, probe)


def test_following_inits_change_gives_a_working_edge(tmp_path: Path) -> None:
    need(os.geteuid() == 0, "network namespaces and nftables need root")
    need(kamailio_available(), "kamailio (with auth_db and db_text) is not installed")
    need(shutil.which("nft") is not None, "nftables is not installed")
    need(shutil.which("patch") is not None, "patch is not installed (apt-get install patch)")
    need((BIN / "sipvicious_svmap").exists(), "SIPVicious is not installed")
    with namespace_pair() as pair:
        root = tmp_path / "root"
        (root / "etc/kamailio").mkdir(parents=True)
        (root / "proc").symlink_to("/proc")  # init reads the namespace's /proc/net
        cfg = root / "etc/kamailio/kamailio.cfg"
        # the registrar on the public address, as it ran before sipwarden
        text = CONFIG.format(
            realm=REALM,
            address=pair.edge_ip,
            port=5060,
            modules=MODULES,
            db=subscribers(tmp_path),
            tls_listen="",
            tls_module="",
            tm_params="",
        )
        cfg.write_text(text)
        assert f"listen=udp:{pair.edge_ip}:5060" in cfg.read_text()
        phone_ip, scanner_ip = pair.client_ips[1], pair.client_ips[0]
        config = tmp_path / "sipwarden.toml"
        init_args = ("--root", str(root), "--mode", "edge", "--yes", "-o", str(config))

        with kamailio_in(pair, cfg, tmp_path, "before"):
            assert options_answered(pair, scanner_ip, 5060)  # the PBX in the open
            done = subprocess.run(
                pair.in_edge(sys.executable, "-m", "sipwarden.cli", "init", *init_args),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            # what it saw: Kamailio's cfg and its sockets in this namespace
            assert "found kamailio: /etc/kamailio/kamailio.cfg" in done.stderr
            assert re.search(
                rf"bound: udp {re.escape(pair.edge_ip)}:5060 \(kamailio\)", done.stderr
            )

        diff = done.stdout
        assert f"-listen=udp:{pair.edge_ip}:5060" in diff
        assert "+listen=udp:127.0.0.1:5080" in diff
        written = load_config(config)
        assert {(ep.transport, ep.host, ep.port) for ep in written.edge.listen} == {
            ("udp", pair.edge_ip, 5060),
            ("tcp", pair.edge_ip, 5060),
        }
        assert (written.edge.backend.host, written.edge.backend.port) == ("127.0.0.1", 5080)
        assert REALM in written.edge.domains  # Kamailio's alias

        applied = subprocess.run(
            ["patch", "-p1", "-d", str(root)],
            input=diff,
            text=True,
            capture_output=True,
            timeout=30,
        )
        assert applied.returncode == 0, applied.stdout + applied.stderr

        with kamailio_in(pair, cfg, tmp_path, "after"), sipwarden_run(pair, config, tmp_path):
            phone = Phone(Site(pair), phone_ip)
            try:
                assert phone.login(timeout=3.0) == 200  # through the edge to Kamailio
            finally:
                phone.close()
            scan = subprocess.run(
                pair.in_clients(str(BIN / "sipvicious_svmap"), "-b", scanner_ip, pair.edge_ip),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert "found nothing" in scan.stdout + scan.stderr, scan.stdout + scan.stderr
            assert "kamailio" not in scan.stdout.lower()
            assert not options_answered(pair, pair.client_ips[2], 5060)
            # the PBX's old public port: nothing there any more
            assert not options_answered(pair, pair.client_ips[2], 5080)
