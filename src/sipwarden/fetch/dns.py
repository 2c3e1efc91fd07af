"""Host names to addresses, for ``policy.trusted_peers`` written as names.

The policy takes a resolver (``policy.Resolver``) rather than calling
DNS itself: it is sans-I/O, and a name that takes seconds to resolve must be
resolved where waiting is allowed (at start, and on the reload's thread).
"""

from __future__ import annotations

import socket


def resolve(host: str) -> list[str]:
    """Every address ``host`` has (IPv4 and IPv6), sorted; OSError when it
    does not resolve."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_UDP)
    return sorted({str(info[4][0]) for info in infos})
