"""`sipwarden analysis run`: the analysers once, now, and their findings.

With the daemon running, it runs them (every worker's events and flows,
the minute under way too) and acts on the findings only with ``--act``
(the periodic run always acts); with none, over the store, telling only.
"""

from __future__ import annotations

import sys

import click

from . import render
from .common import CONFIG_OPTION, ask_daemon, config_from


@click.group()
def analysis() -> None:
    """The periodic analysis of recent events and flows."""


@analysis.command("run")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.option(
    "--act", is_flag=True, help="Ban what the findings ask for, as the periodic run does."
)
def analysis_run(config_file: str | None, as_json: bool, act: bool) -> None:
    """Run the analysers over the last [analysis] window now; print the findings."""
    config = config_from(config_file)
    answer = ask_daemon(config, {"cmd": "analysis-run", "act": act}, timeout=60)
    if answer is None:
        if act:
            click.echo("sipwarden: --act needs the daemon running", err=True)
            sys.exit(1)
        from ..daemon.offline import analysis_once

        answer = analysis_once(config)
    if not answer.get("ok"):
        click.echo(f"sipwarden: {answer.get('error')}", err=True)
        sys.exit(1)
    if as_json:
        render.print_json(answer["findings"])
    else:
        render.findings(answer["findings"])
