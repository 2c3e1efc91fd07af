"""`sipwarden report`: what the store recorded over a window, for people:
one self-contained HTML file with plots (``-o report.html``), or the same
report as JSON (``--json``).

With a daemon running it is asked first to write every worker's queued
events (the `events` command does), and for its flows and bans in force
(the minute under way, the bans the store has not taken yet); the rest is
read from the store: the numbers agree with `bans list`, `flows` and
`honeypot calls` over the same window.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import click

from .common import CONFIG_OPTION, ask_daemon, config_from, write_out

DAEMON_ROWS = 100_000  # the most flows the daemon's `flows` command gives


def _since(ctx: click.Context, param: click.Parameter, value: str) -> float:
    from ..config import parse_since

    try:
        return parse_since(value, time.time())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@CONFIG_OPTION
@click.option(
    "--since",
    default="7d",
    show_default=True,
    callback=_since,
    help="From this long ago (30m, 1h, 7d) or this time (2026-12-06T10:00:00Z).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here, not stdout.",
)
@click.option("--json", "as_json", is_flag=True, help="The report as JSON, not HTML.")
@click.option(
    "--top",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="Rows per list (sources, countries, tools, accounts, numbers).",
)
def report(
    config_file: str | None, since: float, output: Path | None, as_json: bool, top: int
) -> None:
    """A report over a window: attack volume over time and by hour of the
    week, top sources and countries, tools seen, bans by reason, accounts
    attacked, numbers dialled, what the kernel dropped."""
    from ..reports import gather, plots, render_html, render_json
    from ..store import StoreError

    config = config_from(config_file)
    # a running daemon: its queued events written first; its flows (with the
    # minute under way) and bans (with those the store has not taken yet)
    ask_daemon(config, {"cmd": "events", "since": time.time(), "limit": 1})
    flows = ask_daemon(config, {"cmd": "flows", "since": since, "limit": DAEMON_ROWS})
    bans = ask_daemon(config, {"cmd": "bans-list"})
    try:
        found = gather(
            config,
            since,
            top=top,
            # all of them, or (past the daemon's limit) the store's
            flows=flows["flows"]
            if flows and flows.get("ok") and len(flows["flows"]) < DAEMON_ROWS
            else None,
            in_force=bans["bans"] if bans and bans.get("ok") else None,
        )
    except StoreError as exc:
        click.echo(f"sipwarden: {exc}", err=True)
        sys.exit(1)
    if as_json:
        text = render_json(found)
    else:
        text = render_html(found, plots(found), host=socket.gethostname())
    write_out(text, output, f"report written to {output}")
