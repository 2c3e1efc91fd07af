"""What `sipwarden top` shows: the "now" and "who" panels, from the
daemon's answers, as rich renderables.

``Board.take`` is handed one round of answers (``stats``, ``bans-list``,
``flows``, ``events``; the command asks them, see ``cli/top.py``) and keeps
what the panels need: the verdict counters of the round before (rates are
their difference over the time between two rounds) and what the events said
of each source (the rule or detector, the tool a fingerprint names); the
PBX's last answer is the daemon's (``pbx-answered-at``). ``Board.view``
draws it. Nothing here reads a socket
or a file: the tests hand it answers.

Bounds: the per-source memory keeps the ``MEMORY`` sources heard of last;
the panels show at most ``ROWS`` reasons, bans and sources.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

ROWS: Final = 10  # rows per table
MEMORY: Final = 10_000  # sources whose rule, tool and country are remembered
PASSED: Final = frozenset({"forward", "allow"})  # verdict kinds that let a message through
KINDS: Final = ("forward", "allow", "drop", "reject", "ban", "deceive")
# a fingerprint whose name does not start with the tool's (scan.<tool>-<what> otherwise)
TOOL_OF_RULE: Final = {"scan.digest-qop-without-cnonce": "svcrack"}


def tool_of(reason: str) -> str | None:
    """The tool a pack fingerprint names: ``scan.sipvicious-tag`` ->
    sipvicious, ``ua.friendly-scanner`` -> friendly-scanner; None for a
    reason that is not a fingerprint (a detector, a ban, a rate limit)."""
    if reason in TOOL_OF_RULE:
        return TOOL_OF_RULE[reason]
    family, _, name = reason.partition(".")
    if family == "scan" and name:
        return name.partition("-")[0]
    if family == "ua" and name:
        return name
    return None


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"


def _until(expires_at: float | None, now: float) -> str:
    if expires_at is None:
        return "permanent"
    left = max(0.0, expires_at - now)
    return f"{left / 60:.0f} min" if left < 7200 else f"{left / 3600:.0f} h"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


@dataclass
class Heard:
    """What the events said of one source."""

    rule: str | None = None  # the last rule or detector that stopped it
    tool: str | None = None  # the tool its fingerprint names


@dataclass
class Board:
    """The state of the two panels between rounds (see the module doc)."""

    socket: str  # the control socket, named in the header
    interval: float
    window: float  # seconds of flows the "who" panel adds up
    rows: int = ROWS  # rows per table (top fits them to the terminal's height)
    # the round's answers
    stats: dict[str, Any] = field(default_factory=dict)
    bans: list[dict[str, Any]] = field(default_factory=list)
    flows: list[dict[str, Any]] = field(default_factory=list)
    taken_at: float | None = None
    # the rates: verdict -> messages per second over the last round
    rates: dict[str, float] = field(default_factory=dict)
    rated: bool = False  # two rounds were taken: the rates are known
    _verdicts_before: dict[str, int] | None = None
    # the PBX's answers: the count, and when the daemon saw the last
    answers: int = 0
    answered_at: float | None = None
    # per source
    heard: dict[str, Heard] = field(default_factory=dict)
    countries: dict[str, str | None] = field(default_factory=dict)
    last_event_id: int = 0
    last_event_time: float | None = None
    # the daemon stopped answering at this time (None: it answers)
    lost_at: float | None = None
    lost_why: str = ""

    # ------------------------------------------------------------ taking

    def take(
        self,
        now: float,
        stats: dict[str, Any],
        bans: list[dict[str, Any]],
        flows: list[dict[str, Any]],
        events: list[dict[str, Any]],
    ) -> None:
        """One round of the daemon's answers, read at ``now``."""
        verdicts = {k: v for k, v in (stats.get("verdicts") or {}).items() if isinstance(v, int)}
        before, elapsed = self._verdicts_before, now - (self.taken_at or now)
        if before is not None and elapsed > 0:
            # a counter that went down: the daemon restarted, and counts from zero
            self.rates = {
                k: (v - before.get(k, 0) if v >= before.get(k, 0) else v) / elapsed
                for k, v in verdicts.items()
            }
            self.rated = True
        self._verdicts_before = verdicts
        self.answers = _pbx_answers(stats)
        self.answered_at = stats.get("pbx-answered-at")
        self.stats, self.bans, self.flows, self.taken_at = stats, bans, flows, now
        self.lost_at = None
        for event in events:
            self._hear(event)
        for ban in bans:
            self._remember(ban["ip"]).rule = ban.get("detector") or ban.get("reason")

    def lost(self, now: float, why: str) -> None:
        """The daemon did not answer this round."""
        if self.lost_at is None:
            self.lost_at = now
        self.lost_why = why

    def events_since(self, now: float) -> float:
        """The ``since`` of the next ``events`` request: a minute before the
        newest event seen (events are written late: their ids tell the new)."""
        if self.last_event_time is None:
            return now - self.window
        return self.last_event_time - 60.0

    def _hear(self, event: dict[str, Any]) -> None:
        event_id = event.get("id")
        if not isinstance(event_id, int) or event_id <= self.last_event_id:
            return
        self.last_event_id = event_id
        self.last_event_time = max(self.last_event_time or 0.0, float(event.get("time") or 0.0))
        source, reason = event.get("source"), event.get("reason")
        if not source or not isinstance(reason, str):
            return
        kind = event.get("kind")
        if kind not in ("verdict", "ban", "would-ban", "login-failed"):
            return
        heard = self._remember(source)
        tool = tool_of(reason)
        if tool is not None:
            heard.tool = tool
        if kind != "login-failed" or heard.rule is None:
            heard.rule = reason

    def _remember(self, source: str) -> Heard:
        heard = self.heard.pop(source, None) or Heard()
        self.heard[source] = heard  # the newest last: the oldest goes first
        while len(self.heard) > MEMORY:
            del self.heard[next(iter(self.heard))]
        return heard

    def top_sources(self) -> list[tuple[str, int]]:
        """The busiest sources of the window (their flows added up), busiest first."""
        packets: Counter[str] = Counter()
        for flow in self.flows:
            packets[flow["source"]] += int(flow.get("packets") or 0)
        return packets.most_common(self.rows)

    def unknown_countries(self) -> list[str]:
        """The top sources whose country was not asked yet."""
        return [ip for ip, _ in self.top_sources() if ip not in self.countries]

    def learn_country(self, ip: str, country: str | None) -> None:
        if len(self.countries) >= MEMORY:
            self.countries.clear()
        self.countries[ip] = country

    # ------------------------------------------------------------ drawing

    def view(self, now: float) -> RenderableType:
        return Group(self._header(), self._now_panel(now), self._who_panel())

    def _header(self) -> Text:
        mode = self.stats.get("mode") or "?"
        text = Text.assemble(
            ("sipwarden top", "bold"),
            f"  {self.socket}  mode: ",
            (mode, "bold yellow" if mode == "monitor" else "bold green"),
            f"  every {self.interval:g} s  ",
            ("q quits", "dim"),
        )
        if self.lost_at is not None:
            text.append(
                f"\nthe daemon does not answer ({self.lost_why}) since"
                f" {time.strftime('%H:%M:%S', time.localtime(self.lost_at))}: showing its last"
                " answers",
                style="bold red",
            )
        elif self.taken_at is not None:
            text.append(f"  at {time.strftime('%H:%M:%S', time.localtime(self.taken_at))}")
        return text

    def _now_panel(self, now: float) -> Panel:
        verdicts: dict[str, int] = self.stats.get("verdicts") or {}
        by_kind: Counter[str] = Counter()
        rate_by_kind: dict[str, float] = {}
        for name, count in verdicts.items():
            kind = name.partition(":")[0]
            by_kind[kind] += count
            rate_by_kind[kind] = rate_by_kind.get(kind, 0.0) + self.rates.get(name, 0.0)
        kinds = Table(box=None, pad_edge=False, header_style="bold")
        kinds.add_column("verdict")
        kinds.add_column("msg/s", justify="right")
        kinds.add_column("total", justify="right")
        for kind in (*KINDS, *sorted(set(by_kind) - set(KINDS))):
            if kind in by_kind or kind in ("forward", "drop"):
                rated = rate_by_kind.get(kind, 0.0) if self.rated else None
                kinds.add_row(kind, _rate(rated), str(by_kind[kind]))

        # monitor mode judges as enforce mode does, but forwards everything
        stopping = "would drop" if self.stats.get("mode") == "monitor" else "dropped"
        passed = sum(c for k, c in by_kind.items() if k in PASSED)
        stopped = sum(c for k, c in by_kind.items() if k not in PASSED)
        reasons = Table(box=None, pad_edge=False, header_style="bold")
        reasons.add_column(f"{stopping} by reason", overflow="fold")
        reasons.add_column("msg/s", justify="right")
        reasons.add_column("total", justify="right")
        dropped = sorted(
            ((n, c) for n, c in verdicts.items() if n.partition(":")[0] not in PASSED),
            key=lambda item: -item[1],
        )
        for name, count in dropped[: self.rows]:
            reasons.add_row(
                name, _rate(self.rates.get(name, 0.0) if self.rated else None), str(count)
            )
        if not dropped:
            reasons.add_row(f"nothing {stopping}", "", "")

        bans = Table(box=None, pad_edge=False, header_style="bold")
        bans.add_column("banned", overflow="fold")
        bans.add_column("by", overflow="fold")
        bans.add_column("for", justify="right")
        for ban in sorted(self.bans, key=lambda b: -float(b.get("created_at") or 0))[: self.rows]:
            bans.add_row(ban["ip"], ban.get("detector") or "", _until(ban.get("expires_at"), now))

        in_force = self.stats.get("bans-in-force", len(self.bans))
        seen = f"{self.answers} answers seen"
        if self.answered_at is not None:
            seen += f", the last {_ago(now - self.answered_at)}"
        summary = Text.assemble(
            ("passed ", "bold"),
            (f"{passed}", "green"),
            (f"  {stopping} ", "bold"),
            (f"{stopped}", "red"),
            ("  bans in force ", "bold"),
            (f"{in_force}", "bold red" if in_force else ""),
            ("  PBX ", "bold"),
            seen,
        )
        if self.stats.get("store-error"):
            summary.append(f"\nthe store fails: {self.stats['store-error']}", style="red")
        fleet = fleet_line(self.stats.get("fleet"))
        if fleet is not None:
            summary.append("\n")
            summary.append_text(fleet)
        grid = Table.grid(padding=(0, 4))
        grid.add_row(kinds, reasons, bans)
        return Panel(Group(summary, grid), title="now", title_align="left")

    def _who_panel(self) -> Panel:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("source", "country", "tool", "packets", "rule or detector", ""):
            justify: Literal["left", "right"] = "right" if column == "packets" else "left"
            table.add_column(column, justify=justify, overflow="fold")
        banned = {ban["ip"] for ban in self.bans}
        for ip, packets in self.top_sources():
            heard = self.heard.get(ip) or Heard()
            table.add_row(
                ip,
                self.countries.get(ip) or "-",
                heard.tool or "-",
                str(packets),
                heard.rule or "-",
                Text("banned", style="bold red") if ip in banned else "",
            )
        minutes = f"{self.window / 60:g} min"
        if not self.flows:
            table.add_row(f"no traffic in the last {minutes}", "", "", "", "", "")
        return Panel(table, title=f"who (the last {minutes}, busiest first)", title_align="left")


def fleet_line(fleet: Any) -> Text | None:
    """The fleet in one line (``status``'s "fleet", set with ``[fleet]``): up
    or DEGRADED with Redis's error, the nodes up, the lag, the bans this node
    published and applied. None: no fleet."""
    if not isinstance(fleet, dict):
        return None
    counters = fleet.get("counters") or {}
    line = Text.assemble(("fleet ", "bold"))
    if fleet.get("degraded"):
        line.append("DEGRADED", style="bold red")
        line.append(f" (Redis: {fleet.get('last-error') or 'catching up'})", style="red")
    else:
        line.append("up", style="green")
    line.append(
        f"  nodes {fleet.get('nodes-up', 0)}/{fleet.get('nodes', 0)} up"
        f"  lag {fleet.get('lag') or 0:g} s"
        f"  bans published {counters.get('published', 0)} applied {counters.get('applied', 0)}"
    )
    return line


def _pbx_answers(stats: dict[str, Any]) -> int:
    """The PBX's answers seen: the edge's from the backend, host mode's read."""
    edge = stats.get("edge") or {}
    host = stats.get("host") or {}
    return int(edge.get("from-backend") or 0) + int(host.get("answers-read") or 0)
