"""IP defragmentation: IPv4 and IPv6 fragments put back into datagrams.

Supported: both families, fragments in any order. As in the kernel (and
RFC 5722 for IPv6), overlapping fragments drop the datagram; exact
duplicates are ignored. A datagram not completed within 30 s of capture
time (Linux's ``ipfrag_time``) is dropped. Dropped fragments are counted in
``PacketCounts.fragments_dropped``, rebuilt datagrams in ``reassembled``.

Bounds: 16 MiB of pending fragments in all (over it, the oldest datagrams
are dropped), 128 fragments per datagram (64 KiB over a 1280-byte MTU needs
52), and no datagram past 65,535 bytes: a flood of spoofed first fragments
costs bounded memory.

Plan: pending datagrams are kept by key (the caller's: addresses, id and,
for IPv4, the protocol) in arrival order, which is also their age order, so
expiry and eviction take from the front. Each datagram keeps its parts by
offset; it is complete when its parts, which never overlap, add up to the
size the last fragment gave, and then they tile it exactly.
"""

from __future__ import annotations

from typing import Any, Final

from .arrival import PacketCounts

__all__ = ["FRAGMENT_TIMEOUT", "MAX_FRAGMENTS", "MAX_FRAGMENT_BYTES", "Defragmenter"]

MAX_FRAGMENT_BYTES: Final = 16 << 20  # pending IP fragments, in all
MAX_FRAGMENTS: Final = 128  # per datagram: 64 KiB over a 1280-byte MTU needs 52
FRAGMENT_TIMEOUT: Final = 30.0  # seconds of capture time (Linux's ipfrag_time)


class _Datagram:
    __slots__ = ("parts", "size", "started", "total")

    def __init__(self, started: float) -> None:
        self.started = started
        self.parts: dict[int, bytes] = {}
        self.size = 0
        self.total: int | None = None


class Defragmenter:
    """IPv4 and IPv6 reassembly. As in the kernel (and RFC 5722 for IPv6),
    overlapping fragments drop the datagram: exact duplicates are ignored."""

    def __init__(self, counts: PacketCounts) -> None:
        self.counts = counts
        self.pending: dict[tuple[Any, ...], _Datagram] = {}  # in arrival order
        self.bytes = 0

    def add(
        self, key: tuple[Any, ...], ts: float, offset: int, more: bool, data: bytes
    ) -> bytes | None:
        """The payload of the datagram this fragment completes; None while
        it waits for more (or was dropped)."""
        self._expire(ts)
        dgram = self.pending.get(key)
        if dgram is None:
            dgram = self.pending[key] = _Datagram(ts)
        end = offset + len(data)
        for start, part in dgram.parts.items():
            if start < end and offset < start + len(part):
                if start == offset and part == data:
                    self.counts.fragments_dropped += 1
                    return None
                self._drop(key, 1)
                return None
        last = end if not more else dgram.total
        if (
            end > 65_535
            or len(dgram.parts) >= MAX_FRAGMENTS
            or (more and len(data) % 8)  # all but the last fragment carry 8-byte multiples
            or (not more and dgram.total is not None and dgram.total != end)
            or (dgram.total is not None and end > dgram.total)
            or (not more and any(s + len(p) > end for s, p in dgram.parts.items()))
        ):
            self._drop(key, 1)
            return None
        dgram.total = last
        dgram.parts[offset] = data
        dgram.size += len(data)
        self.bytes += len(data)
        if dgram.total is not None and dgram.size == dgram.total:
            # no overlaps and nothing past the end: the parts tile [0, total)
            del self.pending[key]
            self.bytes -= dgram.size
            self.counts.reassembled += 1
            return b"".join(dgram.parts[s] for s in sorted(dgram.parts))
        while self.bytes > MAX_FRAGMENT_BYTES and self.pending:
            self._drop(next(iter(self.pending)), 0)
        return None

    def _drop(self, key: tuple[Any, ...], extra: int) -> None:
        dgram = self.pending.pop(key)
        self.bytes -= dgram.size
        self.counts.fragments_dropped += len(dgram.parts) + extra

    def _expire(self, now: float) -> None:
        while self.pending:
            key, oldest = next(iter(self.pending.items()))
            if now - oldest.started <= FRAGMENT_TIMEOUT:
                break
            self._drop(key, 0)

    def finish(self) -> None:
        """The end of the packets: what still waits is dropped."""
        while self.pending:
            self._drop(next(iter(self.pending)), 0)
