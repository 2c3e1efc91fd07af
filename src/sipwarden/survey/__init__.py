"""`sipwarden init`'s eyes: what PBX this machine runs, where it takes
SIP, what it advertises, where it logs, what is bound to 5060/5061; then
the config to write and the change the PBX needs, as a diff.

``look(root)`` reads under ``root`` (``/`` on the machine; the tests point
it at sample trees in ``tests/data/init``) and gives a ``Machine``; a
``Plan`` (mode, PBX, public address, the PBX's new port) gives the
config's text (``config_text``) and, in edge mode, the PBX's files as
they should be (``edge_change``) and their ``unified_diff``. Nothing here
writes a file or asks a question: the command does (``cli/init.py``).
One reader a PBX: ``asterisk.py`` (with FreePBX; its files through
``ini.py``), ``freeswitch.py``, ``kamailio.py``; the bound sockets from
``/proc/net`` (``sockets.py``); logs (``logs.py``); the writing
(``write.py``).
"""

from __future__ import annotations

from pathlib import Path

from . import asterisk, freeswitch, kamailio
from .found import (
    PBX_KINDS,
    SIP_PORTS,
    FileChange,
    Listener,
    LogSource,
    Machine,
    Pbx,
    PbxKind,
    Socket,
)
from .sockets import bound
from .write import (
    MODES,
    Mode,
    Plan,
    config_text,
    edge_change,
    free_port,
    listen_host,
    public_address,
    suggest_mode,
    unified_diff,
)


def look(root: Path) -> Machine:
    """Every PBX found under ``root`` and the sockets on the SIP ports
    (and the ports a PBX found names)."""
    pbxs = [
        p
        for p in (asterisk.find(root), freeswitch.find(root), kamailio.find(root))
        if p is not None
    ]
    ports = set(SIP_PORTS) | {ls.port for p in pbxs for ls in p.listeners}
    return Machine(tuple(pbxs), tuple(bound(root, frozenset(ports))))


__all__ = [
    "MODES",
    "PBX_KINDS",
    "SIP_PORTS",
    "FileChange",
    "Listener",
    "LogSource",
    "Machine",
    "Mode",
    "Pbx",
    "PbxKind",
    "Plan",
    "Socket",
    "config_text",
    "edge_change",
    "free_port",
    "listen_host",
    "look",
    "public_address",
    "suggest_mode",
    "unified_diff",
]
