"""`sipwarden top`: the dashboard's "now" and "who" panels in a terminal,
for operators on SSH.

Every ``--interval`` seconds it asks the running daemon (the control socket
``-c FILE`` names) for ``stats``, ``bans-list``, ``flows`` over the last
``--window`` and the ``events`` since the last round, and the country of
each new top source (``intel-lookup``, once per source); ``topview.Board``
keeps what the panels need and draws them in a rich ``Live`` view on the
terminal's alternate screen. ``q`` or Ctrl-C quits; the terminal is given
back as it was. Not on a terminal (piped, a script), it prints the panels
once, after two rounds (so that the rates are known), and exits. With no
daemon running it says so and exits 1; a daemon that stops answering is said
in the header, and asked again each round.

Reads only: it asks no command that changes anything. Bounds: one round
is four requests plus at most ``topview.ROWS`` country look-ups, each with
a timeout of ``TIMEOUT`` seconds; ``FLOWS`` flow records and ``EVENTS``
events a round.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator
from typing import Any, Final

import click

from .common import CONFIG_OPTION, config_from

TIMEOUT: Final = 5.0  # seconds for one answer of the daemon
FLOWS: Final = 200  # flow records asked per round (busiest first; a source may have several)
EVENTS: Final = 2000  # events asked per round at most (the newest)


@contextlib.contextmanager
def _keys() -> Iterator[bool]:
    """Single key presses from a terminal on stdin (cbreak: Ctrl-C still
    interrupts); yields whether there is one."""
    if not sys.stdin.isatty():
        yield False
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _wait_for_quit(seconds: float, keys: bool) -> bool:
    """Wait ``seconds``; True if ``q`` was pressed meanwhile."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if not keys:
            time.sleep(left)
            return False
        ready, _, _ = select.select([sys.stdin], [], [], left)
        if not ready:
            continue
        # every key pressed meanwhile, unbuffered (a buffer would hide a q from select)
        pressed = os.read(sys.stdin.fileno(), 64)
        if not pressed or b"q" in pressed.lower():  # nothing: the terminal is gone
            return True
    return False


@click.command()
@CONFIG_OPTION
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2, max=3600),
    default=1.0,
    show_default=True,
    help="Seconds between two refreshes.",
)
@click.option(
    "--window",
    type=click.FloatRange(min=60, max=86400),
    default=900,
    show_default=True,
    help="Seconds of traffic the 'who' panel adds up.",
)
def top(config_file: str | None, interval: float, window: float) -> None:
    """The running daemon, live: messages per second by verdict, what was
    dropped and why, the bans in force, the PBX's answers, the mode; and the
    busiest sources with their country, tool, packets and the rule or
    detector that stopped them. q or Ctrl-C quits."""
    from rich.console import Console
    from rich.live import Live

    from ..daemon.control import ControlDenied, ControlError, ask
    from .topview import ROWS, Board

    config = config_from(config_file)
    path = config.control.socket

    def asked(request: dict[str, Any]) -> dict[str, Any]:
        answer = ask(path, request, timeout=TIMEOUT)
        if not answer.get("ok"):
            raise ControlError(f"{request['cmd']}: {answer.get('error')}")
        return answer

    board = Board(socket=str(path), interval=interval, window=window)

    def one_round() -> None:
        now = time.time()
        try:
            stats = asked({"cmd": "stats"})
            bans = asked({"cmd": "bans-list"})["bans"]
            flows = asked({"cmd": "flows", "since": now - window, "limit": FLOWS})["flows"]
            since = board.events_since(now)
            events = asked({"cmd": "events", "since": since, "limit": EVENTS})["events"]
        except ControlDenied:
            raise
        except ControlError as exc:
            board.lost(now, str(exc))
            return
        board.take(now, stats, bans, flows, events)
        for ip in board.unknown_countries()[:ROWS]:
            try:
                found = ask(path, {"cmd": "intel-lookup", "target": ip}, timeout=TIMEOUT)
            except ControlError:
                break
            board.learn_country(ip, found.get("country") if found.get("ok") else None)

    try:
        one_round()
    except ControlDenied as exc:
        click.echo(f"sipwarden top: {exc}", err=True)
        sys.exit(1)
    if board.taken_at is None:
        click.echo(
            f"sipwarden top: no sipwarden daemon answers on {path} ({board.lost_why});"
            " start one with `sipwarden run -c FILE`, or name its config with -c",
            err=True,
        )
        sys.exit(1)

    console = Console()
    if not console.is_terminal:
        time.sleep(interval)
        one_round()
        console.print(board.view(time.time()))
        return
    try:
        with (
            _keys() as keys,
            Live(console=console, screen=True, auto_refresh=False) as live,
        ):
            while True:
                # the tables' rows fit the terminal: a header, two panels' frames and titles
                board.rows = max(3, min(ROWS, (console.size.height - 12) // 2))
                live.update(board.view(time.time()), refresh=True)
                if _wait_for_quit(interval, keys):
                    return
                try:
                    one_round()
                except ControlDenied as exc:
                    board.lost(time.time(), str(exc))
    except KeyboardInterrupt:
        return
