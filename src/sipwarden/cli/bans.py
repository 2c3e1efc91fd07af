"""`sipwarden bans list|add|remove|show|export`: the ban book.

With the daemon running, ``add`` and ``remove`` go through it (enforced at
once, in every worker and the kernel); without it, ``daemon.offline`` makes
the change with the daemon's own keeper. ``list`` and ``export`` ask the
daemon (it knows the bans the store has not taken yet) and read the store
when none runs; ``show`` reads the store.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import render
from .common import CONFIG_OPTION, ask_daemon, config_from, policy_from

if TYPE_CHECKING:
    from ..config import Config


@click.group()
def bans() -> None:
    """The ban book: who is banned, why, and until when.

    With the daemon running, changes go through it (enforced at once, in
    every worker and the kernel); without it, to the store, and the daemon
    enforces them when it starts.
    """


def _bad_target(target: str) -> str:
    from ..values import canonical

    try:
        return canonical(target)
    except ValueError as exc:
        scoped = "%" in target  # say why that one cannot be
        raise click.BadParameter(
            str(exc) if scoped else f"{target!r} is not an IP address or a CIDR"
        ) from None


def _in_force(config: Config, now: float | None = None) -> list[dict[str, Any]]:
    """The bans in force: the running daemon's answer (it knows the bans the
    store has not taken yet), else the store's."""
    from ..daemon.offline import bans_in_force
    from ..store import StoreError

    answer = ask_daemon(config, {"cmd": "bans-list"})
    if answer is not None and answer.get("ok"):
        rows: list[dict[str, Any]] = answer["bans"]
        return rows
    try:
        return bans_in_force(config, now)
    except StoreError as exc:
        click.echo(f"sipwarden: {exc}", err=True)
        sys.exit(1)


@bans.command("list")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def bans_list(config_file: str | None, as_json: bool) -> None:
    """The bans in force (the daemon's, or the store's when it is not running)."""
    config = config_from(config_file)
    rows = _in_force(config)
    if as_json:
        render.print_json(rows)
    else:
        render.bans_table(rows)


@bans.command("add")
@CONFIG_OPTION
@click.argument("address")
@click.option("--for", "length", help="How long: 30m, 1h, 2d... (default: the progressive length)")
@click.option("--permanent", is_flag=True, help="Until removed.")
@click.option("--reason", default="added by the operator", show_default=True)
def bans_add(
    config_file: str | None, address: str, length: str | None, permanent: bool, reason: str
) -> None:
    """Ban ADDRESS (an IP address or a CIDR)."""
    from ..config import parse_duration

    target = _bad_target(address)
    if length and permanent:
        raise click.UsageError("--for and --permanent: choose one")
    duration: float | str | None = "progressive"
    if permanent:
        duration = None
    elif length:
        try:
            duration = parse_duration(length)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--for") from None
    config = config_from(config_file)
    request = {"cmd": "bans-add", "target": target, "duration": duration, "reason": reason}
    answer = ask_daemon(config, request)
    if answer is None:
        from ..daemon.offline import add_ban

        answer = add_ban(config, policy_from(config), request)
    if not answer.get("ok"):
        click.echo(f"sipwarden: {answer.get('error')}", err=True)
        sys.exit(1)
    ban = answer["ban"]
    click.echo(f"banned {ban['ip']} until {render.when(ban['expires_at'])}: {ban['reason']}")


@bans.command("remove")
@CONFIG_OPTION
@click.argument("address")
def bans_remove(config_file: str | None, address: str) -> None:
    """Lift the ban on ADDRESS now."""
    target = _bad_target(address)
    config = config_from(config_file)
    request = {"cmd": "bans-remove", "target": target}
    answer = ask_daemon(config, request)
    if answer is None:
        from ..daemon.offline import remove_ban

        answer = remove_ban(config, policy_from(config), request)
    if not answer.get("ok"):
        click.echo(f"sipwarden: {answer.get('error')}", err=True)
        sys.exit(1)
    click.echo(f"lifted the ban on {target}")


@bans.command("show")
@CONFIG_OPTION
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bans_show(config_file: str | None, address: str, as_json: bool) -> None:
    """Why ADDRESS is (or was) banned: the ban in force, its evidence, its history."""
    from ..daemon.offline import ban_record

    target = _bad_target(address)
    config = config_from(config_file)
    shown = ban_record(config, target)
    if as_json:
        render.print_json(shown)
    else:
        render.ban_record(shown)


def _nft_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from ..enforce.export import check_name

    try:
        return None if value is None else check_name(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@bans.command("export")
@CONFIG_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "nft"]),
    default="text",
    show_default=True,
    help="text: one address or CIDR per line; json: as `bans list --json`; nft: an `nft -f` script.",
)
@click.option("--table", callback=_nft_name, help="nft: the table (default sipwarden_feed).")
@click.option(
    "--set",
    "set_prefix",
    callback=_nft_name,
    help="nft: the sets' prefix, NAME4 and NAME6 (default sipwarden_bans).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write this file (replaced atomically) instead of printing.",
)
def bans_export(
    config_file: str | None,
    fmt: str,
    table: str | None,
    set_prefix: str | None,
    output: Path | None,
) -> None:
    """The bans in force as a feed for other edges and firewalls (the
    daemon's, or the store's when it is not running)."""
    import time

    from ..enforce.export import DEFAULT_SET, DEFAULT_TABLE, export
    from .files import replace_file

    if fmt != "nft" and (table or set_prefix):
        raise click.UsageError("--table and --set are for --format nft")
    config = config_from(config_file)
    now = time.time()
    rows = _in_force(config, now)
    text = export(
        fmt, rows, now, table=table or DEFAULT_TABLE, set_prefix=set_prefix or DEFAULT_SET
    )
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        replace_file(output, text)
    except OSError as exc:
        click.echo(f"sipwarden: cannot write {output}: {exc}", err=True)
        sys.exit(1)
