"""The daemon's counters as ``status`` shows them, and their sum over workers.

Each worker builds its own (``worker_stats``); worker 0 adds the others'
(``add_stats``). Counters add up key by key; the sections below that are
not summed say why. A mode's counters appear under the mode's name.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ..policy import Policy
    from .bans import BanKeeper
    from .modes import Mode

# one per worker, not summed: the latency is worker 0's; intel is joined
# (feeds are the same in every worker, see add_intel)
NOT_SUMMED: Final = frozenset(
    {"enforcement", "intel", "alert-targets", "report", "fleet", "fleet-intel"}
)


def worker_stats(
    policy: Policy,
    modes: Iterable[Mode],
    keeper: BanKeeper,
    intel: dict[str, Any],
    lane: dict[str, Any] | None = None,
    observe: dict[str, Any] | None = None,
    alerts: dict[str, Any] | None = None,
    report: dict[str, Any] | None = None,
    analysis: dict[str, Any] | None = None,
    kernel_drops: dict[str, Any] | None = None,
    *,
    fleet_counters: dict[str, int] | None = None,
    fleet_intel: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """This worker's counters, by section (``lane``: the kernel lane's, if
    there is one; its ``kernel-*`` counters come from worker 0 alone;
    ``observe``: its events and flows, if it keeps them)."""
    now = time.time()
    modes = list(modes)
    stats: dict[str, Any] = {
        "ok": True,
        # [policy] mode: "monitor" judges and records, enforces nothing (a string: worker 0's)
        "mode": "monitor" if policy.monitor else "enforce",
        "hits": dict(policy.rules.hits),
        "monitored": dict(policy.rules.monitored),
        "verdicts": dict(policy.counters),
        **{mode.name: dict(mode.counters) for mode in modes},
        # when the PBX last answered, through any mode (the latest over workers)
        "pbx-answered-at": max(
            (t for mode in modes if (t := mode.pbx_answered_at) is not None), default=None
        ),
        "decisions": dict(policy.decisions),
        # every worker enforces every ban (adopted from the store): not summed
        "bans-in-force": len(policy.bans.active(now)) if policy.bans else 0,
        "bans": {
            **keeper.counters,
            **{f"{keeper.enforcer.name}:{k}": v for k, v in keeper.enforcer.counters.items()},
        },
        "enforcement": keeper.latency(),
        # every ban's decision to enforcement, in buckets (summed: each worker flushes its own)
        "ban-latency": keeper.latency_histogram.as_stats(),
        # why the store takes no writes, while it does not (the changes held
        # are "store-unwritten" under "bans"); a string: worker 0's is shown
        "store-error": keeper.store_error,
        "tracked": {
            "rate-sources": len(policy.limiter) if policy.limiter is not None else 0,
            "failure-sources": len(policy.failures) if policy.failures is not None else 0,
        },
        "intel": intel,
    }
    if lane is not None:
        stats["lane"] = lane
    if observe is not None:
        stats["observe"] = observe
    if alerts is not None:  # worker 0's alone: its targets' counters, then their state
        stats["alerts"] = {
            f"{name}:{what}": value
            for name, target in alerts["targets"].items()
            for what in ("sent", "failed", "waiting", "dropped")
            if isinstance(value := target.get(what), int)
        }
        stats["alert-targets"] = alerts["targets"]
    if report is not None:  # worker 0's: the weekly mail's next time and outcome
        stats["report"] = report
    if analysis is not None:  # worker 0's
        stats["analysis"] = analysis
    if kernel_drops is not None:  # worker 0's: it reads the kernel's per-source counts
        stats["kernel-drops"] = kernel_drops
    if fleet_counters is not None:  # every worker's, summed ([fleet] share_failures)
        stats["fleet-counters"] = fleet_counters
    if fleet_intel is not None:  # worker 0's: who fetches each feed, where this node's came from
        stats["fleet-intel"] = fleet_intel
    return stats


def add_stats(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Sum one worker's stats into ``total``: every section of counters adds
    up key by key, but those in ``NOT_SUMMED``; intel is joined; the PBX's
    last answer is the latest."""
    for key, value in part.items():
        if key in NOT_SUMMED or not isinstance(value, dict):
            continue
        counts = Counter(total.get(key, {}))
        counts.update(value)
        total[key] = dict(counts)
    theirs = part.get("pbx-answered-at")
    if theirs is not None and theirs > (total.get("pbx-answered-at") or 0):
        total["pbx-answered-at"] = theirs
    if "intel" in total and "intel" in part:
        add_intel(total["intel"], part["intel"])


def add_intel(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Join one worker's intel status into ``total``: feeds and countries are
    the same in every worker (one store), but a listed trusted source is
    noticed only by the worker its packets reached."""
    exempt = total.get("listed_but_exempt")
    if exempt is None:
        return
    for host, feeds in (part.get("listed_but_exempt") or {}).items():
        exempt[host] = sorted({*exempt.get(host, ()), *feeds})
