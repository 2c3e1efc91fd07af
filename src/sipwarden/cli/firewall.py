"""`sipwarden firewall show|lane|flush`: the kernel's side of the bans.

All talk to nftables directly (the daemon need not run): ``show`` lists
what the kernel drops now in one listing, ``lane`` the pre-filter that
keeps phones served under a flood (its counters, the sources that logged
in, the trusted networks), ``flush`` removes sipwarden's table; the bans
stay in the store for the daemon to put back.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import click

from ..enforce import EnforcerError, NftablesEnforcer
from . import render
from .common import CONFIG_OPTION, config_from


@click.group()
def firewall() -> None:
    """The kernel's side of the bans (nftables)."""


@firewall.command("show")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--feeds", "with_feeds", is_flag=True, help="List the feed sets' elements too.")
def firewall_show(config_file: str | None, as_json: bool, with_feeds: bool) -> None:
    """The addresses the kernel drops now, and how long each has left; the
    threat feeds' sets are counted (listed with --feeds)."""
    import asyncio

    from ..daemon.bans import enforcer_for

    config = config_from(config_file)
    enforcer = enforcer_for(config, "nftables")
    assert isinstance(enforcer, NftablesEnforcer)

    try:
        seen = asyncio.run(enforcer.overview())  # one listing: the feed sets may be big
    except (OSError, EnforcerError) as exc:
        click.echo(f"sipwarden: {exc}", err=True)
        sys.exit(1)
    if as_json:
        shown: dict[str, Any] = {
            "elements": seen.elements,
            "dropped": seen.dropped,
            "feed_count": len(seen.feed_elements),
            "feed_dropped": seen.feed_dropped,
        }
        if with_feeds:
            shown["feed_elements"] = seen.feed_elements
        render.print_json(shown)
    else:
        render.firewall_overview(enforcer.name, seen, with_feeds)


@firewall.command("lane")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--list", "listed", is_flag=True, help="List the known-good sources too.")
def firewall_lane(config_file: str | None, as_json: bool, listed: bool) -> None:
    """The kernel lane: packets of known-good and trusted sources let
    through, unknown ones passed and dropped (per prefix, in total), and
    the sources that logged in, with their time left."""
    import asyncio

    from ..daemon.bans import enforcer_for
    from ..daemon.lane import lane_settings

    config = config_from(config_file)
    try:
        seen = asyncio.run(enforcer_for(config, "nftables").lane_view())
    except (OSError, EnforcerError) as exc:
        click.echo(f"sipwarden: {exc}", err=True)
        sys.exit(1)
    settings = lane_settings(config)
    if as_json:
        render.print_json(
            {
                "present": seen.present,
                "settings": None if settings is None else dataclasses.asdict(settings),
                "counters": seen.counters,
                "known_good": seen.known_good,
                "trusted": seen.trusted,
            }
        )
    else:
        render.firewall_lane(seen, settings, listed)


@firewall.command("flush")
@CONFIG_OPTION
def firewall_flush(config_file: str | None) -> None:
    """Remove sipwarden's nftables table: the kernel drops nothing more.

    The bans stay in the store; the daemon puts them back when it starts.
    Host mode's queue rules go too (also its iptables chains, if used): the
    PBX's traffic then passes unjudged, whatever [host] fail says.
    """
    import asyncio

    from ..daemon.bans import enforcer_for
    from ..enforce.queue import QueueRules
    from ..hostmode import settings_of

    config = config_from(config_file)
    try:
        asyncio.run(QueueRules(settings_of(config.host, config.firewall.table)).remove())
        asyncio.run(enforcer_for(config, "nftables").flush())
    except (OSError, EnforcerError) as exc:
        click.echo(f"sipwarden: {exc}", err=True)
        sys.exit(1)
    click.echo(f"removed the nftables table {config.firewall.table!r}")
