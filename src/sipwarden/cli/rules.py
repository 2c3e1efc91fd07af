"""`sipwarden rules list` and `sipwarden explain`: the rules in force, and
which of them one SIP message meets.

Both build the policy from the config as the daemon does; `rules list`
adds the running daemon's hit counts when it answers, and `explain` gives
the verdict the running edge gives for the same bytes from the same source.
"""

from __future__ import annotations

import ipaddress
from typing import Any, BinaryIO

import click

from ..policy import describe_rule
from ..sip import PING, SipError, StreamFramer
from ..values import Peer
from . import render
from .common import CONFIG_OPTION, ask_daemon, config_from, policy_from


@click.group()
def rules() -> None:
    """The rules in force: the operator's, then the built-in pack."""


@rules.command("list")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def rules_list(config_file: str | None, as_json: bool) -> None:
    """List every rule in evaluation order, with hit counts when the daemon runs."""
    config = config_from(config_file)
    policy = policy_from(config)
    stats: dict[str, Any] | None = ask_daemon(config, {"cmd": "stats"}, timeout=2)
    rows = [
        describe_rule(
            rule,
            None if stats is None else stats.get("hits", {}).get(rule.id, 0),
            None if stats is None else stats.get("monitored", {}).get(rule.id, 0),
        )
        for rule in policy.rules.rules
    ]
    if as_json:
        render.print_json(rows)
    else:
        render.rules_table(rows, hits=bool(stats))


def _source_flow(source: str, transport: str) -> Peer:
    """``192.0.2.7``, ``192.0.2.7:5070``, ``2001:db8::7`` or ``[2001:db8::7]:5070``."""
    if source.startswith("[") and "]:" in source:
        host, _, port = source.rpartition(":")
    elif source.count(":") == 1:
        host, _, port = source.partition(":")
    else:
        host, port = source, ""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise click.BadParameter(f"{source!r} is not an IP address (or IP:port)") from None
    return Peer(transport, ip.compressed, int(port) if port.isdigit() else 5060)


@click.command()
@CONFIG_OPTION
@click.argument("file", type=click.File("rb"))
@click.option(
    "--source", default="192.0.2.1", show_default=True, help="The sender's IP (or IP:port)."
)
@click.option(
    "--transport", type=click.Choice(["udp", "tcp", "tls"]), default="udp", show_default=True
)
@click.option(
    "--port",
    "local_port",
    type=int,
    default=5060,
    show_default=True,
    help="Our port it arrived on.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def explain(
    config_file: str | None,
    file: BinaryIO,
    source: str,
    transport: str,
    local_port: int,
    as_json: bool,
) -> None:
    """Which rules match one SIP message, in order, and the final verdict.

    FILE holds one message as it arrives (- for stdin); the verdict is the
    one the running edge gives for the same bytes from the same source.
    """
    config = config_from(config_file)
    policy = policy_from(config)
    flow = _source_flow(source, transport)
    data = file.read()
    if transport != "udp":
        framed = parse_stream_message(data)
        if framed is not None:
            data = framed
    result = policy.explain(data, flow, local_port)
    if as_json:
        render.print_json(result)
    else:
        render.explanation(result)


def parse_stream_message(data: bytes) -> bytes | None:
    """The first message framed as TCP does it (Content-Length decides)."""
    try:
        frames = [f for f in StreamFramer().feed(data) if f != PING]
    except SipError:
        return None
    return frames[0] if frames else None
