"""`sipwarden doctor`: check a setup, one line per check with its fix."""

from __future__ import annotations

import sys

import click

from . import render


@click.command()
@click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    required=True,
    help="The TOML config to check (as `run -c` would use it).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of the checks.")
@click.option(
    "--rtp-ports",
    default="10000-20000",
    show_default=True,
    help="The PBX's RTP range (Asterisk's rtp.conf), checked in the local firewall.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 30),
    default=2.0,
    show_default=True,
    help="Seconds for each network probe (the PBX's OPTIONS, each feed).",
)
def doctor(config_file: str, as_json: bool, rtp_ports: str, timeout: float) -> None:
    """Check this machine's setup: the config, the ports, the PBX, nftables,
    the store, the feeds, a bypass around the edge, the RTP ports. Exits 0
    only when no check fails."""
    from ..doctor import examine, rtp_range

    try:
        ports = rtp_range(rtp_ports)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--rtp-ports") from None
    results = examine(config_file, rtp_ports=ports, timeout=timeout)
    if as_json:
        render.print_json([r.as_dict() for r in results])
    else:
        render.doctor(results)
    sys.exit(0 if all(r.ok for r in results) else 1)
