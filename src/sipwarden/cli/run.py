"""`sipwarden run`, `reload` and `status`: the daemon itself.

``run`` runs the edge in the foreground (a service manager keeps it);
``reload`` asks the running daemon to re-read its rules and trusted peers;
``status`` asks it how it is, or reads the store when it is not running.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from ..config import ConfigError, load_config
from ..daemon.control import ControlError, ask
from ..enforce import EnforcerError
from ..policy import PolicyError, RuleError
from ..store import StoreError
from . import render
from .common import CONFIG_OPTION, ask_daemon, config_from
from .logs import LogFormat, setup_logging

log = logging.getLogger("sipwarden")


@click.command()
@CONFIG_OPTION
@click.option(
    "--log-format",
    type=click.Choice(["human", "json"]),
    default=None,
    help="The log on stderr: human (lines of text) or json (one object per line)."
    "  [default: [logging] format, else human]",
)
@click.option(
    "--monitor",
    is_flag=True,
    help="Monitor mode whatever [policy] mode says: judge, count and record everything;"
    " drop, ban, reject and deceive nothing.",
)
def run(config_file: str | None, log_format: LogFormat | None, monitor: bool) -> None:
    """Run the edge until SIGTERM/SIGINT."""
    from ..app import run as run_edge

    if log_format is not None:  # before the config: its errors come out as JSON too
        setup_logging(log_format)

    def fail(code: int, *messages: str) -> NoReturn:
        for message in messages:
            if log_format == "json":
                log.critical(message)
            else:
                click.echo(f"sipwarden: {message}", err=True)
        sys.exit(code)

    try:
        config = load_config(config_file)
    except ConfigError as exc:
        fail(2, f"bad configuration: {exc}")
    if log_format is None:
        log_format = config.logging.format
        setup_logging(log_format)
    try:
        run_edge(config, Path(config_file) if config_file else None, monitor=monitor)
    except (RuleError, PolicyError) as exc:
        fail(2, f"bad policy: {exc}")
    except ConfigError as exc:  # a file or an address the config names: one line each
        fail(1, *(f"cannot start: {line}" for line in str(exc).splitlines()))
    except (OSError, EnforcerError, StoreError) as exc:
        fail(1, f"cannot start: {exc}")


@click.command()
@CONFIG_OPTION
def reload(config_file: str | None) -> None:
    """Make the running daemon re-read its rules and trusted peers.

    A broken rule file is refused with the error, and the rules in force stay.
    """
    config = config_from(config_file)
    try:
        answer = ask(config.control.socket, {"cmd": "reload"})
    except ControlError as exc:
        click.echo(f"sipwarden: {exc}", err=True)
        sys.exit(1)
    if not answer.get("ok"):
        click.echo(
            f"sipwarden: reload refused, the old rules stay in force:\n{answer.get('error')}",
            err=True,
        )
        sys.exit(1)
    click.echo(f"reloaded: {answer.get('rules')} rules in force")


@click.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(config_file: str | None, as_json: bool) -> None:
    """Whether the daemon runs, the bans in force, the threat feeds (size,
    last success, last error), the country policy and what the reflection
    budget held back."""
    config = config_from(config_file)
    stats = ask_daemon(config, {"cmd": "stats"})
    if stats is not None:
        shown: dict[str, Any] = {
            "running": True,
            "mode": stats.get("mode", "enforce"),  # "monitor": nothing dropped or banned
            "bans_in_force": stats.get("bans-in-force", 0),
            "store": {
                "unwritten": stats.get("bans", {}).get("store-unwritten", 0),
                "error": stats.get("store-error"),
            },
            "intel": stats.get("intel", {}),
            "verdicts": stats.get("verdicts", {}),
            "lane": stats.get("lane"),  # None: no kernel lane
            "observe": stats.get("observe"),  # events and flows
            "alerts": stats.get("alert-targets"),  # None: no [[alerts]]
            "report": stats.get("report"),  # None: no weekly mail
            # when the PBX last answered through the edge or host mode (None: not yet)
            "pbx_answered_at": stats.get("pbx-answered-at"),
            # the reflection budget: what it held back from unverified sources
            "reflection": {
                k.removeprefix("reflection-"): v
                for k, v in stats.get("edge", {}).items()
                if k.startswith("reflection-")
            }
            if config.edge.reflection.enabled and config.edge.listen
            else None,
            "host": stats.get("host"),  # host mode's counters; None: not on
            "fleet": stats.get("fleet"),  # the fleet's bans; None: no [fleet]
            # failure counts shared through the fleet's Redis; None: not shared
            "fleet_counters": stats.get("fleet-counters"),
            # [fleet] share_intel: who fetches each feed, where this node's list came from
            "fleet_intel": stats.get("fleet-intel"),
        }
    else:
        from ..daemon.intel_commands import offline_status
        from ..daemon.offline import bans_in_force

        shown = {
            "running": False,
            "mode": config.policy.mode,  # as the config says (a --monitor run says so itself)
            "bans_in_force": len(bans_in_force(config)),
            "intel": {"feeds": offline_status(config)},
        }
    if as_json:
        render.print_json(shown)
    else:
        render.status(shown, config.control.socket)
