"""A campaign: many sources sharing one tool fingerprint or one User-Agent
within the window.

One scanner is a nuisance the pack drops; the same tool from fifty
addresses in ten minutes is a campaign (a botnet sweeping for PBXs), worth
a person's attention. Here the window's ``verdict`` events (messages the
policy did not simply forward) are grouped two ways:

- by reason, for the reasons that name a tool (``fingerprints``: prefixes
  of the pack's rule ids, ``scan.`` and ``ua.``);
- by User-Agent (the event's ``user_agent`` field), leaving out the reasons
  that say nothing about the sender's tool (``ignore``: a banned source's
  dropped messages, OPTIONS from an untrusted source, sanity drops, so
  phones of one model whose keep-alives are dropped are no campaign).

A group of at least ``min_sources`` distinct addresses makes one finding
(an alert); with ``ban`` (off by default) each of its sources not already
banned gets a ``Decision`` too, at most ``max_decisions`` per run, as
findings of their own (one decision per finding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from ...values import Decision
from ..events import VERDICT
from .base import Duration, Finding, Window, field_of, span_text, weight

DETECTOR: Final = "analysis.campaign"
HOSTILE: Final = frozenset(("drop", "reject", "ban", "deceive"))


@dataclass(frozen=True)
class Campaign:
    name: ClassVar[str] = "campaign"
    min_sources: int = 10  # distinct addresses sharing a fingerprint or User-Agent
    fingerprints: tuple[str, ...] = ("scan.", "ua.")  # reasons (prefixes) that name a tool
    user_agents: bool = True  # group by User-Agent too
    ignore: tuple[str, ...] = ("banned", "options.", "sanity.")  # not for User-Agents
    ban: bool = False
    bantime: Duration = "progressive"
    max_decisions: int = 1000  # per run

    def run(self, window: Window) -> list[Finding]:
        groups: dict[tuple[str, str], dict[str, int]] = {}  # (how, what) -> source -> messages
        for event in window.events:
            if event.kind != VERDICT or not event.source:
                continue
            if field_of(event, "verdict") not in HOSTILE:
                continue
            n = weight(event)
            if event.reason.startswith(self.fingerprints):
                group = groups.setdefault(("fingerprint", event.reason), {})
                group[event.source] = group.get(event.source, 0) + n
            agent = field_of(event, "user_agent")
            if self.user_agents and agent and not event.reason.startswith(self.ignore):
                group = groups.setdefault(("user-agent", str(agent)[:200]), {})
                group[event.source] = group.get(event.source, 0) + n
        findings: list[Finding] = []
        decided: set[str] = set()
        for (how, what), sources in sorted(groups.items()):
            if len(sources) < self.min_sources:
                continue
            label = f"tool fingerprint {what}" if how == "fingerprint" else f"User-Agent {what!r}"
            summary = (
                f"{len(sources)} addresses sharing the {label} sent {sum(sources.values())}"
                f" messages within {span_text(window.span)}"
            )
            ranked = sorted(sources.items(), key=lambda item: (-item[1], item[0]))
            evidence = tuple(f"{s}: {n} messages" for s, n in ranked[:5])
            findings.append(Finding(self.name, "", summary, "warning", evidence))
            if not self.ban:
                continue
            for source, _ in ranked:
                if len(decided) >= self.max_decisions:
                    break
                if source in decided or window.bans.covers(source):
                    continue
                decided.add(source)
                reason = f"one of {len(sources)} addresses sharing the {label}"
                decision = Decision(source, DETECTOR, reason, self.bantime, evidence[:3])
                findings.append(
                    Finding(self.name, source, reason, "warning", evidence[:3], decision)
                )
        return findings
