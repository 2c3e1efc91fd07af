"""Verdicts on inbound messages: the pipeline of small stages (``pipeline``
runs them, ``stage`` is their interface, ``stages/`` one module each:
trusted peers, the ban book and intel on the source; sanity, the rules,
rate limits and OPTIONS on the message), the rule language and its built-in
pack, the ban book, the failure tracker and uniform answers; ``build`` puts
it all together from the config, in one place. The reflection budget
(``reflection``) limits what goes back to sources not yet verified."""

from __future__ import annotations

from .build import (
    PolicyError,
    Resolver,
    all_rules,
    build_policy,
    describe_rule,
    operator_rules,
    pack_rules,
    rules_policy,
    trusted_networks,
    with_state,
)
from .failures import LOGGED_IN, LOGIN_FAILED, NOT_FOUND
from .pipeline import Policy
from .reflection import ReflectionBudget
from .rules import Context, Rule, RuleError, RuleSet, compile_rules
from .stage import Banning, SourceStage, Stage
from .stages import TrustedPeers

__all__ = [
    "LOGGED_IN",
    "LOGIN_FAILED",
    "NOT_FOUND",
    "Banning",
    "Context",
    "Policy",
    "PolicyError",
    "ReflectionBudget",
    "Resolver",
    "Rule",
    "RuleError",
    "RuleSet",
    "SourceStage",
    "Stage",
    "TrustedPeers",
    "all_rules",
    "build_policy",
    "compile_rules",
    "describe_rule",
    "operator_rules",
    "pack_rules",
    "rules_policy",
    "trusted_networks",
    "with_state",
]
