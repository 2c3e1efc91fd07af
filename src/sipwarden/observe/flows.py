"""Traffic flows: who sends what to whom, how much and how fast, a minute
at a time (the seeds' "trafflow").

A flow is one (source, source port, destination, destination port,
transport). For each, per one-minute bucket: first and last seen, packets,
bytes (SIP payload: the datagram, or the stream's bytes), the peak packets
in one second, and counts of what the source sent (``methods``: requests by
method, its own responses by status code), of the answers that went back
to it (``answers``, by status code: the PBX's 401s, a rule's 403) and of the
verdicts on what it sent that was not forwarded (``verdicts``, by reason). ``aggregate`` merges the buckets of a window into one
record per flow, with the fields of the interface contract
(``sipwarden flows --json``).

Operations: ``record`` on the packet path (a dict probe and a few
additions), ``answer`` for what went back to a source; ``drain`` by the
writer, which takes the minutes that ended; ``ipfix`` names a record's
fields as IPFIX does, for the JSON-lines export.
Sans-I/O: the clock is the caller's.

Bounds, because UDP sources are spoofed by the million: at most
``max_flows`` flows in one minute; the packets (and answers) of a flow that
finds the minute full are added to one overflow flow per (destination, destination
port, transport) whose source is ``"*"``, so the totals stay exact while the
detail is bounded; ``untracked`` counts them. At most ``max_pending``
ended minutes wait for the writer; past that the oldest is let go and
counted (``minutes-lost``).
"""

from __future__ import annotations

from array import array
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

OVERFLOW = "*"  # the source of the flow the minute's overflow is added to
_SEP = "\x1f"  # between the fields of a key's text and a count's key (in no address or name)
_BYTES = 1 << 40  # a flow's volume: packets (fewer than 2^40 a minute) + bytes * _BYTES
_SHARDS = 16  # a minute's index: dicts by the key hash's low bits...
_SHARD_MASK = _SHARDS - 1
_CHUNK_BITS = 12  # ... its other dicts: one per 4,096 rows
_CHUNK_MASK = (1 << _CHUNK_BITS) - 1


class FlowKey(NamedTuple):
    source: str
    source_port: int | None  # None: counted in the kernel, which knows no port
    destination: str
    destination_port: int
    transport: str  # "udp", "tcp", "tls"


class FlowMinute:
    """One minute's flows, in tables the garbage collector never tracks, so
    that a minute of 100,000 spoofed flows adds nothing to what a
    collection walks (a dict is tracked again whenever a tuple is put in
    it, and then walked entry by entry: 45 ms with 70,000 flows; a FlowKey
    and a slots object per flow before that: 100+ ms). A flow is a row:
    ``index`` maps its key's hash to the row (a 64-bit hash of strings
    keyed per process: two flows of one minute collide with odds of about
    one in 10^9 at 100,000 flows, and would be counted as one), ``keys``
    the row to its key's text; its packets and bytes are one int in
    ``volume``; its other numbers are in ``array`` columns (first and last
    seen, the whole second being counted and its packets, the busiest
    second's packets: the peak); its counts of methods, answers and
    verdicts in dicts of ``"row<SEP>item"`` -> count, with each row's items
    in order in ``items`` (``"<SEP>item<SEP>item"``, grown on an item's
    first count). Dicts of strings and numbers, and arrays, are never
    tracked; see tests/observe/test_flows.py.

    No dict grows past a few thousand entries: ``index`` is ``_SHARDS``
    dicts by the hash's low bits, the per-row dicts one each per
    ``_CHUNK`` rows (``row >> _CHUNK_BITS``). A dict that grows is copied
    whole into a bigger one, and the minute's dicts, one entry per row
    each, grew at the same packet: at 87,382 flows that packet took 37 ms."""

    __slots__ = (
        "answers",
        "first",
        "in_second",
        "index",
        "items",
        "keys",
        "last",
        "methods",
        "minute",
        "peak",
        "rows",
        "second",
        "verdicts",
        "volume",
    )

    def __init__(self, minute: int) -> None:
        self.minute = minute
        self.rows = 0
        self.index: list[dict[int, int]] = [{} for _ in range(_SHARDS)]  # hash -> row
        self.first, self.last = array("d"), array("d")
        self.second, self.in_second, self.peak = array("q"), array("q"), array("q")
        # per chunk of rows: row -> key text, row -> packets + bytes * _BYTES,
        # item counts per table, each (table, row)'s items ("m<row>" etc.)
        self.keys: list[dict[int, str]] = []
        self.volume: list[dict[int, int]] = []
        self.methods: list[dict[str, int]] = []
        self.answers: list[dict[str, int]] = []
        self.verdicts: list[dict[str, int]] = []
        self.items: list[dict[str, str]] = []

    def __len__(self) -> int:
        return self.rows

    def add(self, key: FlowKey | tuple[Any, ...], now: float) -> int:
        """A new flow's row."""
        row = self.rows
        self.rows = row + 1
        h = hash(key)
        self.index[h & _SHARD_MASK][h] = row
        if not row & _CHUNK_MASK:  # the first row of a chunk
            for tables in (self.keys, self.volume, self.methods, self.answers, self.verdicts):
                tables.append({})
            self.items.append({})
        chunk = row >> _CHUNK_BITS
        self.keys[chunk][row] = _SEP.join(map(str, key))
        self.volume[chunk][row] = 0
        self.first.append(now)
        self.last.append(now)
        self.second.append(-1)
        self.in_second.append(0)
        self.peak.append(0)
        return row

    def row(self, key: FlowKey | tuple[Any, ...]) -> int | None:
        h = hash(key)
        return self.index[h & _SHARD_MASK].get(h)

    def count(self, tables: list[dict[str, int]], tag: str, row: int, item: str) -> None:
        """One more ``item`` in ``row``'s counts of ``tables`` (``tag``: its letter)."""
        chunk = row >> _CHUNK_BITS
        table = tables[chunk]
        key = f"{row}{_SEP}{item}"
        n = table.get(key)
        if n is None:
            table[key] = 1
            items, at = self.items[chunk], f"{tag}{row}"
            items[at] = items.get(at, "") + _SEP + item
        else:
            table[key] = n + 1

    def counts(self, tables: list[dict[str, int]], tag: str, row: int) -> dict[str, int]:
        chunk = row >> _CHUNK_BITS
        items = self.items[chunk].get(f"{tag}{row}")
        if not items:
            return {}
        table = tables[chunk]
        return {item: table[f"{row}{_SEP}{item}"] for item in items[1:].split(_SEP)}

    def release(self) -> None:
        """Empty the tables a piece at a time (the writer's thread, once the
        minute is stored: a Python loop lets the event loop's thread have
        the GIL every few milliseconds, where dropping 100,000 flows' objects
        at once, on whichever thread, stopped it for tens of milliseconds)."""
        self.rows = 0
        for index in self.index:
            index.clear()  # (a few thousand entries: ints)
        for tables in (self.keys, self.volume, self.methods, self.answers, self.verdicts):
            while tables:
                tables.pop().clear()
        while self.items:
            self.items.pop().clear()
        for column in (self.first, self.last, self.second, self.in_second, self.peak):
            del column[:]

    def records(self) -> Iterator[dict[str, Any]]:
        """Each flow's record, in order of first sight (made one at a time:
        the writer stores them as they come, so they are never all alive)."""
        minute = self.minute * 60
        for row in range(self.rows):
            chunk = row >> _CHUNK_BITS
            if chunk >= len(self.keys):  # released meanwhile
                return
            text, volume = self.keys[chunk][row], self.volume[chunk][row]
            source, port, destination, destination_port, transport = text.split(_SEP)
            yield {
                "minute": minute,
                "source": source,
                "source_port": None if port == "None" else int(port),
                "destination": destination,
                "destination_port": int(destination_port),
                "transport": transport,
                "first_seen": self.first[row],
                "last_seen": self.last[row],
                "packets": volume % _BYTES,
                "bytes": volume // _BYTES,
                "peak_pps": self.peak[row],
                "methods": self.counts(self.methods, "m", row),
                "answers": self.counts(self.answers, "a", row),
                "verdicts": self.counts(self.verdicts, "v", row),
            }


@dataclass
class FlowTable:
    max_flows: int = 100_000  # per minute
    max_pending: int = 60  # ended minutes waiting for the writer
    counters: Counter[str] = field(default_factory=Counter)  # "untracked", "minutes-lost"

    def __post_init__(self) -> None:
        if self.max_flows < 1 or self.max_pending < 1:
            raise ValueError("max_flows and max_pending: at least 1")
        self._minute = -1
        self._now = FlowMinute(-1)
        self._ended: deque[FlowMinute] = deque()

    def __len__(self) -> int:
        """Flows in the current minute."""
        return len(self._now)

    def record(
        self,
        key: FlowKey,
        now: float,
        size: int,
        *,
        method: str | None = None,
        verdict: str | None = None,
    ) -> None:
        """One packet (or one message of a stream) of ``key``'s flow, of
        ``size`` bytes; its method (a request's, or a response's status code
        as a string) and the verdict's reason (None: forwarded)."""
        tables = self._now
        if int(now // 60) == self._minute:
            h = hash(key)
            row = tables.index[h & _SHARD_MASK].get(h)
        else:
            row = None
        if row is None:  # a new minute, or a new flow in this one
            row = self._flow(key, now)
            tables = self._now  # (a new minute: new tables)
        chunk = row >> _CHUNK_BITS
        tables.last[row] = now
        tables.volume[chunk][row] += 1 + size * _BYTES
        second = int(now)
        if tables.second[row] == second:
            in_second = tables.in_second[row] = tables.in_second[row] + 1
            if in_second > tables.peak[row]:
                tables.peak[row] = in_second
        else:
            tables.second[row], tables.in_second[row] = second, 1
            if tables.peak[row] < 1:
                tables.peak[row] = 1
        if method is not None:
            methods = tables.methods[chunk]
            counted = f"{row}{_SEP}{method}"
            n = methods.get(counted)
            if n is None:
                tables.count(tables.methods, "m", row, method)
            else:
                methods[counted] = n + 1
        if verdict is not None:
            tables.count(tables.verdicts, "v", row, verdict)

    def answer(self, key: FlowKey, now: float, status: int) -> None:
        """An answer that went back to ``key``'s source (the PBX's, or ours):
        counted in that flow's ``answers``, not in its packets (a flow is
        what the source sent). A flow not seen this minute gets one (its
        request came in the minute before)."""
        row = self._now.row(key) if int(now // 60) == self._minute else None
        if row is None:
            row = self._flow(key, now)
        self._now.count(self._now.answers, "a", row, str(status))

    def drain(self, now: float) -> list[dict[str, Any]]:
        """The records of every minute that ended before ``now``, oldest first."""
        return [record for ended in self.drain_minutes(now) for record in ended.records()]

    def drain_minutes(self, now: float) -> list[FlowMinute]:
        """Every minute that ended before ``now``, oldest first, as its
        tables: ``len`` of each is its flows, ``records()`` makes them one
        at a time (the writer's way: 100,000 records alive at once while it
        stores them were 100,000 dicts for every collection to walk)."""
        minute = int(now // 60)
        if minute != self._minute and self._minute >= 0:
            self._roll(minute)
        ended = list(self._ended)
        self._ended.clear()
        return ended

    def current(self) -> list[dict[str, Any]]:
        """The records of the minute under way (a live view; it goes on counting)."""
        return list(self._now.records())

    def _flow(self, key: FlowKey | tuple[Any, ...], now: float) -> int:
        """``key``'s flow's row in ``now``'s minute (the minute rolled over if
        it is a new one), made if new; the overflow flow's once the minute
        is full."""
        minute = int(now // 60)
        if minute != self._minute:
            self._roll(minute)
        tables = self._now
        row = tables.row(key)
        if row is None:
            if len(tables) >= self.max_flows:
                self.counters["untracked"] += 1
                key = (OVERFLOW, None, key[2], key[3], key[4])
                row = tables.row(key)
            if row is None:
                row = tables.add(key, now)
        return row

    def _roll(self, minute: int) -> None:
        if len(self._now):
            if len(self._ended) >= self.max_pending:
                self._ended.popleft()
                self.counters["minutes-lost"] += 1
            self._ended.append(self._now)
        self._minute, self._now = minute, FlowMinute(minute)


PROTOCOLS = {"udp": 17, "tcp": 6, "tls": 6}  # IANA protocol numbers, as IPFIX writes them


def ipfix(record: dict[str, Any]) -> dict[str, Any]:
    """One flow record with IPFIX's information element names (RFC 7012),
    for tools that already read flows as JSON lines; what IPFIX has no
    element for keeps a ``sipwarden`` prefix."""
    v6 = ":" in record["source"] or ":" in record["destination"]
    family = "IPv6" if v6 else "IPv4"
    element: dict[str, Any] = {
        "flowStartMilliseconds": round(record["first_seen"] * 1000),
        "flowEndMilliseconds": round(record["last_seen"] * 1000),
        f"source{family}Address": record["source"],
        "sourceTransportPort": record["source_port"],
        f"destination{family}Address": record["destination"],
        "destinationTransportPort": record["destination_port"],
        "protocolIdentifier": PROTOCOLS.get(record["transport"]),
        "packetDeltaCount": record["packets"],
        "octetDeltaCount": record["bytes"],
        "sipwardenTransport": record["transport"],
        "sipwardenPeakPps": record["peak_pps"],
    }
    for name in ("methods", "answers", "verdicts"):
        element["sipwarden" + name.capitalize()] = record[name]
    return element


def aggregate(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per flow over the minutes of ``records`` (the contract's
    fields; ``minute`` dropped), in order of first sight."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for record in records:
        key = tuple(record[name] for name in FlowKey._fields)
        into = merged.get(key)
        if into is None:
            into = merged[key] = {name: record[name] for name in FlowKey._fields}
            into.update(first_seen=record["first_seen"], last_seen=record["last_seen"])
            into.update(packets=0, bytes=0, peak_pps=0, methods={}, answers={}, verdicts={})
        into["first_seen"] = min(into["first_seen"], record["first_seen"])
        into["last_seen"] = max(into["last_seen"], record["last_seen"])
        into["packets"] += record["packets"]
        into["bytes"] += record["bytes"]
        into["peak_pps"] = max(into["peak_pps"], record["peak_pps"])
        for name in ("methods", "answers", "verdicts"):
            counts = into[name]
            for item, n in record[name].items():
                counts[item] = counts.get(item, 0) + n
    return sorted(merged.values(), key=lambda r: r["first_seen"])
