"""What `sipwarden init` found on a machine, and the changes it proposes,
as small immutable values: the readers (``asterisk``, ``freeswitch``,
``kamailio``, ``sockets``) give them, ``plan`` and ``write`` take them.

Paths are the machine's own (``/etc/asterisk/pjsip.conf``), whatever root
the survey read them under, so that a printed diff names the file the
operator edits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Transport = Literal["udp", "tcp", "tls", "ws", "wss"]
PbxKind = Literal["asterisk", "freepbx", "freeswitch", "kamailio"]
PBX_KINDS: tuple[PbxKind, ...] = ("asterisk", "freepbx", "freeswitch", "kamailio")
SIP_PORTS = (5060, 5061)


@dataclass(frozen=True, slots=True)
class Listener:
    """Where the PBX's configuration says it takes SIP: ``host`` is an IP,
    ``0.0.0.0``/``::`` for every address, or a name the config uses."""

    transport: Transport
    host: str
    port: int
    where: str  # the file and section or line that says so

    @property
    def wildcard(self) -> bool:
        return self.host in ("0.0.0.0", "::", "*", "")


@dataclass(frozen=True, slots=True)
class LogSource:
    """A log the PBX writes, for ``[[logwatch.sources]]``."""

    format: str
    path: str | None = None
    journal: str | None = None


@dataclass(frozen=True, slots=True)
class FileChange:
    """One PBX file as it is and as it should be; ``note`` says what to do
    when the file is written by something else (FreePBX's GUI)."""

    path: str  # the machine's path
    old: str
    new: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Pbx:
    """One PBX found: what it is, the files read, where it listens, the
    public address it advertises, its local networks, the domains it serves,
    its RTP ports and its logs. ``notes`` are things the operator should know
    (a TLS transport left public, a registrar without Path support)."""

    kind: PbxKind
    files: tuple[str, ...]
    listeners: tuple[Listener, ...]
    external: str | None = None
    local_nets: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    rtp_ports: tuple[int, int] | None = None
    trunks: tuple[str, ...] = ()  # addresses of SIP trunks it names (trusted peers)
    logs: tuple[LogSource, ...] = ()
    notes: tuple[str, ...] = ()

    def sip_listeners(self) -> tuple[Listener, ...]:
        """The plain SIP listeners (UDP and TCP) on the standard port."""
        return tuple(
            ls for ls in self.listeners if ls.transport in ("udp", "tcp") and ls.port == 5060
        )


@dataclass(frozen=True, slots=True)
class Socket:
    """A socket bound on this machine (``/proc/net``): a UDP socket, or a
    listening TCP one; ``program`` when its owner could be read."""

    transport: Literal["udp", "tcp"]
    host: str
    port: int
    program: str | None = None


@dataclass(frozen=True, slots=True)
class Machine:
    """Everything the survey found."""

    pbxs: tuple[Pbx, ...]
    sockets: tuple[Socket, ...]
    notes: tuple[str, ...] = field(default=())

    def pbx(self, kind: PbxKind) -> Pbx | None:
        return next((p for p in self.pbxs if p.kind == kind), None)

    def on_sip_ports(self) -> tuple[Socket, ...]:
        return tuple(s for s in self.sockets if s.port in SIP_PORTS)
