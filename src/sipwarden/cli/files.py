"""The files the CLI writes (`bans export -o`): whole, or not at all.

Bounds: the temporary file sits next to the target (same directory, same
file system), so the final rename is atomic; the file keeps the old one's
mode, or gets a plain ``open()``'s.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def replace_file(path: Path, text: str) -> None:
    """Write ``path`` whole, then put it in place: a firewall may load it at
    any moment and must see the old file or the new one, never half of one."""
    # the temporary name ends in .tmp: an `include "dir/*.nft"` never loads it
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = path.stat().st_mode & 0o7777  # keep the old file's
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask  # as a plain open() would (mkstemp makes 0600)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
