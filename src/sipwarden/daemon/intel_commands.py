"""What `sipwarden intel ...` and `sipwarden status` do with no daemon to ask.

``sync`` runs each selected feed's fetch once, under the same per-feed lock
the daemon takes (so the two take turns), with a rich progress bar on
stderr; a running daemon finds the new entries in the store within a
second. ``offline_lookup`` answers ``intel lookup`` from the store with the
daemon's own pieces (the policy as the config builds it, the ban book
restored from the store, the index loaded by an ``IntelKeeper``), so the
answer is the one the daemon would give. ``offline_status`` reads the
feeds' status from the store.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..store.intel import IntelStore
from .intel import (
    FeedSpec,
    IntelKeeper,
    apiban_settings,
    describe_feeds,
    feed_specs,
    list_feed,
    refresh_list,
    sync_apiban,
)


@dataclass
class Outcome:
    feed: str
    ok: bool
    summary: str  # one line for the operator
    details: dict[str, Any]


def select(config: Config, names: tuple[str, ...]) -> list[FeedSpec]:
    """The configured feeds named (all when none); ValueError naming the
    valid ones for a name that is not configured, or when none is."""
    specs = feed_specs(config.intel)
    if not specs:
        raise ValueError(
            "no feed is configured: set [intel.apiban] key (or SIPWARDEN_APIBAN_KEY),"
            " or add an [[intel.feeds]] table"
        )
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ValueError(
            f"not a configured feed: {', '.join(unknown)} (configured: {', '.join(specs)})"
        )
    return [specs[n] for n in names] if names else list(specs.values())


def sync(config: Config, feeds: list[FeedSpec], *, wait: float, show: bool) -> list[Outcome]:
    """One fetch of each of ``feeds`` into the store (see the module doc)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    path = config.storage.path
    lists = {f.name: f for f in config.intel.feeds}

    async def run(bar: Progress) -> list[Outcome]:
        store = IntelStore(path)
        outcomes = []
        try:
            for spec in feeds:
                task = bar.add_task(spec.name, total=1.0)
                if spec.kind == "apiban":
                    settings = apiban_settings(config.intel)
                    assert settings is not None

                    def on_progress(p: Any, task: Any = task, name: str = spec.name) -> None:
                        what = f"{name}: {p.total:,} entries, {p.requests} requests"
                        if p.waiting:
                            what += f", waiting {p.waiting:.0f} s ({p.status})"
                        bar.update(task, completed=p.fraction or 0.0, description=what)

                    result = await sync_apiban(
                        path, store, settings, wait=wait, progress=on_progress
                    )
                    outcomes.append(_apiban_outcome(spec.name, result, wait))
                else:
                    status = await refresh_list(path, store, list_feed(lists[spec.name]), wait=wait)
                    count = await asyncio.to_thread(store.count, spec.name)
                    outcomes.append(_list_outcome(spec.name, status, count, wait))
                bar.update(task, completed=1.0, description=outcomes[-1].summary)
        finally:
            store.close()
        return outcomes

    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not show) as bar:
        return asyncio.run(run(bar))


def _busy(name: str, wait: float) -> Outcome:
    return Outcome(
        name,
        False,
        f"{name}: another process (the daemon?) was still fetching it after {wait:g} s;"
        " try again later, or with a longer --wait",
        {"busy": True},
    )


def _apiban_outcome(name: str, result: Any, wait: float) -> Outcome:
    if result is None:
        return _busy(name, wait)
    details = {
        "reason": result.reason,
        "error": result.error,
        "requests": result.requests,
        "added": result.added,
        "seen": result.seen,
        "expired": result.expired,
        "entries": result.total,
        "last_id": result.last_id,
        "seconds": round(result.seconds, 1),
    }
    if result.ok:
        summary = (
            f"{name}: {result.reason}; {result.requests} requests, {result.added:,} new,"
            f" {result.expired:,} expired, {result.total:,} entries"
        )
    else:
        summary = f"{name}: {result.error or result.reason}; {result.total:,} entries kept"
    return Outcome(name, result.ok, summary, details)


def _list_outcome(name: str, status: Any, count: int, wait: float) -> Outcome:
    if status is None:
        return _busy(name, wait)
    details = {
        "entries": count,
        "error": status.last_error,
        "bad_lines": status.bad_lines,
        "bad_examples": list(status.bad_examples),
        "bytes": status.size,
    }
    if status.last_error is not None:
        return Outcome(
            name, False, f"{name}: {status.last_error}; last good list of {count:,} kept", details
        )
    bad = f", {status.bad_lines} bad lines skipped" if status.bad_lines else ""
    return Outcome(name, True, f"{name}: {count:,} entries{bad}", details)


def offline_status(config: Config) -> list[dict[str, Any]]:
    store = IntelStore(config.storage.path)
    try:
        rows = store.status()
    finally:
        store.close()
    return describe_feeds(feed_specs(config.intel), rows)


def offline_lookup(config: Config, address: str) -> dict[str, Any]:
    """``intel lookup`` with no daemon (see the module doc). ValueError for
    a bad address; PolicyError for a policy the config cannot build."""
    from ..enforce import make_enforcer
    from ..fetch.dns import resolve
    from ..fetch.geoip import open_geo
    from ..policy import build_policy
    from .bans import BanKeeper
    from .offline import deceived

    # one answer needs no preloaded table: the database is read as it is
    countries = open_geo(config.intel.geoip.model_copy(update={"preload": False}))
    policy = build_policy(config, countries=countries, resolve=resolve)
    book, screen = policy.bans, policy.intel
    assert book is not None and screen is not None

    async def look() -> dict[str, Any]:
        bans = BanKeeper(book, config.storage.path, make_enforcer("none"))
        intel = IntelKeeper(config.intel, config.storage.path, screen.index)
        await bans.start()
        try:
            await intel.start()
            try:
                return await intel.lookup(policy, address)
            finally:
                await intel.stop()
        finally:
            await bans.stop()

    found = asyncio.run(look())
    return {**found, "deceived": deceived(config, found["ip"])}
