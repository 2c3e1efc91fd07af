"""A slow distributed attack: many addresses of one network, each below
every per-source threshold, together failing logins or enumerating.

The failure tracker counts per address; a guesser that spreads its tries
over a /24 (or an IPv6 /48) stays under ``maxretry`` everywhere. Here the
window's ``login-failed`` events (both ``auth.failed`` and the enumeration
404s, ``auth.not-found``), weighted, are summed per network: at least
``min_sources`` distinct addresses and ``min_failures`` failures in one
network make a finding and, with ``ban``, a ``Decision`` banning the
network for ``bantime`` (detector ``analysis.distributed``).

Safeguards: the network is never wider than ``[bans] widest_v4/v6`` (a
prefix set wider is narrowed to it; the ban book would refuse it anyway);
a network whose addresses also logged in within the window (a 2xx in their
flows: an office whose phones share a stale password) is reported but not
banned (``spare_logged_in``); a network the window's events already show
banned is not asked for again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar, Final

from ...values import Decision
from ..events import LOGIN_FAILED
from .base import (
    EVIDENCE_KEPT,
    Duration,
    Finding,
    Window,
    field_of,
    flows_by_source,
    network_of,
    span_text,
    succeeded,
    weight,
)

DETECTOR: Final = "analysis.distributed"


@dataclass(frozen=True)
class Distributed:
    name: ClassVar[str] = "distributed"
    prefix_v4: int = 24
    prefix_v6: int = 48
    min_sources: int = 5  # distinct failing addresses in one network
    min_failures: int = 20  # their failed logins and 404s together
    ban: bool = True
    bantime: Duration = 3600.0
    spare_logged_in: bool = True  # a network with a login in the window: reported, not banned
    widest_v4: int = 8  # [bans] widest_v4 / widest_v6: never wider
    widest_v6: int = 32

    def run(self, window: Window) -> list[Finding]:
        v4, v6 = max(self.prefix_v4, self.widest_v4), max(self.prefix_v6, self.widest_v6)
        per_source: dict[str, int] = {}  # failures per address
        for event in window.events:
            if event.kind == LOGIN_FAILED:
                source = event.source
                per_source[source] = per_source.get(source, 0) + weight(event)
        networks: dict[str, list[str]] = {}
        for source in per_source:
            network = network_of(source, v4, v6)
            if network is not None:
                if network in networks:
                    networks[network].append(source)
                else:
                    networks[network] = [source]
        suspects: dict[str, tuple[list[str], int]] = {}  # network -> (addresses, failures)
        for network, sources in networks.items():
            if len(sources) >= self.min_sources:
                failures = sum(per_source[s] for s in sources)
                if failures >= self.min_failures and not window.bans.covers(network):
                    suspects[network] = (sources, failures)
        if not suspects:
            return []
        accounts = self._accounts(window, {s: n for n, (ss, _) in suspects.items() for s in ss})
        logged_in = {
            network_of(s, v4, v6) or ""
            for s, merged in flows_by_source(window.flows).items()
            if succeeded(merged["answers"])
        }
        findings = []
        for network, (sources, failures) in suspects.items():
            top = accounts[network].most_common(3)
            whom = f" for {', '.join(a for a, _ in top)}" if top else ""
            summary = (
                f"{len(sources)} addresses of {network} failed {failures} logins{whom}"
                f" within {span_text(window.span)}"
            )
            heaviest = sorted(sources, key=lambda s: (-per_source[s], s))
            evidence = (
                *(f"{s}: {per_source[s]} failed" for s in heaviest[: EVIDENCE_KEPT - 1]),
                f"most at one address: {per_source[heaviest[0]]}",
            )
            spared = self.spare_logged_in and network in logged_in
            decision = None
            if self.ban and not spared:
                decision = Decision(network, DETECTOR, summary, self.bantime, evidence)
            if spared:
                summary += "; not banned: addresses of it also logged in"
            findings.append(
                Finding(
                    self.name,
                    network,
                    summary,
                    "critical" if decision is not None else "warning",
                    evidence,
                    decision,
                )
            )
        return findings

    @staticmethod
    def _accounts(window: Window, network_of_source: dict[str, str]) -> dict[str, Counter[str]]:
        """The accounts the suspects' failed logins were for, per network."""
        accounts: dict[str, Counter[str]] = {n: Counter() for n in network_of_source.values()}
        for event in window.events:
            network = network_of_source.get(event.source)
            if event.kind == LOGIN_FAILED and network is not None:
                account = field_of(event, "account")
                if account:
                    accounts[network][str(account)] += weight(event)
        return accounts
