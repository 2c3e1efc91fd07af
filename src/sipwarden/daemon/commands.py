"""The daemon's commands: one table, called by the control socket (the CLI,
the other workers) and by REST alike.

A command is a coroutine ``(daemon, request) -> answer``: ``request`` is the
JSON object the control socket received (``{"cmd": name, ...}``), the
answer a JSON object with ``ok`` and either the result or an ``error`` for
people. REST calls ``run_command`` with the same requests and maps the
answers to HTTP, so a ban made from the CLI, the API or another worker goes
through the same code. To add a command, write it below and list it in
``COMMANDS``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from ..logwatch.mode import LogWatch
from ..observe import LOGIN_FAILED, VERDICT, aggregate
from ..observe.schedule import week_profile
from ..store import StoreError
from .analysis import PROFILE_WEEKS, written_everywhere
from .bans import add_request, remove_request
from .offline import deceived as read_deceived
from .offline import honeypot_calls as read_honeypot_calls

if TYPE_CHECKING:
    from .core import Daemon

Request = dict[str, Any]
Answer = dict[str, Any]
Command = Callable[["Daemon", Request], Awaitable[Answer]]


async def reload(daemon: Daemon, request: Request) -> Answer:
    """Re-read the config's policy (worker 0 tells the other workers too)."""
    error = await (daemon.reload_all() if daemon.worker == 0 else daemon.reload())
    if error is not None:
        return {"ok": False, "error": error}
    return {"ok": True, "rules": len(daemon.policy.rules.rules)}


async def stats(daemon: Daemon, request: Request) -> Answer:
    """The counters; summed over every worker unless ``local``."""
    return daemon.stats() if request.get("local") else await daemon.all_stats()


async def bans_add(daemon: Daemon, request: Request) -> Answer:
    """Ban ``target`` for ``duration`` (seconds; null: permanent; absent: the
    progressive length) because of ``reason``: stored and enforced before
    the answer; the other workers adopt it from the store within a second."""
    return await add_request(daemon.keeper, request)


async def bans_remove(daemon: Daemon, request: Request) -> Answer:
    """Lift the ban on ``target`` (every worker lifts its own copy)."""
    answer = await remove_request(daemon.keeper, request)
    if not request.get("local"):
        await daemon.ask_others({**request, "local": True})
    return answer


async def bans_list(daemon: Daemon, request: Request) -> Answer:
    """The bans in force, and the time they were read at: the store's and
    every worker's (a ban a worker made while the store failed is in force
    before it is written); this worker's alone if ``local``."""
    bans = {row["ip"]: row for row in await daemon.keeper.list()}
    if not request.get("local"):
        for answer in await daemon.ask_others({**request, "local": True}):
            for row in answer.get("bans") or ():
                bans.setdefault(row["ip"], row)
    listed = sorted(bans.values(), key=lambda row: (row["created_at"], row["ip"]))
    return {"ok": True, "bans": listed, "now": daemon.keeper.clock()}


async def bans_show(daemon: Daemon, request: Request) -> Answer:
    """One target: its ban (why, evidence), whether it is allowed, its history."""
    try:
        shown = await daemon.keeper.show(str(request.get("target", "")))
    except ValueError:
        return {"ok": False, "error": f"{request.get('target')!r} is not an IP address or a CIDR"}
    return {"ok": True, **shown, "deceived": await _deceived(daemon, shown["ip"])}


async def intel_lookup(daemon: Daemon, request: Request) -> Answer:
    """One address: its country, the feeds that list it, its ban, the verdict."""
    try:
        found = await daemon.intel.lookup(daemon.policy, str(request.get("target", "")))
    except ValueError:
        return {"ok": False, "error": f"{request.get('target')!r} is not an IP address"}
    return {"ok": True, **found, "deceived": await _deceived(daemon, found["ip"])}


async def _deceived(daemon: Daemon, ip: str) -> dict[str, Any] | None:
    """What deception gave ``ip`` (see ``offline.deceived``), every
    worker's queued events written first."""
    if "/" in ip:
        return None
    if daemon.observe is not None:
        await written_everywhere(daemon)
    return await asyncio.to_thread(read_deceived, daemon.config, ip)


async def intel_status(daemon: Daemon, request: Request) -> Answer:
    """Feeds, the country policy, listed sources let through (joined over workers)."""
    if request.get("local"):
        return {"ok": True, **daemon.intel_status()}
    return {"ok": True, **await daemon.all_intel_status()}


async def observe_write(daemon: Daemon, request: Request) -> Answer:
    """Write this worker's queued events and ended minutes' flows now, and
    give the minute under way (``live``: the flows not written yet)."""
    if daemon.observe is None:
        return {"ok": True, "live": []}
    await daemon.observe.write()
    return {"ok": True, "live": daemon.observe.flows.current()}


def _window(request: Request) -> tuple[float | None, str | None, int] | str:
    """``since`` (epoch seconds), ``source`` and ``limit`` of a request, or
    what is wrong with them."""
    since, source, limit = request.get("since"), request.get("source"), request.get("limit", 10_000)
    if since is not None and (not isinstance(since, int | float) or isinstance(since, bool)):
        return "since: epoch seconds"
    if source is not None and not isinstance(source, str):
        return "source: an IP address"
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100_000:
        return "limit: a whole number from 1 to 100000"
    return (None if since is None else float(since)), source, limit


async def events(daemon: Daemon, request: Request) -> Answer:
    """The events since ``since`` (every worker's, those queued a moment
    ago too), oldest first; at most ``limit``, the newest."""
    window = _window(request)
    if isinstance(window, str):
        return {"ok": False, "error": window}
    if daemon.observe is None:
        return {"ok": False, "error": "events are not kept"}
    since, source, limit = window
    await written_everywhere(daemon)
    try:
        found = await daemon.observe.events_since(since, source=source, limit=limit)
    except StoreError as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "events": found}


async def flows(daemon: Daemon, request: Request) -> Answer:
    """One record per flow over the window (the contract's fields): the
    store's minutes and every worker's minute under way, busiest first."""
    window = _window(request)
    if isinstance(window, str):
        return {"ok": False, "error": window}
    if daemon.observe is None:
        return {"ok": False, "error": "flows are not kept"}
    since, source, limit = window
    live = await written_everywhere(daemon, kernel=True)
    try:
        stored = await daemon.observe.flows_since(since or 0.0, source=source, limit=limit)
    except StoreError as exc:
        return {"ok": False, "error": str(exc)}
    live = [
        r
        for r in live
        if (source is None or r["source"] == source) and (since is None or r["last_seen"] >= since)
    ]
    merged = aggregate([*stored, *live])
    merged.sort(key=lambda r: (-r["packets"], r["first_seen"]))
    return {"ok": True, "flows": merged[:limit]}


async def sources(daemon: Daemon, request: Request) -> Answer:
    """The busiest sources over the window (the dashboard's "who"): per
    source its packets, bytes, flow records, first and last seen and
    verdict reasons: the store's ``limit`` busiest and every worker's
    minute under way (not written yet) summed, the ``limit`` busiest of them."""
    limit = request.get("limit", 15)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
        return {"ok": False, "error": "limit: a whole number from 1 to 1000"}
    window = _window({**request, "limit": 1})
    if isinstance(window, str):
        return {"ok": False, "error": window}
    if daemon.observe is None:
        return {"ok": False, "error": "flows are not kept"}
    since = window[0] or 0.0
    live = await written_everywhere(daemon, kernel=True)
    try:
        stored = await daemon.observe.sources_since(since, limit=limit)
    except StoreError as exc:
        return {"ok": False, "error": str(exc)}
    found = {one["source"]: one for one in stored}
    for record in live:
        if record["last_seen"] < since:
            continue
        one = found.get(record["source"])
        if one is None:
            one = found[record["source"]] = {
                "source": record["source"],
                "packets": 0,
                "bytes": 0,
                "flows": 0,
                "first_seen": record["first_seen"],
                "last_seen": record["last_seen"],
                "verdicts": {},
            }
        one["packets"] += record["packets"]
        one["bytes"] += record["bytes"]
        one["flows"] += 1
        one["last_seen"] = max(one["last_seen"], record["last_seen"])
        for reason, count in record["verdicts"].items():
            one["verdicts"][reason] = one["verdicts"].get(reason, 0) + count
    busiest = sorted(found.values(), key=lambda one: (-one["packets"], one["source"]))
    return {"ok": True, "sources": busiest[:limit]}


async def honeypot_calls(daemon: Daemon, request: Request) -> Answer:
    """The honeypot's call records (the contract's: one per source and
    dialled number), the most recently called first, as the store has them."""
    window = _window(request)
    if isinstance(window, str):
        return {"ok": False, "error": window}
    since, source, limit = window
    await honeypot_write(daemon, {})  # every worker's records written first
    await daemon.ask_others({"cmd": "honeypot-write"})
    asked = {"since": since, "source": source, "limit": limit}
    return await asyncio.to_thread(read_honeypot_calls, daemon.config, asked)


async def honeypot_write(daemon: Daemon, request: Request) -> Answer:
    """Write this worker's honeypot records now."""
    if daemon.honeypot is not None:
        try:
            await daemon.honeypot.write()
        except StoreError as exc:
            return {"ok": False, "error": str(exc)}
    return {"ok": True}


async def analysis_run(daemon: Daemon, request: Request) -> Answer:
    """Run the analysers once, now, over the window; their findings (acted
    on, as the periodic run does, only if ``act``)."""
    if daemon.analysis is None:
        return {"ok": False, "error": "the analysis runs in worker 0 with events kept"}
    findings = await daemon.analysis.run(act=bool(request.get("act")))
    return {"ok": True, "findings": [f.as_dict() for f in findings]}


async def profile(daemon: Daemon, request: Request) -> Answer:
    """The attack volume by hour of the week over the last four weeks (drops,
    rejects and bans by the policy, failed logins), each hour's quiet flag."""
    if daemon.observe is None:
        return {"ok": False, "error": "events are not kept"}
    now = time.time()
    await written_everywhere(daemon)
    try:
        rows = await daemon.observe.events_since(
            now - PROFILE_WEEKS * 7 * 86400, kinds=(VERDICT, LOGIN_FAILED), limit=1_000_000
        )
    except StoreError as exc:
        return {"ok": False, "error": str(exc)}
    weighted = ((row["time"], float(row.get("repeated", 1))) for row in rows)
    return {"ok": True, **week_profile(weighted, now, PROFILE_WEEKS, daemon.schedule)}


async def logwatch_status(daemon: Daemon, request: Request) -> Answer:
    """Logwatch mode's coverage, per source: lines read, matched, missed,
    the last line's time, samples of missed lines that look like failures
    (worker 0 reads the logs, and answers this)."""
    for mode in daemon.modes:
        if isinstance(mode, LogWatch):
            return {"ok": True, "sources": mode.coverage()}
    return {"ok": False, "error": "logwatch mode is off: no [[logwatch.sources]]"}


async def fleet_status(daemon: Daemon, request: Request) -> Answer:
    """The fleet's nodes as their heartbeats say (last seen, lag, bans
    published and applied, held back, queue, up or degraded); worker 0's."""
    if daemon.fleet is None:
        return {"ok": False, "error": "this node is in no fleet ([fleet] redis is not set)"}
    return await daemon.fleet.fleet_status()


COMMANDS: Final[dict[str, Command]] = {
    "reload": reload,
    "stats": stats,
    "bans-add": bans_add,
    "bans-remove": bans_remove,
    "bans-list": bans_list,
    "bans-show": bans_show,
    "intel-lookup": intel_lookup,
    "intel-status": intel_status,
    "observe-write": observe_write,
    "events": events,
    "flows": flows,
    "sources": sources,
    "honeypot-calls": honeypot_calls,
    "analysis-run": analysis_run,
    "profile": profile,
    "honeypot-write": honeypot_write,
    "logwatch-status": logwatch_status,
    "fleet-status": fleet_status,
}


async def run_command(daemon: Daemon, request: Request) -> Answer:
    """Run ``request["cmd"]``; an unknown name is an error listing the known ones."""
    name = request.get("cmd")
    command = COMMANDS.get(name) if isinstance(name, str) else None
    if command is None:
        return {"ok": False, "error": f"unknown command {name!r} ({', '.join(COMMANDS)})"}
    return await command(daemon, request)
