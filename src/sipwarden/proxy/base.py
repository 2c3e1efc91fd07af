"""What the proxy's two paths share: its vocabulary and the branch hash."""

from __future__ import annotations

import hashlib
from typing import Final, NamedTuple

from ..values import Peer

BRANCH_PREFIX: Final = "z9hG4bK-sw"
TOKEN_PARAM: Final = "swf"  # our Via parameter carrying the reply flow token
# our Via flag on a request that carried credentials: the failure tracker
# reads it off the backend's answer (a 401 to it is a failed login, not a
# first challenge) without the proxy keeping any state
AUTH_FLAG: Final = "swa"
SEAL_PARAM: Final = "swr"  # our Record-Route/Route URI parameter carrying a sealed route set
DIALOG_CREATING: Final = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})
_TOKEN_CACHE: Final = 65_536  # flows remembered; cleared when full (spoofed floods)


class Local(NamedTuple):
    """One of our addresses: what we write in Via, Path and Record-Route."""

    transport: str
    host: str  # as advertised (an IP, or a name from edge.advertise)
    port: int

    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"


class Send(NamedTuple):
    flow: Peer
    data: bytes


class Drop(NamedTuple):
    reason: str


Action = Send | Drop


class ProxySettings(NamedTuple):
    backend: Peer
    # where the backend reaches us, per transport (Via, Path, Record-Route towards the PBX)
    internal: dict[str, Local]
    # where clients reach us, per (transport, IPv6?) (Via and Record-Route towards clients)
    public: dict[tuple[str, bool], Local]
    server_header: str = ""  # replaces the backend's Server/User-Agent; "" removes them
    default_max_forwards: int = 70
    # hosts (lower case, IPv6 without brackets) an initial request may name in
    # its Request-URI; empty: any. Scanners aim at bare IPs.
    domains: frozenset[str] = frozenset()
    # every public listener (``public`` holds the first of each kind only)
    listeners: tuple[Local, ...] = ()


def branch_of(*parts: str) -> str:
    """A Via branch of ours, derived from what identifies the transaction."""
    digest = hashlib.blake2b("\x00".join(parts).encode("utf-8", "surrogateescape"), digest_size=10)
    return BRANCH_PREFIX + digest.hexdigest()


def flow_words(flow: Peer) -> tuple[str, str, str]:
    """What identifies a source in a branch hash."""
    return (flow.transport, flow.host, str(flow.port))
