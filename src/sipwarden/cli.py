"""The ``sipwarden`` command."""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
from pathlib import Path
from typing import Any, BinaryIO

import click

from . import __version__
from .config import Config, ConfigError, load_config
from .daemon.control import ControlError, ask
from .enforce import EnforcerError, NftablesEnforcer
from .fetch.dns import resolve
from .fetch.geoip import open_geo
from .policy import Policy, PolicyError, RuleError, describe_rule, rules_policy
from .sip import PING, SipError, StreamFramer, parse, parse_frame
from .sip.describe import message_dict
from .values import Peer


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sipwarden")
def main() -> None:
    """sipwarden: a SIP security edge in front of your PBX."""


CONFIG_OPTION = click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="TOML config (default: embedded)",
)


def _config(config_file: str | None) -> Config:
    try:
        return load_config(config_file)
    except ConfigError as exc:
        click.echo(f"sipwarden: bad configuration: {exc}", err=True)
        sys.exit(2)


def _policy(config: Config) -> Policy:
    try:
        return rules_policy(config.policy, resolve=resolve)
    except (RuleError, PolicyError) as exc:
        click.echo(f"sipwarden: bad policy: {exc}", err=True)
        sys.exit(2)


@main.command()
@CONFIG_OPTION
def run(config_file: str | None) -> None:
    """Run the edge until SIGTERM/SIGINT."""
    from .app import run as run_edge

    config = _config(config_file)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per feed request otherwise
    try:
        run_edge(config, Path(config_file) if config_file else None)
    except (RuleError, PolicyError) as exc:
        click.echo(f"sipwarden: bad policy: {exc}", err=True)
        sys.exit(2)
    except (OSError, EnforcerError) as exc:
        click.echo(f"sipwarden: cannot start: {exc}", err=True)
        sys.exit(1)


@main.command()
@click.option(
    "--hold",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    metavar="SECONDS",
    help="Keep the edge and its API running this long after the summary.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.option("-v", "--verbose", is_flag=True, help="Show the edge's log on stderr.")
def demo(hold: float, as_json: bool, verbose: bool) -> None:
    """Watch the edge work, on loopback only, in a few seconds.

    It starts an edge in front of a small built-in PBX, replays real scanner
    probes, an enumeration and a password-guessing run against it while a
    phone registers alongside, and prints what was blocked, who was banned
    and why, and where the API is. It needs no config, privileges or
    firewall, and leaves nothing behind. Exits 1 if the edge did not behave.
    """
    from .demo import run_demo

    sys.exit(run_demo(hold=hold, as_json=as_json, verbose=verbose))


@main.command()
@CONFIG_OPTION
def reload(config_file: str | None) -> None:
    """Make the running daemon re-read its rules and trusted peers.

    A broken rule file is refused with the error, and the rules in force stay.
    """
    config = _config(config_file)
    try:
        answer = ask(config.control.socket, {"cmd": "reload"})
    except ControlError as exc:
        click.echo(f"sipwarden: {exc}", err=True)
        sys.exit(1)
    if not answer.get("ok"):
        click.echo(
            f"sipwarden: reload refused, the old rules stay in force:\n{answer.get('error')}",
            err=True,
        )
        sys.exit(1)
    click.echo(f"reloaded: {answer.get('rules')} rules in force")


@main.group()
def rules() -> None:
    """The rules in force: the operator's, then the built-in pack."""


@rules.command("list")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def rules_list(config_file: str | None, as_json: bool) -> None:
    """List every rule in evaluation order, with hit counts when the daemon runs."""
    config = _config(config_file)
    policy = _policy(config)
    try:
        stats: dict[str, Any] | None = ask(config.control.socket, {"cmd": "stats"}, timeout=2)
    except ControlError:
        stats = None
    rows = [
        describe_rule(
            rule,
            None if stats is None else stats.get("hits", {}).get(rule.id, 0),
            None if stats is None else stats.get("monitored", {}).get(rule.id, 0),
        )
        for rule in policy.rules.rules
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{len(rows)} rules" + ("" if stats else " (daemon not running: no hit counts)")
    )
    for column in ("id", "action", "mode", "description") + (
        ("hits", "monitored") if stats else ()
    ):
        table.add_column(column, overflow="fold")
    for row in rows:
        action = row["action"] + (f" {row['code']}" if "code" in row else "")
        cells = [row["id"], action, row["mode"], row["description"]]
        if stats:
            cells += [str(row["hits"]), str(row["monitored"])]
        table.add_row(*cells)
    Console().print(table)


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


@main.command()
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
    config = _config(config_file)
    policy = _policy(config)
    flow = _source_flow(source, transport)
    data = file.read()
    if transport != "udp":
        framed = parse_stream_message(data)
        if framed is not None:
            data = framed
    result = policy.explain(data, flow, local_port)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"source     {result['source']}" + (" (trusted peer)" if result["trusted"] else ""))
    if not result["parsed"]:
        click.echo("parsed     no: not a SIP message")
    for rule in result["matching_rules"]:
        click.echo(f"matches    {rule['id']}  ({rule['action']}, {rule['mode']}; {rule['origin']})")
    if result["parsed"] and not result["matching_rules"]:
        click.echo("matches    no rule")
    code = f" {result['code']}" if "code" in result else ""
    click.echo(
        f"verdict    {result['verdict']}{code}"
        + (f"  ({result['reason']})" if result["reason"] else "")
    )


@main.command()
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
    from rich.console import Console

    from .replay import replay as replay_capture

    config = _config(config_file)
    policy = _policy(config)
    try:
        report = replay_capture(
            capture, policy, ports=ports or (5060,), progress=not as_json and sys.stderr.isatty()
        )
    except (OSError, ValueError) as exc:
        click.echo(f"sipwarden: cannot read {capture}: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        report.render(Console(width=None if sys.stdout.isatty() else 160))


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


def parse_stream_message(data: bytes) -> bytes | None:
    """The first message framed as TCP does it (Content-Length decides)."""
    try:
        frames = [f for f in StreamFramer().feed(data) if f != PING]
    except SipError:
        return None
    return frames[0] if frames else None


# ------------------------------------------------------------------- bans


@main.group()
def bans() -> None:
    """The ban book: who is banned, why, and until when.

    With the daemon running, changes go through it (enforced at once, in
    every worker and the kernel); without it, to the store, and the daemon
    enforces them when it starts.
    """


def _daemon(config: Config, request: dict[str, Any]) -> dict[str, Any] | None:
    """The daemon's answer, or None when no daemon is running."""
    try:
        return ask(config.control.socket, request, timeout=10)
    except ControlError:
        return None


def _when(epoch: float | None) -> str:
    import time

    if epoch is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _bad_target(target: str) -> str:
    from .values import canonical

    try:
        return canonical(target)
    except ValueError:
        raise click.BadParameter(f"{target!r} is not an IP address or a CIDR") from None


@bans.command("list")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def bans_list(config_file: str | None, as_json: bool) -> None:
    """The bans in force (read from the store; the daemon need not run)."""
    import time

    from .store.sqlite import BanStore

    config = _config(config_file)
    store = BanStore(config.storage.path)
    try:
        rows = store.in_force(time.time())
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} bans in force")
    for column in ("ip", "reason", "detector", "since", "until", "offence"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["ip"],
            row["reason"],
            row["detector"],
            _when(row["created_at"]),
            _when(row["expires_at"]),
            str(row["offence"]),
        )
    Console().print(table)


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
    from .config import parse_duration

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
    config = _config(config_file)
    request = {"cmd": "bans-add", "target": target, "duration": duration, "reason": reason}
    answer = _daemon(config, request)
    if answer is None:
        answer = _offline(config, request)
    if not answer.get("ok"):
        click.echo(f"sipwarden: {answer.get('error')}", err=True)
        sys.exit(1)
    ban = answer["ban"]
    click.echo(f"banned {ban['ip']} until {_when(ban['expires_at'])}: {ban['reason']}")


@bans.command("remove")
@CONFIG_OPTION
@click.argument("address")
def bans_remove(config_file: str | None, address: str) -> None:
    """Lift the ban on ADDRESS now."""
    target = _bad_target(address)
    config = _config(config_file)
    request = {"cmd": "bans-remove", "target": target}
    answer = _daemon(config, request)
    if answer is None:
        answer = _offline(config, request)
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
    import time

    from .store.sqlite import BanStore

    target = _bad_target(address)
    config = _config(config_file)
    store = BanStore(config.storage.path)
    try:
        store.close_expired(time.time())
        history = store.history(target)
        in_force = [b for b in store.in_force(time.time()) if b["ip"] == target]
    finally:
        store.close()
    shown = {"ip": target, "banned": bool(in_force), "history": history}
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    click.echo(f"{target}: " + ("banned" if in_force else "not banned"))
    if not history:
        click.echo("no ban on record")
    for n, ban in enumerate(history, 1):
        end = (
            f"ended {_when(ban['ended_at'])}"
            if ban["ended_at"] is not None
            else f"until {_when(ban['expires_at'])}"
        )
        click.echo(f"\n#{n} {_when(ban['created_at'])}, {end} (offence {ban['offence']})")
        click.echo(f"   {ban['reason']} [{ban['detector']}]")
        for line in ban["evidence"]:
            click.echo("   | " + line.replace("\n", "\n   | ").rstrip())


def _offline(config: Config, request: dict[str, Any]) -> dict[str, Any]:
    """``bans add``/``remove`` with no daemon: the same keeper the daemon
    runs (the same allow list, lengths, store and kernel), for one change."""
    import asyncio

    from .app import enforcer_for
    from .daemon.bans import BanKeeper, add_request, remove_request
    from .policy import with_state

    book = with_state(_policy(config), config, countries=open_geo(config.intel.geoip)).bans
    assert book is not None

    async def change() -> dict[str, Any]:
        keeper = BanKeeper(book, config.storage.path, enforcer_for(config))
        await keeper.start()
        try:
            handle = add_request if request["cmd"] == "bans-add" else remove_request
            return await handle(keeper, request)
        finally:
            await keeper.stop()  # written, enforced, conntrack cleaned up

    return asyncio.run(change())


def _nft_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from .intel.export import check_name

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
    """The bans in force as a feed for other edges and firewalls (read from
    the store; the daemon need not run)."""
    import time

    from .intel.export import DEFAULT_SET, DEFAULT_TABLE, export
    from .store.sqlite import BanStore

    if fmt != "nft" and (table or set_prefix):
        raise click.UsageError("--table and --set are for --format nft")
    config = _config(config_file)
    store = BanStore(config.storage.path)
    try:
        now = time.time()
        rows = store.in_force(now)
    finally:
        store.close()
    text = export(
        fmt, rows, now, table=table or DEFAULT_TABLE, set_prefix=set_prefix or DEFAULT_SET
    )
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        _replace_file(output, text)
    except OSError as exc:
        click.echo(f"sipwarden: cannot write {output}: {exc}", err=True)
        sys.exit(1)


def _replace_file(path: Path, text: str) -> None:
    """Write ``path`` whole, then put it in place: a firewall may load it at
    any moment and must see the old file or the new one, never half of one."""
    import contextlib
    import os
    import tempfile

    # the temporary name ends in .tmp: an `include "dir/*.nft"` never loads it
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = path.stat().st_mode & 0o7777  # keep the old file's
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask  # as a plain open() would (mkstemp makes 0600)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ------------------------------------------------------------------ intel


@main.group()
def intel() -> None:
    """Threat feeds (APIBAN, lists of addresses) and country policy.

    The daemon refreshes the feeds itself; these commands run a refresh by
    hand and say what the feeds know of an address.
    """


@intel.command("sync")
@CONFIG_OPTION
@click.option(
    "--feed",
    "names",
    multiple=True,
    metavar="NAME",
    help="Only this feed (apiban:sip, or an [[intel.feeds]] name); repeatable.",
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=600,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait while the daemon is fetching the same feed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of outcomes.")
def intel_sync(config_file: str | None, names: tuple[str, ...], wait: float, as_json: bool) -> None:
    """Fetch the feeds once now, into the store (a running daemon picks the
    entries up within a second). APIBAN pages from where it stopped, at
    its rate limit: a first sync of thousands of addresses takes minutes.
    Exits 1 if a feed failed (its last good list stays)."""
    from .daemon.intel_commands import select, sync

    config = _config(config_file)
    try:
        feeds = select(config, names)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    outcomes = sync(config, feeds, wait=wait, show=not as_json and sys.stderr.isatty())
    if as_json:
        click.echo(
            json.dumps(
                [{"feed": o.feed, "ok": o.ok, "summary": o.summary, **o.details} for o in outcomes],
                indent=2,
            )
        )
    else:
        for outcome in outcomes:
            click.echo(outcome.summary, err=not outcome.ok)
    if not all(o.ok for o in outcomes):
        sys.exit(1)


@intel.command("lookup")
@CONFIG_OPTION
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def intel_lookup(config_file: str | None, address: str, as_json: bool) -> None:
    """What sipwarden knows of ADDRESS: its country, the feeds that list it
    and since when, whether it is banned, trusted or allow-listed, and what
    its next packet meets. Asks the daemon, or reads the store."""
    config = _config(config_file)
    answer = _daemon(config, {"cmd": "intel-lookup", "target": address})
    if answer is None:
        from .daemon.intel_commands import offline_lookup

        try:
            answer = {"ok": True, **offline_lookup(config, address)}
        except ValueError as exc:
            if isinstance(exc, PolicyError):
                click.echo(f"sipwarden: bad policy: {exc}", err=True)
                sys.exit(2)
            answer = {"ok": False, "error": f"{address!r} is not an IP address"}
    if not answer.pop("ok", False):
        raise click.BadParameter(str(answer.get("error")), param_hint="ADDRESS")
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    verdict = answer["verdict"]
    if verdict == "pass":
        verdict = "passes on its source (its messages meet the rules)"
    click.echo(f"{answer['ip']}: {verdict}")
    country = answer["country"] or "unknown"
    if answer["country_allowed"] is not None:
        country += " (allowed)" if answer["country_allowed"] else " (refused by the country policy)"
    click.echo(f"  country:  {country}")
    if not answer["listed"]:
        click.echo("  feeds:    not listed")
    for item in answer["listed"]:
        until = "" if item["expires_at"] is None else f", until {_when(item['expires_at'])}"
        click.echo(
            f"  feeds:    {item['feed']} lists {item['target']} since"
            f" {_when(item['first_seen'])} (last {_when(item['last_seen'])}{until})"
        )
    ban = answer["banned"]
    click.echo(
        "  banned:   "
        + ("no" if ban is None else f"{ban['reason']} until {_when(ban['expires_at'])}")
    )
    if answer["trusted"]:
        click.echo("  trusted peer: feeds and countries never drop it (a listing is reported)")
    elif answer["allow_listed"]:
        click.echo("  allow-listed: feeds and countries never drop it (a listing is reported)")


# ----------------------------------------------------------------- status


@main.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(config_file: str | None, as_json: bool) -> None:
    """Whether the daemon runs, the bans in force, the threat feeds (size,
    last success, last error) and the country policy."""
    import time

    from .store.sqlite import BanStore

    config = _config(config_file)
    stats = _daemon(config, {"cmd": "stats"})
    if stats is not None:
        shown: dict[str, Any] = {
            "running": True,
            "bans_in_force": stats.get("bans-in-force", 0),
            "intel": stats.get("intel", {}),
            "verdicts": stats.get("verdicts", {}),
        }
    else:
        from .daemon.intel_commands import offline_status

        store = BanStore(config.storage.path)
        try:
            in_force = len(store.in_force(time.time()))
        finally:
            store.close()
        shown = {
            "running": False,
            "bans_in_force": in_force,
            "intel": {"feeds": offline_status(config)},
        }
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    click.echo(
        "daemon: " + ("running" if shown["running"] else f"not running ({config.control.socket})")
    )
    click.echo(f"bans in force: {shown['bans_in_force']}")
    feeds = shown["intel"].get("feeds", [])
    if not feeds:
        click.echo("feeds: none configured")
    for feed in feeds:
        line = (
            f"feed {feed['feed']}: {feed['entries']:,} entries, last success"
            f" {_when(feed['last_success'])}"
        )
        if feed.get("bad_lines"):
            line += f", {feed['bad_lines']} bad lines skipped"
        if feed["last_error"]:
            line += f"; last error {_when(feed['last_error_at'])}: {feed['last_error']}"
        click.echo(line)
    countries = shown["intel"].get("countries")
    if countries:
        rule = (
            f"only {', '.join(countries['allow'])}"
            if countries["allow"] is not None
            else f"all but {', '.join(countries['deny'])}"
        )
        click.echo(f"countries: {rule} (unknown: {countries['unknown']})")
    kernel = shown["intel"].get("kernel")
    if kernel:
        click.echo(f"kernel feed sets: {kernel['elements']:,} elements")
    exempt = shown["intel"].get("listed_but_exempt")
    if exempt:
        click.echo(f"listed but trusted or allow-listed (kept working): {', '.join(exempt)}")


# --------------------------------------------------------------- firewall


@main.group()
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

    from .app import enforcer_for

    config = _config(config_file)
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
        click.echo(json.dumps(shown, indent=2))
        return
    click.echo(
        f"enforcer {enforcer.name}: {len(seen.elements)} banned, {seen.dropped} packets dropped;"
        f" feeds: {len(seen.feed_elements)} listed, {seen.feed_dropped} packets dropped"
    )
    if with_feeds:
        for target, left in sorted(seen.feed_elements.items()):
            click.echo(
                f"  feed {target:<35} " + ("no end" if left is None else f"{left:.0f} s left")
            )
    for target, left in sorted(seen.elements.items()):
        click.echo(f"  {target:<40} " + ("permanent" if left is None else f"{left:.0f} s left"))


@firewall.command("flush")
@CONFIG_OPTION
def firewall_flush(config_file: str | None) -> None:
    """Remove sipwarden's nftables table: the kernel drops nothing more.

    The bans stay in the store; the daemon puts them back when it starts.
    """
    import asyncio

    from .app import enforcer_for

    config = _config(config_file)
    try:
        asyncio.run(enforcer_for(config, "nftables").flush())
    except (OSError, EnforcerError) as exc:
        click.echo(f"sipwarden: {exc}", err=True)
        sys.exit(1)
    click.echo(f"removed the nftables table {config.firewall.table!r}")


if __name__ == "__main__":  # pragma: no cover
    main()
