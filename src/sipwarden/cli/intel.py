"""`sipwarden intel sync|lookup`: the threat feeds and the country policy.

``sync`` runs the feeds' fetch once (``daemon.intel_commands``, under the
lock the daemon takes); ``lookup`` asks the daemon what it knows of an
address, or answers from the store with the daemon's own pieces.
"""

from __future__ import annotations

import sys

import click

from ..policy import PolicyError
from . import render
from .common import CONFIG_OPTION, ask_daemon, config_from


@click.group()
def intel() -> None:
    """Threat feeds (APIBAN, lists of addresses) and country policy.

    The daemon refreshes the feeds itself; these commands run a refresh by
    hand and say what the feeds know of an address.
    """


@intel.command("sync")
@CONFIG_OPTION
@click.option(
    "--feed",
    "names",
    multiple=True,
    metavar="NAME",
    help="Only this feed (apiban:sip, or an [[intel.feeds]] name); repeatable.",
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=600,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait while the daemon is fetching the same feed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of outcomes.")
def intel_sync(config_file: str | None, names: tuple[str, ...], wait: float, as_json: bool) -> None:
    """Fetch the feeds once now, into the store (a running daemon picks the
    entries up within a second). APIBAN pages from where it stopped, at
    its rate limit: a first sync of thousands of addresses takes minutes.
    Exits 1 if a feed failed (its last good list stays)."""
    from ..daemon.intel_commands import select, sync

    config = config_from(config_file)
    try:
        feeds = select(config, names)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    outcomes = sync(config, feeds, wait=wait, show=not as_json and sys.stderr.isatty())
    if as_json:
        render.print_json(
            [{"feed": o.feed, "ok": o.ok, "summary": o.summary, **o.details} for o in outcomes]
        )
    else:
        render.sync_outcomes(outcomes)
    if not all(o.ok for o in outcomes):
        sys.exit(1)


@intel.command("lookup")
@CONFIG_OPTION
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def intel_lookup(config_file: str | None, address: str, as_json: bool) -> None:
    """What sipwarden knows of ADDRESS: its country, the feeds that list it
    and since when, whether it is banned, trusted or allow-listed, and what
    its next packet meets. Asks the daemon, or reads the store."""
    config = config_from(config_file)
    answer = ask_daemon(config, {"cmd": "intel-lookup", "target": address})
    if answer is None:
        from ..daemon.intel_commands import offline_lookup

        try:
            answer = {"ok": True, **offline_lookup(config, address)}
        except ValueError as exc:
            if isinstance(exc, PolicyError):
                click.echo(f"sipwarden: bad policy: {exc}", err=True)
                sys.exit(2)
            answer = {"ok": False, "error": f"{address!r} is not an IP address"}
    if not answer.pop("ok", False):
        raise click.BadParameter(str(answer.get("error")), param_hint="ADDRESS")
    if as_json:
        render.print_json(answer)
    else:
        render.intel_lookup(answer)
