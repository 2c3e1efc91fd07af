"""NFQUEUE over netlink: packets the kernel queued to us, and our verdicts.

The nfnetlink_queue protocol (linux/netfilter/nfnetlink_queue.h) spoken
directly on a non-blocking ``AF_NETLINK`` socket, which the asyncio loop
watches (``loop.add_reader``): no thread, no handoff, no C library.
Why not a binding: ``netfilterqueue`` needs Debian's libnetfilter-queue-dev
and a compiler, and cannot set ``NFQA_CFG_F_FAIL_OPEN`` (a full queue then
drops, whatever ``fail`` says); ``fnfqueue`` reads on a thread of its own
and hands packets out through a blocking iterator. The protocol is small
and stable (Linux 2.6.14 on), and this module is all of it we use: bind a
queue, copy whole packets, the queue's length and its fail-open flag,
receive packets, send verdicts (with a mark, or a new payload).

Bounds: one ``recv_into`` of at most ``BUFFER`` bytes a call; ``read``
takes at most ``max_packets`` packets a call, so one readable event never
holds the loop for long; the verdicts of one call go to the kernel in one
``send``. The kernel holds at most ``queue_length`` packets for us; past
that it drops them, or accepts them with ``fail_open``.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from typing import Final, NamedTuple

NETLINK_NETFILTER: Final = 12
SOL_NETLINK: Final = 270
NETLINK_NO_ENOBUFS: Final = 5
NFNL_SUBSYS_QUEUE: Final = 3
NFQNL_MSG_PACKET: Final = 0
NFQNL_MSG_VERDICT: Final = 1
NFQNL_MSG_CONFIG: Final = 2
NLMSG_ERROR: Final = 2
NLM_F_REQUEST: Final = 1
NLM_F_ACK: Final = 4
# config attributes and commands
NFQA_CFG_CMD: Final = 1
NFQA_CFG_PARAMS: Final = 2
NFQA_CFG_QUEUE_MAXLEN: Final = 3
NFQA_CFG_MASK: Final = 4
NFQA_CFG_FLAGS: Final = 5
NFQNL_CFG_CMD_BIND: Final = 1
NFQNL_CFG_CMD_UNBIND: Final = 2
NFQNL_COPY_PACKET: Final = 2
NFQA_CFG_F_FAIL_OPEN: Final = 1
# packet and verdict attributes
NFQA_PACKET_HDR: Final = 1
NFQA_VERDICT_HDR: Final = 2
NFQA_MARK: Final = 3
NFQA_PAYLOAD: Final = 10
# verdicts (linux/netfilter.h)
NF_DROP: Final = 0
NF_ACCEPT: Final = 1
NF_REPEAT: Final = 4

BUFFER: Final = 1 << 17  # one netlink datagram: a 64 KiB packet and its attributes fit
RCVBUF: Final = 8 << 20  # the socket's receive buffer (the kernel doubles it)
_NLMSG: Final = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_NFGEN: Final = struct.Struct("!BBH")  # family, version, queue number (big-endian)
_NLA: Final = struct.Struct("=HH")  # attribute length, type


class QueueError(OSError):
    """The queue cannot be bound or configured (not root, taken by another process)."""


class Packet(NamedTuple):
    """One queued packet: its id (for the verdict), the hook it was queued
    at, and the packet from its IP header on."""

    id: int
    hook: int
    data: bytes


def attribute(kind: int, value: bytes) -> bytes:
    size = _NLA.size + len(value)
    return _NLA.pack(size, kind) + value + b"\0" * (-size % 4)


class Queue:
    """One bound queue on its own netlink socket (see the module doc)."""

    def __init__(self, number: int, *, length: int = 4096, fail_open: bool = True) -> None:
        self.number = number
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self._seq = 0
        self._buf = bytearray(BUFFER)
        self._out: list[bytes] = []  # verdicts waiting for flush()
        try:
            self._sock.bind((0, 0))
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            # a full socket buffer is counted by the kernel, not an error for us
            self._sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
            self._config(attribute(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)))
            self._config(
                attribute(NFQA_CFG_PARAMS, struct.pack("!IB", 0xFFFF, NFQNL_COPY_PACKET)),
                attribute(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", length)),
                attribute(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN)),
                attribute(
                    NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN if fail_open else 0)
                ),
            )
        except OSError:
            self._sock.close()
            raise
        self._sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        """Unbind (the kernel then applies the rules' bypass, or drops) and close."""
        if self._sock.fileno() < 0:
            return
        try:
            self._sock.setblocking(True)
            self._sock.settimeout(2.0)
            self._config(attribute(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND, 0)))
        except OSError:
            pass  # closing the socket unbinds it as well
        finally:
            self._sock.close()

    # ------------------------------------------------------------ packets

    def read(self, max_packets: int = 256) -> list[Packet]:
        """The packets waiting, at most ``max_packets`` (none when there are none)."""
        packets: list[Packet] = []
        sock, buf = self._sock, self._buf
        while len(packets) < max_packets:
            try:
                size = sock.recv_into(buf)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    continue
                raise
            packets.extend(packets_in(memoryview(buf)[:size]))
        return packets

    def verdict(
        self, packet_id: int, verdict: int, *, mark: int | None = None, payload: bytes | None = None
    ) -> None:
        """Queue a verdict for ``flush`` (a new ``payload`` replaces the packet)."""
        attrs = attribute(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))
        if mark is not None:
            attrs += attribute(NFQA_MARK, struct.pack("!I", mark))
        if payload is not None:
            attrs += attribute(NFQA_PAYLOAD, payload)
        self._out.append(self._message(NFQNL_MSG_VERDICT, attrs, 0))

    def flush(self) -> None:
        """Send the verdicts queued since the last flush, in one write."""
        if not self._out:
            return
        data, self._out = b"".join(self._out), []
        try:
            self._sock.send(data)
        except BlockingIOError:  # the kernel's side is full: wait for it, briefly
            self._sock.setblocking(True)
            self._sock.settimeout(1.0)
            try:
                self._sock.send(data)
            finally:
                self._sock.setblocking(False)

    # ------------------------------------------------------------ config

    def _message(self, kind: int, attrs: bytes, flags: int) -> bytes:
        self._seq += 1
        body = _NFGEN.pack(socket.AF_UNSPEC, 0, self.number) + attrs
        header = _NLMSG.pack(
            _NLMSG.size + len(body),
            (NFNL_SUBSYS_QUEUE << 8) | kind,
            NLM_F_REQUEST | flags,
            self._seq,
            0,
        )
        return header + body

    def _config(self, *attrs: bytes) -> None:
        """Send one config message and wait for the kernel's acknowledgement."""
        self._sock.send(self._message(NFQNL_MSG_CONFIG, b"".join(attrs), NLM_F_ACK))
        seq = self._seq
        while True:
            data = self._sock.recv(BUFFER)
            for kind, msg_seq, payload in _messages(memoryview(data)):
                if kind == NLMSG_ERROR and msg_seq == seq:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise QueueError(code, f"NFQUEUE {self.number}: {os.strerror(code)}")
                    return


def _messages(view: memoryview) -> Iterator[tuple[int, int, memoryview]]:
    """(type, sequence, payload) of each netlink message in one datagram."""
    offset, end = 0, len(view)
    while offset + _NLMSG.size <= end:
        length, kind, _, seq, _ = _NLMSG.unpack_from(view, offset)
        if length < _NLMSG.size or offset + length > end:
            return
        yield kind, seq, view[offset + _NLMSG.size : offset + length]
        offset += (length + 3) & ~3


def packets_in(view: memoryview) -> Iterator[Packet]:
    for kind, _, payload in _messages(view):
        if kind != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            continue
        packet_id, hook, data = -1, 0, b""
        offset, end = _NFGEN.size, len(payload)
        while offset + _NLA.size <= end:
            size, attr = _NLA.unpack_from(payload, offset)
            if size < _NLA.size:
                break
            attr &= 0x3FFF  # without the nested and byte-order flags
            if attr == NFQA_PACKET_HDR:
                packet_id, _, hook = struct.unpack_from("!IHB", payload, offset + _NLA.size)
            elif attr == NFQA_PAYLOAD:
                data = bytes(payload[offset + _NLA.size : offset + size])
            offset += (size + 3) & ~3
        if packet_id >= 0:
            yield Packet(packet_id, hook, data)
