"""The ``sipwarden`` command."""

from __future__ import annotations

import json
import logging
import sys
from typing import BinaryIO

import click

from . import __version__
from .sip import SipError, parse, parse_frame
from .sip.describe import message_dict


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sipwarden")
def main() -> None:
    """sipwarden: a SIP security edge in front of your PBX."""


@main.command()
@click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="TOML config (default: embedded)",
)
def run(config_file: str | None) -> None:
    """Run the edge until SIGTERM/SIGINT."""
    from .app import run as run_edge
    from .config import ConfigError, load_config

    try:
        config = load_config(config_file)
    except ConfigError as exc:
        click.echo(f"sipwarden: bad configuration: {exc}", err=True)
        sys.exit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        run_edge(config)
    except OSError as exc:
        click.echo(f"sipwarden: cannot start: {exc}", err=True)
        sys.exit(1)


@main.command("parse")
@click.argument("file", type=click.File("rb"))
@click.option(
    "--stream", is_flag=True, help="Frame as TCP/TLS (Content-Length required) instead of UDP."
)
@click.option(
    "--lenient", is_flag=True, help="Only frame and split headers; skip the full validation."
)
def parse_cmd(file: BinaryIO, stream: bool, lenient: bool) -> None:
    """Print one SIP message's parsed view as JSON (FILE may be - for stdin).

    Exits 0 when the message is valid, 1 with the reason when it is not.
    """
    data = file.read()
    try:
        msg = parse_frame(data) if stream else parse(data)
        if not lenient:
            msg.validate()
    except SipError as exc:
        click.echo(
            json.dumps({"valid": False, "reason": exc.reason, "detail": exc.detail}, indent=2)
        )
        click.echo(f"invalid SIP message: {exc.reason}: {exc.detail}", err=True)
        sys.exit(1)
    click.echo(json.dumps({"valid": True, **message_dict(msg)}, indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
