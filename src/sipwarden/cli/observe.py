"""`sipwarden events` and `sipwarden flows`: what happened, and the traffic.

Both ask the running daemon (it writes every worker's queued events first,
and adds the minute of flows under way); with none running they read the
store. ``--json`` prints the contract's records; ``flows --ipfix`` prints
one IPFIX-like JSON object per line for tools that read flows.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from . import render
from .common import CONFIG_OPTION, ask_daemon, config_from


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from ..config import parse_since

    try:
        return None if value is None else parse_since(value, time.time())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


SINCE = click.option(
    "--since",
    callback=_since,
    help="From this long ago (30m, 1h, 7d) or this time (2026-12-06T10:00:00Z).",
)
SOURCE = click.option("--source", help="Only this source address.")
LIMIT = click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=10_000,
    show_default=True,
    help="At most this many (the newest events; the busiest flows).",
)


def _ask(config_file: str | None, what: str, request: dict[str, Any]) -> list[dict[str, Any]]:
    config = config_from(config_file)
    answer = ask_daemon(config, {"cmd": what, **request})
    if answer is None:
        from ..daemon.offline import observed

        answer = observed(config, what, request)
    if not answer.get("ok"):
        click.echo(f"sipwarden: {answer.get('error')}", err=True)
        sys.exit(1)
    rows: list[dict[str, Any]] = answer[what]
    return rows


@click.command()
@CONFIG_OPTION
@SINCE
@SOURCE
@LIMIT
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def events(
    config_file: str | None, since: float | None, source: str | None, limit: int, as_json: bool
) -> None:
    """What happened: drops, rejects and bans, failed logins, feed changes,
    findings (a flood is a few events and a count: `repeated`)."""
    rows = _ask(config_file, "events", {"since": since, "source": source, "limit": limit})
    if as_json:
        render.print_json(rows)
    else:
        render.events_table(rows)


@click.command()
@CONFIG_OPTION
@SINCE
@SOURCE
@LIMIT
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.option("--ipfix", is_flag=True, help="Print IPFIX-like JSON lines.")
def flows(
    config_file: str | None,
    since: float | None,
    source: str | None,
    limit: int,
    as_json: bool,
    ipfix: bool,
) -> None:
    """The traffic: one record per (source, source port, destination,
    destination port, transport) over the window, busiest first (packets the
    kernel dropped for a ban or a feed: source port null)."""
    if as_json and ipfix:
        raise click.UsageError("--json and --ipfix: choose one")
    rows = _ask(config_file, "flows", {"since": since, "source": source, "limit": limit})
    if ipfix:
        from ..observe import ipfix as as_ipfix

        for row in rows:
            click.echo(json.dumps(as_ipfix(row)))
    elif as_json:
        render.print_json(rows)
    else:
        render.flows_table(rows)
