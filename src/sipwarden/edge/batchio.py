"""A UDP socket's datagrams read and sent in batches (the edge's UDP I/O).

``receive(sock, limit, size)`` reads at most ``limit`` datagrams waiting on
a non-blocking UDP socket and returns ``(datagrams, truncated, error)``:
the datagrams as ``(data, host, port)``, the host as the flows name it
(IPv6 compressed, without a %scope); ``truncated``, how many were longer
than ``size`` bytes (dropped, counted by the caller); ``error``, the errno
of a failed read other than EAGAIN (0: none; the read stops there, as
libuv's does). ``send(sock, datagrams)`` sends a list of
``(data, host, port)`` in order and returns the refused ones as
``(index, errno)``: one refused datagram (a full queue, no route) does not
lose the others.

Why: one system call per batch rather than per datagram, and one event
loop callback per wake-up rather than per datagram (``recvmmsg`` and
``sendmmsg`` in ``_batchio.c``). The C twin is used when it was built and
``SIPWARDEN_PURE_PYTHON`` is not set; the Python twin (``recvmsg`` until
EAGAIN, ``sendto`` per datagram) gives the same results, only slower
(tests/edge/test_batchio.py compares them). Bounds: ``limit`` at most
``RECV_MAX``; ``size`` 64 KiB holds any UDP datagram, so nothing is
truncated in practice (the edge judges an oversized message whole, as it
did when uvloop read it into its 250 KB buffer).
"""

from __future__ import annotations

import os
import socket
from types import ModuleType

BATCH = 64  # datagrams a wake-up: one busy socket cannot starve the loop's other work
DATAGRAM = 65_536  # bytes a datagram may have: more than UDP carries (65,507 / 65,527)
RECV_MAX = 1024

Datagram = tuple[bytes, str, int]

BATCHIO: ModuleType | None = None
if os.environ.get("SIPWARDEN_PURE_PYTHON", "") in ("", "0"):
    try:
        from . import _batchio as BATCHIO  # type: ignore[attr-defined,no-redef]
    except ImportError:  # pragma: no cover - depends on the build
        BATCHIO = None


def receive_python(sock: socket.socket, limit: int, size: int) -> tuple[list[Datagram], int, int]:
    """The pure-Python twin of ``receive``."""
    if not 1 <= limit <= RECV_MAX or not 1 <= size <= 1 << 20:
        raise ValueError(f"limit must be 1..{RECV_MAX} and size 1..1048576")
    out: list[Datagram] = []
    truncated = 0
    recvmsg = sock.recvmsg
    for _ in range(limit):
        try:
            data, _, flags, addr = recvmsg(size)
        except BlockingIOError:
            break
        except OSError as exc:
            return out, truncated, exc.errno or 0
        if flags & socket.MSG_TRUNC:
            truncated += 1
            continue
        host = addr[0]
        if "%" in host:  # a link-local source's scope: the flows name the address alone
            host = host.split("%", 1)[0]
        out.append((data, host, addr[1]))
    return out, truncated, 0


def send_python(sock: socket.socket, datagrams: list[Datagram]) -> list[tuple[int, int]]:
    """The pure-Python twin of ``send``."""
    failures: list[tuple[int, int]] = []
    sendto = sock.sendto
    for index, (data, host, port) in enumerate(datagrams):
        try:
            sendto(data, (host, port))
        except OSError as exc:
            failures.append((index, exc.errno or 0))
    return failures


def receive_c(sock: socket.socket, limit: int, size: int) -> tuple[list[Datagram], int, int]:
    """``receive`` by one ``recvmmsg`` (``_batchio.recv``)."""
    assert BATCHIO is not None
    result: tuple[list[Datagram], int, int] = BATCHIO.recv(sock.fileno(), limit, size)
    return result


def send_c(sock: socket.socket, datagrams: list[Datagram]) -> list[tuple[int, int]]:
    """``send`` by ``sendmmsg`` (``_batchio.send``)."""
    assert BATCHIO is not None
    failures: list[tuple[int, int]] = BATCHIO.send(sock.fileno(), datagrams)
    return failures


receive = receive_python if BATCHIO is None else receive_c
send = send_python if BATCHIO is None else send_c
