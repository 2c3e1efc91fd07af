"""Shared intel: one node of the fleet fetches each feed, the others take its list from Redis.

Why: APIBAN's rate limit is per key (11 requests in 2 minutes); three nodes
fetching with one key would spend it three times over and be refused. A
list feed fetched once is also one request instead of one per node.

How, per configured feed (worker 0 of each node, ``[fleet] share_intel``):

- **One fetcher, by lease.** A Redis key per feed (``intel:lease:FEED``)
  taken with ``SET NX PX`` and a token of this process, renewed every
  ``lease / 3`` while held, given back at a clean stop. A fetcher that dies
  loses it when it runs out: another node takes it within ``lease +
  REMOTE_EVERY`` seconds. The holder's ``IntelKeeper`` fetches as it always
  did (``may_fetch``, its gate, says yes); the others' fetchers wait.
- **The holder publishes what its store holds**, fenced by its lease (a
  Lua script: nothing is written by a node that lost it): after a fetch that
  changed the feed, its entries (address, first and last sighting: an
  APIBAN entry's life runs from its last sighting), zlib-compressed JSON,
  and a version (``HINCRBY``); after any fetch, its state (last success,
  last error, APIBAN's paging ID and request times). A failed fetch
  changes no entries: the last good list stays everywhere. Bounds: a feed
  has at most its ``max_entries`` (APIBAN's sync 1,000,000); a payload is
  refused past ``MAX_PAYLOAD`` bytes unpacked.
- **The others follow.** Every ``REMOTE_EVERY`` seconds one ``HGETALL`` of
  the feeds' versions and states; a new version is read (one ``GET``) and
  written into this node's own store (``IntelStore.adopt``), where the
  keeper's loaders, the kernel's feed sets and ``status`` find it as if
  fetched here. The fetcher's state goes in too, so a node that takes the
  fetching over resumes APIBAN's paging where it stopped and paces its
  requests under the same key's window.
- **Redis away.** A node keeps the lease it holds until it runs out (no
  one else can take it meanwhile). When Redis has been away for
  ``alone_after`` seconds (default ``ALONE_AFTER``, 5 minutes), every node
  with the feed configured (its own key or URL) fetches it itself; when
  Redis answers again they go back to one fetcher. Why 5 minutes: the lists
  every node holds stay in force meanwhile, and APIBAN's entries live 7
  days and its refresh is 5 minutes, so an outage shorter than one refresh
  costs at most one refresh's staleness; fetching alone at once would put
  every node on the key for every Redis restart or blip, and a cold node's
  paging (up to 200 requests a run) on a shared key is what the limit
  refuses. A longer outage must not leave the lists to age for hours.

``status`` says, per feed, whether this node fetches it, takes it from the
fleet (from which node, version, when) or fetches it alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import secrets
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from redis.exceptions import RedisError

from ..store.intel import IntelStore
from ..store.thread import StoreThread
from ..values import FeedState
from .link import UNREACHABLE, FleetAuthError, FleetLink

log = logging.getLogger("sipwarden.fleet")

LEASE: Final = 10.0  # seconds a fetcher's lease lasts without renewal
SAFETY: Final = 1.0  # seconds of the lease this node does not count on (clock and transit)
POLL: Final = 1.0  # seconds between looks at this node's store (the holder publishes)
REMOTE_EVERY: Final = 2.0  # seconds between HGETALLs of the feeds' versions (and lease tries)
ALONE_AFTER: Final = 300.0  # seconds Redis is away before every node fetches for itself
MAX_PAYLOAD: Final = 256 * 1024 * 1024  # bytes of a feed's entries, unpacked
FORMAT: Final = 1  # the payload's format

# the holder's writes, fenced by its lease (KEYS: lease, entries, feeds; ARGV:
# token, feed, meta, payload or ""): -1 when the lease is not this token's
PUBLISH: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local version
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[2], ARGV[4])
  version = redis.call('HINCRBY', KEYS[3], ARGV[2] .. '|v', 1)
else
  version = tonumber(redis.call('HGET', KEYS[3], ARGV[2] .. '|v') or '0')
end
redis.call('HSET', KEYS[3], ARGV[2] .. '|m', ARGV[3])
return version
"""
RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class FleetIntelError(Exception):
    """A payload from the fleet that cannot be taken (this node keeps its list)."""


# ----------------------------------------------------------- the pure part


def encode_entries(feed: str, entries: list[tuple[str, float, float]]) -> bytes:
    """A feed's entries (address, first seen, last seen) as the payload."""
    body = json.dumps({"format": FORMAT, "feed": feed, "entries": entries}, separators=(",", ":"))
    return zlib.compress(body.encode(), 6)


def decode_entries(feed: str, payload: bytes) -> list[tuple[str, float, float]]:
    """The entries of ``payload``; FleetIntelError when it is not ``feed``'s
    list in this format, or unpacks past ``MAX_PAYLOAD``."""
    unpack = zlib.decompressobj()
    try:
        body = unpack.decompress(payload, MAX_PAYLOAD)
    except zlib.error as exc:
        raise FleetIntelError(f"{feed}: the fleet's list is not zlib data: {exc}") from None
    if unpack.unconsumed_tail:
        raise FleetIntelError(f"{feed}: the fleet's list unpacks past {MAX_PAYLOAD} bytes")
    try:
        found = json.loads(body)
        if found.get("format") != FORMAT or found.get("feed") != feed:
            raise ValueError("another feed or format")
        return [_entry(a, f, s) for a, f, s in found["entries"]]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise FleetIntelError(f"{feed}: the fleet's list is malformed: {exc}") from None


def _entry(address: Any, first: Any, last: Any) -> tuple[str, float, float]:
    """One entry as received, checked (ValueError): an address or network,
    and times that are numbers (a NaN would date its expiry NaN). A list
    with one bad entry is refused whole: never half taken."""
    text = str(address)
    ipaddress.ip_network(text, strict=False)
    first_seen, last_seen = float(first), float(last)
    if not (math.isfinite(first_seen) and math.isfinite(last_seen)):
        raise ValueError(f"{text}: its times are not numbers")
    return text, first_seen, last_seen


def state_as_dict(state: FeedState) -> dict[str, Any]:
    return {
        "last_id": state.last_id,
        "last_success": state.last_success,
        "last_error": state.last_error,
        "last_error_at": state.last_error_at,
        "last_full": state.last_full,
        "sent": list(state.sent),
    }


def state_from_dict(found: Mapping[str, Any]) -> FeedState:
    return FeedState(
        str(found.get("last_id") or ""),
        _number(found.get("last_success")),
        found.get("last_error") if isinstance(found.get("last_error"), str) else None,
        _number(found.get("last_error_at")),
        _number(found.get("last_full")),
        tuple(float(t) for t in found.get("sent") or () if isinstance(t, (int, float))),
    )


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def parse_feeds(
    fields: Mapping[bytes | str, bytes | str],
) -> dict[str, tuple[int, dict[str, Any]]]:
    """The feeds' hash (``FEED|v``: the entries' version, ``FEED|m``: the
    meta, JSON) -> feed -> (version, meta); a field that does not parse is
    left out."""
    versions: dict[str, int] = {}
    metas: dict[str, dict[str, Any]] = {}
    for raw, value in fields.items():
        feed, _, kind = _text(raw).rpartition("|")
        try:
            if kind == "v":
                versions[feed] = int(value)
            elif kind == "m":
                meta = json.loads(value)
                if isinstance(meta, dict) and isinstance(meta.get("state"), dict):
                    metas[feed] = meta
        except ValueError:
            continue
    return {feed: (versions.get(feed, 0), meta) for feed, meta in metas.items()}


def fetch_allowed(
    now: float,
    held_until: float | None,
    redis_up: bool,
    down_since: float | None,
    alone_after: float,
) -> bool:
    """Whether a node may fetch a feed now: while its lease lasts (it is the
    fleet's fetcher), or when Redis has been away ``alone_after`` seconds
    (every node for itself until it returns)."""
    if held_until is not None and now < held_until:
        return True
    if redis_up or down_since is None:
        return False
    return now - down_since >= alone_after


# -------------------------------------------------------------- the keeper


class FleetIntel:
    """One node's share of the fleet's intel (see the module doc).

    ``feeds()`` gives the feeds configured here, name -> entry life (None:
    while listed), read at each round (a reload may change them);
    ``store_path`` is the node's store, where its ``IntelKeeper`` loads from.
    The link is the worker's; ``close_link``: close it at stop."""

    def __init__(
        self,
        link: FleetLink,
        store_path: Path,
        feeds: Callable[[], Mapping[str, float | None]],
        *,
        clock: Callable[[], float] = time.time,
        lease: float = LEASE,
        alone_after: float = ALONE_AFTER,
        poll: float = POLL,
        remote_every: float = REMOTE_EVERY,
        close_link: bool = False,
    ) -> None:
        self.link = link
        self.store_path = Path(store_path)
        self.feeds = feeds
        self.clock = clock
        self.lease = lease
        self.alone_after = alone_after
        self.poll = poll
        self.remote_every = remote_every
        self.close_link = close_link
        self.token = f"{link.node}:{secrets.token_hex(6)}"
        self.counters: Counter[str] = Counter()
        self.client = link.client
        self._publish = self.client.register_script(PUBLISH)
        self._renew = self.client.register_script(RENEW)
        self._release = self.client.register_script(RELEASE)
        self._thread = StoreThread("sipwarden-fleet-intel")
        self._store: IntelStore | None = None
        self._task: asyncio.Task[None] | None = None
        self._held: dict[str, float] = {}  # feed -> until when this node counts on its lease
        self._renew_at: dict[str, float] = {}
        self._published: dict[str, tuple[float | None, FeedState] | None] = {}
        self._entries_meta: dict[str, dict[str, Any]] = {}  # feed -> the last entries published
        self._imported: dict[str, tuple[object, ...]] = {}  # feed -> the version taken
        self._state_taken: dict[str, object] = {}
        self._taken: dict[str, dict[str, Any]] = {}  # feed -> from whom, when (status)
        self._remote: dict[str, tuple[int, dict[str, Any]]] = {}  # the last HGETALL
        self._holders: dict[str, str | None] = {}
        self._alone: set[str] = set()  # feeds fetched alone (Redis away), for the logs
        self._remote_next = 0.0
        self._probe_next = 0.0

    @property
    def store(self) -> IntelStore:
        assert self._store is not None, "start() first"
        return self._store

    def key(self, what: str, feed: str = "") -> str:
        return self.link.key("intel", what, feed) if feed else self.link.key("intel", what)

    # ----------------------------------------------------------------- life

    async def start(self) -> None:
        """Open the store, ask Redis (refused credentials stop the start:
        ``FleetAuthError``), take the fleet's lists and the free leases
        once, then keep at it."""
        self._store = await self._thread.run(IntelStore, self.store_path)
        await self.link.probe()
        await self.round()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.link.up:  # a clean stop hands the fetching over at once
            for feed in list(self._held):
                with contextlib.suppress(*UNREACHABLE, RedisError):
                    await self._release(keys=[self.key("lease", feed)], args=[self.token])
        self._held.clear()
        if self._store is not None:
            await self._thread.run(self._store.close)
        self._thread.close()
        if self.close_link:
            await self.link.close()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            try:
                await self.round()
            except Exception:
                self.counters["errors"] += 1
                log.exception("fleet intel: a round failed")

    # ------------------------------------------------------------- the gate

    def may_fetch(self, feed: str) -> bool:
        """The keeper's gate: may this node fetch ``feed`` now?"""
        now = self.clock()
        allowed = fetch_allowed(
            now, self._held.get(feed), self.link.up, self.link.down_since, self.alone_after
        )
        alone = allowed and feed not in self._held
        if alone and feed not in self._alone:
            self._alone.add(feed)
            log.warning(
                "fleet intel: Redis away for more than %.0f s: this node fetches %s itself",
                self.alone_after,
                feed,
            )
        elif not alone and feed in self._alone:
            self._alone.discard(feed)
            log.warning("fleet intel: %s is shared through the fleet again", feed)
        return allowed

    # --------------------------------------------------------------- rounds

    async def round(self) -> None:
        """Renew or take leases, take the fleet's new lists, publish the
        held feeds' changes; a Redis that does not answer marks the link
        down (the leases held last until they run out)."""
        now = self.clock()
        self._forget_expired(now)
        if not self.link.up:
            if now < self._probe_next:
                return
            self._probe_next = now + self.remote_every
            try:
                if not await self.link.probe():
                    return
            except FleetAuthError as exc:  # the password changed under a running node
                self.link.mark_down(str(exc))
                return
        try:
            configured = dict(self.feeds())
            await self._renew_leases(now)
            if now >= self._remote_next:
                self._remote_next = now + self.remote_every
                taken = await self._take_leases(configured, now)
                await self._follow(configured, taken)
            await self._publish_held(configured)
        except UNREACHABLE as exc:
            self.link.mark_down(exc)
        except RedisError as exc:
            self.counters["redis-errors"] += 1
            log.error("fleet intel: Redis refused a call: %s", exc)
        else:
            self.link.mark_up()

    def _forget_expired(self, now: float) -> None:
        for feed, until in list(self._held.items()):
            if now >= until:
                self._lost(feed, "it ran out (Redis away)")

    def _lost(self, feed: str, why: str) -> None:
        self._held.pop(feed, None)
        self._renew_at.pop(feed, None)
        self._published.pop(feed, None)
        self.counters["leases-lost"] += 1
        log.warning("fleet intel: this node no longer fetches %s: %s", feed, why)

    async def _renew_leases(self, now: float) -> None:
        for feed in [f for f, at in self._renew_at.items() if now >= at]:
            sent = self.clock()
            kept = await self._renew(
                keys=[self.key("lease", feed)], args=[self.token, int(self.lease * 1000)]
            )
            if kept:
                self._held[feed] = sent + self.lease - SAFETY
                self._renew_at[feed] = sent + self.lease / 3
            else:
                self._lost(feed, "another node holds its lease")

    async def _take_leases(self, configured: Mapping[str, object], now: float) -> set[str]:
        """Try the free leases of the feeds configured here; give back those
        of feeds no longer configured. Returns the feeds just taken."""
        for feed in [f for f in self._held if f not in configured]:
            await self._release(keys=[self.key("lease", feed)], args=[self.token])
            self._held.pop(feed, None)
            self._renew_at.pop(feed, None)
            self._published.pop(feed, None)
        taken: set[str] = set()
        wanted = [f for f in configured if f not in self._held]
        for feed in wanted:
            sent = self.clock()
            if await self.client.set(
                self.key("lease", feed), self.token, nx=True, px=int(self.lease * 1000)
            ):
                self._held[feed] = sent + self.lease - SAFETY
                self._renew_at[feed] = sent + self.lease / 3
                self._published[feed] = None
                self.counters["leases-taken"] += 1
                taken.add(feed)
                log.info("fleet intel: this node fetches %s for the fleet", feed)
        if configured:
            names = list(configured)
            found = await self.client.mget([self.key("lease", f) for f in names])
            self._holders = {
                f: None if t is None else _text(t).rpartition(":")[0]
                for f, t in zip(names, found, strict=True)
            }
        return taken

    async def _follow(self, configured: Mapping[str, object], taken: set[str]) -> None:
        """Take the fleet's new lists (and states) of the feeds this node
        does not fetch; a feed just taken over first gets the fleet's last
        list, so the new fetcher never publishes an older one."""
        self._remote = parse_feeds(await self.client.hgetall(self.key("feeds")))
        for feed in configured:
            if feed in self._held and feed not in taken:
                continue
            remote = self._remote.get(feed)
            if remote is None:
                continue
            version, meta = remote
            if feed in taken and await self._newer_here(feed, meta):
                continue  # fetched alone while Redis was away: this node publishes its own
            ident = (version, meta.get("node"), meta.get("entries_at"))
            now = self.clock()
            if version and ident != self._imported.get(feed):
                payload = await self.client.get(self.key("entries", feed))
                if payload is None:
                    continue
                if isinstance(payload, str):
                    payload = payload.encode()
                try:
                    entries = await asyncio.to_thread(decode_entries, feed, payload)
                except FleetIntelError as exc:
                    self.counters["bad-payloads"] += 1
                    self._imported[feed] = ident  # not asked again until a new version
                    log.error("fleet intel: %s; this node keeps its list", exc)
                    continue
                state = state_from_dict(meta["state"])
                info = meta.get("info") if isinstance(meta.get("info"), dict) else None
                added, removed = await self._thread.run(
                    self.store.adopt, feed, state, entries, info, now
                )
                self._imported[feed] = ident
                self._state_taken[feed] = meta["state"]
                self._taken[feed] = {"from": meta.get("node"), "at": now, "version": version}
                self.counters["lists-taken"] += 1
                log.info(
                    "fleet intel: %s from %s: %d entries (%d new or changed, %d gone)",
                    feed,
                    meta.get("node"),
                    len(entries),
                    added,
                    removed,
                )
            elif meta["state"] != self._state_taken.get(feed):
                state = state_from_dict(meta["state"])
                await self._thread.run(self.store.adopt, feed, state, None, None, now)
                self._state_taken[feed] = meta["state"]
            if feed in taken:  # what the fleet had is what this node has: no need to say it again
                self._published[feed] = await self._thread.run(self._snapshot, feed)

    async def _newer_here(self, feed: str, meta: Mapping[str, Any]) -> bool:
        """Whether this node's last good fetch of ``feed`` is later than the
        fleet's (it fetched alone while Redis was away)."""
        mine = await self._thread.run(self._snapshot, feed)
        ours = None if mine is None else mine[1].last_success
        theirs = _number(meta["state"].get("last_success"))
        return ours is not None and (theirs is None or ours > theirs)

    def _snapshot(self, feed: str) -> tuple[float | None, FeedState] | None:
        state = self.store.state(feed)
        return None if state is None else (self.store.stamps().get(feed), state)

    async def _publish_held(self, configured: Mapping[str, float | None]) -> None:
        """The held feeds' changes since they were last published: the
        entries after a fetch that changed them, else the state alone."""
        for feed in [f for f in configured if f in self._held]:
            now = self.clock()
            snapshot = await self._thread.run(self._snapshot, feed)
            if snapshot is None:
                continue  # never fetched here yet
            stamp, state = snapshot
            before = self._published.get(feed)
            with_entries = state.last_success is not None and (before is None or before[0] != stamp)
            if not with_entries and before is not None and before[1] == state:
                continue
            payload = b""
            if with_entries:
                rows = await self._thread.run(self.store.details, feed)
                entries = [(e.address, e.first_seen, e.last_seen) for e in rows]
                payload = await asyncio.to_thread(encode_entries, feed, entries)
                self._entries_meta[feed] = {"entries_at": now, "count": len(entries)}
            info = await self._thread.run(self.store.info, feed)
            meta = {
                "node": self.link.node,
                "published_at": now,
                "life": configured[feed],
                "state": state_as_dict(state),
                "info": info,
                **self._entries_meta.get(feed, {}),
            }
            version = await self._publish(
                keys=[self.key("lease", feed), self.key("entries", feed), self.key("feeds")],
                args=[self.token, feed, json.dumps(meta), payload],
            )
            if version == -1:
                self._lost(feed, "another node holds its lease")
                continue
            self._published[feed] = (
                stamp if with_entries else (before[0] if before is not None else None),
                state,
            )
            self.counters["published" if with_entries else "states-published"] += 1
            if with_entries:
                self._imported[feed] = (version, self.link.node, now)
                self._taken.pop(feed, None)
                log.info(
                    "fleet intel: %s published, version %s, %d entries (%d bytes packed)",
                    feed,
                    version,
                    self._entries_meta[feed]["count"],
                    len(payload),
                )

    # ---------------------------------------------------------------- views

    def status(self) -> dict[str, Any]:
        """Per feed: who fetches it, and where this node's list came from."""
        now = self.clock()
        feeds = []
        for feed in self.feeds():
            version, meta = self._remote.get(feed, (0, {}))
            state = meta.get("state") or {}
            held = self._held.get(feed, 0.0) > now
            if held:
                role = "fetcher"
            elif feed in self._alone:
                role = "alone"
            elif feed in self._taken:
                role = "fleet"
            else:
                role = "waiting"
            item: dict[str, Any] = {
                "feed": feed,
                "role": role,  # fetcher: this node; fleet: taken from another; alone: Redis away
                "fetcher": self._holders.get(feed),
                "version": version,
                "published_by": meta.get("node"),
                "published_at": meta.get("entries_at"),
                "fetcher_last_success": state.get("last_success"),
                "fetcher_last_error": state.get("last_error"),
                "fetcher_last_error_at": state.get("last_error_at"),
            }
            taken = self._taken.get(feed)
            if taken is not None:
                item["taken_from"] = taken["from"]
                item["taken_at"] = taken["at"]
                item["taken_version"] = taken["version"]
            if held:
                item["lease_left"] = round(self._held[feed] - now, 1)
            feeds.append(item)
        return {
            "node": self.link.node,
            "redis-up": self.link.up,
            "alone-after": self.alone_after,
            "feeds": feeds,
            "counters": dict(self.counters),
        }
