"""Kamailio: its ``listen`` lines (or ``port`` and every address when there
are none), its ``alias`` domains, and the change that moves it to
127.0.0.1 behind an edge on the same machine.

Read ``/etc/kamailio/kamailio.cfg`` under the root. A ``listen`` takes
``proto:host:port`` (``proto`` and ``port`` optional, ``advertise
host:port`` after it, a ``[::]`` host); preprocessor lines (``#!define``,
``#!ifdef``) are not evaluated: the lines written are what is read. The
change replaces each plain SIP listen on 5060 by one on 127.0.0.1 and the
new port (one per transport), or adds them when Kamailio listens by
default. Kamailio logs a failed login only where its script says so
(``xlog``): logwatch follows the unit's journal.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from .found import FileChange, Listener, LogSource, Pbx, Transport
from .logs import journal_unit

CFG = "/etc/kamailio/kamailio.cfg"
_LISTEN = re.compile(
    r"^(\s*listen\s*=\s*)(?:(udp|tcp|tls|sctp|ws|wss):)?(\[[^\]]+\]|[^\s:]+)(?::(\d+))?(.*)$"
)
_PORT = re.compile(r"^\s*port\s*=\s*(\d+)")
TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp", "tls", "ws", "wss")
_ALIAS = re.compile(r'^\s*alias\s*=\s*"?([^":\s]+)')


def _lines(root: Path) -> list[str] | None:
    try:
        return (root / CFG.lstrip("/")).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None


def _listens(lines: list[str]) -> list[tuple[int, Listener]]:
    port = 5060
    for line in lines:
        if m := _PORT.match(line):
            port = int(m[1])
    out = []
    for i, line in enumerate(lines):
        if not (m := _LISTEN.match(line)):
            continue
        host = m[3].strip("[]")
        number = int(m[4]) if m[4] else port
        protos = [m[2]] if m[2] else ["udp", "tcp"]  # no proto: both
        out += [
            (i, Listener(proto, host, number, f"{CFG} line {i + 1}"))
            for proto in protos
            if proto in TRANSPORTS
        ]
    if not out:  # no listen: every address, on `port`
        out = [
            (-1, Listener("udp", "0.0.0.0", port, f"{CFG} (no listen: all addresses)")),
            (-1, Listener("tcp", "0.0.0.0", port, f"{CFG} (no listen: all addresses)")),
        ]
    return out


def find(root: Path) -> Pbx | None:
    lines = _lines(root)
    if lines is None:
        return None
    listeners = [ls for _, ls in _listens(lines)]
    domains = tuple(dict.fromkeys(m[1] for line in lines if (m := _ALIAS.match(line))))
    text = "\n".join(lines)
    notes = []
    if "registrar" in text and not re.search(r'modparam\("registrar",\s*"use_path",\s*1\)', text):
        notes.append(
            'Kamailio: add modparam("registrar", "use_path", 1) so that calls to a phone'
            " go back through the edge (its Path)"
        )
    notes += [
        f"{ls.where}: {ls.transport} on {ls.host}:{ls.port} stays public behind an"
        " edge that takes only 5060: close it, or give the edge a tls: listener"
        for ls in listeners
        if ls.transport not in ("udp", "tcp") and not ls.host.startswith("127.")
    ]
    unit = journal_unit(root, "kamailio.service")
    return Pbx(
        "kamailio",
        (CFG,),
        tuple(listeners),
        external=next((ls.host for ls in listeners if _is_ip(ls.host) and not ls.wildcard), None),
        domains=domains,
        logs=(LogSource("kamailio", journal=unit or "kamailio.service"),),
        notes=tuple(notes),
    )


def _is_ip(host: str) -> bool:
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def edge_change(root: Path, pbx: Pbx, public: str | None, port: int) -> list[FileChange]:
    lines = _lines(root)
    if lines is None:
        return []
    listens = _listens(lines)
    moved = [(i, ls) for i, ls in listens if ls.transport in ("udp", "tcp") and ls.port == 5060]
    if not moved:
        return []
    new: list[str] = []
    done: set[str] = set()
    if any(i < 0 for i, _ in moved):  # listening by default: say where, before the routes
        at = next(
            (k for k, line in enumerate(lines) if line.lstrip().startswith("loadmodule")),
            len(lines),
        )
        added = [f"listen=udp:127.0.0.1:{port}", f"listen=tcp:127.0.0.1:{port}"]
        new = [*lines[:at], *added, *lines[at:]]
    else:
        lines_moved = {i for i, _ in moved}
        for i, line in enumerate(lines):
            if i not in lines_moved:
                new.append(line)
                continue
            for _, ls in (pair for pair in moved if pair[0] == i):
                if ls.transport not in done:  # one per transport, whatever the addresses
                    done.add(ls.transport)
                    new.append(f"listen={ls.transport}:127.0.0.1:{port}")
    old = "\n".join(lines) + "\n"
    return [FileChange(CFG, old, "\n".join(new) + "\n")]
