"""The report's inputs, read: the stores over the window, the country
database and the schedule, handed to the pure ``observe.report``.

What `sipwarden report` and the daemon's weekly report keeper run (the
keeper on a thread: the reads and the country lookups block). The reads are
the ones the CLI's lists make (``BanStore.in_force`` is `bans list`,
``ObserveStore.flows`` is `flows`, ``HoneypotStore.calls`` is `honeypot
calls`), so their numbers agree. Bounds: at most ``MAX_ROWS`` events, flows
and call records (past that, a note says the report counts the newest or
busiest); one country lookup per source, through the database's cache.
"""

from __future__ import annotations

import time
from typing import Any, Final

from ..config import Config, ConfigError
from ..fetch.calendar import open_schedule
from ..fetch.geoip import open_geo
from ..observe.report import build_report
from ..observe.schedule import Schedule
from ..policy import PolicyError
from ..store import BanStore, HoneypotStore, ObserveStore

MAX_ROWS: Final = 1_000_000


def gather(
    config: Config,
    since: float,
    until: float | None = None,
    *,
    top: int = 20,
    flows: list[dict[str, Any]] | None = None,
    in_force: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report over [``since``, ``until`` or now] from ``config``'s store
    (raises StoreError, one line naming the file, when it cannot be read).
    ``flows`` and ``in_force``: the running daemon's answers to `flows` and
    `bans list`, which know the minute under way and the bans the store has
    not taken yet (default: the store's). Its ``notes`` say what it could
    not know (no country database, a schedule that would not open, rows
    past the bounds)."""
    now = time.time() if until is None else until
    notes: list[str] = []
    countries = None
    try:
        countries = open_geo(config.intel.geoip.model_copy(update={"preload": False}))
    except PolicyError as exc:
        notes.append(f"countries unknown: {exc}")
    if countries is None and not notes:
        notes.append("countries unknown: no [intel.geoip] database or zones configured")
    schedule: Schedule | None = None
    try:
        schedule = open_schedule(config.schedule, now)
    except (ConfigError, ValueError, PolicyError) as exc:
        notes.append(f"no quiet hours marked: {exc}")
    path = config.storage.path
    observe, bans, honeypot = ObserveStore(path), BanStore(path), HoneypotStore(path)
    try:
        events = observe.events(since=since, limit=MAX_ROWS)
        if flows is None:
            flows = observe.flows(since=since, until=now, limit=MAX_ROWS)
        traffic = observe.traffic(since=since, until=now)
        calls = honeypot.calls(since=since, limit=MAX_ROWS)
        made = bans.made(since, now)
        if in_force is None:
            in_force = bans.in_force(now)
    finally:
        observe.close()
        bans.close()
        honeypot.close()
    for name, rows in (("events", events), ("flows", flows), ("honeypot calls", calls)):
        if len(rows) >= MAX_ROWS:
            notes.append(f"{name}: the first {MAX_ROWS} counted (the newest or busiest)")
    try:
        report = build_report(
            since=since,
            until=now,
            events=events,
            flows=flows,
            traffic=traffic,
            bans_made=made,
            bans_in_force=in_force,
            calls=calls,
            country_of=None if countries is None else countries.country,
            schedule=schedule,
            top=top,
        )
    finally:
        if countries is not None:
            countries.close()
    report["notes"] = notes
    report["window"]["generated"] = time.time()
    return report
