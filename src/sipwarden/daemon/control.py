"""The control socket: how `sipwarden reload` and `sipwarden rules list`
talk to the running daemon.

A Unix stream socket (mode 0600: only the daemon's user may reload it), one
JSON request per connection and one JSON answer:

    {"cmd": "reload"}  -> {"ok": true, "rules": 57} | {"ok": false, "error": "..."}
    {"cmd": "stats"}   -> {"ok": true, "hits": {...}, "monitored": {...},
                           "verdicts": {...}, "edge": {...}}

With several workers, worker 0 listens on the configured path and worker N
on ``PATH.N``; worker 0 answers ``stats`` with the sum over all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
TIMEOUT = 5.0


class ControlError(OSError):
    """The daemon cannot be reached, or did not answer."""


class ControlDenied(ControlError):
    """A daemon listens, but this user may not use its socket (mode 0600)."""


def worker_path(path: Path, worker: int) -> Path:
    return path if worker == 0 else path.with_name(f"{path.name}.{worker}")


async def serve_control(path: Path, handler: Handler) -> asyncio.AbstractServer:
    """Listen on ``path``, replacing a stale socket left by a crash, but
    never one a running daemon still answers on (two daemons started from
    the same directory would otherwise steal each other's socket)."""
    if path.is_socket():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        else:
            raise OSError(
                f"{path}: another sipwarden is running with this control socket"
                " (set [control] socket to a path of its own)"
            )
        finally:
            probe.close()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), TIMEOUT)
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError as exc:  # not JSON, not an object, or a line over 64 kB
                answer: dict[str, Any] = {"ok": False, "error": f"bad request: {exc}"}
            else:
                answer = await handler(request)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    old_umask = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(on_connect, path=str(path))
    finally:
        os.umask(old_umask)
    return server


def ask(path: Path, request: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
    """Send one request to a running daemon (blocking; for the CLI)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        raise ControlError(f"no sipwarden daemon is listening on {path}") from None
    except PermissionError:
        raise ControlDenied(
            f"{path}: permission denied: the daemon's control socket is for its own user"
            " (run this as that user, or as root)"
        ) from None
    except OSError as exc:
        raise ControlError(f"{path}: {exc}") from None
    try:
        answer = json.loads(data)
    except ValueError:
        raise ControlError(f"{path}: the daemon gave no answer") from None
    if not isinstance(answer, dict):
        raise ControlError(f"{path}: unexpected answer {answer!r}")
    return answer


async def ask_async(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), TIMEOUT)
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        answer = json.loads(await asyncio.wait_for(reader.readline(), TIMEOUT))
        return answer if isinstance(answer, dict) else {}
    finally:
        writer.close()
