"""`sipwarden init`: look at this machine's PBX, ask (or take flags), write
a commented config for edge, host or logwatch mode, and print the change
the PBX needs as a unified diff (edge mode); the PBX's files are never
edited.

What was found and every note go to stderr; the diff alone goes to
stdout, so ``sipwarden init ... > pbx.diff`` gives a file ``patch -p1 -d /``
applies. ``--yes`` asks nothing (the found values, or the flags); a value
it cannot find (the public address) is then an error naming its flag. The
config written is loaded before it is written: a config `init` writes
always loads.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import sys
import tomllib
from pathlib import Path
from typing import NoReturn

import click

from ..config import ConfigError, config_from_dict
from ..survey import (
    MODES,
    PBX_KINDS,
    Machine,
    Mode,
    Pbx,
    PbxKind,
    Plan,
    config_text,
    edge_change,
    free_port,
    listen_host,
    look,
    public_address,
    suggest_mode,
    unified_diff,
)


def say(text: str = "") -> None:
    click.echo(text, err=True)


def fail(message: str) -> NoReturn:
    click.echo(f"sipwarden init: {message}", err=True)
    sys.exit(2)


@click.command()
@click.option(
    "--mode", type=click.Choice(MODES), help="edge in front, host (in place) or logwatch."
)
@click.option(
    "--pbx", "kind", type=click.Choice(PBX_KINDS), help="The PBX (default: the one found)."
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Read the machine under this folder (a copy of /etc, /var/log, /proc).",
)
@click.option(
    "--public-ip",
    callback=lambda _ctx, _param, value: _address(value),
    help="The address phones reach this machine at (default: found).",
)
@click.option("--pbx-port", type=click.IntRange(1, 65535), help="The PBX's new port on 127.0.0.1.")
@click.option(
    "--state-dir",
    help="Where the store, key and socket go (default: next to the config).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("sipwarden.toml"),
    show_default=True,
    help="The config file to write.",
)
@click.option("--yes", "-y", is_flag=True, help="Ask nothing: take what was found and the flags.")
def init(
    mode: Mode | None,
    kind: PbxKind | None,
    root: Path,
    public_ip: str | None,
    pbx_port: int | None,
    state_dir: str | None,
    output: Path,
    yes: bool,
) -> None:
    """Write a config for this machine's PBX and print the change it needs."""
    machine = look(root)
    show(machine)
    pbx = choose_pbx(machine, kind, yes)
    if mode is None:
        suggested = suggest_mode(pbx)
        mode = (
            suggested
            if yes
            else click.prompt("Mode", type=click.Choice(MODES), default=suggested, err=True)
        )
    assert mode is not None
    if mode == "edge":
        if pbx is None:
            fail("edge mode moves a PBX behind the edge, and none was found: give --pbx and --root")
        public = public_ip or public_address(machine, pbx)
        if public is None and not yes:
            public = click.prompt(
                "The public address phones reach this machine at",
                err=True,
                value_proc=_address,
            )
        if public is None:
            fail("no public address found in the PBX's configuration: give --public-ip")
        assert pbx is not None and public is not None  # fail() exits
        port = pbx_port or free_port(machine, pbx)
        if pbx_port is None and not yes:
            port = click.prompt("The PBX's new port on 127.0.0.1", default=port, type=int, err=True)
        plan = Plan(mode, pbx, public, listen_host(pbx), port, state_dir)
    else:
        plan = Plan(mode, pbx, state_dir=state_dir)
    text = config_text(plan, dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    try:
        check(text)
    except ConfigError as exc:  # a value found in the PBX's files that sipwarden refuses
        fail(f"the config would not load, so it was not written:\n{exc}")
    if output.exists() and not yes:
        click.confirm(f"{output} exists: overwrite it?", abort=True, err=True)
    output.write_text(text, encoding="utf-8")
    say(f"wrote {output} ({mode} mode)")
    if mode != "edge":
        say("the PBX needs no change")
        return
    changes = edge_change(root, plan)
    if not changes:
        say("the PBX needs no change: nothing of it listens on 5060")
        return
    say(f"\nThe change {pbx.kind if pbx else ''} needs (sipwarden does not edit these files):")
    for change in changes:
        if change.note:
            say(f"  note: {change.note}")
    say("  apply it with: patch -p1 -d / < this-diff   (then restart the PBX)")
    click.echo(unified_diff(changes), nl=False)


def show(machine: Machine) -> None:
    if not machine.pbxs:
        say("no PBX configuration found (Asterisk, FreePBX, FreeSWITCH, Kamailio)")
    for pbx in machine.pbxs:
        say(f"found {pbx.kind}: {', '.join(pbx.files[:4])}")
        for ls in pbx.listeners:
            say(f"  SIP {ls.transport} on {ls.host}:{ls.port}  ({ls.where})")
        if pbx.external:
            say(f"  advertises {pbx.external}")
        for log in pbx.logs:
            say(f"  logs: {log.path or 'journal ' + str(log.journal)} ({log.format})")
        for note in pbx.notes:
            say(f"  note: {note}")
    for sock in machine.on_sip_ports():
        owner = f" ({sock.program})" if sock.program else ""
        say(f"bound: {sock.transport} {sock.host}:{sock.port}{owner}")


def _address(value: str | None) -> str | None:
    """An IP address, or a usage error that says so."""
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IP address (e.g. 203.0.113.5)") from None


def choose_pbx(machine: Machine, kind: PbxKind | None, yes: bool) -> Pbx | None:
    if kind is not None:
        pbx = machine.pbx(kind)
        if pbx is None:
            fail(f"--pbx {kind}: its configuration was not found under the root")
        return pbx
    if len(machine.pbxs) <= 1 or yes:
        return machine.pbxs[0] if machine.pbxs else None
    names = [p.kind for p in machine.pbxs]
    chosen = click.prompt("Which PBX", type=click.Choice(names), default=names[0], err=True)
    return machine.pbx(chosen)


def check(text: str) -> None:
    """The config loads (host mode's [host] where this build knows it)."""
    data = tomllib.loads(text)
    try:
        config_from_dict(data)
    except ConfigError as exc:
        if "host" in data and "host: unknown key" in str(exc):
            data.pop("host")
            config_from_dict(data)
            say("note: this build does not know [host] yet: `run` takes it once host mode is in")
            return
        raise
