"""The flow-token key: what signs the flow tokens and sealed route sets.

Kept in a file (``edge.flow_key_file``, 0600) so that the tokens in phones'
registrations stay valid across restarts, and read once before the workers
fork, so every worker signs with the same key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..config import ConfigError

MIN_KEY = 16  # bytes: a shorter key is too weak to sign flow tokens


def flow_key(path: Path) -> bytes:
    """The flow-token key in ``path``, created on first use (0600). A key
    that cannot be read, made or used is a ``ConfigError`` naming
    ``edge.flow_key_file``."""
    named = f"edge.flow_key_file = {str(path)!r}"
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(
            f"{named}: cannot read it ({os.strerror(exc.errno or 0)}): name a file"
            " sipwarden's user can read"
        ) from None
    else:
        if len(key) >= MIN_KEY:
            return key
        raise ConfigError(
            f"{named}: holds {len(key)} bytes, and a flow key needs at least {MIN_KEY}:"
            " delete the file and sipwarden makes a new key (phones then register again)"
        )
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"{named}: cannot create it ({os.strerror(exc.errno or 0)}): name a file in a"
            " directory that exists and sipwarden's user can write"
        ) from None
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key
