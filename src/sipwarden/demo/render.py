"""Printing the demo as it goes, with rich: the intro, one table or list
per act, then the summary (or, for ``--json``, nothing but the JSON).

Reads the scenario's records and the summary dict; decides nothing.
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table

from ..edge import Edge
from .cast import (
    ENUMERATED,
    ENUMERATOR,
    GUESSER,
    PHONE,
    PHONE_EVERY,
    PHONE_USER,
    PROBES,
    REALM,
    USERS,
)

if TYPE_CHECKING:
    from ..api import ApiServer
    from ..daemon.core import Daemon


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "permanent"
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def _for(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.0f} h"


def _users(users: list[str]) -> str:
    if len(users) == 1:
        return f"user {users[0]}"
    return f"users {users[0]}–{users[-1]}"


def _table(*columns: str) -> Table:
    table = Table(box=None, padding=(0, 3, 0, 0), pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, justify="right" if column == "messages" else "left")
    return table


class Renderer:
    """Prints the demo as it goes (or nothing, for --json)."""

    def __init__(self, console: Console, *, as_json: bool) -> None:
        self.console = console
        self.as_json = as_json

    def say(self, *args: Any, **kwargs: Any) -> None:
        if not self.as_json:
            self.console.print(*args, **kwargs)

    def finish(self, summary: dict[str, Any], hold: float) -> None:
        """The summary, before any --hold (a script reads the JSON at once)."""
        if self.as_json:
            self.console.file.write(json.dumps(summary, indent=2, default=str) + "\n")
            self.console.file.flush()
        else:
            self.summary(summary, hold)

    def intro(self, daemon: Daemon, api: ApiServer | None, pbx_port: int) -> None:
        edge = daemon.mode(Edge)
        self.say(
            "[bold]sipwarden demo[/]: an edge in front of a small PBX, attacked on loopback"
            " (nothing leaves this machine)\n"
        )
        self.say(
            f"  [bold]PBX[/]    built-in registrar on udp:127.0.0.1:{pbx_port}, realm {REALM},"
            f" users {' and '.join(sorted(USERS))}; like a leaky PBX it answers 404 to users"
            " it does not know"
        )
        self.say(
            f"  [bold]edge[/]   {', '.join(map(str, edge.bound))} → the PBX;"
            f" {len(edge.policy.rules.rules)} rules; bans enforced in the edge (no firewall)"
        )
        self.say(f"  [bold]API[/]    {'not running' if api is None else f'{api.url}/api/v1'}")

    def phone_first(self, record: dict[str, Any]) -> None:
        status = (
            "registered (401 challenge, then 200 OK)"
            if record["registered"]
            else f"[red]did not register: {escape(record['problem'])}[/]"
        )
        self.say(
            f"  [bold]phone[/]  user {PHONE_USER} on {PHONE}: {status}; it registers again every"
            f" {PHONE_EVERY:g} s while the attacks run"
        )

    def section_scanners(self) -> None:
        self.say(
            f"\n[bold]1. Scanners[/]: {len(PROBES)} real probes, byte for byte as the tools sent"
            " them, each from its own address"
        )

    def scanners(self, records: list[dict[str, Any]]) -> None:
        table = _table("tool", "probe", "from", "answers", "the edge's verdict")
        for r in records:
            answer = "none" if not r["answers"] else f"[red]{r['answers']}[/]"
            kind, _, reason = r["verdict"].partition(":")
            verdict = f"dropped: {reason}" if kind == "drop" and reason else r["verdict"]
            table.add_row(
                escape(r["tool"]),
                escape(r["probe"]),
                f"{r['transport']} {r['source']}",
                answer,
                escape(verdict),
            )
        self.say(Padding(table, (0, 0, 0, 2), expand=False))

    def section_enumeration(self) -> None:
        self.say(
            f"\n[bold]2. Enumeration[/] from {ENUMERATOR}: REGISTER without credentials for"
            f" {_users(list(ENUMERATED))} (svwar's method, its fingerprints removed: only its"
            " behaviour gives it away)"
        )

    def _outcome(self, r: dict[str, Any]) -> str:
        if r["answer"] is None:
            kind, _, reason = r["verdict"].partition(":")
            why = f"dropped ({reason})" if kind == "drop" else r["verdict"]
            return f"no answer: {why}"
        return f"{r['answer']}"

    def _banned_line(self, host: str, ban: dict[str, Any]) -> str:
        until = (
            "for good"
            if ban["expires_at"] is None
            else f"for {_for(ban['expires_at'] - time.time() + 1)}"
        )
        return (
            f"[bold red]→ banned {host} {until}[/]: {escape(ban['detector'])},"
            f" {escape(ban['reason'])}"
        )

    def enumeration(self, records: list[dict[str, Any]]) -> None:
        groups: list[tuple[tuple[Any, ...], list[dict[str, Any]]]] = []
        for r in records:
            key = (
                r["answer"],
                r["verdict"],
                r["pbx_404_made_uniform"],
                r["banned_now"] is not None,
            )
            if groups and groups[-1][0] == key and not key[3]:
                groups[-1][1].append(r)
            else:
                groups.append((key, [r]))
        for (answer, _, uniform, _), rs in groups:
            line = f"  {_users([r['user'] for r in rs]):<18} {self._outcome(rs[0])}"
            if answer is not None and uniform:
                line += (
                    "   the PBX had answered 404 (no such user);"
                    " the edge sent the challenge a real user gets"
                )
            self.say(line)
            if rs[-1]["banned_now"] is not None:
                self.say("  " + " " * 19 + self._banned_line(ENUMERATOR, rs[-1]["banned_now"]))
        seen = {r["answer"] for r in records if r["answer"] is not None}
        self.say(
            f"  what the enumerator learnt: {len(records)} users tried,"
            f" {sum(1 for r in records if r['answer'] is not None)} answers, all alike"
            f" ({', '.join(map(str, sorted(seen))) or 'none'}): no user revealed"
            if len(seen) <= 1 and 404 not in seen
            else f"  [red]the enumerator could tell users apart: answers {sorted(seen)}[/]"
        )

    def section_guessing(self) -> None:
        self.say(
            f"\n[bold]3. Password guessing[/] from {GUESSER} against user {PHONE_USER}: a real"
            " digest over each real challenge (svcrack's method, its fingerprints removed)"
        )

    def guessing(self, records: list[dict[str, Any]]) -> None:
        n = 0
        for r in records:
            if r["password"] is None:
                label = "REGISTER, no credentials"
            else:
                n += 1
                label = f"guess {n}  {r['password']}"
            outcome = self._outcome(r)
            if r["answer"] == 401 and r["with_credentials"]:
                outcome += ": wrong password"
            elif r["answer"] == 401:
                outcome += ": the challenge"
            elif r["answer"] == 200:
                outcome = "[bold red]200 OK: the attacker has the password[/]"
            line = f"  {escape(label):<26} {outcome}"
            if r["real_password"] and r["answer"] != 200:
                line += f"   [bold]← user {PHONE_USER}'s real password: it never reached the PBX[/]"
            self.say(line)
            if r["banned_now"] is not None:
                self.say("  " + " " * 27 + self._banned_line(GUESSER, r["banned_now"]))

    def holding(self, hold: float, api: ApiServer | None) -> None:
        where = "" if api is None else f" ({api.url}/api/v1, the dashboard at {api.url}/)"
        how_long = "until Ctrl-C (or SIGTERM)" if math.isinf(hold) else f"for {hold:g} s"
        self.say(
            f"\nThe edge and its API{where} stay up {how_long}: try the curl commands"
            " above, or open the dashboard (Ctrl-C ends the demo)."
        )

    def summary(self, s: dict[str, Any], hold: float) -> None:
        phone = s["phone"]
        times = ", ".join(f"{t['at']:.1f}" for t in phone["times"])
        colour = "green" if phone["registered"] == phone["attempts"] else "red"
        self.say(
            f"\n[bold]4. The phone[/], user {PHONE_USER} on {PHONE} (the account under attack):"
            f" [{colour}]registered {phone['registered']} of {phone['attempts']} times[/]"
            f" (at {times} s), before, during and after the attacks"
        )

        bans = _table("ip", "detector", "reason", "until", "offence")
        for row in s["bans"]:
            bans.add_row(
                row["ip"],
                escape(row["detector"]),
                escape(row["reason"]),
                _when(row["expires_at"]),
                str(row["offence"]),
            )
        self.say(
            "\n[bold]Bans in force[/] (the ban store, as `sipwarden bans list` and the API show it)"
        )
        self.say(Padding(bans, (0, 0, 0, 2), expand=False))

        verdicts = _table("verdict", "messages")
        for name, count in s["verdicts"].items():
            verdicts.add_row(escape(name.rstrip(":")), str(count))
        counters = s["edge_counters"]
        self.say("\n[bold]The edge's verdicts[/], counted by its policy (kind:reason)")
        self.say(Padding(verdicts, (0, 0, 0, 2), expand=False))
        self.say(
            f"  the edge received {counters.get('received', 0)} messages, passed"
            f" {counters.get('to-backend', 0)} to the PBX and made"
            f" {counters.get('answers-made-uniform', 0)} of its answers uniform (404 → 401)"
        )

        api = s["api"]
        if api["url"] is not None:
            answered = (
                f"it answered just now: {api['bans']} bans in force"
                if api["answered"]
                else f"[red]it did not answer: {escape(str(api['error']))}[/]"
            )
            self.say(f"\n[bold]The REST API[/] at {api['url']} ({answered}):")
            for path in ("bans", f"bans/{GUESSER}", "status"):
                self.say(f"  curl {api['url']}/{path}", soft_wrap=True)
            if hold <= 0:
                self.say(
                    "  it stops with the demo: `sipwarden demo --hold` keeps it up until Ctrl-C"
                )

        if s["ok"]:
            self.say(
                f"\n[bold green]✓ as expected[/] in {s['seconds']:.1f} s: the scanners got no"
                " answer, both attackers were banned, and the phone registered every time."
            )
        else:
            self.say(f"\n[bold red]✗ sipwarden demo: {len(s['problems'])} things went wrong:[/]")
            for problem in s["problems"]:
                self.say(f"  - {escape(problem)}")
        if s["dashboard"] is not None:
            kept = "" if hold > 0 else " (`sipwarden demo --hold` keeps it up until Ctrl-C)"
            self.say(f"\n[bold]The dashboard[/]: {s['dashboard']}{kept}", soft_wrap=True)
