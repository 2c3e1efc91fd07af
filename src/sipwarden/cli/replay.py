"""`sipwarden replay`: what the policy would have done with a capture.

The replay itself (pcap and pcapng, UDP and TCP, the per-source report)
lives in ``replay``; this builds the policy from the config, runs it and
shows the report.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import render
from .common import CONFIG_OPTION, config_from, policy_from


@click.command()
@CONFIG_OPTION
@click.argument("capture", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--port",
    "ports",
    type=int,
    multiple=True,
    help="SIP port(s) the edge listens on (default 5060).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def replay(config_file: str | None, capture: Path, ports: tuple[int, ...], as_json: bool) -> None:
    """What the policy would have done with a capture (pcap or pcapng, UDP and TCP).

    Every SIP message sent to the edge's port(s) is judged as the live edge
    judges it; the summary is per source: verdicts and the rules hit.
    """
    from ..offline import replay as replay_capture

    config = config_from(config_file)
    policy = policy_from(config)
    try:
        report = replay_capture(
            capture, policy, ports=ports or (5060,), progress=not as_json and sys.stderr.isatty()
        )
    except (OSError, ValueError) as exc:
        click.echo(f"sipwarden: cannot read {capture}: {exc}", err=True)
        sys.exit(1)
    if as_json:
        render.print_json(report.as_dict())
    else:
        render.replay_report(report)
