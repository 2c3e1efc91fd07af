"""Offline replay: judge every SIP message of a packet capture as the edge would.

``replay(path, policy)`` reads a capture, finds the messages that arrive at the
edge (destination port in ``ports``), gives each to ``Policy.judge_bytes`` --
the call the live edge makes -- and sums the verdicts up per source address.

Supported:

* files: pcap (micro- and nanosecond), pcapng, either gzip-compressed; dpkt
  reads them. A pcapng file is decoded with its first interface's link type
  (dpkt's reader keeps one interface description); simple packet blocks are
  skipped. A file cut short (still being written) is read up to the cut:
  ``truncated_file`` is set when the cut is in a record header (a packet cut
  in its data is ``undecodable``). Pipes work (``/dev/stdin``);
* link types: Ethernet (802.1Q and QinQ VLAN tags), Linux cooked SLL and SLL2
  (``tcpdump -i any``), BSD NULL/LOOP, raw IPv4/IPv6;
* IPv4 and IPv6, fragments of both reassembled (like the kernel: a datagram
  with overlapping fragments is dropped, incomplete ones expire after 30 s of
  capture time);
* UDP: one datagram is one message, judged as it is (empty and keep-alive
  datagrams too: the edge judges those);
* TCP: the client-to-edge direction of each connection is put back in order
  by sequence number (reordering, retransmissions and overlaps: the first
  copy of a byte wins) and framed by the edge's ``StreamFramer``. A framing
  error ends the judging of that connection, as it closes it on the edge.
  Missing bytes (lost by the capture, or out-of-order data over the bounds)
  are skipped: framing restarts at the next start line and the loss is
  counted. A connection whose start is not in the capture starts at its
  first segment seen.

Not supported: TLS (a connection that starts with a TLS record is counted as
``encrypted`` and skipped: it is unreadable without the keys), WebSocket,
SCTP. Checksums are not verified (offloading makes them wrong in captures
taken on the sender).

Bounds: out-of-order data 1 MiB per connection and 64 MiB in all; 65 536
tracked connections (the least recently active one is evicted); pending IP
fragments 16 MiB. Memory otherwise grows with the number of sources, which
is what the report lists.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import gzip
import heapq
import os
import re
import socket
import struct
import time
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from io import BufferedReader
from pathlib import Path
from typing import IO, Any, Final, cast

import dpkt  # type: ignore[import-untyped]
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .policy import Policy
from .sip import PING, Peek, SipError, StreamFramer
from .values import Peer, Verdict

__all__ = ["ReplayError", "ReplayReport", "ReplayTotals", "SourceStats", "replay"]

VERDICT_KINDS: Final = ("forward", "allow", "drop", "reject", "ban", "deceive")

MAX_OUT_OF_ORDER: Final = 1 << 20  # bytes waiting for a hole to fill, per connection
MAX_OUT_OF_ORDER_TOTAL: Final = 64 << 20  # ... and over all connections
MAX_CONNECTIONS: Final = 65_536
MAX_FRAGMENT_BYTES: Final = 16 << 20  # pending IP fragments, in all
MAX_FRAGMENTS: Final = 128  # per datagram: 64 KiB over a 1280-byte MTU needs 52
FRAGMENT_TIMEOUT: Final = 30.0  # seconds of capture time (Linux's ipfrag_time)
MAX_RESYNC_LINE: Final = 8192  # longest start line looked for after a loss
MAX_METHODS: Final = 32  # distinct methods kept per source; the rest is "(other)"

# tcpdump.org link types (what files carry, unlike the platform DLT_ values)
LINKTYPE_NULL: Final = 0
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW: Final = 101
LINKTYPE_LOOP: Final = 108
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
LINKTYPE_LINUX_SLL2: Final = 276

_PCAPNG_MAGIC: Final = b"\x0a\x0d\x0d\x0a"
_PCAP_MAGICS: Final = frozenset(
    struct.pack(order + "I", magic)
    for order in "<>"
    for magic in (0xA1B2C3D4, 0xA1B23C4D, 0xA1B2CD34)  # micro, nano, Kuznetzov's
)
_GZIP_MAGIC: Final = b"\x1f\x8b"
_ETH_IP: Final = frozenset((dpkt.ethernet.ETH_TYPE_IP, dpkt.ethernet.ETH_TYPE_IP6))
_SEQ_MASK: Final = 0xFFFFFFFF
_PROGRESS_EVERY: Final = 0.25  # seconds between progress bar refreshes

# Where framing can restart after lost bytes: a request or status line at the
# start of a line (SIP messages on a stream are almost always sent one per
# segment, so the first byte after a hole is a good first candidate).
_START_LINE: Final = re.compile(
    rb"(?m)^(?:[A-Za-z][A-Za-z0-9.!%*_+`'~-]* [^ \r\n]+ SIP/2\.0\r\n|SIP/2\.0 [1-6][0-9][0-9] )"
)


class ReplayError(ValueError):
    """The file is not a capture replay can read (the message says why)."""


# ------------------------------------------------------------------- report


@dataclass
class ReplayTotals:
    """Counts over the whole capture."""

    packets: int = 0  # records read from the file
    messages: int = 0  # messages judged (UDP datagrams and TCP frames)
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

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["tcp_error_reasons"] = dict(self.tcp_error_reasons.most_common())
        out["first_packet"] = _iso(self.first_packet)
        out["last_packet"] = _iso(self.last_packet)
        return out


@dataclass
class SourceStats:
    """What one source address sent, and what the policy said."""

    ip: str
    messages: int = 0
    verdicts: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(VERDICT_KINDS, 0)))
    reasons: Counter[str] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    first_seen: float = 0.0
    last_seen: float = 0.0

    def record(self, ts: float, verdict: Verdict, view: Peek | None) -> None:
        if not self.messages or ts < self.first_seen:
            self.first_seen = ts
        if not self.messages or ts > self.last_seen:
            self.last_seen = ts
        self.messages += 1
        self.verdicts[verdict.kind] += 1
        if verdict.reason:  # a forward has none
            self.reasons[verdict.reason] += 1
        if view is None:
            method = "(unparsed)"
        elif view.method is None:
            method = "(response)"
        else:
            method = view.method[:32]
        # methods are the sender's words: bound how many distinct ones we keep
        if method not in self.methods and len(self.methods) >= MAX_METHODS:
            method = "(other)"
        self.methods[method] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "messages": self.messages,
            "verdicts": dict(self.verdicts),
            "reasons": dict(self.reasons.most_common()),
            "methods": dict(self.methods.most_common()),
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
        }


@dataclass
class ReplayReport:
    """The outcome of ``replay``: totals, and per source address."""

    totals: ReplayTotals = field(default_factory=ReplayTotals)
    sources: dict[str, SourceStats] = field(default_factory=dict)

    def ranked(self) -> list[SourceStats]:
        """Sources by messages, most first (ties by address, for stable output)."""
        return sorted(self.sources.values(), key=lambda s: (-s.messages, s.ip))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"totals": {...}, "sources": [...]}``."""
        return {
            "totals": self.totals.as_dict(),
            "sources": [s.as_dict() for s in self.ranked()],
        }

    def render(self, console: Console, *, limit: int = 50) -> None:
        """Print the per-source table (the ``limit`` busiest) and the totals."""
        # Text cells, never markup strings: reasons and methods come from the
        # capture, and "[...]" in them must not be read as rich markup.
        table = Table(title="Sources", title_justify="left")
        table.add_column("source")
        table.add_column("msgs", justify="right")
        for kind in VERDICT_KINDS:
            table.add_column(kind, justify="right")
        table.add_column("top reasons")
        table.add_column("methods")
        table.add_column("first seen (UTC)")
        table.add_column("last seen (UTC)")
        ranked = self.ranked()
        for src in ranked[:limit]:
            table.add_row(
                Text(src.ip),
                str(src.messages),
                *(str(src.verdicts[kind]) if src.verdicts[kind] else "" for kind in VERDICT_KINDS),
                Text(_top(src.reasons)),
                Text(_top(src.methods)),
                Text(_short_time(src.first_seen)),
                Text(_short_time(src.last_seen)),
            )
        console.print(table)
        if len(ranked) > limit:
            console.print(f"... and {len(ranked) - limit} more sources")
        totals = Table(title="Totals", title_justify="left", show_header=False)
        totals.add_column("what")
        totals.add_column("count", justify="right")
        for key, value in self.totals.as_dict().items():
            if key == "tcp_error_reasons":
                value = _top(self.totals.tcp_error_reasons, 5)
            if value not in (0, False, None, ""):
                totals.add_row(key, Text(str(value)))
        console.print(totals)


def _iso(ts: float | None) -> str | None:
    """ISO 8601 UTC; None for no time or one a corrupt capture made up."""
    if ts is None:
        return None
    try:
        when = datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _short_time(ts: float) -> str:
    text = _iso(ts)
    return "" if text is None else text[:19].replace("T", " ")


def _top(counts: Counter[str], n: int = 3) -> str:
    items = counts.most_common(n)
    more = len(counts) - len(items)
    return ", ".join(f"{k} x{v}" for k, v in items) + (f", +{more}" if more > 0 else "")


# ------------------------------------------------------------------ entry


def replay(
    path: Path, policy: Policy, *, ports: Collection[int] = (5060,), progress: bool = False
) -> ReplayReport:
    """Judge every SIP message sent to ``ports`` in the capture at ``path``
    (see the module doc). Raises ReplayError for a file that is not a
    capture or has an unsupported link type, OSError when it cannot be read."""
    engine = _Replayer(policy, frozenset(ports))
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(open(path, "rb"))
        packets, linktype = _open_capture(raw, stack)
        decode = _LINK_DECODERS.get(linktype)
        if decode is None:
            raise ReplayError(
                f"{path}: link type {linktype} is not supported (Ethernet, Linux cooked "
                "SLL/SLL2, NULL/loopback and raw IP are)"
            )
        engine.decode_link = decode
        if progress:
            tick = stack.enter_context(_progress_bar(raw, path))
            engine.run(packets, tick)
        else:
            engine.run(packets, None)
    return engine.report


def _open_capture(raw: BufferedReader, stack: contextlib.ExitStack) -> tuple[Iterator[Any], int]:
    """The packet iterator and link type of a pcap or pcapng file, told
    apart by their magic (gzip is undone first)."""
    # peek, not seek: the capture may be a pipe
    name = getattr(raw, "name", "capture")
    stream: IO[bytes] = raw
    magic = raw.peek(4)[:4]
    if magic[:2] == _GZIP_MAGIC:
        unzipped = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        try:
            magic = unzipped.peek(4)[:4]
        except (OSError, EOFError, zlib.error) as exc:
            raise ReplayError(f"{name}: bad gzip data: {exc}") from None
        stream = cast(IO[bytes], unzipped)
    if magic == _PCAPNG_MAGIC:
        open_reader: Callable[[IO[bytes]], Any] = dpkt.pcapng.Reader
    elif magic in _PCAP_MAGICS:
        open_reader = dpkt.pcap.Reader
    else:
        raise ReplayError(f"{name}: not a pcap or pcapng file")
    try:
        reader = open_reader(stream)
    except (ValueError, dpkt.UnpackError, struct.error, EOFError) as exc:
        raise ReplayError(f"{name}: unreadable capture header: {exc}") from None
    return iter(reader), int(reader.datalink())


@contextlib.contextmanager
def _progress_bar(raw: BufferedReader, path: Path) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr driven by the position in the file (the
    compressed file for .gz), refreshed by hand so a long capture pays for
    a redraw a few times a second, not per packet."""
    from rich.markup import escape
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    seekable = raw.seekable()  # a pipe has no position, nor size: the bar only pulses
    size: int | None = os.fstat(raw.fileno()).st_size if seekable else None
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        auto_refresh=False,
        transient=True,
    )
    task = bar.add_task(escape(Path(path).name), total=size or None)

    def tick() -> None:
        if seekable:
            bar.update(task, completed=raw.tell())
        bar.refresh()

    with bar:
        yield tick
        tick()


# ----------------------------------------------------------- link layers


def _raw_ip(buf: bytes) -> Any:
    """An IPv4 or IPv6 packet, told apart by the version nibble."""
    version = buf[0] >> 4
    if version == 4:
        return dpkt.ip.IP(buf)
    if version == 6:
        return dpkt.ip6.IP6(buf)
    raise dpkt.UnpackError(f"IP version {version}")


def _null(buf: bytes) -> Any:
    # The 4-byte address family is in the capturing host's byte order and
    # AF_INET6 differs by OS (10, 24, 28, 30): the version nibble does not.
    return _raw_ip(buf[4:])


def _ethernet(buf: bytes) -> Any:
    return _ip_or_other(dpkt.ethernet.Ethernet(buf), "type")


def _sll(buf: bytes) -> Any:
    return _ip_or_other(dpkt.sll.SLL(buf), "ethtype")


def _sll2(buf: bytes) -> Any:
    return _ip_or_other(dpkt.sll2.SLL2(buf), "ethtype")


def _ip_or_other(frame: Any, type_field: str) -> Any:
    """The IP packet in a frame; None for another protocol (ARP...). dpkt
    swallows the errors of the inner layers, so an IP ethertype with
    undecoded data is an undecodable packet, not another protocol."""
    net = frame.data
    if isinstance(net, dpkt.ip.IP | dpkt.ip6.IP6):
        return net
    tags = getattr(frame, "vlan_tags", None)
    ethertype = tags[-1].type if tags else getattr(frame, type_field)
    if ethertype in _ETH_IP:
        raise dpkt.UnpackError("bad IP packet")
    return None


_LINK_DECODERS: Final[dict[int, Callable[[bytes], Any]]] = {
    LINKTYPE_NULL: _null,
    LINKTYPE_LOOP: _null,
    LINKTYPE_ETHERNET: _ethernet,
    LINKTYPE_LINUX_SLL: _sll,
    LINKTYPE_LINUX_SLL2: _sll2,
    LINKTYPE_RAW: _raw_ip,
    LINKTYPE_IPV4: _raw_ip,
    LINKTYPE_IPV6: _raw_ip,
}


@lru_cache(maxsize=65_536)
def _host(packed: bytes) -> str:
    """An address as flows name it (the edge uses inet_ntop too)."""
    return socket.inet_ntop(socket.AF_INET6 if len(packed) == 16 else socket.AF_INET, packed)


class _Skip(Exception):
    """A packet already counted (a fragment kept for reassembly)."""


# ---------------------------------------------------------------- engine


class _Replayer:
    def __init__(self, policy: Policy, ports: frozenset[int]) -> None:
        self.policy = policy
        self.ports = ports
        self.report = ReplayReport()
        self.totals = self.report.totals
        self.decode_link: Callable[[bytes], Any] = _raw_ip
        self.fragments = _Defrag(self.totals)
        self.streams: dict[tuple[bytes, int, bytes, int], _Stream] = {}
        self.out_of_order = 0  # bytes buffered over all streams
        self.next_conn = 0

    def run(self, packets: Iterator[Any], tick: Callable[[], None] | None) -> None:
        totals = self.totals
        next_tick = time.monotonic() + _PROGRESS_EVERY
        while True:
            try:
                ts, buf = next(packets)
            except StopIteration:
                break
            except (
                dpkt.UnpackError,
                ValueError,
                struct.error,
                EOFError,
                gzip.BadGzipFile,
                zlib.error,
            ):
                # the file ends inside a record: still being written, or cut
                totals.truncated_file = True
                break
            ts = float(ts)  # nanosecond pcaps give a Decimal
            totals.packets += 1
            if totals.first_packet is None or ts < totals.first_packet:
                totals.first_packet = ts
            if totals.last_packet is None or ts > totals.last_packet:
                totals.last_packet = ts
            self.packet(ts, buf)
            if tick is not None and not totals.packets & 255:
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + _PROGRESS_EVERY
                    tick()
        self.finish()

    def packet(self, ts: float, buf: bytes) -> None:
        try:
            decoded = self._decode(ts, buf)
        except _Skip:
            return
        except Exception:  # dpkt raises many kinds on hostile bytes; none may stop us
            self.totals.undecodable += 1
            return
        if decoded is None:
            self.totals.other += 1
            return
        src, dst, segment = decoded
        if isinstance(segment, tuple):
            self._datagram(ts, src, segment)
        else:
            self._segment(ts, src, dst, segment)

    def _decode(self, ts: float, buf: bytes) -> tuple[bytes, bytes, Any] | None:
        """(source, destination, UDP (sport, dport, payload) or TCP segment)
        of a packet to a judged port; None for anything else; raises when
        undecodable, _Skip for a fragment kept for later."""
        net = self.decode_link(buf)
        if net is None:
            return None
        if isinstance(net, dpkt.ip.IP):
            proto, inner = net.p, net.data
            header = net.hl * 4
            if net.len and net.len > header + len(inner):
                raise dpkt.UnpackError("cut short (snap length)")
            if net.mf or net.offset:
                key = (net.src, net.dst, net.id, proto)
                inner = self._fragment(ts, key, net.offset * 8, bool(net.mf), inner)
        else:
            proto, inner = net.p, net.data
            exts = net.all_extension_headers
            if net.plen and net.plen > sum(e.length for e in exts) + len(inner):
                raise dpkt.UnpackError("cut short (snap length)")
            frag = net.extension_hdrs.get(dpkt.ip.IP_PROTO_FRAGMENT)
            if frag is not None:
                proto = frag.nxt
                key6 = (net.src, net.dst, frag.id)
                inner = self._fragment(ts, key6, frag.frag_off * 8, bool(frag.m_flag), inner)
        if proto == dpkt.ip.IP_PROTO_UDP:
            udp = dpkt.udp.UDP(inner) if isinstance(inner, bytes) else inner
            if not isinstance(udp, dpkt.udp.UDP):
                return None
            if udp.dport not in self.ports:
                return None
            size = udp.ulen - 8
            if size < 0 or size > len(udp.data):
                raise dpkt.UnpackError("bad UDP length")
            return net.src, net.dst, (udp.sport, udp.dport, bytes(udp.data[:size]))
        if proto == dpkt.ip.IP_PROTO_TCP:
            tcp = dpkt.tcp.TCP(inner) if isinstance(inner, bytes) else inner
            if not isinstance(tcp, dpkt.tcp.TCP):
                return None
            if len(tcp.opts) != tcp.off * 4 - 20:
                raise dpkt.UnpackError("TCP header cut short")
            if tcp.dport not in self.ports:
                return None
            return net.src, net.dst, tcp
        return None

    def _fragment(
        self, ts: float, key: tuple[Any, ...], offset: int, more: bool, data: Any
    ) -> bytes:
        """The payload of the datagram this fragment completes, or _Skip."""
        self.totals.fragments += 1
        # dpkt decodes the transport header of a first fragment: undo it
        whole = self.fragments.add(key, ts, offset, more, bytes(data))
        if whole is None:
            raise _Skip
        return whole

    # -------------------------------------------------------------- UDP

    def _datagram(self, ts: float, src: bytes, dgram: Any) -> None:
        sport, dport, payload = dgram
        self.totals.udp_datagrams += 1
        self.judge(ts, payload, Peer("udp", _host(src), sport), dport)

    def judge(self, ts: float, data: bytes, source: Peer, local_port: int) -> None:
        verdict, view = self.policy.judge_bytes(data, source, local_port)
        self.totals.messages += 1
        stats = self.report.sources.get(source.host)
        if stats is None:
            stats = self.report.sources[source.host] = SourceStats(source.host)
        stats.record(ts, verdict, view)

    # -------------------------------------------------------------- TCP

    def _segment(self, ts: float, src: bytes, dst: bytes, seg: Any) -> None:
        self.totals.tcp_segments += 1
        key = (src, seg.sport, dst, seg.dport)
        flags = seg.flags
        syn = bool(flags & dpkt.tcp.TH_SYN)
        stream = self.streams.pop(key, None)  # re-inserted below: the dict stays in LRU order
        if syn and stream is not None and stream.isn != seg.seq:
            stream.end()  # the port was reused: a new connection
            stream = None
        if stream is None:
            if not syn and not seg.data:
                return  # an ACK, FIN or RST of a connection we know nothing of
            if len(self.streams) >= MAX_CONNECTIONS:
                oldest = next(iter(self.streams))
                self.streams.pop(oldest).end()
                self.totals.tcp_evicted += 1
            self.next_conn += 1
            self.totals.tcp_connections += 1
            flow = Peer("tcp", _host(src), seg.sport, self.next_conn)
            stream = _Stream(self, flow, seg.dport, seg.seq, syn=syn)
        self.streams[key] = stream
        seq = (seg.seq + 1) & _SEQ_MASK if syn else seg.seq
        if seg.data:
            stream.add(seq, bytes(seg.data), ts)
            if stream.mode is _Mode.TLS:
                self.totals.encrypted += 1
        if flags & dpkt.tcp.TH_RST:
            stream.end()
            return
        if flags & dpkt.tcp.TH_FIN and stream.fin is None:
            stream.fin = stream.position(seq) + len(seg.data)
        if stream.fin is not None and stream.next_abs >= stream.fin:
            stream.end()  # every byte up to the FIN is in

    def finish(self) -> None:
        for stream in self.streams.values():
            stream.end()
        self.fragments.finish()


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
        self, engine: _Replayer, flow: Peer, local_port: int, seq: int, *, syn: bool
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
            self.engine.totals.tcp_overflow += 1
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
        self.engine.totals.tcp_gaps += 1
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
            self.engine.totals.tcp_skipped_bytes += cut
            del line[:cut]
            return
        self.engine.totals.tcp_skipped_bytes += found.start()
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
                engine.totals.keepalives += 1
            else:
                engine.judge(ts, frame, self.flow, self.local_port)
        if framer.error is not None:
            # the edge closes the connection here: nothing after it is judged
            engine.totals.tcp_errors += 1
            engine.totals.tcp_error_reasons[framer.error.reason] += 1
            self._close()

    def end(self) -> None:
        """The connection is over (FIN reached, RST, end of capture): deliver
        what still waits, skipping holes, then stop."""
        while self.heap and self.mode is not _Mode.DONE:
            self._skip_hole()
        # (up to 3 bytes may be the CRLFs of a keep-alive, not a message)
        if self.mode is _Mode.SIP and self.framer is not None and self.framer.buffered > 3:
            self.engine.totals.tcp_incomplete += 1
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


# ------------------------------------------------------------- fragments


class _Datagram:
    __slots__ = ("parts", "size", "started", "total")

    def __init__(self, started: float) -> None:
        self.started = started
        self.parts: dict[int, bytes] = {}
        self.size = 0
        self.total: int | None = None


class _Defrag:
    """IPv4 and IPv6 reassembly. As in the kernel (and RFC 5722 for IPv6),
    overlapping fragments drop the datagram: exact duplicates are ignored."""

    def __init__(self, totals: ReplayTotals) -> None:
        self.totals = totals
        self.pending: dict[tuple[Any, ...], _Datagram] = {}  # in arrival order
        self.bytes = 0

    def add(
        self, key: tuple[Any, ...], ts: float, offset: int, more: bool, data: bytes
    ) -> bytes | None:
        self._expire(ts)
        dgram = self.pending.get(key)
        if dgram is None:
            dgram = self.pending[key] = _Datagram(ts)
        end = offset + len(data)
        for start, part in dgram.parts.items():
            if start < end and offset < start + len(part):
                if start == offset and part == data:
                    self.totals.fragments_dropped += 1
                    return None
                self._drop(key, 1)
                return None
        last = end if not more else dgram.total
        if (
            end > 65_535
            or len(dgram.parts) >= MAX_FRAGMENTS
            or (more and len(data) % 8)  # all but the last fragment carry 8-byte multiples
            or (not more and dgram.total is not None and dgram.total != end)
            or (dgram.total is not None and end > dgram.total)
            or (not more and any(s + len(p) > end for s, p in dgram.parts.items()))
        ):
            self._drop(key, 1)
            return None
        dgram.total = last
        dgram.parts[offset] = data
        dgram.size += len(data)
        self.bytes += len(data)
        if dgram.total is not None and dgram.size == dgram.total:
            # no overlaps and nothing past the end: the parts tile [0, total)
            del self.pending[key]
            self.bytes -= dgram.size
            self.totals.reassembled += 1
            return b"".join(dgram.parts[s] for s in sorted(dgram.parts))
        while self.bytes > MAX_FRAGMENT_BYTES and self.pending:
            self._drop(next(iter(self.pending)), 0)
        return None

    def _drop(self, key: tuple[Any, ...], extra: int) -> None:
        dgram = self.pending.pop(key)
        self.bytes -= dgram.size
        self.totals.fragments_dropped += len(dgram.parts) + extra

    def _expire(self, now: float) -> None:
        while self.pending:
            key, oldest = next(iter(self.pending.items()))
            if now - oldest.started <= FRAGMENT_TIMEOUT:
                break
            self._drop(key, 0)

    def finish(self) -> None:
        while self.pending:
            self._drop(next(iter(self.pending)), 0)
