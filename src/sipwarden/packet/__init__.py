"""Packets to SIP messages: capture files, link layers, IP defragmentation,
TCP reassembly. Replay reads captures with it now; host mode (NFQUEUE) will
feed it the packets it queues.

``open_capture`` reads a pcap or pcapng file as records; ``link_decoder``
picks the decoder of its link type; a ``Dissector`` is fed the records one by
one and hands out the SIP messages sent to the watched ports as ``Arrival``
values (when, the bytes, from which ``Peer``, to which port), tallying the
rest in ``PacketCounts``. Every table is bounded (captures can hold spoofed
floods): see each module's doc. Nothing here judges: the modes above do.
"""

from .arrival import Arrival, PacketCounts
from .capture import Capture, CaptureError, open_capture
from .defrag import Defragmenter
from .dissect import Dissector
from .link import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    SUPPORTED_LINKS,
    LinkDecoder,
    link_decoder,
)
from .tcp import TcpReassembler, TcpSegment

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "SUPPORTED_LINKS",
    "Arrival",
    "Capture",
    "CaptureError",
    "Defragmenter",
    "Dissector",
    "LinkDecoder",
    "PacketCounts",
    "TcpReassembler",
    "TcpSegment",
    "link_decoder",
    "open_capture",
]
