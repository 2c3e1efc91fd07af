"""Periodic analysis: small analysers over a window of recent events and
flows, each able to ask for bans (``Decision``), raise alerts, or both.

Every ``[analysis] interval`` the daemon's runner reads the last ``window``
seconds of events and flows from the store, makes a ``Window`` and calls
``Analysis.run``; ``sipwarden analysis run --json`` does the same once and
prints ``Finding.as_dict()`` of each finding. The analysers (one module
each, one shape: ``base.Analyser``):

- ``distributed``: many addresses of one /24 (/48) failing logins together;
- ``register``: REGISTER-heavy sources with no 2xx (``register-no-success``);
- ``rise``: failed logins above the usual level for the hour of the week
  (``profile.HourOfWeekProfile``), sources from new countries;
- ``campaign``: many sources sharing one tool fingerprint or User-Agent.

Pure and sans-I/O: the caller hands everything in and carries the
decisions to the ban book and the findings to the event queue. An analyser
that fails on bad data is counted and reported (``Analysis.errors``); the
others still run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .base import SEVERITIES, Analyser, Finding, Severity, Window, weight
from .campaign import Campaign
from .distributed import Distributed
from .profile import HourOfWeekProfile
from .register import RegisterNoSuccess
from .rise import Rise, source_countries

if TYPE_CHECKING:  # the models only: importing pydantic pulls in socket (email.utils)
    from ...config import AnalysisConfig, BansConfig


@dataclass
class Analysis:
    """The enabled analysers, run together over one window."""

    analysers: Sequence[Analyser]
    quiet_raise: bool = True  # in quiet time, a finding's severity one step up
    counters: Counter[str] = field(default_factory=Counter)  # findings per analyser
    errors: dict[str, str] = field(default_factory=dict)  # analyser -> its last failure

    def run(self, window: Window) -> list[Finding]:
        """Every enabled analyser over ``window``; their findings in order."""
        findings: list[Finding] = []
        for analyser in self.analysers:
            try:
                found = analyser.run(window)
            except Exception as exc:  # bad data must not stop the other analysers
                self.counters[f"{analyser.name}-errors"] += 1
                self.errors[analyser.name] = f"{type(exc).__name__}: {exc}"
                continue
            self.errors.pop(analyser.name, None)
            self.counters[analyser.name] += len(found)
            if window.quiet:
                found = [_in_quiet_time(f, self.quiet_raise) for f in found]
            findings += found
        return findings

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.analysers]


def _in_quiet_time(finding: Finding, raise_severity: bool) -> Finding:
    severity: Severity = finding.severity
    if raise_severity:
        severity = SEVERITIES[min(SEVERITIES.index(severity) + 1, len(SEVERITIES) - 1)]
    return finding._replace(severity=severity, quiet=True)


def build_analysis(config: AnalysisConfig, bans: BansConfig) -> Analysis:
    """The analysers ``[analysis]`` enables, with their settings (a network
    ban never wider than ``[bans] widest_v4/v6``). Empty if analysis is off."""
    analysers: list[Analyser] = []
    if config.enabled:
        dist = config.distributed
        if dist.enabled:
            analysers.append(
                Distributed(
                    **dist.model_dump(exclude=OFF),
                    widest_v4=bans.widest_v4,
                    widest_v6=bans.widest_v6,
                )
            )
        if config.register_no_success.enabled:
            analysers.append(
                RegisterNoSuccess(**config.register_no_success.model_dump(exclude=OFF))
            )
        if config.rise.enabled:
            analysers.append(Rise(**config.rise.model_dump(exclude=OFF)))
        camp = config.campaign
        if camp.enabled:
            analysers.append(
                Campaign(
                    **camp.model_dump(exclude={"enabled", "fingerprints", "ignore"}),
                    fingerprints=tuple(camp.fingerprints),
                    ignore=tuple(camp.ignore),
                )
            )
    return Analysis(analysers, quiet_raise=config.quiet_raise)


OFF = {"enabled"}  # a section's switch, not an analyser's setting


__all__ = [
    "Analyser",
    "Analysis",
    "Campaign",
    "Distributed",
    "Finding",
    "HourOfWeekProfile",
    "RegisterNoSuccess",
    "Rise",
    "Severity",
    "Window",
    "build_analysis",
    "source_countries",
    "weight",
]
