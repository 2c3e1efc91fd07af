"""The API token: what a request shows (``Authorization: Bearer <token>``)
to change anything through the API.

There always is one. ``[api] token`` or SIPWARDEN_API_TOKEN, when set, is
it; otherwise the API makes one at its first start and keeps it in
``[api] token_file`` (by default beside the store: ``sipwarden.db`` gives
``sipwarden.token``), so it survives restarts and operators and scripts
read it from there. The file is written whole or not at all (a temporary
file linked into place) and is mode 0600: only the daemon's user (and
root) may read it. A file other users may read or write, or one that holds
no token, is refused with a line saying what to do, never used or
silently replaced.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..config import Config

ENVIRONMENT = "SIPWARDEN_API_TOKEN"


class TokenError(ValueError):
    """The token file cannot be made or used; the message names the key and the path."""


@dataclass(frozen=True)
class ApiToken:
    value: str
    file: Path | None  # where it was read or made; None when configured


def token_file(config: Config) -> Path:
    """``[api] token_file``, or the store's path with ``.token`` for its suffix."""
    if config.api.token_file is not None:
        return config.api.token_file
    store = config.storage.path
    beside = store.with_suffix(".token")
    return beside if beside != store else store.with_name(store.name + ".token")


def api_token(config: Config) -> ApiToken:
    """The configured token, else the one in the token file (made if missing)."""
    configured = config.api.token or os.environ.get(ENVIRONMENT)
    if configured:
        return ApiToken(configured, None)
    path = token_file(config)
    try:
        return ApiToken(_read(path), path)
    except FileNotFoundError:
        pass
    try:
        _create(path)
    except FileExistsError:  # another process made it first: theirs it is
        pass
    except OSError as exc:
        raise _error(path, f"cannot create it: {exc.strerror}", "a writable place") from None
    try:
        return ApiToken(_read(path), path)
    except FileNotFoundError:
        raise _error(path, "it vanished as it was made", "a place of its own") from None


def _read(path: Path) -> str:
    try:
        # no symbolic link followed; a FIFO planted there must not block the start
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _error(path, f"cannot read it: {exc.strerror}", "a file of its own") from None
    try:
        _check(path, os.fstat(fd))
        value = os.read(fd, 4096).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    if len(value) < 16 or not (value.isascii() and value.isprintable()) or " " in value:
        raise TokenError(
            f"api.token_file = '{path}': it holds no token (16 to 4096 printable ASCII"
            " characters without spaces): delete it to make a new one"
        )
    return value


def _check(path: Path, info: os.stat_result) -> None:
    """A regular file that only the daemon's user (or root) may read or write."""
    if not stat.S_ISREG(info.st_mode):
        raise _error(path, "it is not a regular file", "a file of its own")
    if info.st_mode & 0o077:
        raise TokenError(
            f"api.token_file = '{path}': other users may read or write it"
            f" (mode {stat.S_IMODE(info.st_mode):04o}): run chmod 600 on it,"
            " or delete it to make a new one"
        )
    if info.st_uid not in (os.geteuid(), 0):
        raise TokenError(
            f"api.token_file = '{path}': it belongs to uid {info.st_uid}, not to"
            " the daemon's user or root: delete it to make a new one"
        )


def _create(path: Path) -> None:
    """A new token in ``path``, whole or not at all; FileExistsError if
    ``path`` exists."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # unlike rename, never replaces a file already there
    finally:
        os.unlink(tmp)


def _error(path: Path, what: str, where: str) -> TokenError:
    return TokenError(
        f"api.token_file = '{path}': {what} (set [api] token_file to {where},"
        f" or set [api] token or {ENVIRONMENT})"
    )
