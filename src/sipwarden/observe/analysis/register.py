"""REGISTER without success: a source whose traffic is mostly REGISTER and
that never got a 2xx answer over the window.

A phone registers every minute or so and is answered 200 (after its 401
challenge). A guesser, or a tool enumerating accounts without ever sending
credentials (which the failure tracker does not count as failed logins),
sends REGISTER after REGISTER and gets only 401, 403 or 404. Here the
window's flow records are summed per source address: at least
``min_registers`` REGISTERs, making at least ``share`` of its messages,
and no 2xx answer make a finding; with ``ban``, a ``Decision`` too
(detector ``analysis.register-no-success``, off by default: a phone with
a stale password looks alike, only slower).

Left out: a source whose messages the policy already judged (its flows'
verdicts cover all its REGISTERs: dropped by a rule or banned, nothing
more to say) and one the window's events show banned. Flow records are
expected to count the answers sent to a source in its own flows
(``answers``: status code -> count), as ``observe.flows`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from ...values import Decision
from .base import Duration, Finding, Window, flows_by_source, span_text, succeeded

DETECTOR: Final = "analysis.register-no-success"


@dataclass(frozen=True)
class RegisterNoSuccess:
    name: ClassVar[str] = "register-no-success"
    min_registers: int = 100  # REGISTERs from one address within the window
    share: float = 0.8  # REGISTER's share of its messages
    ban: bool = False
    bantime: Duration = 3600.0

    def run(self, window: Window) -> list[Finding]:
        findings = []
        for source, merged in flows_by_source(window.flows).items():
            methods, answers = merged["methods"], merged["answers"]
            registers = methods.get("REGISTER", 0)
            messages = sum(methods.values())
            if registers < self.min_registers or registers < self.share * messages:
                continue
            if succeeded(answers) or sum(merged["verdicts"].values()) >= registers:
                continue
            if window.bans.covers(source):
                continue
            refused = ", ".join(
                f"{n} × {status}" for status, n in sorted(answers.items(), key=lambda a: -a[1])
            )
            summary = (
                f"{source} sent {registers} REGISTERs ({registers / messages:.0%} of its"
                f" messages) within {span_text(window.span)} and none succeeded"
            )
            evidence = (
                f"answers: {refused or 'none'}",
                *(f"{n} {what}" for what, n in sorted(merged["verdicts"].items())[:3]),
            )
            decision = (
                Decision(source, DETECTOR, summary, self.bantime, evidence) if self.ban else None
            )
            findings.append(Finding(self.name, source, summary, "warning", evidence, decision))
        return findings
