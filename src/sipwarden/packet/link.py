"""Link layers: from a captured frame to the IP packet it carries.

Supported (tcpdump.org link types, which files carry, unlike the platform
DLT_ values): Ethernet, with 802.1Q and QinQ VLAN tags; Linux cooked SLL and
SLL2 (``tcpdump -i any``); BSD NULL/LOOP; raw IPv4/IPv6 (also what NFQUEUE
hands over). Anything else carried (ARP...) is not IP: the decoder returns
None.

Bounds: a decoder looks at one frame and keeps nothing.

Plan: one decoder per link type, all returning dpkt's IPv4 or IPv6 packet
(or None for another protocol), raising for a frame that cannot be decoded.
dpkt swallows the errors of the inner layers, so a frame whose type says IP
but whose IP did not decode is raised as broken, not taken for another
protocol. Raw IP and NULL are told apart by the version nibble: NULL's
4-byte address family is in the capturing host's byte order, and AF_INET6
differs by OS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import dpkt  # type: ignore[import-untyped]

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
    "LinkDecoder",
    "link_decoder",
]

LinkDecoder = Callable[[bytes], Any]  # frame -> dpkt IP or IP6 packet, or None

# tcpdump.org link types (what files carry, unlike the platform DLT_ values)
LINKTYPE_NULL: Final = 0
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW: Final = 101
LINKTYPE_LOOP: Final = 108
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
LINKTYPE_LINUX_SLL2: Final = 276

SUPPORTED_LINKS: Final = "Ethernet, Linux cooked SLL/SLL2, NULL/loopback and raw IP"

_ETH_IP: Final = frozenset((dpkt.ethernet.ETH_TYPE_IP, dpkt.ethernet.ETH_TYPE_IP6))


def link_decoder(linktype: int) -> LinkDecoder | None:
    """The decoder of a link type; None when it is not supported."""
    return _LINK_DECODERS.get(linktype)


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


_LINK_DECODERS: Final[dict[int, LinkDecoder]] = {
    LINKTYPE_NULL: _null,
    LINKTYPE_LOOP: _null,
    LINKTYPE_ETHERNET: _ethernet,
    LINKTYPE_LINUX_SLL: _sll,
    LINKTYPE_LINUX_SLL2: _sll2,
    LINKTYPE_RAW: _raw_ip,
    LINKTYPE_IPV4: _raw_ip,
    LINKTYPE_IPV6: _raw_ip,
}
