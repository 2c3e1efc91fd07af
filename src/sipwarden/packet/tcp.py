"""TCP reassembly: the client-to-edge direction of each connection, put back
in order and framed into SIP messages as the edge frames them.

Supported: segments in any order, retransmitted or overlapping (the first
copy of a byte wins), sequence numbers that wrap; a connection whose start
is not seen starts at its first segment; a reused port (a SYN with another
initial sequence number) starts a new connection. The in-order bytes go to
the edge's ``StreamFramer``: keep-alive pings are counted, a framing error
ends the connection, as it closes it on the edge. Missing bytes (lost by
the capture, or out-of-order data over the bounds) are skipped: framing
restarts at the next start line and the loss is counted. A connection that
starts with a TLS record (or, seen mid-connection, is to port 5061, SIP
over TLS: RFC 3261 §19.1.2) is counted as ``encrypted`` and skipped: it is
unreadable without the keys.

Bounds: out-of-order data 1 MiB per connection and 64 MiB in all (over
either, the oldest hole is skipped); 65,536 tracked connections (the least
recently active one is ended and forgotten); a start line is looked for
over at most 8 KiB after a loss. A flood of spoofed segments costs bounded
memory.

Plan: each connection keeps ``next_abs``, its position in the stream, which
does not wrap; a segment's sequence number is placed relative to it.
Segments at or before that position are delivered at once (their new part);
later ones wait in a dict by position, with a heap of the positions, until
the stream reaches them. Delivered bytes go by mode: a new connection is
told SIP from TLS by its first byte, a lost stretch sends the stream looking
for a start line (``RESYNC``), and SIP bytes are framed. The connection
table is a dict kept in least-recently-active order (each segment pops and
re-inserts its entry), so eviction takes its first entry. Ended connections
stay in the table, small, so that late retransmissions are known as such.
"""

from __future__ import annotations

import enum
import heapq
import re
from typing import Final, NamedTuple

from ..sip import PING, SipError, StreamFramer
from ..values import Peer
from .arrival import Arrival, PacketCounts

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_OUT_OF_ORDER",
    "MAX_OUT_OF_ORDER_TOTAL",
    "MAX_RESYNC_LINE",
    "TcpReassembler",
    "TcpSegment",
]

MAX_OUT_OF_ORDER: Final = 1 << 20  # bytes waiting for a hole to fill, per connection
MAX_OUT_OF_ORDER_TOTAL: Final = 64 << 20  # ... and over all connections
MAX_CONNECTIONS: Final = 65_536
MAX_RESYNC_LINE: Final = 8192  # longest start line looked for after a loss

_SEQ_MASK: Final = 0xFFFFFFFF

# Where framing can restart after lost bytes: a request or status line at the
# start of a line (SIP messages on a stream are almost always sent one per
# segment, so the first byte after a hole is a good first candidate).
_START_LINE: Final = re.compile(
    rb"(?m)^(?:[A-Za-z][A-Za-z0-9.!%*_+`'~-]* [^ \r\n]+ SIP/2\.0\r\n|SIP/2\.0 [1-6][0-9][0-9] )"
)


class TcpSegment(NamedTuple):
    """One TCP segment to a watched port, as the reassembler needs it."""

    ts: float  # capture time
    src: str  # the sender's address, as ``Peer`` names it
    sport: int
    dst: str
    dport: int
    seq: int
    syn: bool
    fin: bool
    rst: bool
    data: bytes


class TcpReassembler:
    """Every watched connection's client-to-edge stream (see the module doc).

    ``add(segment)`` and ``finish()`` return the SIP messages they complete,
    in stream order; what happened besides is tallied in ``counts``."""

    def __init__(self, counts: PacketCounts) -> None:
        self.counts = counts
        self.streams: dict[tuple[str, int, str, int], _Stream] = {}
        self.out_of_order = 0  # bytes buffered over all streams
        self.next_conn = 0
        self.arrivals: list[Arrival] = []  # completed by the call under way

    def add(self, seg: TcpSegment) -> list[Arrival]:
        self.counts.tcp_segments += 1
        key = (seg.src, seg.sport, seg.dst, seg.dport)
        syn = seg.syn
        stream = self.streams.pop(key, None)  # re-inserted below: the dict stays in LRU order
        if syn and stream is not None and stream.isn != seg.seq:
            stream.end()  # the port was reused: a new connection
            stream = None
        if stream is None:
            if not syn and not seg.data:
                return self._take()  # an ACK, FIN or RST of a connection we know nothing of
            if len(self.streams) >= MAX_CONNECTIONS:
                oldest = next(iter(self.streams))
                self.streams.pop(oldest).end()
                self.counts.tcp_evicted += 1
            self.next_conn += 1
            self.counts.tcp_connections += 1
            flow = Peer("tcp", seg.src, seg.sport, self.next_conn)
            stream = _Stream(self, flow, seg.dport, seg.seq, syn=syn)
        self.streams[key] = stream
        seq = (seg.seq + 1) & _SEQ_MASK if syn else seg.seq
        if seg.data:
            stream.add(seq, seg.data, seg.ts)
            if stream.mode is _Mode.TLS:
                self.counts.encrypted += 1
        if seg.rst:
            stream.end()
            return self._take()
        if seg.fin and stream.fin is None:
            stream.fin = stream.position(seq) + len(seg.data)
        if stream.fin is not None and stream.next_abs >= stream.fin:
            stream.end()  # every byte up to the FIN is in
        return self._take()

    def finish(self) -> list[Arrival]:
        """The end of the packets: every connection ends (holes skipped)."""
        for stream in self.streams.values():
            stream.end()
        return self._take()

    def _take(self) -> list[Arrival]:
        arrivals = self.arrivals
        if arrivals:
            self.arrivals = []
        return arrivals


class _Mode(enum.Enum):
    """What a stream's next in-order bytes are for."""

    NEW = "new"  # nothing yet: TLS or SIP
    MIDSTREAM = "midstream"  # the capture started inside the connection
    SIP = "sip"  # framing
    RESYNC = "resync"  # bytes were lost: looking for a start line
    TLS = "tls"
    DONE = "done"  # framing error, FIN or RST: nothing more is judged


class _Stream:
    """One direction (client to edge) of one TCP connection."""

    __slots__ = (
        "engine",
        "fin",
        "flow",
        "framer",
        "heap",
        "isn",
        "line",
        "local_port",
        "mode",
        "next_abs",
        "next_seq",
        "pending",
        "pending_bytes",
    )

    def __init__(
        self, engine: TcpReassembler, flow: Peer, local_port: int, seq: int, *, syn: bool
    ) -> None:
        self.engine = engine
        self.flow = flow
        self.local_port = local_port
        self.isn = seq
        # Sequence numbers wrap; positions in the stream (next_abs, pending
        # keys) do not: each segment's seq is placed relative to next_seq.
        self.next_seq = (seq + 1) & _SEQ_MASK if syn else seq
        self.next_abs = 0
        self.pending: dict[int, tuple[bytes, float]] = {}  # start -> (data, capture time)
        self.heap: list[int] = []  # the starts in pending
        self.pending_bytes = 0
        self.mode = _Mode.NEW if syn else _Mode.MIDSTREAM
        self.framer: StreamFramer | None = None
        self.line = bytearray()  # RESYNC: the unfinished line kept
        self.fin: int | None = None

    def position(self, seq: int) -> int:
        """Where ``seq`` is in the stream (sequence numbers wrap, positions do not)."""
        delta = ((seq - self.next_seq + (1 << 31)) & _SEQ_MASK) - (1 << 31)
        return self.next_abs + delta

    def add(self, seq: int, data: bytes, ts: float) -> None:
        if self.mode is _Mode.DONE or self.mode is _Mode.TLS:
            return
        start = self.position(seq)
        end = start + len(data)
        if end <= self.next_abs:
            return  # a retransmission of bytes already delivered
        if start <= self.next_abs:
            self._deliver(data[self.next_abs - start :], ts)
            self._drain()
            return
        old = self.pending.get(start)
        if old is not None and len(old[0]) >= len(data):
            return  # a retransmission of a segment already waiting
        if old is None:
            heapq.heappush(self.heap, start)
        grow = len(data) - (len(old[0]) if old else 0)
        self.pending[start] = (data, ts)
        self.pending_bytes += grow
        self.engine.out_of_order += grow
        # Over the bounds, stop waiting for the oldest hole: skip it.
        while self.heap and (
            self.pending_bytes > MAX_OUT_OF_ORDER
            or self.engine.out_of_order > MAX_OUT_OF_ORDER_TOTAL
        ):
            self.engine.counts.tcp_overflow += 1
            self._skip_hole()

    def _drain(self) -> None:
        """Deliver the waiting segments that the stream has reached."""
        while self.heap and self.heap[0] <= self.next_abs:
            start = heapq.heappop(self.heap)
            data, ts = self.pending.pop(start)
            self.pending_bytes -= len(data)
            self.engine.out_of_order -= len(data)
            if start + len(data) > self.next_abs:
                self._deliver(data[self.next_abs - start :], ts)

    def _skip_hole(self) -> None:
        """Give up on the bytes before the first waiting segment."""
        missing = self.heap[0] - self.next_abs
        self.next_abs += missing
        self.next_seq = (self.next_seq + missing) & _SEQ_MASK
        self.engine.counts.tcp_gaps += 1
        if self.mode in (_Mode.NEW, _Mode.MIDSTREAM, _Mode.SIP):
            # a message cut by the hole is lost; framing resumes at a start line
            self.mode = _Mode.RESYNC
            self.framer = None
            self.line.clear()
        self._drain()

    def _deliver(self, data: bytes, ts: float) -> None:
        self.next_abs += len(data)
        self.next_seq = (self.next_seq + len(data)) & _SEQ_MASK
        mode = self.mode
        if mode is _Mode.SIP:
            self._frame(data, ts)
        elif mode is _Mode.NEW or mode is _Mode.MIDSTREAM:
            # SIP starts with a letter or CRLF, a TLS record with 20..23; a
            # capture that starts inside a TLS connection shows neither, but
            # there the port tells (5061 is SIP over TLS: RFC 3261 §19.1.2).
            if 20 <= data[0] <= 23 or (mode is _Mode.MIDSTREAM and self.local_port == 5061):
                self.mode = _Mode.TLS
                self.pending.clear()
                self.engine.out_of_order -= self.pending_bytes
                self.pending_bytes = 0
                self.heap.clear()
            elif mode is _Mode.NEW:
                self.mode = _Mode.SIP
                self.framer = StreamFramer()
                self._frame(data, ts)
            else:
                self.mode = _Mode.RESYNC
                self._resync(data, ts)
        elif mode is _Mode.RESYNC:
            self._resync(data, ts)

    def _resync(self, data: bytes, ts: float) -> None:
        """Pass over bytes until a start line, then frame from there."""
        line = self.line
        line += data
        found = _START_LINE.search(line)
        if found is None:
            # keep the last, unfinished line: it may become a start line
            cut = line.rfind(b"\n") + 1
            if len(line) - cut > MAX_RESYNC_LINE:
                cut = len(line)
            self.engine.counts.tcp_skipped_bytes += cut
            del line[:cut]
            return
        self.engine.counts.tcp_skipped_bytes += found.start()
        rest = bytes(line[found.start() :])
        line.clear()
        self.mode = _Mode.SIP
        self.framer = StreamFramer()
        self._frame(rest, ts)

    def _frame(self, data: bytes, ts: float) -> None:
        framer = self.framer
        assert framer is not None
        try:
            frames = framer.feed(data)
        except SipError:
            frames = []  # the error is framer.error, handled below
        engine = self.engine
        for frame in frames:
            if frame == PING:
                engine.counts.keepalives += 1
            else:
                engine.arrivals.append(Arrival(ts, frame, self.flow, self.local_port))
        if framer.error is not None:
            # the edge closes the connection here: nothing after it is judged
            engine.counts.tcp_errors += 1
            engine.counts.tcp_error_reasons[framer.error.reason] += 1
            self._close()

    def end(self) -> None:
        """The connection is over (FIN reached, RST, end of capture): deliver
        what still waits, skipping holes, then stop."""
        while self.heap and self.mode is not _Mode.DONE:
            self._skip_hole()
        # (up to 3 bytes may be the CRLFs of a keep-alive, not a message)
        if self.mode is _Mode.SIP and self.framer is not None and self.framer.buffered > 3:
            self.engine.counts.tcp_incomplete += 1
        self._close()

    def _close(self) -> None:
        # The entry stays in the table (small) so that late retransmissions
        # are known as such rather than taken for a new connection.
        self.mode = _Mode.DONE
        self.framer = None
        self.line = bytearray()
        self.engine.out_of_order -= self.pending_bytes
        self.pending_bytes = 0
        self.pending.clear()
        self.heap.clear()
