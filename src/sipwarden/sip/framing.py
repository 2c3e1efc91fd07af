"""Incremental framing of a SIP byte stream (TCP, TLS; RFC 3261 §18.3).

Operations: ``feed(chunk)`` and iterate the complete frames. Goals: any
chunking of a stream gives the same frames; the work per byte is O(1)
amortised (the header terminator search resumes where the last one stopped,
as h11's receive buffer does), so a slow or hostile peer cannot make us
rescan; a message over ``max_size`` is an error as soon as that is certain.

Between messages, CRLF runs are keep-alives (RFC 5626 §3.5.1): a double
CRLF is a ping that wants a single CRLF back, reported as ``PING``.
A framing error leaves the framer unusable: the stream must be closed.
"""

from __future__ import annotations

from typing import Final

from . import errors as E
from .errors import SipError
from .message import Message, _assemble

DEFAULT_MAX_SIZE: Final = 65_535
PING: Final = b"\r\n\r\n"
_HEAD_END: Final = b"\r\n\r\n"


class StreamFramer:
    """Feed bytes in, take complete messages (as bytes) out."""

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._scan_from = 0  # where the next header-terminator search starts
        self._head_end = -1  # offset of CRLFCRLF of the message being framed
        self._body_len = -1
        self._broken: SipError | None = None
        self.pings = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add a chunk; return the complete frames it finished: messages, and
        ``PING`` for each CRLFCRLF keep-alive. Raises SipError on a framing
        error (after returning the frames completed before it, if any)."""
        if self._broken is not None:
            raise self._broken
        self._buf += data
        frames: list[bytes] = []
        try:
            while True:
                frame = self._next()
                if frame is None:
                    break
                frames.append(frame)
        except SipError as exc:
            self._broken = exc
            if not frames:
                raise
            # the complete messages before the error are delivered; the next
            # feed() raises it
        return frames

    @property
    def error(self) -> SipError | None:
        """The framing error that broke the stream, if any."""
        return self._broken

    def _next(self) -> bytes | None:
        buf = self._buf
        if self._head_end < 0:
            # keep-alives: a lone CRLF is a pong, CRLFCRLF a ping
            if buf[:2] == b"\r\n":
                if buf[:4] == PING:
                    del buf[:4]
                    self.pings += 1
                    return PING
                if len(buf) < 4 and PING.startswith(bytes(buf)):
                    return None  # maybe the start of a ping
                del buf[:2]
                self._scan_from = 0
                return self._next()
            end = buf.find(_HEAD_END, max(0, self._scan_from - 3))
            if end < 0:
                self._scan_from = len(buf)
                if len(buf) > self.max_size:
                    raise SipError(E.TOO_LARGE, f"headers longer than {self.max_size} bytes")
                return None
            self._head_end = end
            self._body_len = _stream_content_length(bytes(buf[:end]))
            if end + 4 + self._body_len > self.max_size:
                raise SipError(
                    E.TOO_LARGE, f"message of {end + 4 + self._body_len} bytes over {self.max_size}"
                )
        total = self._head_end + 4 + self._body_len
        if len(buf) < total:
            return None
        frame = bytes(buf[:total])
        del buf[:total]
        self._head_end = self._body_len = -1
        self._scan_from = 0
        return frame


def _stream_content_length(head: bytes) -> int:
    """The Content-Length of a stream message's header block (mandatory)."""
    found: bytes | None = None
    in_length = False  # the last field was Content-Length (its value may be folded)
    for line in head.split(b"\r\n")[1:]:
        if line[:1] in (b" ", b"\t"):
            if in_length:
                found = (found or b"") + line.strip()
            continue
        name, colon, value = line.partition(b":")
        in_length = bool(colon) and name.rstrip(b" \t").lower() in (b"content-length", b"l")
        if in_length:
            if found is not None:
                raise SipError(E.DUPLICATE_CONTENT_LENGTH, "two Content-Length headers")
            found = value.strip()
    if found is None:
        raise SipError(E.MISSING_CONTENT_LENGTH, "Content-Length is mandatory on streams")
    if not found.isdigit():
        raise SipError(E.BAD_CONTENT_LENGTH, f"bad Content-Length {found[:20]!r}")
    found = found.lstrip(b"0") or b"0"
    if len(found) > 10:  # more than any size cap; never a huge int from a peer
        raise SipError(E.TOO_LARGE, f"Content-Length of {len(found)} digits")
    return int(found)


def parse_frame(frame: bytes) -> Message:
    """Parse one frame produced by StreamFramer (strict: Content-Length required)."""
    end = frame.find(_HEAD_END)
    if end < 0:
        raise SipError(E.INCOMPLETE_HEADERS, "no empty line after the headers")
    lines = frame[:end].decode("utf-8", "surrogateescape").split("\r\n")
    return _assemble(lines, frame, 0, end + 4, [], stream=True)
