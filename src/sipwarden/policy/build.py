"""Build the Policy from the config, in one place: which stages it has, in
which order, with which settings, and the state they keep.

Two halves, because a reload needs them apart:

- ``rules_policy(config.policy)``: the rules (the pack, the operator's rule
  files and inline rules, the per-id switches) and the trusted peers (host
  names resolved by the caller's ``resolve``). Everything that can be wrong
  is found here, before a reload swaps anything: a broken file, an unknown
  id, a host name that does not resolve; and it may take seconds (DNS), so
  a reload runs it off the packets' thread. On its own it is the policy of
  ``rules list``, ``explain`` and a replay: no ban book, no limiter;
- ``with_state(policy, config)``: the same stages with the state that
  outlives a reload: the ban book, the rate limiter, the failure tracker,
  uniform answers, the known-good record (the kernel lane's) and the intel
  screen, new or handed over from the previous policy (every ban, rate,
  failure count, known-good source and feed entry stays).
  It is quick and pure, and must run on the thread that judges packets.

``build_policy(config)`` does both: the daemon's policy at startup, and any
one-shot command's. ``_assemble`` is where the stage order lives.
"""

from __future__ import annotations

import dataclasses
import glob
import ipaddress
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..intel.geo import Countries, CountryPolicy
from ..intel.index import AddressIndex
from ..intel.numbers import Dialplan, Number
from ..intel.screen import IntelScreen
from ..observe import VERDICT, Event
from ..values import Network, Peer, Verdict
from .bans import BanBook
from .failures import FailureTracker
from .hostile import HostileSources, Threshold
from .known_good import KnownGood
from .limits import QuietLimits, RateLimiter
from .pipeline import Policy
from .rules import Rule, RuleError, RuleSet, compile_rules
from .stage import SourceStage, Stage
from .stages import (
    BannedSources,
    IntelStage,
    LimitStage,
    OptionsFromTrusted,
    RuleStage,
    Sanity,
    TrustedPeers,
)
from .stages.deceive import DeceiveHostile
from .stages.tollfraud import TollFraudStage
from .tollfraud import QuietAction, TollFraud
from .uniform import UniformAnswers

if TYPE_CHECKING:  # the models only: importing pydantic pulls in socket (email.utils)
    from ..config import Config, PolicyConfig
    from ..observe.schedule import Schedule

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
            except UnicodeDecodeError as exc:
                raise RuleError(
                    f"policy.rule_files: {path}: not UTF-8 text (byte {exc.object[exc.start]:#04x}"
                    f" at offset {exc.start}): save the file as UTF-8"
                ) from None
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


def rules_policy(
    config: PolicyConfig,
    *,
    previous: Policy | None = None,
    resolve: Resolver | None = None,
) -> Policy:
    """The policy of the rules alone (see the module doc); with
    ``previous``, its counters carry over (a reload keeps the history of the
    rules that stay)."""
    ruleset = RuleSet(all_rules(config))
    trusted = TrustedPeers(trusted_networks(config.trusted_peers, resolve))
    policy = _assemble(config, trusted, ruleset)
    if previous is not None:
        policy.verdicts = previous.verdicts
        _carry(previous.rules.hits, ruleset.hits)
        _carry(previous.rules.monitored, ruleset.monitored)
    return policy


def with_state(
    policy: Policy,
    config: Config,
    *,
    previous: Policy | None = None,
    countries: Countries | None = None,
    schedule: Schedule | None = None,
) -> Policy:
    """``policy`` (from ``rules_policy(config.policy)``: its rules, trusted
    peers and counters) with the ban book, limiter, failure tracker, uniform
    answers, known-good record and intel screen ``config`` asks for: new
    ones, or ``previous``'s with the new settings (a reload keeps every
    ban, rate, failure count, known-good source and feed entry).
    ``countries``: the country source ``[intel.geoip]`` names, opened by
    the caller off this thread (``fetch.geoip.open_geo``); None keeps
    ``previous``'s. ``schedule``: ``[schedule]``, built by the caller
    (``fetch.calendar.open_schedule``); in its quiet time the failure
    tracker and the limiter apply ``[schedule.quiet]`` (None, or a schedule
    with no rule: never quiet). Call it on the
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

    lim = config.limits
    settings: dict[str, Any] = {
        "window": lim.window,
        "requests": lim.requests,
        "methods": dict(lim.methods),
        "prefix_v4": lim.prefix_v4,
        "prefix_v6": lim.prefix_v6,
        "max_sources": lim.max_sources,
        "quiet": quiet_limits(config, schedule),
    }
    limiter: RateLimiter | None
    if not lim.enabled:
        limiter = None
    elif old is not None and old.limiter is not None:
        limiter = old.limiter.reconfigured(**settings)
    else:
        limiter = RateLimiter(**settings)

    fail = config.failures
    tracker: FailureTracker | None = None
    uniform: UniformAnswers | None = None
    if fail.enabled:
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
        quiet = config.schedule.quiet
        tracker.quiet = schedule.quiet if schedule is not None and schedule.configured else None
        tracker.quiet_maxretry, tracker.quiet_findtime = quiet.maxretry, quiet.findtime
        if fail.uniform_answers:
            uniform = (old.uniform if old is not None else None) or UniformAnswers()
    # the sources that logged in: for the kernel's lane (nftables), and so
    # that no fingerprint alone bans a source that did (a forged packet)
    lane = config.firewall.lane
    fingerprints = config.fingerprints
    known_good = old.known_good if old is not None else None
    with_lane = config.firewall.enforcer == "nftables" and lane.enabled
    spare = (fingerprints.ban or config.deception.enabled) and config.policy.pack
    if not with_lane and not spare:
        known_good = None
    elif known_good is None:
        known_good = KnownGood(timeout=lane.known_good_timeout)
    hostile = old.hostile if old is not None else None
    deceive = config.deception.enabled
    if not ((fingerprints.ban or deceive) and config.policy.pack):
        hostile = None
    else:
        if hostile is None:
            hostile = HostileSources()
        hostile.ban, hostile.deceive = fingerprints.ban, deceive
        hostile.idle = config.deception.engaged_for
        default = Threshold(fingerprints.hits, fingerprints.window)
        hostile.thresholds = {
            "scan": default,
            "ua": default,
            **{name: Threshold(t.hits, t.window) for name, t in fingerprints.families.items()},
        }
        hostile.max_sources = fingerprints.max_sources
    # what INVITEs dial: the dialplan (its cache kept while its keys stay)
    # and the toll-fraud detectors (their counts kept across a reload)
    dial = config.dialplan
    plan = old.dialplan if old is not None else None
    if plan is None or (
        plan.country,
        plan.international_prefixes,
        plan.trunk_prefixes,
    ) != (
        dial.country.upper() if dial.country else None,
        tuple(dial.international_prefixes),
        tuple(dial.trunk_prefixes),
    ):
        plan = Dialplan(dial.country, dial.international_prefixes, dial.trunk_prefixes)
    toll = config.tollfraud
    tollfraud = old.tollfraud if old is not None else None
    if not toll.enabled:
        tollfraud = None
    else:
        settings = toll.model_dump(exclude={"enabled"})
        if tollfraud is None:
            tollfraud = TollFraud(**settings)
        else:
            for name, value in settings.items():
                setattr(tollfraud, name, value)
    international = config.schedule.quiet.international
    quiet_time = schedule.quiet if schedule is not None and schedule.configured else None
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
    intel = IntelScreen(
        old_intel.index if old_intel is not None else AddressIndex(),
        countries=countries,
        country_policy=country_policy,
        exempt=book.allowed,
    )
    built = _assemble(
        config.policy,
        policy.trusted,
        policy.rules,
        bans=book,
        limiter=limiter,
        failures=tracker,
        uniform=uniform,
        known_good=known_good,
        hostile=hostile,
        tollfraud=TollFraudParts(plan, tollfraud, international, quiet_time),
        intel=intel,
        verdicts=policy.verdicts,
        decisions=old.decisions if old is not None else None,
    )
    if old is not None and old.monitor and built.monitor:  # the would-be bans already told
        built.would_bans = old.would_bans
    return built


def build_policy(
    config: Config,
    *,
    previous: Policy | None = None,
    countries: Countries | None = None,
    resolve: Resolver | None = None,
    schedule: Schedule | None = None,
) -> Policy:
    """The whole policy ``config`` asks for: ``rules_policy`` then
    ``with_state`` (see the module doc), handing ``previous``'s counters and
    state over. Raises RuleError or PolicyError naming the key or file."""
    rules = rules_policy(config.policy, previous=previous, resolve=resolve)
    return with_state(rules, config, previous=previous, countries=countries, schedule=schedule)


def quiet_limits(config: Config, schedule: Schedule | None) -> QuietLimits | None:
    """The rate limits of quiet time (``[schedule.quiet]``: its own counts,
    else the day's times ``limits_factor``, at least 1), or None without a
    schedule that has a rule."""
    if schedule is None or not schedule.configured:
        return None
    quiet, lim = config.schedule.quiet, config.limits

    def scaled(count: int) -> int:
        return max(1, round(count * quiet.limits_factor))

    return QuietLimits(
        schedule.quiet,
        quiet.requests if quiet.requests is not None else scaled(lim.requests),
        {m: quiet.methods.get(m) or scaled(c) for m, c in lim.methods.items()},
    )


def _assemble(
    config: PolicyConfig,
    trusted: TrustedPeers,
    rules: RuleSet,
    *,
    bans: BanBook | None = None,
    limiter: RateLimiter | None = None,
    failures: FailureTracker | None = None,
    uniform: UniformAnswers | None = None,
    known_good: KnownGood | None = None,
    hostile: HostileSources | None = None,
    tollfraud: TollFraudParts | None = None,
    intel: IntelScreen | None = None,
    verdicts: Counter[Verdict] | None = None,
    decisions: Counter[str] | None = None,
) -> Policy:
    """The stages in their order (the one place that says it; the pipeline's
    module doc tells why): on the source, the trusted peers (always first),
    the ban book, intel; on the message, sanity, the rules, the limiter,
    OPTIONS. A stage with nothing to do is left out, not asked."""
    screens: list[SourceStage] = []
    if bans is not None:
        screens.append(BannedSources(bans))
    if intel is not None:
        screens.append(IntelStage(intel))
    stages: list[Stage] = []
    if config.sanity:
        stages.append(Sanity(config.max_uri_length))
    known = known_good.known if known_good is not None else None
    deceiving = hostile if hostile is not None and hostile.deceive else None
    if rules.rules:
        stages.append(RuleStage(rules, hostile=hostile, known_good=known))
    if limiter is not None:
        stages.append(LimitStage(limiter, bans.allowed if bans is not None else _nobody))
    if tollfraud is not None and (
        tollfraud.detector is not None or tollfraud.international != "allow"
    ):

        def vouched(host: str, now: float) -> bool:  # it logged in, or the allow list has it
            return (known_good is not None and known_good.known(host, now)) or (
                bans is not None and bans.allowed(host)
            )

        def alert(source: Peer, number: Number, now: float) -> None:
            policy.tell(  # an international call in quiet time, let through: an event
                Event(
                    now,
                    VERDICT,
                    source.host,
                    "tollfraud.quiet-international",
                    (("verdict", "alert"), ("number", number.dialled), ("country", number.country)),
                )
            )

        stages.append(
            TollFraudStage(
                tollfraud.plan,
                tollfraud.detector,
                vouched=vouched,
                quiet=tollfraud.quiet,
                international=tollfraud.international,
                alert=alert,
                deceive=deceiving,
            )
        )
    if deceiving is not None:  # after the detectors: they still see a deceived source's calls
        stages.append(DeceiveHostile(deceiving, known))
    if config.options == "drop":
        stages.append(OptionsFromTrusted())
    policy = Policy(
        trusted=trusted,
        screens=screens,
        stages=stages,
        bans=bans,
        failures=failures,
        uniform=uniform,
        known_good=known_good,
        hostile=hostile,
        verdicts=verdicts,
        decisions=decisions,
    )
    if tollfraud is not None:
        policy.dialplan, policy.tollfraud = tollfraud.plan, tollfraud.detector
    policy.monitor = config.mode == "monitor"
    return policy


class TollFraudParts(NamedTuple):
    """What the toll-fraud stage is built from (``with_state`` keeps them)."""

    plan: Dialplan
    detector: TollFraud | None
    international: QuietAction  # [schedule.quiet] international: "allow", "drop" or "alert"
    quiet: Callable[[float], bool] | None


def _nobody(key: str) -> bool:
    return False  # no ban book: no allow list


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
