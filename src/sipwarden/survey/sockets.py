"""What is bound to the SIP ports on this machine, from ``/proc/net``
(``udp``, ``tcp``, ``udp6``, ``tcp6`` under the survey's root): UDP sockets
and listening TCP ones, with the program that owns each when
``/proc/<pid>/fd`` says so (root may read every process's; others see their
own). No psutil: the kernel's tables are plain text.

Bounded: at most ``MAX_PROCESSES`` processes are looked at for owners.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from pathlib import Path
from typing import Literal

from .found import Socket

TCP_LISTEN = "0A"
MAX_PROCESSES = 4096


def _address(text: str) -> tuple[str, int]:
    """``0100007F:13C4`` (IPv4) or 32 hex digits (IPv6), each 32-bit word
    in the host's byte order (little-endian here), and a port."""
    hexaddr, _, hexport = text.partition(":")
    raw = bytes.fromhex(hexaddr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    host = str(ipaddress.ip_address(words))
    return host, int(hexport, 16)


def bound(root: Path, ports: frozenset[int] | None = None) -> list[Socket]:
    """The UDP and listening TCP sockets under ``root``'s ``/proc/net``
    (on ``ports``, when given)."""
    found: list[tuple[Socket, str]] = []
    for name, transport in (("udp", "udp"), ("udp6", "udp"), ("tcp", "tcp"), ("tcp6", "tcp")):
        try:
            text = (root / "proc/net" / name).read_text()
        except OSError:
            continue
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 10:
                continue
            if transport == "tcp" and fields[3] != TCP_LISTEN:
                continue
            try:
                host, port = _address(fields[1])
            except ValueError:
                continue
            if ports is not None and port not in ports:
                continue
            kind: Literal["udp", "tcp"] = "udp" if transport == "udp" else "tcp"
            found.append((Socket(kind, host, port), fields[9]))
    owners = _owners(root, {inode for _, inode in found})
    unique = dict.fromkeys(
        Socket(s.transport, s.host, s.port, owners.get(inode)) for s, inode in found
    )
    return list(unique)


def _owners(root: Path, inodes: set[str]) -> dict[str, str]:
    """socket inode -> the command name of a process holding it."""
    out: dict[str, str] = {}
    if not inodes:
        return out
    proc = root / "proc"
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()][:MAX_PROCESSES]
    except OSError:
        return out
    for pid in pids:
        try:
            fds = os.listdir(proc / pid / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(proc / pid / "fd" / fd)
            except OSError:
                continue
            if target.startswith("socket:[") and (inode := target[8:-1]) in inodes:
                with contextlib.suppress(OSError):
                    out.setdefault(inode, (proc / pid / "comm").read_text().strip())
        if len(out) == len(inodes):
            break
    return out
