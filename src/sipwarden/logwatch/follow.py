"""One log file followed across rotation, from where the last run stopped.

What it does: ``FileFollower.read()`` gives the whole lines added since the
last call (bytes, without the newline); a last line without its newline
waits for it. ``position`` is what to remember (``store.Position``: the
file's device and inode, the offset after the last whole line, its first
bytes); a follower made with it goes on from there.

Rotation, both kinds logrotate does:

- rename and create: the path names a new file. The old one (still open)
  is read to its end first, and kept open and read for ``grace`` seconds
  more, since a PBX writes to it until it reopens its log;
- copy and truncate: the file is shorter than the offset, or its first
  bytes changed. The lines written between the last read and the copy are
  in the copy (``messages.1``, ``messages-20261206``), found by its first
  bytes and read from the offset first.

At start, a remembered file renamed or copied away while sipwarden was down
is found the same way (by inode, else by its first bytes) and finished
before the new one is read from its start. A file never seen starts at its
beginning (the mode leaves out lines older than ``max_age``).

Bounds: at most ``chunk`` bytes read per call and file; a line longer than
``max_line`` is cut there (the rest is a line of its own); ``MAX_SIBLINGS``
rotated files looked at. Blocking file I/O: the mode calls it on a thread.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..store import Position

HEAD: Final = 64  # bytes that tell two files apart
MAX_SIBLINGS: Final = 20
COMPRESSED: Final = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip")


@dataclass
class _Open:
    fd: int
    ident: tuple[int, int]
    offset: int
    head: bytes
    last_growth: float = 0.0


class FileFollower:
    def __init__(
        self,
        path: Path,
        position: Position | None = None,
        *,
        chunk: int = 256 * 1024,
        max_line: int = 64 * 1024,
        grace: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.chunk, self.max_line, self.grace = chunk, max_line, grace
        self._clock = clock
        self._restore = position
        self._current: _Open | None = None
        self._old: list[_Open] = []  # renamed away, still read for ``grace``
        self._started = False
        self.events: Counter[str] = Counter()  # renamed, truncated, resumed, missing...

    # ------------------------------------------------------------- outside

    @property
    def position(self) -> Position:
        cur = self._current
        if cur is None:
            return self._restore or Position()
        return Position(cur.ident[0], cur.ident[1], cur.offset, cur.head)

    @property
    def exists(self) -> bool:
        return self._current is not None

    def read(self) -> list[bytes]:
        """The whole lines added since the last call (see the module doc)."""
        lines: list[bytes] = []
        if not self._started:
            self._start(lines)
        for old in list(self._old):
            grew = self._drain(old, lines)
            now = self._clock()
            if grew:
                old.last_growth = now
            elif now - old.last_growth > self.grace:
                self._finish(old, lines)
                os.close(old.fd)
                self._old.remove(old)
        cur = self._current
        if cur is None:
            cur = self._current = self._open(0)
            if cur is None:
                return lines
        if os.fstat(cur.fd).st_size < cur.offset or not self._same_head(cur):
            # copied and truncated: what was not yet read is in the copy
            self.events["truncated"] += 1
            copy = self._copy_of(cur.head, cur.offset, exclude=cur.ident)
            if copy is not None:
                self._drain(copy, lines, whole=True)
                self._finish(copy, lines)
                os.close(copy.fd)
            cur.offset, cur.head = 0, b""
        if self._drain(cur, lines) >= self.chunk:
            return lines  # more next time; a rename is looked for once caught up
        try:
            st = os.stat(self.path)
        except OSError:
            self.events["missing"] += 1
            return lines  # gone for now (being rotated): the open file is still read
        if (st.st_dev, st.st_ino) != cur.ident:
            self.events["renamed"] += 1
            cur.last_growth = self._clock()
            self._old.append(cur)  # read on for a while: the PBX may not have reopened yet
            self._current = self._open(0)
            if self._current is not None:
                self._drain(self._current, lines)
        return lines

    def close(self) -> None:
        for f in (*self._old, *([self._current] if self._current else [])):
            with contextlib.suppress(OSError):
                os.close(f.fd)
        self._old.clear()
        self._current = None

    # -------------------------------------------------------------- inside

    def _start(self, lines: list[bytes]) -> None:
        """Go on from the remembered position (see the module doc)."""
        self._started = True
        pos = self._restore
        if pos is None or pos.inode is None:
            self._current = self._open(0)
            return
        ident = (pos.device or 0, pos.inode)
        cur = self._open(0)
        if cur is not None and self._fits(cur, pos):  # the same file (or a copy of it)
            cur.offset, cur.head = pos.offset, pos.head
            self._current = cur
            self.events["resumed"] += 1
            return
        # rotated while we were away: finish the old file, then the new from its start
        old = self._sibling_with(ident) or self._copy_of(pos.head, pos.offset, exclude=None)
        if old is not None:
            old.offset = pos.offset
            self._drain(old, lines, whole=True)
            self._finish(old, lines)
            os.close(old.fd)
            self.events["caught-up"] += 1
        self._current = cur

    def _fits(self, f: _Open, pos: Position) -> bool:
        size = os.fstat(f.fd).st_size
        return size >= pos.offset and self._first(f.fd, len(pos.head)) == pos.head

    def _open(self, offset: int, path: Path | None = None) -> _Open | None:
        try:
            fd = os.open(path or self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        st = os.fstat(fd)
        return _Open(fd, (st.st_dev, st.st_ino), offset, self._first(fd, HEAD))

    def _drain(self, f: _Open, lines: list[bytes], *, whole: bool = False) -> int:
        """Read ``f``'s whole lines from its offset (all of it with ``whole``,
        else up to ``chunk`` bytes); how many bytes were taken."""
        taken = 0
        while True:
            data = os.pread(f.fd, self.chunk, f.offset)
            if not data:
                break
            end = data.rfind(b"\n")
            if end < 0:
                if len(data) < self.max_line:
                    break  # a partial line: it waits for its newline
                cut = data[: self.max_line]  # a line too long: cut
                lines.append(cut)
                f.offset += len(cut)
                taken += len(cut)
            else:
                lines.extend(_split(data[:end]))
                f.offset += end + 1
                taken += end + 1
            if len(f.head) < HEAD:
                f.head = self._first(f.fd, HEAD)
            if not whole and taken >= self.chunk:
                break
        return taken

    def _finish(self, f: _Open, lines: list[bytes]) -> None:
        """A file no longer written: its last line, newline or not."""
        rest = os.pread(f.fd, self.max_line, f.offset)
        if rest:
            lines.append(rest.rstrip(b"\n"))
            f.offset += len(rest)

    def _same_head(self, f: _Open) -> bool:
        if not f.head:
            return True
        return self._first(f.fd, len(f.head)) == f.head

    @staticmethod
    def _first(fd: int, size: int) -> bytes:
        return os.pread(fd, size, 0) if size else b""

    def _siblings(self) -> list[Path]:
        """The rotated copies beside the file (``messages.1``, ``messages-2026...``),
        newest first; compressed ones cannot be read on and are left out."""
        found = []
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.path.parent):
                name = entry.name
                if (
                    name != self.path.name
                    and name.startswith(self.path.name)
                    and name[len(self.path.name)] in ".-_"
                    and not name.endswith(COMPRESSED)
                    and entry.is_file()
                ):
                    found.append((entry.stat().st_mtime, Path(entry.path)))
        found.sort(reverse=True)
        return [p for _, p in found[:MAX_SIBLINGS]]

    def _sibling_with(self, ident: tuple[int, int]) -> _Open | None:
        for path in self._siblings():
            f = self._open(0, path)
            if f is not None and f.ident == ident:
                return f
            if f is not None:
                os.close(f.fd)
        return None

    def _copy_of(self, head: bytes, offset: int, exclude: tuple[int, int] | None) -> _Open | None:
        if not head:
            return None
        for path in self._siblings():
            f = self._open(offset, path)
            if f is None:
                continue
            if f.ident != exclude and f.head.startswith(head) and os.fstat(f.fd).st_size >= offset:
                return f
            os.close(f.fd)
        return None


def _split(data: bytes) -> list[bytes]:
    return [line.rstrip(b"\r") for line in data.split(b"\n")]
