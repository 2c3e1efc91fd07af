"""Verdicts on inbound messages: the rule language, the built-in rule pack
and the pipeline that puts them in order (see ``pipeline``). Rate limits and
the ban book join the pipeline in issue 5."""

from __future__ import annotations

from .pipeline import Policy, TrustedPeers
from .rules import Context, Rule, RuleError, RuleSet, compile_rules

__all__ = [
    "Context",
    "Policy",
    "Rule",
    "RuleError",
    "RuleSet",
    "TrustedPeers",
    "compile_rules",
]
