"""The flow-token key: what signs the flow tokens and sealed route sets.

Kept in a file (``edge.flow_key_file``, 0600) so that the tokens in phones'
registrations stay valid across restarts, and read once before the workers
fork, so every worker signs with the same key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def flow_key(path: Path) -> bytes:
    """The flow-token key in ``path``, created on first use (0600)."""
    try:
        key = path.read_bytes()
        if len(key) >= 16:
            return key
        raise ValueError(
            f"{path}: the flow key is shorter than 16 bytes; delete it to make a new one"
        )
    except FileNotFoundError:
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key
