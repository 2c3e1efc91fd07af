"""`sipwarden logwatch test FILE --format F`: what each line of a log gives
under a format (``logwatch.examine``), with totals; ``--json`` for scripts.
Exits 1 when the format cannot be loaded (the pattern file's error named).
`sipwarden logwatch status`: the running daemon's coverage per source."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TextIO

import click

from ..fetch.calendar import timezone_named
from ..logwatch import SHIPPED, PatternError, load
from ..logwatch.examine import examine
from ..logwatch.mode import local_zone
from . import render
from .common import CONFIG_OPTION, ask_daemon, config_from


@click.group("logwatch")
def logwatch() -> None:
    """Logwatch mode: try a log against a format; what the daemon reads."""


@logwatch.command("status")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(config_file: str | None, as_json: bool) -> None:
    """What the running daemon reads of each log: lines read, matched and
    missed, when the last came, and missed lines that look like failures."""
    config = config_from(config_file)
    answer = ask_daemon(config, {"cmd": "logwatch-status"})
    if answer is None:
        click.echo("sipwarden: no daemon is running (logwatch status asks it)", err=True)
        sys.exit(1)
    if not answer.get("ok"):
        click.echo(f"sipwarden: {answer.get('error')}", err=True)
        sys.exit(1)
    if as_json:
        render.print_json(answer["sources"])
    else:
        render.logwatch_status(answer["sources"])


@logwatch.command("test")
@click.argument("file", type=click.File("r", encoding="utf-8", errors="replace"))
@click.option(
    "--format",
    "fmt",
    type=click.Choice([*SHIPPED, "custom"]),
    default="asterisk",
    show_default=True,
    help="The log's format (custom: give --patterns).",
)
@click.option(
    "--patterns", type=click.Path(path_type=Path, dir_okay=False), help="A custom pattern file."
)
@click.option("--timezone", help="The zone of times written without one (default: this machine's).")
@click.option("--only-missed", is_flag=True, help="Show only the lines no pattern matched.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def test(
    file: TextIO,
    fmt: str,
    patterns: Path | None,
    timezone: str | None,
    only_missed: bool,
    as_json: bool,
) -> None:
    """Show what each line of FILE (- for stdin) gives: the kind, the source
    address, the account, the line's time, the rule; then the totals."""
    try:
        if patterns is not None and fmt != "custom":
            raise PatternError("--patterns goes with --format custom")
        chosen = load(fmt, patterns)
        tz = timezone_named(timezone, "--timezone") if timezone else local_zone()
    except (PatternError, ValueError) as exc:
        click.echo(f"sipwarden logwatch test: {exc}", err=True)
        sys.exit(1)
    lines = [line.rstrip("\r\n") for line in file]
    report = examine(chosen, tz, lines, dt.datetime.now(dt.UTC))
    if as_json:
        render.print_json(report)
    else:
        render.logwatch_report(report, only_missed)
