"""The intel keeper: the feeds' I/O, off the packet path.

The intel stage (``intel/screen.py``) answers every packet from an
``AddressIndex`` in memory; the keeper keeps that index, the store and the
kernel in step, on the event loop's spare time and on threads.

- Every worker loads the configured feeds from the store before its first
  packet, then asks the store once a second which feeds changed (one small
  query) and reloads those: read and diffed on a thread, only the
  difference applied on the loop, in slices. A feed with an entry life
  (APIBAN: 7 days after an address was last listed) is read again when its
  first entry runs out, so that entry falls out.
- Worker 0 (``fetch``) fetches: APIBAN every ``refresh`` (a run that stops
  at its request bound goes on at once; the sync paces itself under the
  rate limit), each list feed every its own ``refresh``. What it gets goes
  to the store, where every worker's loader finds it. One fetcher per feed
  across processes (``store/lock.py``): `sipwarden intel sync` and the
  daemon take turns. In a fleet (``fleet/intel.py``) one node fetches each
  feed: ``gate`` says whether this node may fetch a feed now; while it may
  not, its fetcher waits (the fleet writes the fetcher's list to the store).
- Worker 0 with the nftables enforcer keeps the kernel's feed sets equal to
  what the feeds list minus the allow list and the trusted peers
  (``intel/kernel.py``), after every change and every few minutes.
- Every worker looks at the country database (or zone files) once a minute
  and, when it changed on disk (geoipupdate replaced it), opens the new one
  on a thread and swaps it into its intel stage; a broken new file is
  logged and the old one stays.

A failed fetch keeps the last good list (in the store, so across restarts
too) and is reported in ``status``; nothing here raises into the edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..config import FeedConfig, IntelConfig
from ..enforce import Enforcer, EnforcerError
from ..fetch.apiban import ApibanClient
from ..fetch.lists import Feed
from ..intel import apiban
from ..intel.feeds import FeedStatus
from ..intel.index import AddressIndex, Key, host_spelling
from ..intel.kernel import kernel_targets
from ..observe import FEED, Event
from ..store.intel import FeedRow, IntelStore
from ..store.lock import feed_lock
from ..store.thread import StoreThread

if TYPE_CHECKING:
    from ..intel.screen import IntelScreen
    from ..policy import Policy

log = logging.getLogger("sipwarden.intel")

TICK = 1.0  # seconds between looks at the store
STATUS_EVERY = 5.0  # seconds between refreshes of the feeds' status (worker 0)
GEO_EVERY = 60.0  # seconds between looks at the country database's file
KERNEL_EVERY = 600.0  # seconds between kernel loads when nothing changed (an outer network's end)
EXPIRY_SLACK = 60.0  # a feed with an entry life is re-read at most this often for expiry
APPLY_SLICE = 10_000  # index changes applied per turn of the event loop
ENV_KEY = "SIPWARDEN_APIBAN_KEY"
GATE_POLL = 1.0  # seconds between asking the gate while this node may not fetch a feed


@dataclass(frozen=True)
class FeedSpec:
    """One configured feed, as the keeper and the status see it."""

    name: str  # the store's name: "apiban:sip", or the list feed's own
    kind: Literal["apiban", "list"]
    source: str  # the URL or the file (never the key)
    refresh: float
    life: float | None  # an entry lasts this long after it was last listed; None: while listed


def apiban_key(intel: IntelConfig) -> str | None:
    """The APIBAN key (config, else the environment), None when APIBAN is
    off or has no key."""
    section = intel.apiban
    if not section.enabled:
        return None
    key = section.key or os.environ.get(ENV_KEY) or ""
    return key.strip() or None


def apiban_settings(intel: IntelConfig) -> apiban.ApibanSettings | None:
    """The sync's settings from ``[intel.apiban]`` (None: no key, no APIBAN)."""
    key = apiban_key(intel)
    if key is None:
        return None
    section = intel.apiban
    return apiban.ApibanSettings(
        key=key,
        base=section.url,
        version=1 if section.version == "v1" else 2,
        set=section.set,
        rate_requests=section.max_requests,
        rate_window=section.rate_window,
        entry_life=section.entry_life,
        full_pull_every=section.full_pull,
    )


def feed_specs(intel: IntelConfig) -> dict[str, FeedSpec]:
    specs: dict[str, FeedSpec] = {}
    settings = apiban_settings(intel)
    if settings is not None:
        specs[settings.feed] = FeedSpec(
            settings.feed, "apiban", settings.base, intel.apiban.refresh, settings.entry_life
        )
    for feed in intel.feeds:
        source = feed.url if feed.url is not None else str(feed.path)
        specs[feed.name] = FeedSpec(feed.name, "list", source, feed.refresh, None)
    return specs


def list_feed(config: FeedConfig) -> Feed:
    source = config.url if config.url is not None else str(config.path)
    return Feed(
        config.name,
        source,
        max_entries=config.max_entries,
        max_bytes=config.max_bytes,
        headers=config.headers,
    )


async def sync_apiban(
    store_path: Path,
    store: IntelStore,
    settings: apiban.ApibanSettings,
    *,
    wait: float = 0.0,
    progress: Callable[[apiban.Progress], None] | None = None,
) -> apiban.SyncResult | None:
    """One APIBAN run under the feed's lock, from the state in the store
    (another process may have moved it); None when another process held
    the lock for ``wait`` seconds."""
    async with feed_lock(store_path, settings.feed, wait=wait) as mine:
        if not mine:
            return None
        client = ApibanClient(settings, store)
        try:
            return await client.sync(progress=progress)
        finally:
            client.close()


async def refresh_list(
    store_path: Path,
    store: IntelStore,
    feed: Feed,
    *,
    wait: float = 0.0,
    in_store: Callable[..., Any] | None = None,
) -> FeedStatus | None:
    """Fetch one list feed under its lock and write the outcome to the
    store: a new good list, "unchanged", or the error (the last good list
    stays). None when another process held the lock."""
    run = in_store or asyncio.to_thread
    async with feed_lock(store_path, feed.name, wait=wait) as mine:
        if not mine:
            return None
        if feed.is_url and feed.status.fetches == 0:
            # the list in the store came with validators: ask "changed since?"
            kept = await run(store.info, feed.name)
            if kept.get("source") == feed.source:
                feed.remember(kept.get("etag"), kept.get("last_modified"))
        changed = await feed.refresh()
        status = feed.status
        now = feed.clock()
        if status.last_error is not None:
            log.warning(
                "feed %s: %s; its last good list stays in force", feed.name, status.last_error
            )
            await run(store.outcome, feed.name, now, status.last_error)
        elif changed:
            info = {
                "source": feed.source,
                "bytes": status.size,
                "bad_lines": status.bad_lines,
                "bad_examples": list(status.bad_examples),
                **feed.validators,
            }
            added, removed = await run(store.replace, feed.name, status.entries, now, info)
            if status.bad_lines:
                log.warning(
                    "feed %s: %d lines are not addresses and were skipped (%s)",
                    feed.name,
                    status.bad_lines,
                    "; ".join(status.bad_examples),
                )
            log.info(
                "feed %s: %d entries (%d new, %d gone)",
                feed.name,
                status.count,
                added,
                removed,
            )
        else:
            await run(store.outcome, feed.name, now, None)
        return status


def describe_feeds(
    specs: dict[str, FeedSpec], rows: Iterable[FeedRow], loaded: dict[str, int] | None = None
) -> list[dict[str, Any]]:
    """Each configured feed's status: what the store holds and how its
    fetches went (``loaded``: entries in force in the edge, when known)."""
    by_name = {r.feed: r for r in rows}
    out = []
    for name, spec in specs.items():
        row = by_name.get(name)
        item: dict[str, Any] = {
            "feed": name,
            "kind": spec.kind,
            "source": spec.source,
            "refresh": spec.refresh,
            "entries": row.entries if row is not None else 0,
            "last_success": row.last_success if row is not None else None,
            "last_error": row.last_error if row is not None else None,
            "last_error_at": row.last_error_at if row is not None else None,
            "changed_at": row.changed_at if row is not None else None,
        }
        if loaded is not None:
            item["in_force"] = loaded.get(name, 0)
        if row is not None:
            for key in ("bytes", "bad_lines", "bad_examples"):
                if key in row.info:
                    item[key] = row.info[key]
        out.append(item)
    return out


class IntelKeeper:
    """The feeds' store, index and kernel sets, kept in step (see the module doc).

    ``exclude()`` gives the networks the kernel must never drop (the ban
    book's allow list, trusted peers included); ``enforcer`` is the ban
    keeper's, shared (its lock orders their nft calls). ``widest``: the
    shortest prefixes (IPv4, IPv6) a feed entry may have, as for a ban
    (``[bans] widest_v4/v6``); a wider entry is left out and counted."""

    def __init__(
        self,
        intel: IntelConfig,
        store_path: Path,
        index: AddressIndex,
        *,
        fetch: bool = False,
        enforcer: Enforcer | None = None,
        exclude: Callable[[], Iterable[object]] = tuple,
        screen: Callable[[], IntelScreen | None] = lambda: None,
        clock: Callable[[], float] = time.time,
        widest: tuple[int, int] = (0, 0),
        on_event: Callable[[Event], None] | None = None,
        monitoring: Callable[[], bool] = lambda: False,
        gate: Callable[[str], bool] | None = None,
    ) -> None:
        self.intel = intel
        # may this node fetch feed X now? (a fleet's: one fetcher per feed; None: always)
        self.gate = gate
        # monitor mode in force ([policy] mode): the kernel's feed sets are loaded empty
        self.monitoring = monitoring
        self.on_event = on_event  # where feed changes are told (worker 0: it fetches)
        self.widest = widest
        self.screen = screen  # the intel stage in force (a reload makes a new one)
        self.specs = feed_specs(intel)
        self.store_path = Path(store_path)
        self.index = index
        self.fetch = fetch
        self.enforcer = enforcer
        self.exclude = exclude
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self.rows: list[FeedRow] = []  # the store's view of the feeds (worker 0, refreshed)
        # the store's own thread: SQLite blocks, and its calls keep their order
        self._store_thread = StoreThread("sipwarden-intel-store")
        self._store: IntelStore | None = None
        # feed -> what this worker's index holds for it: target -> expires_at.
        # Replaced whole, never changed in place: a thread may be reading the old one.
        self._loaded: dict[str, dict[str, float | None]] = {}
        self._stamps: dict[str, float | None] = {}
        self._recheck: dict[str, float] = {}  # feed -> when to re-read it for expiry
        self._ticker: asyncio.Task[None] | None = None
        self._fetchers: dict[
            str, tuple[object, asyncio.Task[None]]
        ] = {}  # feed -> (settings, task)
        self._kernel_dirty = True
        self._kernel_next = 0.0
        self._status_next = 0.0
        self._loading: asyncio.Future[None] | None = None  # a kernel load under way
        self._geo_next = 0.0
        self._geo_stamp: object = None  # the country files as last opened (see _geo_files)

    @property
    def store(self) -> IntelStore:
        assert self._store is not None, "start() first"
        return self._store

    @property
    def kernel(self) -> bool:
        return self.enforcer is not None and self.enforcer.name == "nftables"

    # ----------------------------------------------------------------- life

    async def start(self) -> None:
        """Load every configured feed from the store into the index (the
        edge's first packet is screened against it), then keep it in step."""
        self._store = await self._store_thread.run(IntelStore, self.store_path)
        self._geo_stamp = await asyncio.to_thread(_geo_files, self.intel)
        self._geo_next = self.clock() + GEO_EVERY
        await self.sync_index()
        if self.fetch:
            self.rows = await self._store_thread.run(self.store.status)
            self._start_fetchers()
        self._ticker = asyncio.create_task(self._tick())
        loaded = sum(len(v) for v in self._loaded.values())
        if self.specs:
            log.info("intel: %d feed entries in force (%s)", loaded, ", ".join(self.specs))

    async def stop(self) -> None:
        tasks = [t for _, t in self._fetchers.values()]
        if self._ticker is not None:
            tasks.append(self._ticker)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._loading is not None:
            with contextlib.suppress(Exception):
                await self._loading
        self._fetchers.clear()
        if self._store is not None:
            await self._store_thread.run(self._store.close)
        # the store's thread is idle now (close was its last job): this returns at once
        self._store_thread.close()

    def configure(self, intel: IntelConfig) -> None:
        """A reload: feeds added or removed (the next tick loads or unloads
        them), fetchers restarted where their settings changed, the kernel
        sets recomputed (the allow list may have changed too)."""
        if intel.geoip != self.intel.geoip:
            self._geo_stamp = _geo_files(intel)  # the reload opened them
        self.intel = intel
        self.specs = feed_specs(intel)
        self._kernel_dirty = True
        if self.fetch:
            self._start_fetchers()

    # ------------------------------------------------------------- the index

    async def sync_index(self) -> bool:
        """Reload the feeds whose entries changed in the store (or whose
        first entry ran out), unload the feeds no longer configured.
        Returns whether the index changed."""
        stamps = await self._store_thread.run(self.store.stamps)
        now = self.clock()
        changed = False
        for name in [n for n in self._loaded if n not in self.specs]:
            changed |= await self._reload(name, None, unload=True)
        for name, spec in self.specs.items():
            stamp = stamps.get(name)
            if (
                name not in self._loaded
                or stamp != self._stamps.get(name)
                or now >= self._recheck.get(name, math.inf)
            ):
                changed |= await self._reload(name, spec.life)
                self._stamps[name] = stamp
        if changed:
            self._kernel_dirty = True
        return changed

    async def _reload(self, name: str, life: float | None, *, unload: bool = False) -> bool:
        old = self._loaded.get(name, {})
        store = self.store
        clock = self.clock

        widest = {4: self.widest[0], 6: self.widest[1]}
        too_wide: list[str] = []

        def read() -> tuple[dict[str, float | None], list[tuple[Key, float | None]], list[Key]]:
            now = clock()
            wanted: dict[str, float | None] = {}
            if not unload:
                for address, seen in store.entries(name).items():
                    expires = None if life is None else seen + life
                    if expires is None or expires > now:
                        wanted[address] = expires
            for address in wanted:  # a feed must not drop the world either
                prefix = address.partition("/")[2]
                if prefix and int(prefix) < widest[6 if ":" in address else 4]:
                    too_wide.append(address)
            for address in too_wide:
                del wanted[address]
            new = [t for t, e in wanted.items() if t not in old or old[t] != e]
            gone = [t for t in old if t not in wanted]
            keys = AddressIndex.prepare(new + gone)
            listed = [(keys[t], wanted[t]) for t in new if t in keys]
            unlisted = [keys[t] for t in gone if t in keys]
            return wanted, listed, unlisted

        wanted, listed, unlisted = await self._store_thread.run(read)
        if too_wide and self.counters[f"too-wide:{name}"] != len(too_wide):
            log.warning(
                "intel: %s lists %d networks wider than [bans] widest_v4/widest_v6 allows"
                " (%s): left out",
                name,
                len(too_wide),
                ", ".join(too_wide[:5]),
            )
        if too_wide:
            self.counters[f"too-wide:{name}"] = len(too_wide)
        else:
            self.counters.pop(f"too-wide:{name}", None)
        for i in range(0, max(len(listed), len(unlisted)), APPLY_SLICE):
            self.index.apply(name, listed[i : i + APPLY_SLICE], unlisted[i : i + APPLY_SLICE])
            await asyncio.sleep(0)  # let packets through between slices
        if unload:
            self._loaded.pop(name, None)
            self._stamps.pop(name, None)
            self._recheck.pop(name, None)
        else:
            self._loaded[name] = wanted
            ends = [e for e in wanted.values() if e is not None]
            self._recheck[name] = max(min(ends), self.clock() + EXPIRY_SLACK) if ends else math.inf
        if listed or unlisted:
            self.counters["reloads"] += 1
            log.debug("intel: %s: %d listed, %d unlisted", name, len(listed), len(unlisted))
        return bool(listed or unlisted)

    def loaded(self) -> dict[str, int]:
        """Feed -> entries in force in this worker's index."""
        return {name: len(entries) for name, entries in self._loaded.items()}

    # ---------------------------------------------------------------- ticks

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                await self.sync_index()
                now = self.clock()
                if self.fetch and now >= self._status_next:
                    self._status_next = now + STATUS_EVERY
                    rows = await self._store_thread.run(self.store.status)
                    self._tell_changes(self.rows, rows, now)
                    self.rows = rows
                if self.fetch and self.kernel and (self._kernel_dirty or now >= self._kernel_next):
                    # shielded: a stop while nft runs lets that nft call
                    # finish (stop() waits for it) rather than orphan it
                    self._loading = asyncio.ensure_future(self.load_kernel())
                    await asyncio.shield(self._loading)
                if now >= self._geo_next:
                    self._geo_next = now + GEO_EVERY
                    await self.reopen_countries()
            except Exception:
                self.counters["tick-errors"] += 1
                log.exception("intel keeper tick failed")

    async def load_kernel(self) -> None:
        """Make the kernel's feed sets what the feeds list now."""
        assert self.enforcer is not None
        self._kernel_dirty = False
        self._kernel_next = self.clock() + KERNEL_EVERY
        tables = [] if self.monitoring() else list(self._loaded.values())
        exclude = [str(n) for n in self.exclude()]
        now = self.clock()

        def compute() -> dict[str, float | None]:
            merged: dict[str, float | None] = {}
            for table in tables:
                for target, expires in table.items():
                    if expires is not None and expires <= now:
                        continue
                    if target in merged:
                        held = merged[target]  # listed by two feeds: the later end
                        expires = None if held is None or expires is None else max(held, expires)
                    merged[target] = expires
            return kernel_targets(merged, exclude)

        wanted = await asyncio.to_thread(compute)
        try:
            await self.enforcer.load_feeds(wanted, now)
        except EnforcerError as exc:
            self.counters["kernel-errors"] += 1
            self._kernel_next = self.clock() + 30.0  # try again soon, not every tick
            log.error("intel: the kernel's feed sets were not loaded: %s", exc)
        else:
            self.counters["kernel-loads"] += 1

    async def reopen_countries(self) -> bool:
        """Open the country database again if its files changed on disk,
        and swap it into the intel stage; whether it did."""
        from ..fetch.geoip import open_geo
        from ..policy import PolicyError

        geo = self.intel.geoip
        stamp = await asyncio.to_thread(_geo_files, self.intel)
        if stamp == self._geo_stamp:
            return False
        self._geo_stamp = stamp  # a broken file is tried again only once it changes again
        screen = self.screen()
        if stamp is None or screen is None or screen.countries is None:
            return False
        try:
            countries = await asyncio.to_thread(open_geo, geo)
        except PolicyError as exc:
            self.counters["geo-errors"] += 1
            log.error(
                "the country database changed but cannot be used (the old one stays): %s", exc
            )
            return False
        if countries is None:
            return False
        screen = self.screen() or screen  # a reload may have come meanwhile
        old = screen.swap_countries(countries)
        if old is not None and old is not countries:
            old.close()
        self.counters["geo-reloads"] += 1
        log.info("intel: the country database changed on disk: reopened")
        return True

    def _tell_changes(self, before: list[FeedRow], after: list[FeedRow], now: float) -> None:
        """A feed whose entries changed, or whose fetch failed anew, since
        the last look: a feed event (worker 0's; the store says it for
        every fetcher, APIBAN's and the lists')."""
        if self.on_event is None:
            return
        old = {row.feed: row for row in before}
        for row in after:
            was = old.get(row.feed)
            if row.changed_at is not None and (was is None or was.changed_at != row.changed_at):
                fields: tuple[tuple[str, str | int | float | None], ...] = (
                    ("state", "updated"),
                    ("entries", row.entries),
                )
                self.on_event(Event(row.changed_at, FEED, "", row.feed, fields))
            if row.last_error_at is not None and (
                was is None or was.last_error_at != row.last_error_at
            ):
                fields = (("state", "failed"), ("error", row.last_error), ("entries", row.entries))
                self.on_event(Event(row.last_error_at, FEED, "", row.feed, fields))

    # --------------------------------------------------------------- fetches

    def _start_fetchers(self) -> None:
        """One task per configured feed; a feed whose settings changed gets
        a new one, a feed gone loses its own."""
        wanted: dict[str, tuple[object, Callable[[], Coroutine[Any, Any, None]]]] = {}
        settings = apiban_settings(self.intel)
        if settings is not None:
            wanted[settings.feed] = (
                (settings, self.intel.apiban.refresh),
                functools.partial(self._apiban_loop, settings, self.intel.apiban.refresh),
            )
        for feed in self.intel.feeds:
            wanted[feed.name] = (feed, functools.partial(self._list_loop, feed))
        for name in list(self._fetchers):
            held, task = self._fetchers[name]
            if name not in wanted or wanted[name][0] != held:
                task.cancel()
                del self._fetchers[name]
        for name, (held, make) in wanted.items():
            if name not in self._fetchers:
                self._fetchers[name] = (held, asyncio.create_task(make()))

    async def _turn(self, feed: str) -> None:
        """Wait until the gate lets this node fetch ``feed``."""
        while self.gate is not None and not self.gate(feed):
            await asyncio.sleep(GATE_POLL)

    async def _apiban_loop(self, settings: apiban.ApibanSettings, refresh: float) -> None:
        while True:
            await self._turn(settings.feed)
            delay = refresh
            try:
                result = await sync_apiban(self.store_path, self.store, settings)
                if result is None:
                    log.info("apiban: another process is syncing %s; next try later", settings.feed)
                else:
                    self.counters["apiban-runs"] += 1
                    if result.ok and not result.complete:
                        delay = 1.0  # stopped at its request bound: go on (the sync paces itself)
            except Exception:
                self.counters["fetch-errors"] += 1
                log.exception("apiban sync failed")
            await asyncio.sleep(delay)

    async def _list_loop(self, config: FeedConfig) -> None:
        feed = list_feed(config)
        while True:
            await self._turn(config.name)
            try:
                await refresh_list(
                    self.store_path, self.store, feed, in_store=self._store_thread.run
                )
                self.counters["list-fetches"] += 1
            except Exception:
                self.counters["fetch-errors"] += 1
                log.exception("feed %s: refresh failed", config.name)
            await asyncio.sleep(config.refresh)

    # ---------------------------------------------------------------- views

    def status(self) -> dict[str, Any]:
        """The feeds (worker 0's view of the store, refreshed every few
        seconds) and the kernel's feed sets."""
        out: dict[str, Any] = {"feeds": describe_feeds(self.specs, self.rows, self.loaded())}
        if self.kernel:
            assert self.enforcer is not None
            counters = self.enforcer.counters
            out["kernel"] = {
                "elements": counters.get("feed-elements", 0),
                "loads": self.counters.get("kernel-loads", 0),
                "errors": self.counters.get("kernel-errors", 0) + counters.get("feed-errors", 0),
            }
        return out

    async def lookup(self, policy: Policy, address: str) -> dict[str, Any]:
        """Everything the intel side knows of ``address``: its country,
        the feeds that list it (which entry, since when, until when),
        whether it is trusted or allow-listed, and what its next packet
        meets. ValueError if ``address`` is not an IP address."""
        from .bans import describe

        now = self.clock()
        matches = self.index.matches(address, now)  # raises ValueError
        host = host_spelling(address)
        stored = await self._store_thread.run(_listings, self.store, [e.target for e in matches])
        listed = []
        for entry in matches:
            for feed, row in stored.get(entry.target, []):
                if feed not in entry.feeds:
                    continue  # ran out, or a feed no longer configured
                spec = self.specs.get(feed)
                life = spec.life if spec is not None else None
                listed.append(
                    {
                        "feed": feed,
                        "target": entry.target,
                        "first_seen": row.first_seen,
                        "last_seen": row.last_seen,
                        "expires_at": None if life is None else row.last_seen + life,
                    }
                )
        screen = policy.intel
        country = screen.country(host) if screen is not None else None
        country_policy = screen.country_policy if screen is not None else None
        book = policy.bans
        ban = book.banned(host, now) if book is not None else None
        verdict = policy.screen(host, now)
        return {
            "ip": host,
            "country": country,
            "country_allowed": None if country_policy is None else country_policy.allowed(country),
            "listed": listed,
            "trusted": host in policy.trusted,
            "allow_listed": book.allowed(host) if book is not None else False,
            "banned": None if ban is None else describe(ban),
            # the packet's fate on its source alone; "pass": on to the rules
            "verdict": "pass" if verdict is None else f"{verdict.kind} ({verdict.reason})",
        }


def _geo_files(intel: IntelConfig) -> object:
    """What says the country files changed: the database's (inode, size,
    mtime), or each zone file's; None when there are none (or unreadable)."""
    geo = intel.geoip
    path = geo.database if geo.database is not None else geo.zones
    if path is None:
        return None
    try:
        if path.is_dir():
            stats = [(p.name, p.stat()) for p in path.iterdir()]
            return tuple(sorted((name, st.st_size, st.st_mtime_ns) for name, st in stats))
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _listings(store: IntelStore, targets: list[str]) -> dict[str, list[tuple[str, Any]]]:
    return {t: store.listing(t) for t in targets}
