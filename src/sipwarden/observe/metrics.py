"""The metrics model: the daemon's counters as Prometheus metric families,
in plain values.

What it does: ``metric_families(stats, version)`` reads the stats dict that
``status`` shows (every worker builds one, worker 0 sums them:
``daemon/stats.py``) and gives the families ``/metrics`` exposes: each a
name, a help line, a type (counter, gauge, histogram), label names and its
samples as plain numbers. ``api/metrics.py`` renders them with
prometheus_client; this module imports none of it, so the mapping is tested
and read without a web server. ``Histogram`` is the accumulator the ban
keeper fills with each ban's latency (cumulative bucket counts, which add up
over workers as every other counter does).

Why a mapping from ``status`` and not counters of its own: one set of
numbers, counted once on the packet path; ``/metrics`` and ``status`` cannot
disagree.

Names follow Prometheus' conventions: ``sipwarden_`` then snake_case,
``_total`` on counters, seconds and timestamps in seconds. The contract's
three (``sipwarden_verdicts_total{verdict,reason}``,
``sipwarden_bans_active``, ``sipwarden_bans_total{detector}``) are always
there, empty or not. A section's key ``what`` becomes ``<prefix>what``,
and ``what:label`` the same name with a label (the counters of ``status``
are written that way: ``drop:backend-unreachable``); a plain ``what``
beside labelled ones is their total and is left out, so ``sum()`` over the
family counts once. Keys are counters unless a section names them gauges.

Bounds: label values are rule ids, detector, reason, feed, analyser and
alert target names, all from the config or the code, never addresses. A
label value that looks like an IP address (or is over ``MAX_LABEL``
characters) is left out, whatever section it came from, and counted in
``sipwarden_metrics_samples_refused``: a scrape never grows with the
sources an attacker can spoof.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

Kind = Literal["counter", "gauge", "histogram"]

MAX_LABEL: Final = 200  # characters of a label value
# decision to kernel: one nft call is a few ms; a loaded machine, a second
BAN_LATENCY_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# a ban published by one fleet node to another applying it (Redis between): the goal is a second
PROPAGATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)
INF: Final = float("inf")


# ------------------------------------------------------------------ values


@dataclass(frozen=True)
class Buckets:
    """A histogram's value: (upper bound, cumulative count) pairs ending
    with +Inf, and the sum of what was observed."""

    bounds: tuple[tuple[float, float], ...]
    sum: float

    @property
    def count(self) -> float:
        return self.bounds[-1][1] if self.bounds else 0.0


@dataclass(frozen=True)
class Sample:
    labels: tuple[str, ...]  # values, in the order of the family's label names
    value: float | Buckets


@dataclass(frozen=True)
class Family:
    name: str  # as exposed: a counter's ends in _total
    help: str
    kind: Kind
    labels: tuple[str, ...] = ()
    samples: tuple[Sample, ...] = ()


# -------------------------------------------------------- the accumulator


class Histogram:
    """Counts of observed values per bucket and their sum, for the stats
    dict as ``{"le:<bound>": cumulative count, ..., "le:+Inf": n, "sum": s}``
    (summed over workers key by key, as ``add_stats`` sums any section).
    Bounded: one count per bucket."""

    def __init__(self, bounds: Sequence[float] = BAN_LATENCY_BUCKETS) -> None:
        self.bounds = tuple(sorted(bounds))
        self._counts = [0] * (len(self.bounds) + 1)  # the last: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, value)] += 1  # first bound >= value
        self.sum += value

    def as_stats(self) -> dict[str, float]:
        out: dict[str, float] = {}
        running = 0
        for bound, count in zip((*self.bounds, INF), self._counts, strict=True):
            running += count
            out[f"le:{_bound(bound)}"] = running
        out["sum"] = self.sum
        return out


def _bound(value: float) -> str:
    return "+Inf" if value == INF else repr(value)


# -------------------------------------------------------------- the mapping


@dataclass(frozen=True)
class Section:
    """How one section of counters maps to families: ``prefix`` + the key
    (or a name from ``names``); ``label`` names what follows the colon
    (``label_first``: what precedes it, as in ``<target>:sent``)."""

    prefix: str
    label: str = "reason"
    label_first: bool = False
    gauges: frozenset[str] = frozenset()
    names: Mapping[str, str] = field(default_factory=dict)  # key -> name without prefix
    helps: Mapping[str, str] = field(default_factory=dict)  # key -> help
    what: str = ""  # for the generic help line


EDGE: Final = Section(
    "sipwarden_edge_",
    names={
        "drop": "drops",
        "refused": "connections_refused",
        "closed": "connections_closed",
        "stream-closed": "streams_closed",
    },
    helps={
        "received": "SIP messages the edge received from clients",
        "to-backend": "messages the edge relayed to the backend (the PBX)",
        "to-client": "messages the edge sent to clients (answers relayed, rejects)",
        "rejected": "requests the edge answered with an error itself",
        "drop": "messages the edge could not relay, by reason (the policy's drops are"
        " sipwarden_verdicts_total)",
        "refused": "connections the edge refused, by reason",
        "closed": "connections the edge closed, by reason",
        "stream-closed": "streams closed for bad framing, by reason",
    },
    what="the edge's",
)
LOGWATCH: Final = Section(
    "sipwarden_logwatch_",
    label="source",
    names={"read": "lines_read", "matched": "lines_matched", "unmatched": "lines_unmatched"},
    helps={
        "read": "log lines logwatch mode read, by source (a path or journal:<unit>)",
        "matched": "log lines a pattern of the source's format matched",
        "unmatched": "log lines no pattern matched",
        "failed": "failed logins read from the logs",
        "not-found": "probes for a user or extension read from the logs",
        "logins": "logins that succeeded, read from the logs",
        "challenges": "challenges read from the logs (never failures)",
        "too-old": "matched lines older than [logwatch] max_age: counted, not reported",
        "rotations": "rotations of a followed file (renamed, truncated, caught up at start)",
        "bans": "bans the logs' failures earned",
    },
    what="logwatch's",
)
HOST: Final = Section(
    "sipwarden_host_",
    helps={
        "received": "packets to the PBX's SIP ports host mode judged (NFQUEUE)",
        "dropped": "UDP packets host mode dropped (the policy's reasons: sipwarden_verdicts_total)",
        "reset": "TCP connections host mode reset",
        "judged-by-source": "TCP segments judged by their source alone (TLS, a part of a message)",
        "pings-refused": "TCP keep-alive pings on a connection with no passed message (reset)",
        "answers-read": "the PBX's final answers host mode read",
        "answers-made-uniform": "the PBX's 404s to a REGISTER rewritten to the uniform challenge",
        "not-read": "queued packets host mode could not read (accepted)",
        "queue-errors": "errors reading NFQUEUE or sending verdicts",
        "errors": "packets whose judging failed (accepted)",
    },
    what="host mode's",
)
BANS: Final = Section(
    "sipwarden_ban_keeper_",
    gauges=frozenset({"store-unwritten"}),
    helps={
        "changes": "ban changes (bans, lifts, expiries) carried to the kernel and the store",
        "store-unwritten": "ban changes the store has not taken yet (held, tried again)",
        "store-errors": "failed writes of ban changes to the store",
    },
    what="the ban keeper's",
)
ENFORCER: Final = Section(
    "sipwarden_enforcer_",
    label="enforcer",
    label_first=True,
    gauges=frozenset({"feed-elements"}),
    helps={"feed-elements": "addresses and networks in the kernel's feed sets"},
    what="the enforcer's (the kernel's firewall)",
)
OBSERVE: Final = Section(
    "sipwarden_",
    gauges=frozenset({"flows-tracked", "events-held", "flows-held"}),
    helps={
        "events-queued": "events queued for the store",
        "events-repeated": "events only counted (sampled per source and reason under a flood)",
        "events-dropped": "events lost: the queue was full",
        "events-written": "events written to the store",
        "observe-write-errors": "failed writes of events and flows to the store",
        "events-held": "events held for the store (it failed), tried again at the next write",
        "events-lost": "events let go while the store failed (past the bound of those held)",
        "flows-held": "flow records held for the store (it failed)",
        "flows-lost": "flow records let go while the store failed",
        "flows-tracked": "traffic flows tracked in the current minute",
        "flows-untracked": "packets of flows not tracked: the flow table was full",
        "flows-minutes-lost": "minutes of flows not written",
        "flows-written": "flow records written to the store",
    },
    what="observation's",
)
ANALYSIS: Final = Section(
    "sipwarden_analysis_",
    label="analyser",
    helps={
        "runs": "runs of the periodic analysis",
        "findings": "findings of the periodic analysis, by analyser",
    },
    what="the analysis'",
)
ALERTS: Final = Section(
    "sipwarden_alerts_",
    label="target",
    label_first=True,
    gauges=frozenset({"waiting"}),
    helps={
        "sent": "alerts sent, by target",
        "failed": "alerts that could not be sent, by target",
        "waiting": "alerts waiting to be sent (a target that fails is retried with backoff)",
        "dropped": "alerts let go: too many waited for a target that kept failing",
    },
    what="the alert targets'",
)
KERNEL_DROPS: Final = Section(
    "sipwarden_kernel_",
    gauges=frozenset({"sources"}),
    names={"packets": "dropped_packets", "bytes": "dropped_bytes", "sources": "drop_sources"},
    helps={
        "packets": "packets the kernel dropped (bans, feeds, the lane), by reason",
        "bytes": "bytes of the packets the kernel dropped, by reason",
        "sources": "sources whose packets the kernel counts as it drops them",
    },
    what="the kernel's drop",
)
LANE: Final = Section(
    "sipwarden_lane_",
    gauges=frozenset({"known-good", "pending"}),
    names={"known-good": "known_good_sources", "pending": "known_good_pending"},
    helps={
        "known-good": "sources that logged in, let through by the kernel lane",
        "pending": "sources that logged in, not yet in the kernel",
    },
    what="the kernel lane's",
)
FLEET_COUNTERS: Final = Section(
    "sipwarden_fleet_counters_",
    label="detector",
    gauges=frozenset({"pending", "workers-up", "workers-down"}),
    names={"sent": "events_sent", "dropped": "events_dropped", "lost": "events_lost"},
    helps={
        "sent": "failure events counted in the fleet's Redis",
        "flushes": "round trips to Redis (one script call each)",
        "pending": "failure events waiting for the next flush",
        "dropped": "failure events let go: the batch was full while Redis was away",
        "lost": "failure events Redis refused (an ACL or script error)",
        "skipped": "failure events not sent: too old to count, or a repeated success",
        "redis-errors": "failed round trips to Redis (retried)",
        "errors": "flushes that failed for another reason (logged)",
        "already-banned": "fleet-wide crossings for a source already banned here",
        "decisions": "bans asked of the ban book for fleet-wide counts, by detector",
        "workers-up": "workers whose Redis answers (failure counts shared)",
        "workers-down": "workers whose Redis does not answer (failure counts local only)",
    },
    what="the fleet's failure counters'",
)
# the lane's kernel counters: what the lane's rules did to packets
LANE_PASSED: Final = {"good": "good", "trusted": "trusted", "unknown-passed": "unknown"}
LANE_DROPPED: Final = {"prefix-dropped": "lane-prefix", "total-dropped": "lane-total"}


class _Families:
    """Families by name, in the order first added; samples with the same
    labels add up (two keys may name one sample)."""

    def __init__(self) -> None:
        self._heads: dict[str, tuple[str, Kind, tuple[str, ...]]] = {}
        self._samples: dict[str, dict[tuple[str, ...], float | Buckets]] = {}
        self.refused = 0

    def declare(self, name: str, help: str, kind: Kind, labels: tuple[str, ...] = ()) -> None:
        if name not in self._heads:
            self._heads[name] = (help, kind, labels)
            self._samples[name] = {}

    def add(
        self,
        name: str,
        help: str,
        kind: Kind,
        value: Any,
        labels: tuple[str, ...] = (),
        values: tuple[str, ...] = (),
        *,
        checked: bool = True,  # False: values of our own (the version), not from counters
    ) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float | Buckets):
            return  # not a number: nothing to expose
        if checked and not all(_bounded(v) for v in values):
            self.refused += 1
            return
        self.declare(name, help, kind, labels)
        if self._heads[name][2] != labels:
            return  # one family, one set of label names
        samples = self._samples[name]
        if isinstance(value, Buckets):
            samples[values] = value
        else:
            before = samples.get(values, 0.0)
            samples[values] = (before if isinstance(before, float | int) else 0.0) + value

    def families(self) -> list[Family]:
        return [
            Family(
                name,
                help,
                kind,
                labels,
                tuple(Sample(values, value) for values, value in self._samples[name].items()),
            )
            for name, (help, kind, labels) in self._heads.items()
        ]


def metric_families(stats: Mapping[str, Any], version: str) -> list[Family]:
    """The families ``/metrics`` exposes for ``stats`` (``status``'s dict,
    summed over workers); sections that are absent give nothing, but for the
    contract's three."""
    out = _Families()
    out.add(
        "sipwarden_build_info",
        "sipwarden's version (the value is always 1)",
        "gauge",
        1,
        ("version",),
        (version,),
        checked=False,
    )
    _verdicts(out, _section(stats, "verdicts"))
    _bans(out, stats)
    _rules(out, stats)
    _counters(out, EDGE, _section(stats, "edge"))
    _counters(out, LOGWATCH, _section(stats, "logwatch"))
    _counters(out, HOST, _section(stats, "host"))
    if isinstance(answered := stats.get("pbx-answered-at"), int | float):
        out.add(
            "sipwarden_pbx_last_answer_timestamp_seconds",
            "when the PBX last answered through the edge or host mode (Unix time)",
            "gauge",
            answered,
        )
    _intel(out, _section(stats, "intel"))
    _lane(out, _section(stats, "lane"))
    _fleet(out, _section(stats, "fleet"))
    _counters(out, KERNEL_DROPS, _section(stats, "kernel-drops"))
    _counters(out, OBSERVE, _section(stats, "observe"))
    _counters(out, ANALYSIS, _section(stats, "analysis"))
    _counters(out, ALERTS, _section(stats, "alerts"))
    _counters(out, FLEET_COUNTERS, _section(stats, "fleet-counters"))
    tracked = _section(stats, "tracked")
    for key, value in tracked.items():
        out.add(
            "sipwarden_tracked_sources",
            "sources a detector keeps counts for (bounded tables), by table",
            "gauge",
            value,
            ("table",),
            (key.removesuffix("-sources"),),
        )
    out.add(
        "sipwarden_metrics_samples_refused",
        "samples left out of this scrape: a label value looked like an address",
        "gauge",
        out.refused,
    )
    return out.families()


def _section(stats: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = stats.get(name)
    return value if isinstance(value, Mapping) else {}


def _verdicts(out: _Families, verdicts: Mapping[str, Any]) -> None:
    name, labels = "sipwarden_verdicts_total", ("verdict", "reason")
    help = (
        "the policy's verdicts on messages: verdict is forward, allow, drop, reject, ban"
        " or deceive; reason the rule or detector"
    )
    out.declare(name, help, "counter", labels)
    for key, count in verdicts.items():
        kind, _, reason = key.partition(":")
        out.add(name, help, "counter", count, labels, (kind, reason))


def _bans(out: _Families, stats: Mapping[str, Any]) -> None:
    out.add(
        "sipwarden_bans_active",
        "bans in force (every worker enforces every ban)",
        "gauge",
        stats.get("bans-in-force", 0),
    )
    made = "sipwarden_bans_total"
    made_help = "bans made, by detector (a rule id, a detector, operator)"
    out.declare(made, made_help, "counter", ("detector",))
    keeper: dict[str, Any] = {}
    enforcer: dict[str, Any] = {}
    for key, value in _section(stats, "bans").items():
        what, colon, rest = key.partition(":")
        if not colon:
            keeper[key] = value
        elif what == "made":
            out.add(made, made_help, "counter", value, ("detector",), (rest,))
        else:
            enforcer[key] = value
    _counters(out, BANS, keeper)
    _counters(out, ENFORCER, enforcer)
    refused = _section(stats, "decisions").get("refused")
    if refused is not None:
        out.add(
            "sipwarden_ban_decisions_refused_total",
            "detectors' ban decisions the ban book refused (the allow list, a protected"
            " network, the book full)",
            "counter",
            refused,
        )
    if "mode" in stats:
        out.add(
            "sipwarden_monitor_mode",
            "1: monitor mode ([policy] mode), judged and recorded, nothing dropped or banned",
            "gauge",
            int(stats["mode"] == "monitor"),
        )
    if "store-error" in stats:
        out.add(
            "sipwarden_store_writable",
            "whether the store takes the bans' writes (0: they are held, see status)",
            "gauge",
            int(stats["store-error"] is None),
        )
    latency = _buckets(_section(stats, "ban-latency"))
    if latency is not None:
        out.add(
            "sipwarden_ban_latency_seconds",
            "seconds from a ban's decision to the kernel and the store holding it",
            "histogram",
            latency,
        )


def _fleet(out: _Families, fleet: Mapping[str, Any]) -> None:
    """The fleet's bans (``[fleet]``; worker 0's keeper): degraded or not,
    the queue and lag, the bans by what became of them, the propagation delay."""
    if not fleet:
        return
    out.add(
        "sipwarden_fleet_degraded",
        "1: this node works alone (Redis does not answer, or it is catching up)",
        "gauge",
        int(bool(fleet.get("degraded"))),
    )
    out.add(
        "sipwarden_fleet_queue",
        "this node's bans and unbans waiting to be published (Redis away)",
        "gauge",
        fleet.get("queue"),
    )
    out.add(
        "sipwarden_fleet_lag_seconds",
        "the ban stream's last entry minus the last one this node applied",
        "gauge",
        fleet.get("lag"),
    )
    out.add(
        "sipwarden_fleet_nodes_up",
        "fleet nodes (this one too) whose heartbeat Redis holds from the last 10 s",
        "gauge",
        fleet.get("nodes-up"),
    )
    name, labels = "sipwarden_fleet_bans_total", ("what",)
    help = (
        "the fleet's bans on this node: published, held-back (over the publish limit),"
        " applied (from other nodes), refused-over-limit (another node over it), queue-dropped"
    )
    out.declare(name, help, "counter", labels)
    for key, value in _section(fleet, "counters").items():
        out.add(name, help, "counter", value, labels, (key,))
    delay = _buckets(_section(fleet, "propagation"))
    if delay is not None:
        out.add(
            "sipwarden_fleet_propagation_seconds",
            "seconds from a ban's publication by another node to its application here",
            "histogram",
            delay,
        )


def _buckets(section: Mapping[str, Any]) -> Buckets | None:
    """The ``Histogram.as_stats`` dict back as a value (None if it is not one)."""
    bounds = []
    for key, count in section.items():
        if key.startswith("le:") and isinstance(count, int | float):
            try:
                bounds.append((float(key[3:]), float(count)))
            except ValueError:
                continue
    bounds.sort()
    if not bounds or bounds[-1][0] != INF:
        return None
    total = section.get("sum", 0.0)
    return Buckets(tuple(bounds), float(total) if isinstance(total, int | float) else 0.0)


def _rules(out: _Families, stats: Mapping[str, Any]) -> None:
    for section, name, help in (
        ("hits", "sipwarden_rule_hits_total", "messages a rule matched and acted on, by rule"),
        (
            "monitored",
            "sipwarden_rule_monitor_hits_total",
            "messages a rule in monitor mode matched (counted, not acted on), by rule",
        ),
    ):
        for rule, count in _section(stats, section).items():
            out.add(name, help, "counter", count, ("rule",), (rule,))


def _intel(out: _Families, intel: Mapping[str, Any]) -> None:
    feeds = intel.get("feeds")
    for feed in feeds if isinstance(feeds, list) else ():
        if not isinstance(feed, Mapping) or not isinstance(feed.get("feed"), str):
            continue
        name = (feed["feed"],)
        gauges: tuple[tuple[str, str, str], ...] = (
            ("entries", "sipwarden_feed_entries", "entries a feed holds in the store"),
            ("in_force", "sipwarden_feed_entries_in_force", "entries of a feed the edge drops"),
            (
                "last_success",
                "sipwarden_feed_last_success_timestamp_seconds",
                "when a feed was last fetched whole (Unix time)",
            ),
            (
                "last_error_at",
                "sipwarden_feed_last_error_timestamp_seconds",
                "when a feed's fetch last failed (Unix time)",
            ),
        )
        for key, metric, help in gauges:
            out.add(metric, help, "gauge", feed.get(key), ("feed",), name)
    kernel = intel.get("kernel")
    if isinstance(kernel, Mapping):
        out.add(
            "sipwarden_kernel_feed_elements",
            "addresses and networks of the feeds in the kernel's sets",
            "gauge",
            kernel.get("elements"),
        )
        out.add(
            "sipwarden_kernel_feed_loads_total",
            "loads of the feeds into the kernel's sets",
            "counter",
            kernel.get("loads"),
        )
        out.add(
            "sipwarden_kernel_feed_errors_total",
            "failed loads of the feeds into the kernel's sets",
            "counter",
            kernel.get("errors"),
        )


def _lane(out: _Families, lane: Mapping[str, Any]) -> None:
    own: dict[str, Any] = {}
    for key, value in lane.items():
        kernel = key.removeprefix("kernel-")
        if kernel == key:
            own[key.replace("known-good-", "known-good-events:", 1)] = value
        elif kernel in LANE_PASSED:
            out.add(
                "sipwarden_kernel_lane_passed_packets_total",
                "packets the kernel lane let through to the edge, by path (good: sources"
                " that logged in; trusted; unknown: within their prefix's rate)",
                "counter",
                value,
                ("path",),
                (LANE_PASSED[kernel],),
            )
        elif kernel in LANE_DROPPED:
            _counters(out, KERNEL_DROPS, {f"packets:{LANE_DROPPED[kernel]}": value})
    _counters(out, LANE, own)


def _counters(out: _Families, spec: Section, section: Mapping[str, Any]) -> None:
    """A section of counters (see the module doc for the names)."""
    labelled = {_split(spec, key)[0] for key in section if ":" in key}
    for key, value in section.items():
        what, label = _split(spec, key)
        if label is None and what in labelled:
            continue  # the total of the labelled ones
        snake = _snake(spec.names.get(what, what))
        if not snake or not _bounded(what):  # a name made of an address would grow as a label
            out.refused += 1
            continue
        gauge = what in spec.gauges
        name = spec.prefix + snake + ("" if gauge else "_total")
        help = spec.helps.get(what) or f"{spec.what} {what} {'gauge' if gauge else 'counter'}"
        kind: Kind = "gauge" if gauge else "counter"
        if label is None:
            out.add(name, help, kind, value)
        else:
            out.add(name, help, kind, value, (spec.label,), (label,))


def _split(spec: Section, key: str) -> tuple[str, str | None]:
    """A key as (what, label value or None)."""
    if ":" not in key:
        return key, None
    if spec.label_first:  # "<target>:sent": the name is the last part
        label, _, what = key.rpartition(":")
        return what, label
    what, _, label = key.partition(":")
    return what, label


_NOT_NAME = re.compile(r"[^a-z0-9]+")


def _snake(key: str) -> str:
    return _NOT_NAME.sub("_", key.lower()).strip("_")


_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_ADDRESS_CHARS: Final = frozenset("0123456789abcdefABCDEF.:/[]%")
_IPV6 = re.compile(r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*")


def _bounded(value: str) -> bool:
    """Whether ``value`` may be a label value: a name, not an address."""
    if not isinstance(value, str) or len(value) > MAX_LABEL:
        return False
    if _IPV4.search(value) or _IPV6.search(value):
        return False
    if not _ADDRESS_CHARS.issuperset(value):
        return True  # a letter no address has (the usual case: no exception to raise)
    try:
        ipaddress.ip_network(value.strip("[]"), strict=False)
    except ValueError:
        return True
    return False
