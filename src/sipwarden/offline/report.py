"""What ``replay`` found: totals over the capture and, per source address,
the messages it sent and what the policy said about them; as JSON-ready
dicts (``--json``) or as the tables the CLI prints.

Bounds: one ``SourceStats`` per source address (that is what the report
lists); per source, the verdict kinds are fixed, reasons are the policy's
rule ids, and at most 32 distinct methods are kept (methods are the
sender's words: the rest count as ``(other)``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..packet import PacketCounts
from ..sip import Peek
from ..values import Verdict

__all__ = ["VERDICT_KINDS", "ReplayReport", "ReplayTotals", "SourceStats"]

VERDICT_KINDS: Final = ("forward", "allow", "drop", "reject", "ban", "deceive")

MAX_METHODS: Final = 32  # distinct methods kept per source; the rest is "(other)"


@dataclass
class ReplayTotals(PacketCounts):
    """Counts over the whole capture (the packet layer's tally; ``messages``
    is the number judged)."""

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["tcp_error_reasons"] = dict(self.tcp_error_reasons.most_common())
        out["first_packet"] = _iso(self.first_packet)
        out["last_packet"] = _iso(self.last_packet)
        return out


@dataclass
class SourceStats:
    """What one source address sent, and what the policy said."""

    ip: str
    messages: int = 0
    verdicts: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(VERDICT_KINDS, 0)))
    reasons: Counter[str] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    first_seen: float = 0.0
    last_seen: float = 0.0

    def record(self, ts: float, verdict: Verdict, view: Peek | None) -> None:
        if not self.messages or ts < self.first_seen:
            self.first_seen = ts
        if not self.messages or ts > self.last_seen:
            self.last_seen = ts
        self.messages += 1
        self.verdicts[verdict.kind] += 1
        if verdict.reason:  # a forward has none
            self.reasons[verdict.reason] += 1
        if view is None:
            method = "(unparsed)"
        elif view.method is None:
            method = "(response)"
        else:
            method = view.method[:32]
        # methods are the sender's words: bound how many distinct ones we keep
        if method not in self.methods and len(self.methods) >= MAX_METHODS:
            method = "(other)"
        self.methods[method] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "messages": self.messages,
            "verdicts": dict(self.verdicts),
            "reasons": dict(self.reasons.most_common()),
            "methods": dict(self.methods.most_common()),
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
        }


@dataclass
class ReplayReport:
    """The outcome of ``replay``: totals, and per source address."""

    totals: ReplayTotals = field(default_factory=ReplayTotals)
    sources: dict[str, SourceStats] = field(default_factory=dict)

    def ranked(self) -> list[SourceStats]:
        """Sources by messages, most first (ties by address, for stable output)."""
        return sorted(self.sources.values(), key=lambda s: (-s.messages, s.ip))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"totals": {...}, "sources": [...]}``."""
        return {
            "totals": self.totals.as_dict(),
            "sources": [s.as_dict() for s in self.ranked()],
        }

    def render(self, console: Console, *, limit: int = 50) -> None:
        """Print the per-source table (the ``limit`` busiest) and the totals."""
        # Text cells, never markup strings: reasons and methods come from the
        # capture, and "[...]" in them must not be read as rich markup.
        table = Table(title="Sources", title_justify="left")
        table.add_column("source")
        table.add_column("msgs", justify="right")
        for kind in VERDICT_KINDS:
            table.add_column(kind, justify="right")
        table.add_column("top reasons")
        table.add_column("methods")
        table.add_column("first seen (UTC)")
        table.add_column("last seen (UTC)")
        ranked = self.ranked()
        for src in ranked[:limit]:
            table.add_row(
                Text(src.ip),
                str(src.messages),
                *(str(src.verdicts[kind]) if src.verdicts[kind] else "" for kind in VERDICT_KINDS),
                Text(_top(src.reasons)),
                Text(_top(src.methods)),
                Text(_short_time(src.first_seen)),
                Text(_short_time(src.last_seen)),
            )
        console.print(table)
        if len(ranked) > limit:
            console.print(f"... and {len(ranked) - limit} more sources")
        totals = Table(title="Totals", title_justify="left", show_header=False)
        totals.add_column("what")
        totals.add_column("count", justify="right")
        for key, value in self.totals.as_dict().items():
            if key == "tcp_error_reasons":
                value = _top(self.totals.tcp_error_reasons, 5)
            if value not in (0, False, None, ""):
                totals.add_row(key, Text(str(value)))
        console.print(totals)


def _iso(ts: float | None) -> str | None:
    """ISO 8601 UTC; None for no time or one a corrupt capture made up."""
    if ts is None:
        return None
    try:
        when = datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _short_time(ts: float) -> str:
    text = _iso(ts)
    return "" if text is None else text[:19].replace("T", " ")


def _top(counts: Counter[str], n: int = 3) -> str:
    items = counts.most_common(n)
    more = len(counts) - len(items)
    return ", ".join(f"{k} x{v}" for k, v in items) + (f", +{more}" if more > 0 else "")
