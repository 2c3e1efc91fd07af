"""What the packet layer hands out: ``Arrival``, one SIP message's bytes as
they reached the edge, and ``PacketCounts``, the tally of what the packets
held.

Both are plain values. A mode judges the arrivals (replay now, host mode
next) and reports the counts its own way (``offline``'s report renders them).
Nothing here grows: an arrival is handed on, the counts are integers (the one
counter keyed by text, ``tcp_error_reasons``, is keyed by the framer's reason
words, a fixed set).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from ..values import Peer

__all__ = ["Arrival", "PacketCounts"]


class Arrival(NamedTuple):
    """One SIP message as it arrived: a UDP datagram, or a frame of a TCP
    stream (keep-alive pings are counted, never handed out)."""

    ts: float  # capture time of the packet that completed it, seconds since the epoch
    data: bytes
    source: Peer  # as the edge names it: a TCP connection has its own ``conn``
    local_port: int  # the watched port it was sent to


@dataclass
class PacketCounts:
    """Counts over every packet fed (the field order is the report's)."""

    packets: int = 0  # packets fed (records read from the file)
    messages: int = 0  # messages handed out (UDP datagrams and TCP frames)
    udp_datagrams: int = 0  # datagrams to a judged port (each one message)
    tcp_segments: int = 0  # segments to a judged port
    tcp_connections: int = 0
    other: int = 0  # decodable, but not UDP/TCP to a judged port
    undecodable: int = 0  # broken or cut short (snap length) at any layer
    fragments: int = 0  # IP fragments seen
    reassembled: int = 0  # datagrams rebuilt from them
    fragments_dropped: int = 0  # fragments of datagrams never completed
    encrypted: int = 0  # TCP segments of TLS connections (skipped)
    keepalives: int = 0  # CRLFCRLF pings on streams (the edge answers, never judges)
    tcp_errors: int = 0  # connections that ended on a framing error
    tcp_gaps: int = 0  # holes skipped in a stream (capture loss, bounds)
    tcp_overflow: int = 0  # of which: forced by the out-of-order bounds
    tcp_skipped_bytes: int = 0  # bytes passed over to find a start line again
    tcp_incomplete: int = 0  # connections that ended inside a message
    tcp_evicted: int = 0  # connections forgotten at the MAX_CONNECTIONS bound
    truncated_file: bool = False  # the file ended inside a record
    tcp_error_reasons: Counter[str] = field(default_factory=Counter)
    first_packet: float | None = None  # capture time, seconds since the epoch
    last_packet: float | None = None
