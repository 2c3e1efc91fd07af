"""The edge's UDP listeners: an IPv6 wildcard takes IPv6 only.

On a dual-stack socket IPv4 sources arrive as ``::ffff:a.b.c.d``: the ban
book, the limiter's bans and the kernel's IPv4 sets would not know them by
that name. So ``udp:[::]`` is IPv6 only, as asyncio makes ``tcp:[::]``, and
an operator lists ``udp:0.0.0.0`` beside it (the edge says so at start)."""

from __future__ import annotations

import socket

from sipwarden.config import parse_endpoint
from sipwarden.edge.server import _ipv6_only_hints, _udp_socket

from .netns import in_namespace, namespace


def test_an_ipv6_wildcard_leaves_ipv4_to_a_listener_of_its_own() -> None:
    def scenario() -> tuple[bytes, str, bool]:
        v6 = _udp_socket("::", 0)
        port = v6.getsockname()[1]
        v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            v4.bind(("0.0.0.0", port))  # EADDRINUSE if the IPv6 socket took IPv4 too
            sender.sendto(b"REGISTER", ("127.0.0.1", port))
            v4.settimeout(2)
            data, (host, _) = v4.recvfrom(100)
            try:
                v6.recv(100)
                v6_got_it = True
            except BlockingIOError:
                v6_got_it = False
            return data, host, v6_got_it
        finally:
            for sock in (v6, v4, sender):
                sock.close()

    with namespace() as ns:  # binds wildcards: in a namespace of the test's own
        data, host, v6_got_it = in_namespace(ns.name, scenario)
    assert (data, host, v6_got_it) == (b"REGISTER", "127.0.0.1", False)


def test_the_edge_says_when_ipv4_has_no_listener() -> None:
    listen = [parse_endpoint(e) for e in ("udp:[::]:5060", "udp:0.0.0.0:5060", "tcp:[::]:5060")]
    assert _ipv6_only_hints(listen) == [
        "tcp:[::]:5060 takes IPv6 only; add tcp:0.0.0.0:5060 to serve IPv4 too"
    ]
    assert _ipv6_only_hints([parse_endpoint("udp:[::1]:5060")]) == []
