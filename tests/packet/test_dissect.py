"""The packet layer on its own: packets in, SIP messages out as values,
with no policy anywhere (replay's tests in tests/offline cover the cases)."""

from __future__ import annotations

import socket
import subprocess
import sys

import dpkt

from sipwarden.packet import (
    LINKTYPE_RAW,
    Arrival,
    Dissector,
    PacketCounts,
    TcpReassembler,
    TcpSegment,
    link_decoder,
)
from sipwarden.values import Peer

from ..conftest import SCANNERS

OPTIONS = (SCANNERS / "nmap_SIPOptions_tcp_probe.sip").read_bytes()


def ip(l4: dpkt.Packet, proto: int, src: str = "203.0.113.5") -> bytes:
    return bytes(
        dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton("192.0.2.10"), p=proto, data=l4)
    )


def test_raw_ip_packets_give_arrivals():
    decode = link_decoder(LINKTYPE_RAW)
    assert decode is not None
    counts = PacketCounts()
    dissector = Dissector(decode, [5060], counts)
    datagram = dpkt.udp.UDP(sport=5070, dport=5060, ulen=8 + len(OPTIONS), data=OPTIONS)
    assert dissector.feed(1.0, ip(datagram, dpkt.ip.IP_PROTO_UDP)) == [
        Arrival(1.0, OPTIONS, Peer("udp", "203.0.113.5", 5070), 5060)
    ]
    syn = dpkt.tcp.TCP(sport=40000, dport=5060, seq=9, flags=dpkt.tcp.TH_SYN)
    half = len(OPTIONS) // 2
    ack = dpkt.tcp.TH_ACK  # (dpkt's default is a SYN)
    first = dpkt.tcp.TCP(sport=40000, dport=5060, seq=10, flags=ack, data=OPTIONS[:half])
    second = dpkt.tcp.TCP(sport=40000, dport=5060, seq=10 + half, flags=ack, data=OPTIONS[half:])
    assert dissector.feed(2.0, ip(syn, dpkt.ip.IP_PROTO_TCP)) == []
    assert dissector.feed(3.0, ip(second, dpkt.ip.IP_PROTO_TCP)) == []  # out of order
    assert dissector.feed(4.0, ip(first, dpkt.ip.IP_PROTO_TCP)) == [
        Arrival(3.0, OPTIONS, Peer("tcp", "203.0.113.5", 40000, 1), 5060)
    ]
    assert dissector.feed(5.0, b"\x45junk") == []
    assert dissector.finish() == []
    assert (counts.packets, counts.messages, counts.undecodable) == (5, 2, 1)
    assert (counts.first_packet, counts.last_packet) == (1.0, 5.0)


def test_tcp_reassembler_takes_segment_values():
    counts = PacketCounts()
    tcp = TcpReassembler(counts)
    source = ("198.51.100.8", 40000, "192.0.2.10", 5060)

    def seg(seq: int, data: bytes, *, syn: bool = False, fin: bool = False) -> TcpSegment:
        return TcpSegment(0.0, *source, seq, syn, fin, False, data)

    assert tcp.add(seg(0, b"", syn=True)) == []
    assert tcp.add(seg(1, OPTIONS + b"\r\n\r\n" + OPTIONS[:10])) == [
        Arrival(0.0, OPTIONS, Peer("tcp", "198.51.100.8", 40000, 1), 5060)
    ]
    assert tcp.add(seg(1 + len(OPTIONS) + 14, b"", fin=True)) == []
    assert (counts.keepalives, counts.tcp_incomplete) == (1, 1)


def test_the_packet_layer_imports_no_policy():
    code = (
        "import sys, sipwarden.packet\n"
        "above = [m for m in sys.modules if m.split('.')[1:2] in (['policy'], ['offline'])]\n"
        "assert not above, above\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
