"""The IP packets NFQUEUE hands us: read them, and rewrite a UDP payload.

A queued packet starts at its IP header (IPv4 or IPv6). ``decode`` reads
what host mode needs: the addresses, the transport, the ports, TCP's
sequence number and flags, and the payload; anything else (an IPv6
extension header, another protocol, a packet cut short) is None and is
accepted unread: the rules queue only UDP and TCP to the PBX's ports.
The kernel queues whole datagrams at the input hook (fragments are
reassembled before it) and unfragmented ones at the output hook.

``with_udp_payload`` builds the same packet around a new UDP payload, its
lengths and checksums recomputed (the kernel takes a mangled packet as it
is: nfqnl_mangle leaves no checksum to the hardware). Bounds: one pass over
the packet; no state.
"""

from __future__ import annotations

import socket
import struct
from functools import lru_cache
from typing import Final, NamedTuple

UDP: Final = 17
TCP: Final = 6
TH_FIN: Final = 0x01
TH_SYN: Final = 0x02
TH_RST: Final = 0x04
_V4: Final = struct.Struct("!BBHHHBBH4s4s")
_PORTS: Final = struct.Struct("!HH")


class Decoded(NamedTuple):
    """One packet as host mode reads it."""

    src: str  # compressed, as ``Peer`` names an address
    dst: str
    proto: int  # UDP or TCP
    sport: int
    dport: int
    payload: bytes
    header: int  # bytes of the IP header (the transport's starts here)
    seq: int = 0  # TCP
    flags: int = 0  # TCP


@lru_cache(maxsize=65_536)
def _host(packed: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(packed) == 16 else socket.AF_INET, packed)


def decode(packet: bytes) -> Decoded | None:
    """The packet's addresses, ports and payload; None if host mode does not read it."""
    if len(packet) < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        header = (packet[0] & 0x0F) * 4
        total = struct.unpack_from("!H", packet, 2)[0]
        proto = packet[9]
        src, dst = packet[12:16], packet[16:20]
        end = min(total, len(packet))
    elif version == 6 and len(packet) >= 40:
        header = 40
        proto = packet[6]  # an extension header first: not read (accepted)
        src, dst = packet[8:24], packet[24:40]
        end = min(40 + struct.unpack_from("!H", packet, 4)[0], len(packet))
    else:
        return None
    if proto == UDP and end >= header + 8:
        sport, dport = _PORTS.unpack_from(packet, header)
        return Decoded(_host(src), _host(dst), UDP, sport, dport, packet[header + 8 : end], header)
    if proto == TCP and end >= header + 20:
        sport, dport, seq = struct.unpack_from("!HHI", packet, header)
        offset = (packet[header + 12] >> 4) * 4
        flags = packet[header + 13]
        if offset < 20 or header + offset > end:
            return None
        return Decoded(
            _host(src),
            _host(dst),
            TCP,
            sport,
            dport,
            packet[header + offset : end],
            header,
            seq,
            flags,
        )
    return None


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def with_udp_payload(packet: bytes, decoded: Decoded, payload: bytes) -> bytes:
    """``packet`` (UDP) carrying ``payload`` instead, lengths and checksums anew."""
    header = decoded.header
    udp_len = 8 + len(payload)
    ip = bytearray(packet[:header])
    if packet[0] >> 4 == 4:
        struct.pack_into("!H", ip, 2, header + udp_len)
        struct.pack_into("!H", ip, 10, 0)
        struct.pack_into("!H", ip, 10, _checksum(bytes(ip)))
        pseudo = ip[12:20] + struct.pack("!BBH", 0, UDP, udp_len)
    else:
        struct.pack_into("!H", ip, 4, udp_len)
        pseudo = ip[8:40] + struct.pack("!IxxxB", udp_len, UDP)
    udp = bytearray(struct.pack("!HHHH", decoded.sport, decoded.dport, udp_len, 0) + payload)
    check = _checksum(bytes(pseudo) + bytes(udp)) or 0xFFFF  # 0 means "none" in UDP
    struct.pack_into("!H", udp, 6, check)
    return bytes(ip) + bytes(udp)
