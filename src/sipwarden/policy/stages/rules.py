"""The rules stage: the operator's rules, then the built-in pack (one
``RuleSet``, in that order, so an operator can allow what the pack would
drop).

Reasons: the id of the first enforcing rule that matches, with its action
(``forward``, ``drop``, ``reject`` with its code, ``deceive``, ``allow``;
the pack's ids are ``scan.*``, ``ua.*``...). A rule whose action is ``ban``
does not ban: it returns its verdict with a ``Decision`` for the ban book
(detector: the rule id; duration: the rule's, or the book's progressive
steps).

A pack rule (a scanner fingerprint) tells the hostile sources
(``policy/hostile.py``): its hits earn a ban past a threshold, returned as
a ``Banning`` with the rule's own verdict; an operator's ``deceive`` rule
names its source hostile.

Monitor-mode rules change nothing: the rule set counts them, and this stage
logs what they would have done, a few times per rule and reload (a flood
must not become a log flood), then only counts.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Final

from ...sip import Peek
from ...values import Decision, Peer, Verdict
from ..hostile import HostileSources
from ..rules import Context, Rule, RuleSet
from ..stage import Banning, evidence

MONITOR_LOGGED: Final = 10  # per monitor rule and reload, then only counted
PACK: Final = "pack/"  # the origin of the built-in pack's rules: the fingerprints

log = logging.getLogger("sipwarden.policy")


class RuleStage:
    """The first enforcing rule that matches decides."""

    name: Final = "rules"

    def __init__(
        self,
        rules: RuleSet,
        *,
        hostile: HostileSources | None = None,
        known_good: Callable[[str, float], bool] | None = None,
    ) -> None:
        self.rules = rules
        self.hostile = hostile  # told of the pack's hits (they earn bans) and deceive rules
        self.known_good = known_good
        self._monitor_logged: Counter[str] = Counter()
        rules.on_monitor = self._log_monitored

    def decide(
        self, view: Peek, source: Peer, local_port: int, now: float
    ) -> Verdict | Banning | None:
        rule = self.rules.evaluate(Context(view, source, local_port))
        if rule is None:
            return None
        hostile = self.hostile
        if hostile is not None:
            host = source.host
            if rule.origin.startswith(PACK):  # a fingerprint: hits earn a ban
                good = self.known_good
                decision = hostile.hit(
                    host,
                    rule.id,
                    evidence(view, source),
                    now,
                    known_good=good is not None and good(host, now),
                )
                if decision is not None:
                    return Banning(rule.verdict, decision)
                if hostile.deceive and host in hostile:  # (a phone that logged in is not)
                    return Verdict("deceive", rule.id)
            elif rule.verdict.kind == "deceive":
                hostile.mark(host, rule.id, now)
        if rule.verdict.kind == "ban":
            return Banning(
                rule.verdict,
                Decision(
                    source.host,
                    rule.id,
                    rule.description or f"rule {rule.id}",
                    rule.duration or "progressive",
                    (evidence(view, source),),
                ),
            )
        return rule.verdict

    def _log_monitored(self, rule: Rule, ctx: Context) -> None:
        """Monitor mode logs what a rule would have done, a few times per
        rule (a flood must not become a log flood), then only counts."""
        logged = self._monitor_logged[rule.id]
        if logged >= MONITOR_LOGGED:
            return
        self._monitor_logged[rule.id] = logged + 1
        view, source = ctx.view, ctx.source
        log.info(
            "monitor: rule %s would %s %s from %s:%d (Call-ID %s)%s",
            rule.id,
            rule.action,
            view.method or view.status,
            source.host,
            source.port,
            view.call_id,
            "; further hits are only counted" if logged + 1 == MONITOR_LOGGED else "",
        )
