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

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

OVERFLOW = "*"  # the source of the flow the minute's overflow is added to


class FlowKey(NamedTuple):
    source: str
    source_port: int | None  # None: counted in the kernel, which knows no port
    destination: str
    destination_port: int
    transport: str  # "udp", "tcp", "tls"


# A flow's key as the table holds it: an exact tuple of FlowKey's fields
# (a FlowKey equals it and hashes alike, so either finds it).
_Key = tuple[str, int | None, str, int, str]
# A flow in one minute: (first, last, packets, bytes, second, in_second,
# peak), an exact tuple of numbers replaced whole on each packet (second:
# the whole second being counted, in_second: its packets, peak: the packets
# of the busiest second); its counts of methods, answers (status codes, as
# strings: JSON keys) and verdicts are in the minute's three count tables,
# key -> {item: count}, made on first use (a spoofed source's flow often
# needs one or none). Exact tuples of numbers and strings, and dicts of
# them, are not tracked by the garbage collector (a tuple holding a dict
# would be), so a minute of 100,000 spoofed flows adds nothing to what a
# full collection walks (a FlowKey and a slots object per flow added
# 200,000: 100+ ms); see tests/observe/test_flows.py.
_Flow = tuple[float, float, int, int, int, int, int]
_Counts = dict[_Key, dict[str, int]]


class _Minute(NamedTuple):
    """One minute's tables."""

    minute: int
    flows: dict[_Key, _Flow]
    methods: _Counts
    answers: _Counts
    verdicts: _Counts


@dataclass
class FlowTable:
    max_flows: int = 100_000  # per minute
    max_pending: int = 60  # ended minutes waiting for the writer
    counters: Counter[str] = field(default_factory=Counter)  # "untracked", "minutes-lost"

    def __post_init__(self) -> None:
        if self.max_flows < 1 or self.max_pending < 1:
            raise ValueError("max_flows and max_pending: at least 1")
        self._minute = -1
        self._flows: dict[_Key, _Flow] = {}
        self._methods: _Counts = {}
        self._answers: _Counts = {}
        self._verdicts: _Counts = {}
        self._ended: deque[_Minute] = deque()

    def __len__(self) -> int:
        """Flows in the current minute."""
        return len(self._flows)

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
        flows = self._flows
        flow = flows.get(key) if int(now // 60) == self._minute else None
        held: _Key = key
        if flow is None:  # a new minute, or a new flow in this one
            held, flow = self._flow(key, now)
            flows = self._flows  # (a new minute: a new table)
        first, _, packets, total, second, in_second, peak = flow
        if int(now) == second:
            in_second += 1
        else:
            second, in_second = int(now), 1
        flows[held] = (
            first,
            now,
            packets + 1,
            total + size,
            second,
            in_second,
            in_second if in_second > peak else peak,
        )
        if method is not None:
            _count(self._methods, held, method)
        if verdict is not None:
            _count(self._verdicts, held, verdict)

    def answer(self, key: FlowKey, now: float, status: int) -> None:
        """An answer that went back to ``key``'s source (the PBX's, or ours):
        counted in that flow's ``answers``, not in its packets (a flow is
        what the source sent). A flow not seen this minute gets one (its
        request came in the minute before)."""
        held: _Key = key
        if int(now // 60) != self._minute or key not in self._flows:
            held, _ = self._flow(key, now)
        _count(self._answers, held, str(status))

    def drain(self, now: float) -> list[dict[str, Any]]:
        """The records of every minute that ended before ``now``, oldest first."""
        minute = int(now // 60)
        if minute != self._minute and self._minute >= 0:
            self._roll(minute)
        records = [record for ended in self._ended for record in _records(ended)]
        self._ended.clear()
        return records

    def current(self) -> list[dict[str, Any]]:
        """The records of the minute under way (a live view; it goes on counting)."""
        return _records(self._tables())

    def _tables(self) -> _Minute:
        return _Minute(self._minute, self._flows, self._methods, self._answers, self._verdicts)

    def _flow(self, key: _Key, now: float) -> tuple[_Key, _Flow]:
        """``key``'s flow in ``now``'s minute (the minute rolled over if it
        is a new one), made if new; the overflow flow once the minute is
        full. With the key it is held under."""
        minute = int(now // 60)
        if minute != self._minute:
            self._roll(minute)
        flows = self._flows
        flow = flows.get(key)
        if flow is None:
            if len(flows) >= self.max_flows:
                self.counters["untracked"] += 1
                key = (OVERFLOW, None, key[2], key[3], key[4])
                flow = flows.get(key)
            if flow is None:
                key = _exact(key)
                flow = flows[key] = (now, now, 0, 0, -1, 0, 0)
        return key, flow

    def _roll(self, minute: int) -> None:
        if self._flows:
            if len(self._ended) >= self.max_pending:
                self._ended.popleft()
                self.counters["minutes-lost"] += 1
            self._ended.append(self._tables())
        self._minute, self._flows = minute, {}
        self._methods, self._answers, self._verdicts = {}, {}, {}


def _exact(key: _Key) -> _Key:
    """``key`` as an exact tuple: the collector stops tracking it (never a FlowKey)."""
    return tuple.__new__(tuple, key)


def _count(table: _Counts, key: _Key, item: str) -> None:
    """One more ``item`` in ``key``'s counts (made on first use, under an
    exact tuple: ``key`` may be the caller's FlowKey)."""
    counts = table.get(key)
    if counts is None:
        table[_exact(key)] = {item: 1}
    else:
        counts[item] = counts.get(item, 0) + 1


def _records(tables: _Minute) -> list[dict[str, Any]]:
    minute = tables.minute * 60
    methods, answers, verdicts = tables.methods, tables.answers, tables.verdicts
    return [
        _record(key, flow, minute, methods.get(key), answers.get(key), verdicts.get(key))
        for key, flow in tables.flows.items()
    ]


def _record(
    key: _Key,
    flow: _Flow,
    minute: float,
    methods: dict[str, int] | None,
    answers: dict[str, int] | None,
    verdicts: dict[str, int] | None,
) -> dict[str, Any]:
    first, last, packets, total, _, _, peak = flow
    return {
        "minute": minute,
        **dict(zip(FlowKey._fields, key, strict=True)),
        "first_seen": first,
        "last_seen": last,
        "packets": packets,
        "bytes": total,
        "peak_pps": peak,
        "methods": dict(methods or {}),
        "answers": dict(answers or {}),
        "verdicts": dict(verdicts or {}),
    }


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
