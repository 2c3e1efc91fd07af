"""Capture files: pcap and pcapng, either gzip-compressed, read as records
of (capture time, link-layer frame).

Supported: pcap (micro- and nanosecond), pcapng, either gzip-compressed;
dpkt reads them. A pcapng file is decoded with its first interface's link
type (dpkt's reader keeps one interface description); simple packet blocks
are skipped. A file cut short (still being written) is read up to the cut:
``truncated`` is set when the cut is in a record header (a packet cut in its
data is yielded as it is: ``Dissector`` counts it undecodable). Pipes work
(``/dev/stdin``).

Bounds: one record is held at a time (as long as its header says, at most
what the file holds); nothing read is kept.

Plan: the magic number tells pcap from pcapng, read with ``peek``, never
``seek``, so that a pipe works; gzip's magic first undoes the compression
and the magic is read again inside. dpkt's reader then yields the records;
an error inside a record header ends the reading, with ``truncated`` set,
rather than losing what was read.
"""

from __future__ import annotations

import contextlib
import gzip
import struct
import zlib
from collections.abc import Callable, Iterator
from io import BufferedReader
from typing import IO, Any, Final, cast

import dpkt  # type: ignore[import-untyped]

__all__ = ["Capture", "CaptureError", "open_capture"]

_PCAPNG_MAGIC: Final = b"\x0a\x0d\x0d\x0a"
_PCAP_MAGICS: Final = frozenset(
    struct.pack(order + "I", magic)
    for order in "<>"
    for magic in (0xA1B2C3D4, 0xA1B23C4D, 0xA1B2CD34)  # micro, nano, Kuznetzov's
)
_GZIP_MAGIC: Final = b"\x1f\x8b"


class CaptureError(ValueError):
    """The file is not a capture that can be read (the message says why)."""


class Capture:
    """An open capture: its link type, and its records in file order.

    Iterate it once for (capture time, frame) records; ``truncated`` tells,
    after, whether the file ended inside a record."""

    def __init__(self, packets: Iterator[Any], linktype: int) -> None:
        self.linktype = linktype
        self.truncated = False
        self._packets = packets

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        packets = self._packets
        while True:
            try:
                ts, buf = next(packets)
            except StopIteration:
                return
            except (
                dpkt.UnpackError,
                ValueError,
                struct.error,
                EOFError,
                gzip.BadGzipFile,
                zlib.error,
            ):
                # the file ends inside a record: still being written, or cut
                self.truncated = True
                return
            yield float(ts), buf  # nanosecond pcaps give a Decimal


def open_capture(raw: BufferedReader, stack: contextlib.ExitStack) -> Capture:
    """The capture in ``raw``, a pcap or pcapng file told apart by their
    magic (gzip is undone first, in ``stack``). Raises CaptureError."""
    # peek, not seek: the capture may be a pipe
    name = getattr(raw, "name", "capture")
    stream: IO[bytes] = raw
    magic = raw.peek(4)[:4]
    if magic[:2] == _GZIP_MAGIC:
        unzipped = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        try:
            magic = unzipped.peek(4)[:4]
        except (OSError, EOFError, zlib.error) as exc:
            raise CaptureError(f"{name}: bad gzip data: {exc}") from None
        stream = cast(IO[bytes], unzipped)
    if magic == _PCAPNG_MAGIC:
        open_reader: Callable[[IO[bytes]], Any] = dpkt.pcapng.Reader
    elif magic in _PCAP_MAGICS:
        open_reader = dpkt.pcap.Reader
    else:
        raise CaptureError(f"{name}: not a pcap or pcapng file")
    try:
        reader = open_reader(stream)
    except (ValueError, dpkt.UnpackError, struct.error, EOFError) as exc:
        raise CaptureError(f"{name}: unreadable capture header: {exc}") from None
    return Capture(iter(reader), int(reader.datalink()))
