"""Threat-intelligence feeds in SQLite: where each feed stopped, and what it listed.

A feed (``apiban:sip``, ...) pages through a remote list; this store keeps
its place so a restart resumes instead of pulling everything again (APIBAN
allows 11 requests in 2 minutes: a cold start of thousands of addresses
takes minutes, and must not be repeated for nothing).

- ``intel_feeds``: one row per feed: the last ID, the last success, the last
  error, when the last full re-pull started, and the recent request times
  (so pacing holds across a restart too); for a list feed (a URL or a
  file), what its last good list was (``info``: source, bytes, bad lines);
  ``changed_at``, when its entries last changed (the workers reload a feed
  whose ``changed_at`` moved).
- ``intel_entries``: one row per (feed, address): first and last seen.

``save`` writes a batch (the state and the addresses of one page, or an
expiry sweep) in one transaction; ``replace`` makes a list feed's entries
exactly its new list; ``adopt`` takes a feed another node of the fleet
fetched (its entries and its state). WAL mode, so the CLI and the workers
read while the daemon writes. The file may be the ban store's (its own tables). Feed-
agnostic: the feeds' logic lives in ``sipwarden.intel``.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from ..values import FeedState
from .db import Transaction, connect

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True)
class FeedRow:
    """A feed as ``status`` reports it."""

    feed: str
    entries: int
    last_success: float | None
    last_error: str | None
    last_error_at: float | None
    changed_at: float | None
    info: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "feed": self.feed,
            "entries": self.entries,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "changed_at": self.changed_at,
            **self.info,
        }


@dataclass(frozen=True)
class IntelEntry:
    address: str
    first_seen: float
    last_seen: float


def _locked(method: _F) -> _F:
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return cast(_F, call)


class IntelStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = connect(self.path)
        # one connection, used from worker threads: one call at a time
        self._lock = threading.RLock()

    @_locked
    def close(self) -> None:
        self._db.close()

    @_locked
    def state(self, feed: str) -> FeedState | None:
        row = self._db.execute(
            "SELECT last_id, last_success, last_error, last_error_at, last_full, sent"
            " FROM intel_feeds WHERE feed = ?",
            (feed,),
        ).fetchone()
        if row is None:
            return None
        last_id, success, error, error_at, full, sent = row
        try:
            times = tuple(float(t) for t in json.loads(sent))
        except (ValueError, TypeError):
            times = ()
        return FeedState(last_id, success, error, error_at, full, times)

    @_locked
    def entries(self, feed: str) -> dict[str, float]:
        """Address -> last seen."""
        rows = self._db.execute(
            "SELECT address, last_seen FROM intel_entries WHERE feed = ?", (feed,)
        )
        return dict(rows)

    @_locked
    def details(self, feed: str) -> list[IntelEntry]:
        """Every entry, oldest sighting first (for ``intel list``)."""
        rows = self._db.execute(
            "SELECT address, first_seen, last_seen FROM intel_entries WHERE feed = ?"
            " ORDER BY last_seen, address",
            (feed,),
        )
        return [IntelEntry(a, f, s) for a, f, s in rows]

    @_locked
    def entry(self, feed: str, address: str) -> IntelEntry | None:
        row = self._db.execute(
            "SELECT address, first_seen, last_seen FROM intel_entries"
            " WHERE feed = ? AND address = ?",
            (feed, address),
        ).fetchone()
        return None if row is None else IntelEntry(*row)

    @_locked
    def stamps(self) -> dict[str, float]:
        """Feed -> when its entries last changed (the workers reload a feed
        whose stamp moved). A cheap question: asked every second."""
        return {
            feed: changed
            for feed, changed in self._db.execute("SELECT feed, changed_at FROM intel_feeds")
            if changed is not None
        }

    @_locked
    def listing(self, address: str) -> list[tuple[str, IntelEntry]]:
        """(feed, entry) for every feed that lists exactly ``address`` (a
        canonical address or CIDR)."""
        rows = self._db.execute(
            "SELECT feed, address, first_seen, last_seen FROM intel_entries WHERE address = ?"
            " ORDER BY feed",
            (address,),
        )
        return [(f, IntelEntry(a, first, last)) for f, a, first, last in rows]

    @_locked
    def info(self, feed: str) -> dict[str, Any]:
        """What a list feed's last good list recorded (source, validators...)."""
        row = self._db.execute("SELECT info FROM intel_feeds WHERE feed = ?", (feed,)).fetchone()
        try:
            found = json.loads(row[0]) if row is not None and row[0] else {}
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    @_locked
    def status(self) -> list[FeedRow]:
        """Every feed with its entry count, last success and last error."""
        rows = self._db.execute(
            "SELECT f.feed, (SELECT COUNT(*) FROM intel_entries e WHERE e.feed = f.feed),"
            " f.last_success, f.last_error, f.last_error_at, f.changed_at, f.info"
            " FROM intel_feeds f ORDER BY f.feed"
        )
        out = []
        for feed, count, success, error, error_at, changed, info in rows:
            try:
                extra = json.loads(info) if info else {}
            except ValueError:
                extra = {}
            out.append(
                FeedRow(
                    feed,
                    int(count),
                    success,
                    error,
                    error_at,
                    changed,
                    extra if isinstance(extra, dict) else {},
                )
            )
        return out

    @_locked
    def count(self, feed: str) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM intel_entries WHERE feed = ?", (feed,)
        ).fetchone()
        return int(row[0])

    @_locked
    def feeds(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT feed FROM intel_feeds ORDER BY feed")]

    @_locked
    def save(
        self,
        feed: str,
        state: FeedState,
        seen: Mapping[str, float],
        removed: Iterable[str],
        now: float,
    ) -> None:
        """One batch in one transaction: addresses seen (first sighting kept,
        last sighting the later one), addresses gone, and the feed's state."""
        with Transaction(self._db):
            if seen:
                self._db.executemany(
                    "INSERT INTO intel_entries (feed, address, first_seen, last_seen)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (feed, address) DO UPDATE SET"
                    " last_seen = MAX(last_seen, excluded.last_seen)",
                    [(feed, address, when, when) for address, when in seen.items()],
                )
            self._db.executemany(
                "DELETE FROM intel_entries WHERE feed = ? AND address = ?",
                [(feed, address) for address in removed],
            )
            self._db.execute(
                "INSERT INTO intel_feeds (feed, last_id, last_success, last_error,"
                " last_error_at, last_full, sent, changed_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (feed) DO UPDATE SET last_id = excluded.last_id,"
                " last_success = excluded.last_success, last_error = excluded.last_error,"
                " last_error_at = excluded.last_error_at, last_full = excluded.last_full,"
                " sent = excluded.sent, updated_at = excluded.updated_at,"
                " changed_at = COALESCE(excluded.changed_at, intel_feeds.changed_at)",
                (
                    feed,
                    state.last_id,
                    state.last_success,
                    state.last_error,
                    state.last_error_at,
                    state.last_full,
                    json.dumps(list(state.sent)),
                    now if (seen or removed) else None,
                    now,
                ),
            )

    @_locked
    def replace(
        self, feed: str, entries: Iterable[str], now: float, info: Mapping[str, Any]
    ) -> tuple[int, int]:
        """A list feed's new good list, in one transaction: entries not in
        it are deleted, new ones are first seen ``now`` (the others keep
        their first sighting); the feed's last success is ``now`` and its
        error cleared. Returns (added, removed)."""
        wanted = dict.fromkeys(entries)
        with Transaction(self._db):
            held = {
                a
                for (a,) in self._db.execute(
                    "SELECT address FROM intel_entries WHERE feed = ?", (feed,)
                )
            }
            added = [a for a in wanted if a not in held]
            removed = [a for a in held if a not in wanted]
            self._db.executemany(
                "INSERT INTO intel_entries (feed, address, first_seen, last_seen)"
                " VALUES (?, ?, ?, ?)",
                [(feed, a, now, now) for a in added],
            )
            self._db.executemany(
                "DELETE FROM intel_entries WHERE feed = ? AND address = ?",
                [(feed, a) for a in removed],
            )
            self._db.execute(
                "INSERT INTO intel_feeds (feed, last_id, last_success, last_error, last_error_at,"
                " sent, info, changed_at, updated_at) VALUES (?, '', ?, NULL, NULL, '[]', ?, ?, ?)"
                " ON CONFLICT (feed) DO UPDATE SET last_success = excluded.last_success,"
                " last_error = NULL, last_error_at = NULL, info = excluded.info,"
                " updated_at = excluded.updated_at,"
                " changed_at = COALESCE(excluded.changed_at, intel_feeds.changed_at)",
                (feed, now, json.dumps(dict(info)), now if (added or removed) else None, now),
            )
        return len(added), len(removed)

    @_locked
    def adopt(
        self,
        feed: str,
        state: FeedState,
        entries: Iterable[tuple[str, float, float]] | None,
        info: Mapping[str, Any] | None,
        now: float,
    ) -> tuple[int, int]:
        """A feed another node fetched (the fleet, ``fleet/intel.py``), in one
        transaction. ``entries`` (address, first seen, last seen; None: the
        state alone) become exactly the feed's, with the fetcher's sightings,
        so an entry's life runs out here when it does there. The state (the
        paging ID, the last full pull, the rate window's request times, the
        last success) becomes the fetcher's, so that this node, if it takes
        the fetching over, resumes where it stopped and paces under the same
        key's limit. The fetcher's last error is not taken (this node's own
        status says its own; the fleet's status says the fetcher's); a good
        list taken clears this node's. Returns (added or changed, removed)."""
        added: list[tuple[str, str, float, float]] = []
        removed: list[str] = []
        with Transaction(self._db):
            if entries is not None:
                wanted = {a: (first, last) for a, first, last in entries}
                held = {
                    a: (first, last)
                    for a, first, last in self._db.execute(
                        "SELECT address, first_seen, last_seen FROM intel_entries WHERE feed = ?",
                        (feed,),
                    )
                }
                added = [(feed, a, f, s) for a, (f, s) in wanted.items() if held.get(a) != (f, s)]
                removed = [a for a in held if a not in wanted]
                self._db.executemany(
                    "INSERT INTO intel_entries (feed, address, first_seen, last_seen)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (feed, address) DO UPDATE SET"
                    " first_seen = excluded.first_seen, last_seen = excluded.last_seen",
                    added,
                )
                self._db.executemany(
                    "DELETE FROM intel_entries WHERE feed = ? AND address = ?",
                    [(feed, a) for a in removed],
                )
            clear = ", last_error = NULL, last_error_at = NULL" if entries is not None else ""
            self._db.execute(
                "INSERT INTO intel_feeds (feed, last_id, last_success, last_full, sent, info,"
                " changed_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (feed) DO UPDATE SET last_id = excluded.last_id,"
                " last_success = excluded.last_success, last_full = excluded.last_full,"
                " sent = excluded.sent, info = COALESCE(excluded.info, intel_feeds.info),"
                " updated_at = excluded.updated_at,"
                f" changed_at = COALESCE(excluded.changed_at, intel_feeds.changed_at){clear}",
                (
                    feed,
                    state.last_id,
                    state.last_success,
                    state.last_full,
                    json.dumps(list(state.sent)),
                    None if info is None else json.dumps(dict(info)),
                    now if (added or removed) else None,
                    now,
                ),
            )
        return len(added), len(removed)

    @_locked
    def outcome(self, feed: str, now: float, error: str | None) -> None:
        """A list feed's fetch that changed nothing: unchanged (``error``
        None: a success) or failed (the list is kept, the error recorded)."""
        if error is None:
            update = "last_success = excluded.last_success, last_error = NULL, last_error_at = NULL"
        else:
            update = "last_error = excluded.last_error, last_error_at = excluded.last_error_at"
        self._db.execute(
            "INSERT INTO intel_feeds (feed, last_id, last_success, last_error, last_error_at,"
            " sent, updated_at) VALUES (?, '', ?, ?, ?, '[]', ?)"
            f" ON CONFLICT (feed) DO UPDATE SET {update}, updated_at = excluded.updated_at",
            (feed, None if error else now, error, now if error else None, now),
        )

    @_locked
    def forget(self, feed: str) -> None:
        """Drop a feed and its entries (``intel reset``)."""
        with Transaction(self._db):
            self._db.execute("DELETE FROM intel_entries WHERE feed = ?", (feed,))
            self._db.execute("DELETE FROM intel_feeds WHERE feed = ?", (feed,))
