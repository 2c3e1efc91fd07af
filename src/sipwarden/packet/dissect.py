"""From packets to the SIP messages in them: link layer, IP (fragments
reassembled), then UDP datagrams and TCP streams to the watched ports.

Supported: what ``link`` decodes; IPv4 and IPv6, fragments of both (see
``defrag``); UDP: one datagram is one message, handed out as it is (empty
and keep-alive datagrams too: the edge judges those); TCP: see ``tcp``.
Only packets *to* a watched port count: the client-to-edge direction. Not
supported: SCTP, WebSocket, TLS (see ``tcp``). Checksums are not verified
(offloading makes them wrong in captures taken on the sender).

Bounds: those of ``defrag`` and ``tcp``, and 65,536 address spellings
cached. A packet that does not decode (broken, cut by the snap length) is
counted as ``undecodable``, never raised: captures hold hostile bytes.

Plan: ``feed(ts, frame)`` per packet, in capture order, returns the
messages that packet completes (a datagram, or the frames a segment lets
the stream framer finish); ``finish()`` at the end returns what the ended
connections still held. Everything else the packets held is tallied in
the ``PacketCounts`` given. dpkt decodes the headers; its objects stay
inside this module, what leaves it are values (``Arrival``, ``TcpSegment``).
"""

from __future__ import annotations

import socket
from collections.abc import Collection
from functools import lru_cache
from typing import Any

import dpkt  # type: ignore[import-untyped]

from ..values import Peer
from .arrival import Arrival, PacketCounts
from .defrag import Defragmenter
from .link import LinkDecoder
from .tcp import TcpReassembler, TcpSegment

__all__ = ["Dissector"]


class Dissector:
    """The packets of one capture (or one queue), in order: see the module doc."""

    def __init__(
        self, decode_link: LinkDecoder, ports: Collection[int], counts: PacketCounts
    ) -> None:
        self.decode_link = decode_link
        self.ports = frozenset(ports)
        self.counts = counts
        self.fragments = Defragmenter(counts)
        self.tcp = TcpReassembler(counts)

    def feed(self, ts: float, buf: bytes) -> list[Arrival]:
        """The messages this packet (a link-layer frame) completes."""
        counts = self.counts
        counts.packets += 1
        if counts.first_packet is None or ts < counts.first_packet:
            counts.first_packet = ts
        if counts.last_packet is None or ts > counts.last_packet:
            counts.last_packet = ts
        try:
            decoded = self._decode(ts, buf)
        except _Skip:
            return []
        except Exception:  # dpkt raises many kinds on hostile bytes; none may stop us
            counts.undecodable += 1
            return []
        if decoded is None:
            counts.other += 1
            return []
        if isinstance(decoded, Arrival):
            counts.udp_datagrams += 1
            arrivals = [decoded]
        else:
            arrivals = self.tcp.add(decoded)
        counts.messages += len(arrivals)
        return arrivals

    def finish(self) -> list[Arrival]:
        """The end of the packets: what the connections still held."""
        arrivals = self.tcp.finish()
        self.fragments.finish()
        self.counts.messages += len(arrivals)
        return arrivals

    def _decode(self, ts: float, buf: bytes) -> Arrival | TcpSegment | None:
        """The UDP datagram or TCP segment of a packet to a watched port;
        None for anything else; raises when undecodable, _Skip for a
        fragment kept for later."""
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
            source = Peer("udp", _host(net.src), udp.sport)
            return Arrival(ts, bytes(udp.data[:size]), source, udp.dport)
        if proto == dpkt.ip.IP_PROTO_TCP:
            tcp = dpkt.tcp.TCP(inner) if isinstance(inner, bytes) else inner
            if not isinstance(tcp, dpkt.tcp.TCP):
                return None
            if len(tcp.opts) != tcp.off * 4 - 20:
                raise dpkt.UnpackError("TCP header cut short")
            if tcp.dport not in self.ports:
                return None
            flags = tcp.flags
            return TcpSegment(
                ts,
                _host(net.src),
                tcp.sport,
                _host(net.dst),
                tcp.dport,
                tcp.seq,
                syn=bool(flags & dpkt.tcp.TH_SYN),
                fin=bool(flags & dpkt.tcp.TH_FIN),
                rst=bool(flags & dpkt.tcp.TH_RST),
                data=bytes(tcp.data),
            )
        return None

    def _fragment(
        self, ts: float, key: tuple[Any, ...], offset: int, more: bool, data: Any
    ) -> bytes:
        """The payload of the datagram this fragment completes, or _Skip."""
        self.counts.fragments += 1
        # dpkt decodes the transport header of a first fragment: undo it
        whole = self.fragments.add(key, ts, offset, more, bytes(data))
        if whole is None:
            raise _Skip
        return whole


@lru_cache(maxsize=65_536)
def _host(packed: bytes) -> str:
    """An address as flows name it (the edge uses inet_ntop too)."""
    return socket.inet_ntop(socket.AF_INET6 if len(packed) == 16 else socket.AF_INET, packed)


class _Skip(Exception):
    """A packet already counted (a fragment kept for reassembly)."""
