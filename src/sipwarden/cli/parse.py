"""`sipwarden parse`: one SIP message's parsed view, as JSON.

Exit 0 with the view when the message is valid, or when its only fault is
one header value that does not parse (shown raw, the defect listed: some
scanners send a Contact that is not a URI); 1 with the reason when it is
refused (framing, the start line, anything more). ``sip.describe.parse_view``
decides; the edge's verdicts do not depend on it.
"""

from __future__ import annotations

import json
import sys
from typing import BinaryIO

import click

from ..sip import SipError
from ..sip.describe import parse_view


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

    Exits 0 when the message is valid or only one header value is unreadable
    (shown with the defect listed), 1 with the reason when it is refused.
    """
    data = file.read()
    try:
        view = parse_view(data, stream=stream, validate=not lenient)
    except SipError as exc:
        click.echo(
            json.dumps({"valid": False, "reason": exc.reason, "detail": exc.detail}, indent=2)
        )
        click.echo(f"invalid SIP message: {exc.reason}: {exc.detail}", err=True)
        sys.exit(1)
    click.echo(json.dumps({"valid": True, **view}, indent=2))
