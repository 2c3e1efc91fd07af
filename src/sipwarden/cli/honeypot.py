"""`sipwarden honeypot calls` and `sipwarden honeypot export`: what hostile
callers dialled into the fake PBX, and from where.

Both ask the running daemon (``honeypot-calls``); with none running they
read the store. ``calls --json`` prints the contract's records; ``export``
writes them for sharing: JSON lines with SentryPeer's field names and ours
(``--format jsonl``), or a plain list of the numbers dialled or of the
sources, one a line, most called first.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from . import render
from .common import CONFIG_OPTION, ask_daemon, config_from, write_out
from .observe import LIMIT, SINCE, SOURCE


def _calls(config_file: str | None, request: dict[str, Any]) -> list[dict[str, Any]]:
    config = config_from(config_file)
    answer = ask_daemon(config, {"cmd": "honeypot-calls", **request})
    if answer is None:
        from ..daemon.offline import honeypot_calls

        answer = honeypot_calls(config, request)
    if not answer.get("ok"):
        click.echo(f"sipwarden: {answer.get('error')}", err=True)
        sys.exit(1)
    rows: list[dict[str, Any]] = answer["calls"]
    return rows


@click.group()
def honeypot() -> None:
    """The honeypot: the calls hostile sources made into the fake PBX."""


@honeypot.command()
@CONFIG_OPTION
@SINCE
@SOURCE
@LIMIT
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def calls(
    config_file: str | None, since: float | None, source: str | None, limit: int, as_json: bool
) -> None:
    """One record per (source, number dialled): how often, when, with what
    tool, the number normalised and its country; the most recent first."""
    rows = _calls(config_file, {"since": since, "source": source, "limit": limit})
    if as_json:
        render.print_json(rows)
    else:
        render.honeypot_table(rows)


@honeypot.command()
@CONFIG_OPTION
@SINCE
@SOURCE
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "numbers", "sources"]),
    default="jsonl",
    show_default=True,
    help="JSON lines (SentryPeer's field names and ours), or a list of numbers or sources.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here, not stdout.",
)
def export(
    config_file: str | None,
    since: float | None,
    source: str | None,
    fmt: str,
    output: Path | None,
) -> None:
    """The call records for sharing (blocklists, T-Pot/ELK, abuse reports)."""
    from ..deception.records import EXPORTS

    rows = _calls(config_file, {"since": since, "source": source, "limit": 100_000})
    text = EXPORTS[fmt](rows)
    write_out(text, output, f"{len(rows)} records written to {output}")
