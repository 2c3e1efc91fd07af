"""How the `sipwarden` commands show their results: rich tables and lines
of text on stdout (JSON when asked).

The commands gather the data (the config, the policy, the daemon or the
store) and hand it here whole; nothing here reads a file, asks the daemon
or decides anything. The words and the layout are what operators and
scripts already read: change them only on purpose.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..daemon.intel_commands import Outcome
    from ..doctor import Result
    from ..enforce.lane import LaneSettings, LaneView
    from ..enforce.nftables import Overview
    from ..offline.report import ReplayReport


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def when(epoch: float | None) -> str:
    if epoch is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def rules_table(rows: list[dict[str, Any]], hits: bool) -> None:
    """`rules list`: ``hits`` when the daemon gave its hit counts."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{len(rows)} rules" + ("" if hits else " (daemon not running: no hit counts)")
    )
    for column in ("id", "action", "mode", "description") + (("hits", "monitored") if hits else ()):
        table.add_column(column, overflow="fold")
    for row in rows:
        action = row["action"] + (f" {row['code']}" if "code" in row else "")
        cells = [row["id"], action, row["mode"], row["description"]]
        if hits:
            cells += [str(row["hits"]), str(row["monitored"])]
        table.add_row(*cells)
    Console().print(table)


def explanation(result: dict[str, Any]) -> None:
    """`explain`: the source, the rules that match, the verdict."""
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


def replay_report(report: ReplayReport) -> None:
    """`replay`: the report's own tables, 160 columns wide when piped."""
    from rich.console import Console

    report.render(Console(width=None if sys.stdout.isatty() else 160))


def bans_table(rows: list[dict[str, Any]]) -> None:
    """`bans list`."""
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
            when(row["created_at"]),
            when(row["expires_at"]),
            str(row["offence"]),
        )
    Console().print(table)


def events_table(rows: list[dict[str, Any]]) -> None:
    """`events`: one line each, oldest first."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} events")
    for column in ("time", "kind", "source", "reason", "details"):
        table.add_column(column, overflow="fold")
    core = {"id", "time", "kind", "source", "reason"}
    for row in rows:
        details = ", ".join(f"{k}={v}" for k, v in row.items() if k not in core and v is not None)
        table.add_row(when(row["time"]), row["kind"], row["source"], row["reason"], details)
    Console().print(table)


def flows_table(rows: list[dict[str, Any]]) -> None:
    """`flows`: busiest first."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} flows")
    for column in ("source", "to", "first", "last", "packets", "bytes", "peak/s", "verdicts"):
        table.add_column(column, overflow="fold")
    for row in rows:
        port = "kernel" if row["source_port"] is None else row["source_port"]
        verdicts = ", ".join(f"{k} {v}" for k, v in row["verdicts"].items())
        table.add_row(
            f"{row['transport']}:{row['source']}:{port}",
            f"{row['destination']}:{row['destination_port']}",
            when(row["first_seen"]),
            when(row["last_seen"]),
            f"{row['packets']:,}",
            f"{row['bytes']:,}",
            str(row["peak_pps"]),
            verdicts,
        )
    Console().print(table)


def honeypot_table(rows: list[dict[str, Any]]) -> None:
    """`honeypot calls`: the most recently called first."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} honeypot call records")
    for column in ("source", "number", "normalised", "country", "calls", "first", "last", "tool"):
        table.add_column(column, overflow="fold")
    for row in rows:
        port = row.get("source_port")
        table.add_row(
            row["source"] + (f":{port}" if port is not None else ""),
            row["number"],
            row.get("normalised") or "",
            row.get("country") or "",
            f"{row['count']:,}",
            when(row["first_seen"]),
            when(row["last_seen"]),
            row.get("user_agent") or "",
        )
    Console().print(table)


def findings(rows: list[dict[str, Any]]) -> None:
    """`analysis run`: one finding a paragraph."""
    if not rows:
        click.echo("no findings")
    for row in rows:
        target = f" {row['target']}" if row["target"] else ""
        click.echo(f"[{row['severity']}] {row['analyser']}{target}: {row['summary']}")
        for line in row["evidence"]:
            click.echo(f"    {line}")
        decision = row.get("decision")
        if decision is not None:
            click.echo(f"    asks: ban {decision['target']} ({decision['detector']})")


def ban_record(shown: dict[str, Any]) -> None:
    """`bans show`: whether banned, then every ban on record and its evidence."""
    history = shown["history"]
    click.echo(f"{shown['ip']}: " + ("banned" if shown["banned"] else "not banned"))
    if not history:
        click.echo("no ban on record")
    for n, ban in enumerate(history, 1):
        end = (
            f"ended {when(ban['ended_at'])}"
            if ban["ended_at"] is not None
            else f"until {when(ban['expires_at'])}"
        )
        click.echo(f"\n#{n} {when(ban['created_at'])}, {end} (offence {ban['offence']})")
        origin = f", from fleet node {ban['origin']}" if ban.get("origin") else ""
        click.echo(f"   {ban['reason']} [{ban['detector']}{origin}]")
        for line in ban["evidence"]:
            click.echo("   | " + line.replace("\n", "\n   | ").rstrip())
    deceived(shown.get("deceived"), "\ndeceived: ")


def deceived(record: dict[str, Any] | None, head: str) -> None:
    """What deception gave a source (``offline.deceived``): its answers and
    the numbers it dialled into the honeypot."""
    if record is None:
        return
    answers = record["answers"]
    told = ", ".join(f"{a['count']} x {kind}" for kind, a in answers.items()) or "no answer"
    click.echo(head + told)
    if answers:
        first = min(a["first"] for a in answers.values())
        last = max(a["last"] for a in answers.values())
        click.echo(f"  from {when(first)} to {when(last)}")
    for call in record["calls"]:
        where = f" ({call['country']})" if call["country"] else ""
        click.echo(
            f"  dialled {call['number']}{where} {call['count']} x, last {when(call['last_seen'])}"
        )


def sync_outcomes(outcomes: list[Outcome]) -> None:
    """`intel sync`: a line per feed, the failed ones on stderr."""
    for outcome in outcomes:
        click.echo(outcome.summary, err=not outcome.ok)


def intel_lookup(answer: dict[str, Any]) -> None:
    """`intel lookup`: the verdict, the country, the feeds, the ban, the exemption."""
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
        until = "" if item["expires_at"] is None else f", until {when(item['expires_at'])}"
        click.echo(
            f"  feeds:    {item['feed']} lists {item['target']} since"
            f" {when(item['first_seen'])} (last {when(item['last_seen'])}{until})"
        )
    ban = answer["banned"]
    click.echo(
        "  banned:   "
        + ("no" if ban is None else f"{ban['reason']} until {when(ban['expires_at'])}")
    )
    deceived(answer.get("deceived"), "  deceived: ")
    if answer["trusted"]:
        click.echo("  trusted peer: feeds and countries never drop it (a listing is reported)")
    elif answer["allow_listed"]:
        click.echo("  allow-listed: feeds and countries never drop it (a listing is reported)")


MONITOR_BANNER = (
    "MODE: MONITOR - everything is judged, counted and recorded, NOTHING is dropped,"
    " banned, rejected or deceived (would-be bans are 'would-ban' events);"
    ' set [policy] mode = "enforce" to protect'
)


def fleet_intel_line(item: dict[str, Any]) -> str:
    """`status`: where one feed's list comes from in a fleet."""
    role = item.get("role")
    if role == "fetcher":
        line = "fetched by this node for the fleet"
    elif role == "alone":
        line = "fetched by this node alone (Redis away)"
    elif role == "fleet":
        line = (
            f"taken from the fleet: node {item.get('taken_from')}, version"
            f" {item.get('taken_version')}, {when(item.get('taken_at'))}"
        )
    else:
        line = f"waiting for the fleet's fetcher ({item.get('fetcher') or 'none yet'})"
    if item.get("fetcher_last_error") and role != "fetcher":
        line += (
            f"; the fetcher's last error {when(item.get('fetcher_last_error_at'))}:"
            f" {item['fetcher_last_error']}"
        )
    return f"feed {item['feed']} in the fleet: {line}"


def status(shown: dict[str, Any], socket: Path) -> None:
    """`status`: the daemon (else the ``socket`` it would answer on), the
    bans, the feeds, the country policy, the kernel's feed sets, the
    reflection budget."""
    click.echo("daemon: " + ("running" if shown["running"] else f"not running ({socket})"))
    if shown.get("mode") == "monitor":  # loudly: an operator must not mistake it for protection
        click.echo(MONITOR_BANNER)
    elif shown["running"]:
        click.echo("mode: enforce")
    click.echo(f"bans in force: {shown['bans_in_force']}")
    store = shown.get("store") or {}
    if store.get("error") or store.get("unwritten"):
        click.echo(
            f"store: {store.get('unwritten', 0)} ban changes not written yet (held, tried again"
            f" every second; in force all the same): {store.get('error')}"
        )
    lane = shown.get("lane")
    if lane is not None:
        click.echo(
            f"kernel lane: {lane.get('known-good', 0):,} sources known-good; unknown sources"
            f" dropped {lane.get('kernel-prefix-dropped', 0):,} per prefix,"
            f" {lane.get('kernel-total-dropped', 0):,} over the total"
        )
    elif shown["running"]:
        click.echo("kernel lane: none")
    fleet = shown.get("fleet")
    if fleet is not None:
        counters = fleet.get("counters", {})
        state = (
            f"DEGRADED, working alone ({fleet.get('last-error') or 'catching up'})"
            if fleet.get("degraded")
            else "up"
        )
        click.echo(
            f"fleet: node {fleet.get('node')}, {state}; {counters.get('published', 0)} bans"
            f" published, {counters.get('applied', 0)} applied, {fleet.get('queue', 0)} queued,"
            f" {counters.get('held-back', 0)} held back"
        )
    if "pbx_answered_at" in shown:  # (the daemon runs)
        answered = shown["pbx_answered_at"]
        click.echo("PBX: last answer " + (when(answered) if answered else "none yet"))
    host = shown.get("host")
    if host is not None:
        click.echo(
            f"host mode: {host.get('received', 0):,} packets judged, {host.get('dropped', 0):,}"
            f" dropped, {host.get('reset', 0):,} TCP connections reset,"
            f" {host.get('answers-read', 0):,} of the PBX's answers read"
        )
    shared = shown.get("fleet_counters")
    if shared is not None:
        click.echo(
            f"fleet failure counts: {shared.get('sent', 0):,} events shared,"
            f" {sum(v for k, v in shared.items() if k.startswith('decisions:')):,} bans asked"
            + (
                f"; Redis does not answer {shared['workers-down']} worker(s): counted locally,"
                f" {shared.get('pending', 0):,} events held ({shared.get('dropped', 0):,} dropped)"
                if shared.get("workers-down")
                else ""
            )
        )
    feeds = shown["intel"].get("feeds", [])
    if not feeds:
        click.echo("feeds: none configured")
    for feed in feeds:
        line = (
            f"feed {feed['feed']}: {feed['entries']:,} entries, last success"
            f" {when(feed['last_success'])}"
        )
        if feed.get("bad_lines"):
            line += f", {feed['bad_lines']} bad lines skipped"
        if feed["last_error"]:
            line += f"; last error {when(feed['last_error_at'])}: {feed['last_error']}"
        click.echo(line)
    for item in (shown.get("fleet_intel") or {}).get("feeds", []):
        click.echo(fleet_intel_line(item))
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
    if "reflection" in shown:  # (the daemon runs)
        click.echo(reflection_line(shown["reflection"]))
    observe = shown.get("observe")
    if observe:
        line = (
            f"events: {observe.get('events-written', 0):,} written,"
            f" {observe.get('events-repeated', 0):,} only counted (a flood),"
            f" {observe.get('events-dropped', 0):,} lost; flows:"
            f" {observe.get('flows-tracked', 0):,} this minute"
        )
        if observe.get("events-held") or observe.get("flows-held"):
            line += (
                f"; held for the store: {observe.get('events-held', 0):,} events,"
                f" {observe.get('flows-held', 0):,} flows"
            )
        click.echo(line)
    for name, target in (shown.get("alerts") or {}).items():
        line = (
            f"alerts {name} ({target.get('type')}, {target.get('to')}):"
            f" {target.get('sent', 0)} sent, {target.get('waiting', 0)} waiting"
        )
        if target.get("last-error"):
            line += (
                f"; last error {when(target.get('last-error-at'))}: {target['last-error']},"
                f" next attempt {when(target.get('next-attempt'))}"
            )
        click.echo(line)
    report = shown.get("report")
    if report:
        line = (
            f"weekly report to {report.get('to')}: next {when(report.get('next'))},"
            f" {report.get('sent', 0)} sent, {report.get('failed', 0)} failed"
        )
        if report.get("last-error"):
            line += f"; last error: {report['last-error']}"
        click.echo(line)


def reflection_line(reflection: dict[str, int] | None) -> str:
    """`status`'s line on the reflection budget (None: it is off)."""
    if reflection is None:
        return "reflection budget: off (edge.reflection.enabled = false)"
    verified = ", ".join(
        f"{reflection.get(f'verified:{proof}', 0)} by {proof}" for proof in ("tcp", "nonce", "tag")
    )
    return (
        f"reflection budget: {reflection.get('withheld', 0):,} answers"
        f" ({reflection.get('withheld-bytes', 0):,} bytes) withheld from unverified sources"
        f" ({reflection.get('withheld:total', 0):,} by the total); sources verified: {verified}"
    )


def firewall_lane(seen: LaneView, settings: LaneSettings | None, listed: bool) -> None:
    """`firewall lane`: what the kernel lane let through and dropped, and
    (``listed``) the sources that logged in."""
    if not seen.present:
        click.echo("no kernel lane" + ("" if settings is None else " (the daemon builds it)"))
        return
    if settings is not None:
        click.echo(
            f"lane on {', '.join(f'{p}/{n}' for p, n in settings.ports)}: unknown sources"
            f" {settings.prefix_rate}/s per /{settings.prefix_v4} (IPv6 /{settings.prefix_v6}),"
            f" {settings.total_rate}/s in all"
        )
    c = seen.counters
    click.echo(
        f"packets: known-good {c['good']:,}, trusted {c['trusted']:,}, unknown passed"
        f" {c['unknown-passed']:,}; dropped per prefix {c['prefix-dropped']:,},"
        f" over the total {c['total-dropped']:,}"
    )
    click.echo(
        f"known-good sources: {len(seen.known_good):,}; trusted networks: {len(seen.trusted)}"
    )
    if listed:
        for target, left in sorted(seen.known_good.items()):
            click.echo(f"  {target:<40} " + ("no end" if left is None else f"{left:.0f} s left"))


def firewall_overview(enforcer: str, seen: Overview, with_feeds: bool) -> None:
    """`firewall show`: the counts, the feed sets' elements when asked, and
    every banned target with its time left."""
    click.echo(
        f"enforcer {enforcer}: {len(seen.elements)} banned, {seen.dropped} packets dropped;"
        f" feeds: {len(seen.feed_elements)} listed, {seen.feed_dropped} packets dropped"
    )
    if with_feeds:
        for target, left in sorted(seen.feed_elements.items()):
            click.echo(
                f"  feed {target:<35} " + ("no end" if left is None else f"{left:.0f} s left")
            )
    for target, left in sorted(seen.elements.items()):
        click.echo(f"  {target:<40} " + ("permanent" if left is None else f"{left:.0f} s left"))


def logwatch_report(report: dict[str, Any], only_missed: bool) -> None:
    """`logwatch test`: each line's outcome, then the totals."""
    for row in report["lines"]:
        if row["matched"] and not only_missed:
            account = f" account {row['account']}" if row["account"] else ""
            click.echo(
                f"{row['line']:>6}  {row['kind']:<15} {row['host']}{account}"
                f"  [{row['time'] or 'no time'}] ({row['rule']})"
            )
        elif not row["matched"]:
            mark = "MISSED?" if row.get("looks_like_failure") else "-"
            click.echo(f"{row['line']:>6}  {mark:<15} {row['text'][:160]}")
    t = report["totals"]
    click.echo(
        f"\n{report['format']}: {t['lines']} lines, {t['matched']} matched,"
        f" {t['unmatched']} unmatched"
    )
    for kind, count in sorted(t["kinds"].items()):
        click.echo(f"  {kind}: {count}")
    if t["hosts"]:
        top = ", ".join(f"{host} ({count})" for host, count in list(t["hosts"].items())[:10])
        click.echo(f"  sources: {top}")
    if t["looks_like_failures"]:
        shown = ", ".join(str(n) for n in t["looks_like_failures"][:20])
        click.echo(f"  unmatched lines that look like failures: {shown}")


def logwatch_status(sources: dict[str, Any]) -> None:
    """`logwatch status`: a few lines per source."""
    for name, cov in sources.items():
        last = "never" if cov["last_line"] is None else when(cov["last_line"])
        missing = " (the file does not exist)" if cov.get("exists") is False else ""
        click.echo(f"{name} [{cov['format']}]{missing}")
        click.echo(
            f"  {cov['read']} lines read, {cov['matched']} matched, {cov['unmatched']} unmatched;"
            f" last line {last}"
        )
        if cov["looks_like_failures"]:
            click.echo(f"  {cov['looks_like_failures']} unmatched lines look like failures, e.g.:")
            for sample in cov["samples"]:
                click.echo(f"    {sample}")


def doctor(results: Sequence[Result]) -> None:
    """`doctor`: one line per check (PASS, FAIL with its fix, SKIP), then the sum."""
    from ..doctor import summary

    for result in results:
        line = f"{result.status.upper():4} {result.check}: {result.detail}"
        if result.fix:
            line += f" -> fix: {result.fix}"
        click.echo(line)
    click.echo(summary(results))


def fleet_status(answer: dict[str, Any]) -> None:
    """`fleet status`: one line per node, as its heartbeat says."""
    now = answer.get("now") or time.time()
    state = "DEGRADED (working alone)" if answer.get("degraded") else "up"
    click.echo(f"fleet at {answer.get('redis')}: this node {answer.get('node')} is {state}")
    if answer.get("error"):
        click.echo(f"  Redis: {answer['error']}")
    click.echo(
        f"{'node':<20} {'state':<9} {'last seen':>10} {'lag':>8} {'published':>10}"
        f" {'applied':>8} {'held back':>10} {'queue':>6} {'delay ms':>9}"
    )
    for name, node in sorted(answer.get("nodes", {}).items()):
        seen = node.get("last_seen")
        ago = "?" if not isinstance(seen, int | float) else f"{max(0.0, now - seen):.1f} s ago"
        delay = node.get("delay_median_ms")
        click.echo(
            f"{name:<20} {node.get('state', '?'):<9} {ago:>10} {node.get('lag', 0):>6.1f} s"
            f" {node.get('published', 0):>10} {node.get('applied', 0):>8}"
            f" {node.get('held_back', 0):>10} {node.get('queue', 0):>6}"
            f" {'-' if delay is None else delay:>9}"
        )
