"""Shared test helpers: where the test data lives, and the CI skip rule."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
TORTURE = DATA / "torture"
SCANNERS = DATA / "scanners"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip a test on a developer machine when ``condition`` is false; in CI
    (CI=true) fail instead, because CI must run every test."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def tracked_after_collection() -> int:
    """The objects the cyclic garbage collector tracks, once it has run (a
    collection stops tracking tuples of atomics): the per-source tables'
    tests (issue 21) count what filling them adds."""
    gc.collect()
    gc.collect()
    return len(gc.get_objects())


def read(path: Path) -> bytes:
    return path.read_bytes()


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_edge_process(
    tmp_path: Path, port: int, backend_port: int, workers: int = 1, extra: str = ""
):
    """`sipwarden run` as an operator starts it (UDP on 127.0.0.1:port; its
    control socket in tmp_path; ``extra`` TOML appended), and the line it
    prints once listening; fails after 15 s of silence."""
    import select
    import subprocess
    import sys

    cfg = tmp_path / "edge.toml"
    cfg.write_text(
        f'[edge]\nlisten = ["udp:127.0.0.1:{port}"]\nbackend = "udp:127.0.0.1:{backend_port}"\n'
        f'workers = {workers}\nflow_key_file = "{tmp_path / "flow.key"}"\n'
        f'[control]\nsocket = "{tmp_path / "sipwarden.sock"}"\n{extra}'
        + ("" if "[api]" in extra else '\n[api]\nlisten = "127.0.0.1:0"\n')
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipwarden.cli", "run", "-c", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    if not ready:
        proc.kill()
        pytest.fail("sipwarden run printed nothing in 15 s")
    return proc, proc.stdout.readline()
