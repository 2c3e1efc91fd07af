"""What `sipwarden bans ...` and `sipwarden status` do with no daemon to ask.

``add_ban`` and ``remove_ban`` make one change with the keeper the daemon
runs (the same allow list, lengths, store and kernel), then stop it: the
ban is written and enforced, or lifted with its conntrack entries, before
they return. Their answers are the daemon's (``add_request`` and
``remove_request``), so the caller cannot tell who answered.
``bans_in_force`` and ``ban_record`` read the store, which a running daemon
keeps current too: they need no daemon either way.

The caller builds the policy (``rules_policy``) and reports its errors; a
change here runs one event loop of its own, so it is called from plain
(not async) code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..config import Config
from ..policy import Policy
from ..store.sqlite import BanStore
from .bans import BanKeeper, add_request, remove_request
from .protect import protected_networks


def add_ban(config: Config, policy: Policy, request: dict[str, Any]) -> dict[str, Any]:
    """A ``bans-add`` request (see ``add_request``), with no daemon."""
    return _change(config, policy, add_request, request)


def remove_ban(config: Config, policy: Policy, request: dict[str, Any]) -> dict[str, Any]:
    """A ``bans-remove`` request (see ``remove_request``), with no daemon."""
    return _change(config, policy, remove_request, request)


Handler = Callable[[BanKeeper, dict[str, Any]], Awaitable[dict[str, Any]]]


def _change(
    config: Config, policy: Policy, handle: Handler, request: dict[str, Any]
) -> dict[str, Any]:
    from ..fetch.geoip import open_geo
    from ..policy import PolicyError, with_state
    from .bans import enforcer_for

    # the allow list and trusted peers the book protects; the country source
    # too, as the daemon arms it (an unreadable one is the same error)
    try:
        book = with_state(policy, config, countries=open_geo(config.intel.geoip)).bans
    except PolicyError as exc:  # the error names the key, as at the daemon's start
        return {"ok": False, "error": str(exc)}
    assert book is not None
    book.protect(protected_networks(config))

    async def change() -> dict[str, Any]:
        keeper = BanKeeper(book, config.storage.path, enforcer_for(config))
        await keeper.start()
        try:
            return await handle(keeper, request)
        finally:
            await keeper.stop()  # written, enforced, conntrack cleaned up

    return asyncio.run(change())


def bans_in_force(config: Config, now: float | None = None) -> list[dict[str, Any]]:
    """The bans in force at ``now`` (default: the clock), as `bans list
    --json` prints them."""
    store = BanStore(config.storage.path)
    try:
        return store.in_force(time.time() if now is None else now)
    finally:
        store.close()


def ban_record(config: Config, target: str) -> dict[str, Any]:
    """What `bans show` prints of ``target`` (canonical): whether a ban is
    in force, and every ban on record with its evidence. Bans that ran out
    while no daemon watched are closed first, as a running one would have."""
    store = BanStore(config.storage.path)
    try:
        store.close_expired(time.time())
        history = store.history(target)
        in_force = [b for b in store.in_force(time.time()) if b["ip"] == target]
    finally:
        store.close()
    shown = {"ip": target, "banned": bool(in_force), "history": history}
    return {**shown, "deceived": deceived(config, target) if "/" not in target else None}


def observed(config: Config, what: str, request: dict[str, Any]) -> dict[str, Any]:
    """An ``events`` or ``flows`` request answered from the store (what the
    daemon wrote; with none running, nothing is queued or under way)."""
    from ..store import ObserveStore, StoreError

    since, source, limit = request.get("since"), request.get("source"), request.get("limit", 10_000)
    try:
        store = ObserveStore(config.storage.path)
    except StoreError as exc:
        return {"ok": False, "error": str(exc)}
    try:
        if what == "events":
            return {"ok": True, "events": store.events(since=since, source=source, limit=limit)}
        found = store.flows(since=since or 0.0, source=source, limit=limit)
        return {"ok": True, "flows": found}
    except StoreError as exc:
        return {"ok": False, "error": str(exc)}
    finally:
        store.close()


def honeypot_calls(config: Config, request: dict[str, Any]) -> dict[str, Any]:
    """A ``honeypot-calls`` request (``since``, ``source``, ``limit``)
    answered from the store: the honeypot's call records, the most recently
    called first. The daemon's command runs this too (on a thread)."""
    from ..store import HoneypotStore, StoreError

    since, source, limit = request.get("since"), request.get("source"), request.get("limit", 10_000)
    try:
        store = HoneypotStore(config.storage.path)
    except StoreError as exc:
        return {"ok": False, "error": str(exc)}
    try:
        return {"ok": True, "calls": store.calls(since=since, source=source, limit=limit)}
    except StoreError as exc:
        return {"ok": False, "error": str(exc)}
    finally:
        store.close()


def deceived(config: Config, ip: str) -> dict[str, Any] | None:
    """What deception gave ``ip`` (canonical), for `bans show` and `intel
    lookup`: its answers by kind (count, first, last: the events) and the
    numbers it dialled into the honeypot (its call records); None if it was
    never deceived, or the store cannot say (the rest of the answer stands)."""
    from ..store import HoneypotStore, ObserveStore, StoreError

    try:
        events, honeypot = ObserveStore(config.storage.path), HoneypotStore(config.storage.path)
    except StoreError:
        return None
    try:
        answers = events.deceived(ip)
        calls = honeypot.calls(source=ip, limit=100)
    except StoreError:
        return None
    finally:
        events.close()
        honeypot.close()
    if not answers and not calls:
        return None
    dialled = [
        {k: call[k] for k in ("number", "normalised", "country", "count", "last_seen")}
        for call in calls
    ]
    return {"answers": answers, "calls": dialled}


def analysis_once(config: Config, now: float | None = None) -> dict[str, Any]:
    """The analysers over the store's window, with no daemon: the findings
    (nothing acted on: the daemon's run bans, this one only tells)."""
    from ..fetch.calendar import open_schedule
    from ..observe import aggregate
    from ..observe.analysis import Window, build_analysis
    from ..store import ObserveStore, StoreError
    from .observe import as_event

    now = time.time() if now is None else now
    span = config.analysis.window
    try:
        schedule = open_schedule(config.schedule, now)
        store = ObserveStore(config.storage.path)
        try:
            events = [as_event(row) for row in store.events(since=now - span, limit=500_000)]
            flows = aggregate(store.flows(since=now - span, limit=200_000))
        finally:
            store.close()
    except StoreError as exc:
        return {"ok": False, "error": str(exc)}
    window = Window(
        now=now,
        events=events,
        flows=flows,
        span=span,
        quiet=schedule.quiet(now),
        hour_of_week=schedule.hour_of_week(now),
    )
    findings = build_analysis(config.analysis, config.bans).run(window)
    return {"ok": True, "findings": [f.as_dict() for f in findings]}
