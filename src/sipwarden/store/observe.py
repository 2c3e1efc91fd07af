"""Events and traffic flows in SQLite: written in batches by the observe
keeper, read by `sipwarden events/flows`, REST, the live stream and the
analysis.

Events are one row each (their sampled floods already folded into one row
with a ``repeated`` count by ``observe.EventQueue``); their ``id`` orders
them, so the live stream and alerts follow the table by id whichever worker
wrote them. Flows are one row per flow and minute, per worker; ``flows``
merges the rows of a window in SQL, one record per (source, source port,
destination, destination port, transport), busiest first.

Bounds on disk: ``prune`` deletes what is older than the retention and,
past a row cap, the oldest rows (a flood of spoofed sources cannot fill the
disk). Every method raises ``StoreError`` (one line naming the file) on a
SQLite error, as the ban store does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..observe import Event
from ..observe.events import EventRow, row_fields
from .db import Transaction, connect, explained

FLOW_KEY = "source, source_port, destination, destination_port, transport"
COUNTS = ("methods", "answers", "verdicts")


class ObserveStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = connect(self.path)

    def close(self) -> None:
        self._db.close()

    # ---------------------------------------------------------------- write

    @explained
    def write_events(self, events: Sequence[Event | EventRow]) -> int:
        """Append ``events`` (or their rows: ``EventQueue.drain_rows``) in one
        transaction; returns how many."""
        with Transaction(self._db):
            self._db.executemany(
                "INSERT INTO events (time, kind, source, reason, fields) VALUES (?, ?, ?, ?, ?)",
                (
                    (event[0], event[1], event[2], event[3], json.dumps(dict(row_fields(event))))
                    for event in events
                ),
            )
        return len(events)

    @explained
    def write_flows(self, records: Iterable[dict[str, Any]]) -> int:
        """Append per-minute flow records (``FlowTable.drain``, or made as
        they come: none is kept) in one transaction; how many."""
        written = 0

        def rows() -> Iterator[tuple[Any, ...]]:
            nonlocal written
            for r in records:
                written += 1
                yield (
                    r["minute"],
                    r["source"],
                    r["source_port"],
                    r["destination"],
                    r["destination_port"],
                    r["transport"],
                    r["first_seen"],
                    r["last_seen"],
                    r["packets"],
                    r["bytes"],
                    r["peak_pps"],
                    *(json.dumps(r[name]) for name in COUNTS),
                )

        with Transaction(self._db):
            self._db.executemany(
                f"INSERT INTO flows (minute, {FLOW_KEY}, first_seen, last_seen, packets, bytes,"
                " peak_pps, methods, answers, verdicts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows(),
            )
        return written

    @explained
    def prune(
        self,
        now: float,
        *,
        events_retention: float,
        events_max_rows: int,
        flows_retention: float,
        flows_max_rows: int,
    ) -> dict[str, int]:
        """Delete what is older than the retention, then the oldest rows
        past each cap; how many rows of each went."""
        deleted = {}
        with Transaction(self._db):
            for table, column, retention, cap in (
                ("events", "time", events_retention, events_max_rows),
                ("flows", "last_seen", flows_retention, flows_max_rows),
            ):
                old = self._db.execute(
                    f"DELETE FROM {table} WHERE {column} < ?", (now - retention,)
                ).rowcount
                over = self._db.execute(
                    f"DELETE FROM {table} WHERE id <= (SELECT id FROM {table}"
                    " ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (cap,),
                ).rowcount
                deleted[table] = old + over
        return deleted

    # ----------------------------------------------------------------- read

    @explained
    def events(
        self,
        *,
        since: float | None = None,
        after_id: int | None = None,
        source: str | None = None,
        kinds: Iterable[str] = (),
        limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        """Events, oldest first, as dicts (``id``, ``time``, ``kind``,
        ``source``, ``reason`` and their fields); at most ``limit``, the
        newest ones when there are more."""
        where: list[str] = ["1"]
        args: list[Any] = []
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        if after_id is not None:
            where.append("id > ?")
            args.append(after_id)
        if source is not None:
            where.append("source = ?")
            args.append(source)
        kinds = list(kinds)
        if kinds:
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args.extend(kinds)
        # the newest `limit` of them, returned oldest first (a stream that
        # fell behind catches up from its own id, not from here)
        order = "ASC" if after_id is not None else "DESC"
        rows = self._db.execute(
            f"SELECT id, time, kind, source, reason, fields FROM events"
            f" WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT ?",
            (*args, limit),
        ).fetchall()
        if order == "DESC":
            rows.reverse()
        return [
            {
                "id": id_,
                "time": time,
                "kind": kind,
                "source": source,
                "reason": reason,
                **json.loads(fields),
            }
            for id_, time, kind, source, reason, fields in rows
        ]

    @explained
    def deceived(self, source: str) -> dict[str, dict[str, float]]:
        """What deception answered ``source``, by answer ("register-ok",
        "180", "svcrash"...): how many (a sampled row counts its
        ``repeated``), the first and the last time; {} if nothing."""
        rows = self._db.execute(
            "SELECT reason, SUM(COALESCE(json_extract(fields, '$.repeated'), 1)),"
            " MIN(time), MAX(time) FROM events WHERE source = ? AND kind = 'deception'"
            " GROUP BY reason ORDER BY reason",
            (source,),
        )
        return {
            reason: {"count": int(count), "first": first, "last": last}
            for reason, count, first, last in rows
        }

    @explained
    def oldest_event(self) -> float | None:
        row = self._db.execute("SELECT MIN(time) FROM events").fetchone()
        return None if row[0] is None else float(row[0])

    @explained
    def last_event_id(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])

    @explained
    def flows(
        self,
        *,
        since: float,
        until: float | None = None,
        source: str | None = None,
        limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        """One record per flow over the window (its minutes merged, every
        worker's rows added up), the busiest ``limit`` by packets, with the
        contract's fields."""
        where: list[str] = ["last_seen >= ?"]
        args: list[Any] = [since]
        if until is not None:
            where.append("first_seen <= ?")
            args.append(until)
        if source is not None:
            where.append("source = ?")
            args.append(source)
        rows = self._db.execute(
            f"SELECT {FLOW_KEY}, MIN(first_seen), MAX(last_seen), SUM(packets), SUM(bytes),"
            " MAX(peak_pps), json_group_array(methods), json_group_array(answers),"
            " json_group_array(verdicts)"
            f" FROM flows WHERE {' AND '.join(where)} GROUP BY {FLOW_KEY}"
            " ORDER BY SUM(packets) DESC, MIN(first_seen) LIMIT ?",
            (*args, limit),
        )
        records = []
        for row in rows:
            src, sport, dst, dport, transport, first, last, packets, size, peak = row[:10]
            record: dict[str, Any] = {
                "source": src,
                "source_port": sport,
                "destination": dst,
                "destination_port": dport,
                "transport": transport,
                "first_seen": first,
                "last_seen": last,
                "packets": packets,
                "bytes": size,
                "peak_pps": peak,
            }
            for name, parts in zip(COUNTS, row[10:], strict=True):
                record[name] = _summed(json.loads(part) for part in json.loads(parts))
            records.append(record)
        return records

    @explained
    def sources(self, *, since: float, limit: int = 15) -> list[dict[str, Any]]:
        """The ``limit`` busiest sources over the window (the dashboard's
        "who"), their flows summed: packets, bytes, flows, first and last
        seen, and the verdict reasons (summed for these sources alone, so a
        window of 100,000 records costs one grouped scan)."""
        rows = self._db.execute(
            "SELECT source, SUM(packets), SUM(bytes), COUNT(*), MIN(first_seen), MAX(last_seen)"
            " FROM flows WHERE last_seen >= ? GROUP BY source"
            " ORDER BY SUM(packets) DESC, source LIMIT ?",
            (since, limit),
        ).fetchall()
        found = []
        for src, packets, size, records, first, last in rows:
            verdicts = self._db.execute(
                "SELECT verdicts FROM flows WHERE source = ? AND last_seen >= ?", (src, since)
            )
            found.append(
                {
                    "source": src,
                    "packets": packets,
                    "bytes": size,
                    "flows": records,  # minute records, not distinct flows
                    "first_seen": first,
                    "last_seen": last,
                    "verdicts": _summed(json.loads(part) for (part,) in verdicts),
                }
            )
        return found

    @explained
    def traffic(self, *, since: float, until: float) -> list[tuple[float, str, int]]:
        """The packets of the window per (minute, transport), every flow and
        worker added up: the report's volume over time."""
        rows = self._db.execute(
            "SELECT minute, transport, SUM(packets) FROM flows"
            " WHERE minute >= ? AND minute <= ? GROUP BY minute, transport ORDER BY minute",
            (since - 60, until),
        )
        return [(float(minute), str(transport), int(n)) for minute, transport, n in rows]


def _summed(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in counts:
        for name, n in part.items():
            total[name] = total.get(name, 0) + n
    return total
