"""Build a Policy from the ``[policy]`` config: the pack, the operator's rule
files and inline rules, the per-id switches, and the trusted peers (host
names resolved here, at load and on reload).

Everything that can be wrong is found here, before a reload swaps anything:
a broken file, an unknown id, a host name that does not resolve.
"""

from __future__ import annotations

import dataclasses
import glob
import ipaddress
import tomllib
from collections.abc import Callable, Iterable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..intel.geo import Countries, CountryPolicy
from ..intel.index import AddressIndex
from ..intel.screen import IntelScreen
from .bans import BanBook
from .failures import FailureTracker
from .limits import RateLimiter
from .pipeline import Network, Policy, TrustedPeers
from .rules import Rule, RuleError, RuleSet, compile_rules
from .uniform import UniformAnswers

if TYPE_CHECKING:  # the models only: importing pydantic pulls in socket (email.utils)
    from ..config import Config, PolicyConfig

Resolver = Callable[[str], list[str]]


class PolicyError(ValueError):
    """A policy that cannot be built; the message names the key or file."""


def pack_rules() -> list[Rule]:
    """The built-in pack, every file of ``policy/pack`` in name order."""
    rules: list[Rule] = []
    for item in sorted(files(__package__ + ".pack").iterdir(), key=lambda p: p.name):
        if item.name.endswith(".toml"):
            rules += _rules_from_text(item.read_text(encoding="utf-8"), f"pack/{item.name}")
    return rules


def _rules_from_text(text: str, origin: str) -> list[Rule]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{origin}: not valid TOML: {exc}") from None
    unknown = set(data) - {"rule"}
    if unknown:
        raise RuleError(f"{origin}: unknown table(s) {', '.join(sorted(unknown))}: use [[rule]]")
    specs = data.get("rule", [])
    if not isinstance(specs, list):
        raise RuleError(f"{origin}: rules are [[rule]] tables")
    return compile_rules(specs, origin)


def operator_rules(config: PolicyConfig) -> list[Rule]:
    """The operator's rules: each rule file (globs expanded), then the inline ones."""
    rules: list[Rule] = []
    for pattern in config.rule_files:
        paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        for path in paths:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise RuleError(f"{path}: cannot read: {exc.strerror}") from None
            rules += _rules_from_text(text, path)
    if config.rules:
        rules += compile_rules(config.rules, "config [[policy.rules]]")
    return rules


def _switched(rules: list[Rule], config: PolicyConfig) -> list[Rule]:
    """Apply policy.disable / monitor / enforce by id; an unknown id is an error."""
    known = {r.id for r in rules}
    for key in ("disable", "monitor", "enforce"):
        for i, rule_id in enumerate(getattr(config, key)):
            if rule_id not in known:
                raise PolicyError(
                    f"policy.{key}[{i}]: no rule has the id {rule_id!r} "
                    "(`sipwarden rules list` shows them)"
                )
    disabled = set(config.disable)
    mode = {**dict.fromkeys(config.monitor, "monitor"), **dict.fromkeys(config.enforce, "enforce")}
    return [
        dataclasses.replace(r, mode=mode[r.id]) if r.id in mode else r  # type: ignore[arg-type]
        for r in rules
        if r.id not in disabled
    ]


def trusted_networks(peers: Iterable[str], resolve: Resolver | None = None) -> list[Network]:
    """The networks of ``policy.trusted_peers``; host names are resolved by
    ``resolve`` (the daemon passes DNS: ``fetch.dns.resolve``; without one a
    name is an error)."""
    networks: list[Network] = []
    for i, peer in enumerate(peers):
        try:
            networks.append(ipaddress.ip_network(peer, strict=False))
            continue
        except ValueError:
            pass
        if resolve is None:
            raise PolicyError(
                f"policy.trusted_peers[{i}]: {peer!r} is a host name, and nothing resolves names here"
            )
        try:
            addresses = resolve(peer)
        except OSError as exc:
            raise PolicyError(
                f"policy.trusted_peers[{i}]: cannot resolve {peer!r}: {exc}"
            ) from None
        if not addresses:
            raise PolicyError(f"policy.trusted_peers[{i}]: {peer!r} has no address")
        networks += [ipaddress.ip_network(a) for a in addresses]
    return networks


def all_rules(config: PolicyConfig) -> list[Rule]:
    """Every rule in force order (operator's, then the pack), switches applied."""
    rules = operator_rules(config) + (pack_rules() if config.pack else [])
    seen: dict[str, str] = {}
    for rule in rules:
        if rule.id in seen:
            raise RuleError(
                f"rule {rule.id}: the id is used in both {seen[rule.id]} and {rule.origin}"
            )
        seen[rule.id] = rule.origin
    return _switched(rules, config)


def build_policy(
    config: PolicyConfig,
    *,
    previous: Policy | None = None,
    resolve: Resolver | None = None,
) -> Policy:
    """A ready Policy; with ``previous``, its counters carry over (a reload
    keeps the history of the rules that stay)."""
    ruleset = RuleSet(all_rules(config))
    policy = Policy(
        rules=ruleset,
        trusted=TrustedPeers(trusted_networks(config.trusted_peers, resolve)),
        sanity=config.sanity,
        options_from_trusted_only=config.options == "drop",
        max_uri_length=config.max_uri_length,
    )
    if previous is not None:
        policy.verdicts = previous.verdicts
        _carry(previous.rules.hits, ruleset.hits)
        _carry(previous.rules.monitored, ruleset.monitored)
    return policy


def arm(
    policy: Policy,
    config: Config,
    previous: Policy | None = None,
    *,
    countries: Countries | None = None,
) -> Policy:
    """Give ``policy`` its detectors, ban book and intel stage per
    ``config``: new ones, or ``previous``'s with the new settings (a reload
    keeps every ban, rate, failure count and feed entry). ``countries``: the
    country source ``[intel.geoip]`` names, opened by the caller off this
    thread (``fetch.geoip.open_geo``); None keeps ``previous``'s. Call it on the
    thread that judges packets: the state it hands over is live."""
    old = previous
    allow = [ipaddress.ip_network(a, strict=False) for a in config.bans.allow]
    # trusted peers are never banned either (they never reach a detector,
    # but an operator's `bans add` must not cut a trunk off)
    allow += policy.trusted.networks
    deny = [ipaddress.ip_network(d, strict=False) for d in config.bans.deny]
    book = old.bans if old is not None and old.bans is not None else None
    if book is None:
        book = BanBook(
            steps=tuple(config.bans.steps),
            memory=config.bans.memory,
            allow=allow,
            deny=deny,
            max_bans=config.bans.max_bans,
        )
    else:
        book.steps, book.memory, book.max_bans = (
            tuple(config.bans.steps),
            config.bans.memory,
            config.bans.max_bans,
        )
        book.set_lists(allow, deny)
    policy.bans = book

    lim = config.limits
    settings: dict[str, Any] = {
        "window": lim.window,
        "requests": lim.requests,
        "methods": dict(lim.methods),
        "prefix_v4": lim.prefix_v4,
        "prefix_v6": lim.prefix_v6,
        "max_sources": lim.max_sources,
    }
    if not lim.enabled:
        policy.limiter = None
    elif old is not None and old.limiter is not None:
        policy.limiter = old.limiter.reconfigured(**settings)
    else:
        policy.limiter = RateLimiter(**settings)

    fail = config.failures
    if not fail.enabled:
        policy.failures = None
        policy.uniform = None
    else:
        tracker = old.failures if old is not None else None
        if tracker is None:
            tracker = FailureTracker()
        for name in (
            "maxretry",
            "findtime",
            "burst",
            "slow_bantime",
            "enumeration",
            "distinct_users",
            "users_window",
            "max_sources",
        ):
            setattr(tracker, name, getattr(fail, name))
        policy.failures = tracker
        if fail.uniform_answers:
            policy.uniform = (old.uniform if old is not None else None) or UniformAnswers()
        else:
            policy.uniform = None
    old_intel = old.intel if old is not None else None
    geo = config.intel.geoip
    country_policy = None
    if geo.allow_countries or geo.deny_countries:
        country_policy = CountryPolicy(
            geo.allow_countries or None, geo.deny_countries or None, geo.unknown
        )
    if geo.database is None and geo.zones is None:
        countries = None
    elif countries is None:
        countries = old_intel.countries if old_intel is not None else None
        if countries is None:  # opening a database is I/O: the caller's (fetch.geoip)
            raise PolicyError(
                "intel.geoip: the country source was not opened (fetch.geoip.open_geo)"
            )
    policy.intel = IntelScreen(
        old_intel.index if old_intel is not None else AddressIndex(),
        countries=countries,
        country_policy=country_policy,
        exempt=book.allowed,
    )
    if old is not None:
        policy.decisions = old.decisions
    return policy


def _carry(old: Mapping[str, int], new: dict[str, int]) -> None:
    for rule_id in new:
        new[rule_id] = old.get(rule_id, 0)


def describe_rule(
    rule: Rule, hits: int | None = None, monitored: int | None = None
) -> dict[str, Any]:
    """A rule as `rules list --json` prints it."""
    out: dict[str, Any] = {
        "id": rule.id,
        "action": rule.action,
        "mode": rule.mode,
        "description": rule.description,
        "origin": rule.origin,
        "references": list(rule.references),
        "false_positives": rule.false_positives,
    }
    if rule.action == "reject":
        out["code"] = rule.code
    if hits is not None:
        out["hits"] = hits
    if monitored is not None:
        out["monitored"] = monitored
    return out
