"""`sipwarden explain` and `sipwarden replay` agree with the live edge.

Every scanner message and every phone message goes to a running edge over
UDP while tcpdump captures the loopback; then the capture is replayed and
each message explained through the real CLI, and the verdicts must be the
ones the edge gave."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

from click.testing import CliRunner

from sipwarden.cli import main

from ..conftest import DATA, SCANNERS, need
from .harness import running_edge, wait_for


def corpus() -> list[Path]:
    files = (
        sorted(SCANNERS.glob("*.sip"))
        + sorted((SCANNERS / "captured").glob("*_udp.sip"))
        + sorted((DATA / "phones").glob("*.sip"))
    )
    return [p for p in files if "_tcp" not in p.name]


def start_capture(path: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            "tcpdump",
            "-i",
            "lo",
            "--immediate-mode",
            "-U",
            "-n",
            "-w",
            str(path),
            f"udp dst port {port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "listening on lo, ..." once the capture runs
    assert b"listening on" in line, line
    return proc


def test_explain_and_replay_give_the_live_edges_verdicts(tmp_path):
    need(shutil.which("tcpdump") is not None, "tcpdump is not installed (apt-get install tcpdump)")
    files = corpus()
    assert len(files) >= 40
    live: dict[str, tuple[str, str]] = {}
    with running_edge(tmp_path, listen=("udp",)) as run:
        port = run.ports["udp"]
        capture = tmp_path / "edge.pcap"
        tcpdump = start_capture(capture, port)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
                phone.bind(("127.0.0.1", 0))
                source_port = phone.getsockname()[1]
                for path in files:
                    before = Counter(run.edge.policy.counters)
                    phone.sendto(path.read_bytes(), ("127.0.0.1", port))
                    assert wait_for(lambda b=before: Counter(run.edge.policy.counters) != b, 5)
                    (key,) = (Counter(run.edge.policy.counters) - before).keys()
                    kind, _, reason = key.partition(":")
                    live[path.name] = (kind, reason)
            time.sleep(0.3)  # the last packets reach the capture file
        finally:
            tcpdump.send_signal(signal.SIGINT)
            tcpdump.wait(10)
    kinds = Counter(kind for kind, _ in live.values())
    assert kinds["drop"] >= 30 and kinds["forward"] >= 5, kinds  # both sides are exercised

    runner = CliRunner()
    for path in files:
        result = runner.invoke(
            main,
            [
                "explain",
                str(path),
                "--source",
                f"127.0.0.1:{source_port}",
                "--port",
                str(port),
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        said = json.loads(result.output)
        assert (said["verdict"], said["reason"]) == live[path.name], path.name

    result = runner.invoke(main, ["replay", str(capture), "--port", str(port), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["totals"]["messages"] == len(files), report["totals"]
    (source,) = report["sources"]
    assert source["ip"] == "127.0.0.1"
    live_verdicts = Counter(kind for kind, _ in live.values())
    assert {k: v for k, v in source["verdicts"].items() if v} == dict(live_verdicts)
    live_reasons = Counter(reason for _, reason in live.values() if reason)
    assert source["reasons"] == dict(live_reasons)
