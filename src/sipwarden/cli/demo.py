"""`sipwarden demo`: the edge at work on loopback, in a few seconds.

The demo itself (its PBX, its probes, its summary) lives in ``demo``;
this is only its command line.
"""

from __future__ import annotations

import math
import sys

import click


@click.command()
@click.option(
    "--hold",
    type=click.FloatRange(min=0),
    is_flag=False,
    flag_value=math.inf,
    default=0,
    metavar="[SECONDS]",
    help="Keep the edge, its API and the dashboard up after the summary: until Ctrl-C"
    " or SIGTERM, or SECONDS.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.option("-v", "--verbose", is_flag=True, help="Show the edge's log on stderr.")
def demo(hold: float, as_json: bool, verbose: bool) -> None:
    """Watch the edge work, on loopback only, in a few seconds.

    It starts an edge in front of a small built-in PBX, replays real scanner
    probes, an enumeration and a password-guessing run against it while a
    phone registers alongside, and prints what was blocked, who was banned
    and why, and where the API and the dashboard are. It needs no config, privileges or
    firewall, and leaves nothing behind. Exits 1 if the edge did not behave.
    """
    from ..demo import run_demo

    sys.exit(run_demo(hold=hold, as_json=as_json, verbose=verbose))
