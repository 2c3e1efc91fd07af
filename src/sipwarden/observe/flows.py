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


@dataclass(slots=True)
class _Flow:
    first: float
    last: float
    packets: int = 0
    bytes: int = 0
    second: int = -1  # the whole second being counted
    in_second: int = 0
    peak: int = 0  # packets in the busiest second
    # made on first use: a spoofed source's flow often needs one or none
    methods: dict[str, int] | None = None
    answers: dict[str, int] | None = None  # status code (a string: JSON keys)
    verdicts: dict[str, int] | None = None


@dataclass
class FlowTable:
    max_flows: int = 100_000  # per minute
    max_pending: int = 60  # ended minutes waiting for the writer
    counters: Counter[str] = field(default_factory=Counter)  # "untracked", "minutes-lost"

    def __post_init__(self) -> None:
        if self.max_flows < 1 or self.max_pending < 1:
            raise ValueError("max_flows and max_pending: at least 1")
        self._minute = -1
        self._flows: dict[FlowKey, _Flow] = {}
        self._ended: deque[tuple[int, dict[FlowKey, _Flow]]] = deque()

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
        flow = self._flows.get(key) if int(now // 60) == self._minute else None
        if flow is None:  # a new minute, or a new flow in this one
            flow = self._flow(key, now)
        flow.last = now
        flow.packets += 1
        flow.bytes += size
        second = int(now)
        if second == flow.second:
            flow.in_second += 1
        else:
            flow.second, flow.in_second = second, 1
        if flow.in_second > flow.peak:
            flow.peak = flow.in_second
        if method is not None:
            flow.methods = _counted(flow.methods, method)
        if verdict is not None:
            flow.verdicts = _counted(flow.verdicts, verdict)

    def answer(self, key: FlowKey, now: float, status: int) -> None:
        """An answer that went back to ``key``'s source (the PBX's, or ours):
        counted in that flow's ``answers``, not in its packets (a flow is
        what the source sent). A flow not seen this minute gets one (its
        request came in the minute before)."""
        flow = self._flows.get(key) if int(now // 60) == self._minute else None
        if flow is None:
            flow = self._flow(key, now)
        flow.answers = _counted(flow.answers, str(status))

    def drain(self, now: float) -> list[dict[str, Any]]:
        """The records of every minute that ended before ``now``, oldest first."""
        minute = int(now // 60)
        if minute != self._minute and self._minute >= 0:
            self._roll(minute)
        records = [
            _record(key, flow, ended * 60)
            for ended, flows in self._ended
            for key, flow in flows.items()
        ]
        self._ended.clear()
        return records

    def current(self) -> list[dict[str, Any]]:
        """The records of the minute under way (a live view; it goes on counting)."""
        return [_record(key, flow, self._minute * 60) for key, flow in self._flows.items()]

    def _flow(self, key: FlowKey, now: float) -> _Flow:
        """``key``'s flow in ``now``'s minute (the minute rolled over if it
        is a new one), made if new; the overflow flow once the minute is full."""
        minute = int(now // 60)
        if minute != self._minute:
            self._roll(minute)
        flow = self._flows.get(key)
        if flow is None:
            if len(self._flows) >= self.max_flows:
                self.counters["untracked"] += 1
                key = FlowKey(OVERFLOW, None, key.destination, key.destination_port, key.transport)
                flow = self._flows.get(key)
            if flow is None:
                flow = self._flows[key] = _Flow(now, now)
        return flow

    def _roll(self, minute: int) -> None:
        if self._flows:
            if len(self._ended) >= self.max_pending:
                self._ended.popleft()
                self.counters["minutes-lost"] += 1
            self._ended.append((self._minute, self._flows))
        self._minute, self._flows = minute, {}


def _counted(counts: dict[str, int] | None, item: str) -> dict[str, int]:
    """``counts`` with one more ``item`` (made on first use)."""
    if counts is None:
        return {item: 1}
    counts[item] = counts.get(item, 0) + 1
    return counts


def _record(key: FlowKey, flow: _Flow, minute: float) -> dict[str, Any]:
    return {
        "minute": minute,
        **key._asdict(),
        "first_seen": flow.first,
        "last_seen": flow.last,
        "packets": flow.packets,
        "bytes": flow.bytes,
        "peak_pps": flow.peak,
        "methods": dict(flow.methods or {}),
        "answers": dict(flow.answers or {}),
        "verdicts": dict(flow.verdicts or {}),
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
