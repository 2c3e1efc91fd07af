"""`sipwarden parse`: one SIP message's parsed view, as JSON.

The parser's verdict, unchanged: exit 0 when the message is valid, 1 with
the reason when it is not (the JSON then says why too).
"""

from __future__ import annotations

import json
import sys
from typing import BinaryIO

import click

from ..sip import SipError, parse, parse_frame
from ..sip.describe import message_dict


@click.command("parse")
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
