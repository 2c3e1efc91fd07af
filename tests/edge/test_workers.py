"""Several edge worker processes on one port (SO_REUSEPORT)."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from sipwarden.sip import parse

from ..conftest import free_udp_port, start_edge_process
from .harness import REALM, registrar_thread


def options(port: int, n: int) -> bytes:
    return (
        f"OPTIONS sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-w{n};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:t@{REALM}>;tag=w{n}\r\nTo: <sip:{REALM}>\r\nCall-ID: w{n}\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_two_workers_share_the_port_and_stop_together(tmp_path: Path):
    # the PBX: a registrar answering OPTIONS, noting which edge socket asked
    with registrar_thread() as (backend_port, seen):
        port = free_udp_port()
        proc, line = start_edge_process(
            tmp_path,
            port,
            backend_port,
            workers=2,
            extra='[policy]\ntrusted_peers = ["127.0.0.1"]\n',  # a trunk's keep-alives
        )
        try:
            assert b"2 workers" in line
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            assert len(children) == 1
            answered = 0
            for n in range(40):  # many sources: the kernel spreads them over the workers
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
                    phone.bind(("127.0.0.1", 0))
                    phone.settimeout(3)
                    phone.sendto(options(phone.getsockname()[1], n), ("127.0.0.1", port))
                    answered += parse(phone.recv(65535)).status == 200
            assert answered == 40
            assert len(seen) == 2  # both workers' backend sockets were used
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
            assert (
                not Path(f"/proc/{children[0]}").exists()
                or "Z" in Path(f"/proc/{children[0]}/stat").read_text().split()[2]
            )
        finally:
            if proc.poll() is None:
                proc.kill()


def test_workers_die_with_the_main_process(tmp_path: Path):
    proc, line = start_edge_process(tmp_path, free_udp_port(), backend_port=9, workers=2)
    try:
        assert b"2 workers" in line
        (child,) = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    finally:
        proc.kill()  # no chance to clean up
        proc.wait(10)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists(), "the worker outlived the main process"
