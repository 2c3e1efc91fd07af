"""`sipwarden fleet status [--json]`: the fleet's nodes as the running
daemon reads their heartbeats from Redis (``daemon.commands.fleet_status``):
last seen, stream lag, bans published and applied, held back, queue, and
whether each is up or degraded. Exits 1 with no daemon or no ``[fleet]``."""

from __future__ import annotations

import sys

import click

from . import render
from .common import CONFIG_OPTION, ask_daemon, config_from


@click.group("fleet")
def fleet() -> None:
    """The fleet of nodes sharing bans through Redis ([fleet])."""


@fleet.command("status")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(config_file: str | None, as_json: bool) -> None:
    """Nodes, last seen, stream lag, bans published and applied per node."""
    config = config_from(config_file)
    answer = ask_daemon(config, {"cmd": "fleet-status"})
    if answer is None:
        click.echo("sipwarden: no daemon is running (fleet status asks it)", err=True)
        sys.exit(1)
    if not answer.get("ok"):
        click.echo(f"sipwarden: {answer.get('error')}", err=True)
        sys.exit(1)
    if as_json:
        render.print_json(answer)
    else:
        render.fleet_status(answer)
