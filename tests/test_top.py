"""`sipwarden top` in a real terminal: tmux runs it against a running
`sipwarden run` (the built-in registrar as the PBX, on loopback), the test
reads the screen (`tmux capture-pane -p`) and sees a scanner, a guesser's
ban and an operator's ban appear; `q` quits it cleanly. With no daemon it
says so and exits 1. The panels' arithmetic is checked on answers handed in.
"""

from __future__ import annotations

import itertools
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from rich.console import Console

from sipwarden.cli.topview import Board, fleet_line, tool_of
from sipwarden.demo.cast import PROBES, probe_bytes

from .conftest import free_udp_port, need, start_edge_process
from .edge.harness import UdpPhone, registrar_thread
from .test_bans_daemon import answered, cli, guess_passwords, stop

SERVERS = itertools.count()
SCANNER = next(p for p in PROBES if p.file == "svmap_0.3.8_OPTIONS_udp.sip")


class Tmux:
    """A tmux server of the test's own (its socket named by our PID), a
    session running ``command`` in a 160x50 terminal."""

    def __init__(self, command: list[str]) -> None:
        # a server per terminal: a new one on a name just killed may fail to start
        self.name, self.session = f"sipwarden-top-{os.getpid()}-{next(SERVERS)}", "top"
        shell = f"{shlex.join(command)}; echo top exited $?; sleep 60"
        self.run("new-session", "-d", "-s", self.session, "-x", "160", "-y", "50", shell)
        self.socket = Path(self.run("display-message", "-p", "#{socket_path}").strip())

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.name, *args], capture_output=True, text=True, timeout=10
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.session)

    def wait_for(self, *phrases: str, timeout: float = 30) -> str:
        """The screen once it shows every phrase (within ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if all(phrase in screen for phrase in phrases):
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"the screen never showed {phrases}:\n{screen}")
            time.sleep(0.2)

    def quit(self, *keys: str) -> str:
        """Press ``keys``; the screen once the command has ended and the
        shell said its exit status (tmux's own pane status is not reliable:
        it may leave the process unreaped)."""
        self.run("send-keys", "-t", self.session, *keys)
        return self.wait_for("top exited", timeout=10)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.name, "kill-server"], capture_output=True, timeout=10)
        self.socket.unlink(missing_ok=True)  # the server may leave it behind


@contextmanager
def tmux(command: list[str]) -> Iterator[Tmux]:
    need(shutil.which("tmux") is not None, "tmux is not installed (apt-get install tmux)")
    terminal = Tmux(command)
    try:
        yield terminal
    finally:
        terminal.close()


def top_command(config: Path) -> list[str]:
    # the terminal's own size, not one the test runner's environment may name
    env = ["env", "-u", "COLUMNS", "-u", "LINES", "TERM=xterm-256color"]
    env.append(f"PYTHONPATH={os.environ.get('PYTHONPATH', '')}")
    return [
        *env,
        sys.executable,
        "-m",
        "sipwarden.cli",
        "top",
        "-c",
        str(config),
        "--interval",
        "0.5",
    ]


def test_top_shows_a_ban_appear_in_a_real_terminal(tmp_path: Path):
    port = free_udp_port()
    config = tmp_path / "edge.toml"
    with registrar_thread() as (backend, _):
        proc, _line = start_edge_process(tmp_path, port, backend)
        phone, attacker = UdpPhone(), UdpPhone("127.0.0.2")
        scanner = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        scanner.bind((SCANNER.source, 0))
        try:
            assert answered(phone, port)  # the PBX answers: its health shows it
            with tmux(top_command(config)) as terminal:
                screen = terminal.wait_for("now", "who", "mode: enforce", "bans in force 0")
                # the answer came before top started: the daemon knows when
                assert "1 answers seen, the last" in screen

                scanner.sendto(probe_bytes(SCANNER), ("127.0.0.1", port))
                screen = terminal.wait_for(SCANNER.source, "sipvicious", "drop:scan.sipvicious")

                guess_passwords(attacker, port, 6)
                screen = terminal.wait_for("127.0.0.2", "auth.brute-force", "bans in force 1")
                row = next(
                    line for line in screen.splitlines() if "127.0.0.2" in line and "banned" in line
                )
                assert "auth.brute-force" in row, screen

                added = cli("bans", "add", "203.0.113.7", "--for", "1h", "-c", str(config))
                assert added.returncode == 0, added.stderr
                terminal.wait_for("203.0.113.7", "bans in force 2")

                piped = cli("top", "-c", str(config), "--interval", "0.2")  # once, not live
                assert piped.returncode == 0, piped.stderr
                assert "bans in force 2" in piped.stdout and "sipvicious" in piped.stdout

                assert "top exited 0" in terminal.quit("q")
            with tmux(top_command(config)) as terminal:  # Ctrl-C quits too, as cleanly
                terminal.wait_for("203.0.113.7", "127.0.0.2")
                assert "top exited 0" in terminal.quit("C-c")
        finally:
            stop(proc)
            phone.close()
            attacker.close()
            scanner.close()


def test_top_without_a_daemon_says_so(tmp_path: Path):
    config = tmp_path / "edge.toml"
    config.write_text(f'[control]\nsocket = "{tmp_path / "none.sock"}"\n')
    out = subprocess.run(
        [sys.executable, "-m", "sipwarden.cli", "top", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert "no sipwarden daemon answers on" in out.stderr and "none.sock" in out.stderr
    assert "Traceback" not in out.stderr


def stats(
    verdicts: dict[str, int], answers: int, mode: str = "enforce", answered_at: float | None = None
) -> dict:
    edge = {"from-backend": answers}
    return {"mode": mode, "verdicts": verdicts, "edge": edge, "pbx-answered-at": answered_at}


def drawn(board: Board, now: float) -> str:
    console = Console(width=160, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(board.view(now))
    return console.export_text()


def test_the_board_rates_sources_and_health():
    board = Board(socket="/run/x.sock", interval=1.0, window=900)
    flows = [
        {"source": "198.51.100.4", "packets": 30},
        {"source": "198.51.100.4", "packets": 12},  # another port: the same source
        {"source": "203.0.113.9", "packets": 7},
    ]
    events = [
        {"id": 3, "time": 100.0, "kind": "verdict", "source": "198.51.100.4",
         "reason": "scan.sipvicious-tag", "verdict": "drop"},
        {"id": 4, "time": 100.5, "kind": "login-failed", "source": "203.0.113.9",
         "reason": "auth.failed"},
    ]  # fmt: skip
    board.take(100.0, stats({"forward:": 10, "drop:scan.sipvicious-tag": 5}, 4), [], flows, events)
    first = drawn(board, 100.0)
    assert "msg/s" in first and "4 answers seen" in first and "seen, the last" not in first
    assert board.top_sources() == [("198.51.100.4", 42), ("203.0.113.9", 7)]
    assert board.unknown_countries() == ["198.51.100.4", "203.0.113.9"]
    board.learn_country("198.51.100.4", "NL")

    ban = {"ip": "203.0.113.9", "detector": "auth.brute-force", "reason": "5 failed logins",
           "created_at": 101.0, "expires_at": 701.0}  # fmt: skip
    later = {"forward:": 14, "drop:scan.sipvicious-tag": 25, "drop:banned": 2}
    board.take(
        102.0, stats(later, 6, "monitor", 101.5), [ban], flows, events
    )  # events again: ignored
    assert board.rates == {"forward:": 2.0, "drop:scan.sipvicious-tag": 10.0, "drop:banned": 1.0}
    assert board.answered_at == 101.5 and board.events_since(200.0) == 100.5 - 60
    text = drawn(board, 110.0)
    assert "mode: monitor" in text and "bans in force 1" in text
    assert "would drop by reason" in text  # monitor mode drops nothing
    assert "6 answers seen, the last 8 s ago" in text  # the daemon's time of it, not top's
    lines = [line.strip("│ ") for line in text.splitlines()]
    who = next(line for line in lines if line.startswith("198.51.100.4"))
    assert who.split()[:5] == ["198.51.100.4", "NL", "sipvicious", "42", "scan.sipvicious-tag"]
    banned = next(line for line in lines if line.startswith("203.0.113.9") and "7" in line)
    assert "auth.brute-force" in banned and "banned" in banned
    reason = next(line for line in lines if "drop:scan.sipvicious-tag" in line)
    assert "10.0" in reason and "25" in reason

    board.take(103.0, stats({"forward:": 1}, 6), [], [], [])  # the daemon restarted
    assert board.rates == {"forward:": 1.0}
    board.lost(104.0, "gone")
    assert "does not answer (gone)" in drawn(board, 104.0)


def test_tool_of_a_fingerprint():
    assert tool_of("scan.sipvicious-tag") == "sipvicious"
    assert tool_of("scan.nmap-options-probe") == "nmap"
    assert tool_of("scan.digest-qop-without-cnonce") == "svcrack"
    assert tool_of("ua.friendly-scanner") == "friendly-scanner"
    assert tool_of("auth.brute-force") is None and tool_of("banned") is None


def test_the_fleet_in_one_line():
    assert fleet_line(None) is None  # no [fleet]: no line
    up = {"degraded": False, "nodes": 3, "nodes-up": 3, "lag": 0.25, "last-error": None,
          "counters": {"published": 4, "applied": 7}}  # fmt: skip
    line = fleet_line(up)
    assert line is not None
    assert line.plain == "fleet up  nodes 3/3 up  lag 0.25 s  bans published 4 applied 7"
    down = {**up, "degraded": True, "nodes-up": 1, "last-error": "Connection refused"}
    line = fleet_line(down)
    assert line is not None and line.plain.startswith("fleet DEGRADED (Redis: Connection refused)")
    assert "nodes 1/3 up" in line.plain

    board = Board(socket="/run/x.sock", interval=1.0, window=900)
    board.take(100.0, {**stats({"forward:": 1}, 0), "fleet": down}, [], [], [])
    assert "fleet DEGRADED (Redis: Connection refused)" in drawn(board, 100.0)
