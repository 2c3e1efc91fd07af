"""Tell systemd how the daemon is: the sd_notify protocol, by hand.

Under ``Type=notify`` systemd waits for ``READY=1`` before ``systemctl
start`` returns; ``STOPPING=1`` and ``RELOADING=1`` (then ``READY=1``)
say a stop or a reload has begun. The protocol is one datagram of
``KEY=value`` lines to the Unix socket named by ``$NOTIFY_SOCKET`` (a path,
or ``@name`` for the abstract namespace): a few lines, so no dependency.

Bounds: one non-blocking datagram per call; without ``$NOTIFY_SOCKET`` (not
started by systemd) nothing is sent, and a socket that cannot be reached is
logged once at debug level, never an error: readiness is a courtesy to the
service manager, not a reason to stop serving.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("sipwarden")


def notify(*states: str) -> bool:
    """Send ``states`` (``"READY=1"``, ``"STATUS=..."``) to ``$NOTIFY_SOCKET``;
    whether a datagram went out."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or not states:
        return False
    if address.startswith("@"):  # the abstract namespace: a leading NUL byte
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.debug("NOTIFY_SOCKET=%r is not a path: not notifying systemd", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto("\n".join(states).encode(), address)
    except OSError as exc:
        log.debug("could not notify systemd at %r: %s", address, exc)
        return False
    return True
