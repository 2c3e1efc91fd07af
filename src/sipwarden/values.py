"""The values every layer shares: who sent a message, what the policy
decided about it, what a detector asks of the ban book, and the bans.

Rules:
- this module is the leaf: it imports nothing of sipwarden, so the pure core
  (``sip``, ``proxy``, ``policy``, ``intel``), the resources (``store``,
  ``enforce``) and the modes can all use it without importing each other;
- every value here is immutable and cheap to compare and hash: decisions are
  handed on (detector -> ban book -> keeper -> store and kernel) as values,
  the way fail2ban hands its tickets on;
- no behaviour beyond what a value says about itself (``Ban.active``,
  ``Verdict.passes``); the logic lives in the packages that own it.

Also here: address <-> number conversions, the one place the pure core gets
``inet_pton``/``inet_ntop``. They are pure functions of the C module that
``socket`` wraps; taking them from ``_socket`` keeps the socket API (and its
I/O) out of the core while keeping their speed (a tenth of ``ipaddress``'s
time, per new source on the packet path).
"""

from __future__ import annotations

import ipaddress
from _socket import AF_INET, AF_INET6, inet_ntop, inet_pton
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# ------------------------------------------------------------------- peers


class Peer(NamedTuple):
    """A peer as the transport layer sees it: where a message came from, or
    where one goes. ``conn`` identifies a TCP/TLS connection (0 for UDP, or
    for "any connection to this address"). (Called ``Peer`` before the
    traffic flows of ``observe`` took that word.)"""

    transport: str  # "udp", "tcp" or "tls"
    host: str  # IP address, compressed form
    port: int
    conn: int = 0

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        suffix = f"#{self.conn}" if self.conn else ""
        return f"{self.transport}:{host}:{self.port}{suffix}"

    @property
    def is_stream(self) -> bool:
        return self.transport != "udp"


# ---------------------------------------------------------------- verdicts

VerdictKind = Literal["forward", "drop", "reject", "ban", "deceive", "allow"]


class Verdict(NamedTuple):
    """What to do with a message, and why (the rule or detector id)."""

    kind: VerdictKind
    reason: str = ""
    code: int = 0  # the status for "reject"
    ttl: float = 0.0  # seconds, for "ban" (0: the ban book's default)

    @property
    def passes(self) -> bool:
        """Whether the message goes on to the proxy."""
        return self.kind in ("forward", "allow")


FORWARD: Final = Verdict("forward")

# --------------------------------------------------------------- decisions


class Decision(NamedTuple):
    """A detector's ask to the ban book (only the book makes bans)."""

    target: str  # canonical address or CIDR
    detector: str  # "auth.brute-force", "rate.requests", a rule id...
    reason: str  # for people
    duration: float | Literal["progressive"]
    evidence: tuple[str, ...]


# -------------------------------------------------------------------- bans


# the longest a ban (or any configured duration) may last: ten years; more is
# a typo or a hostile request (JSON's 1e308), and "permanent" says it plainly
MAX_DURATION: Final = 10 * 365 * 86400.0
# the shortest ban an operator's request (control socket, REST, CLI) may ask
# for: the kernel's set timeouts count whole seconds, and a shorter ban
# would expire as it is made
MIN_DURATION: Final = 1.0


def canonical(target: str) -> str:
    """``192.0.2.7``, ``192.0.2.0/24``, ``2001:db8::/32``: one spelling per
    target (a /32 or /128 is written as the address; an IPv4-mapped IPv6
    address or network, ``::ffff:192.0.2.7``, as its IPv4 form, the address
    the kernel and the edge see). Raises ValueError, for a scoped IPv6
    address (``fe80::1%eth0``) too: nft cannot hold one, and a ban is on an
    address, not on a link."""
    text = target.strip()
    if "%" in text:
        raise ValueError(f"{text!r} is a scoped IPv6 address: ban the address without %zone")
    net = ipaddress.ip_network(text, strict=False)
    if net.version == 6 and net.prefixlen >= 96 and net.subnet_of(_MAPPED):
        mapped = net.network_address.ipv4_mapped
        assert mapped is not None
        net = ipaddress.ip_network(f"{mapped}/{net.prefixlen - 96}")
    return str(net.network_address) if net.num_addresses == 1 else str(net)


_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")


@dataclass(frozen=True)
class Ban:
    target: str  # canonical address or CIDR
    reason: str  # what happened, for people
    detector: str  # the rule or detector id that asked for it
    created_at: float  # epoch seconds
    expires_at: float | None  # None: permanent
    offence: int = 1  # the target's n-th ban within the book's memory
    evidence: tuple[str, ...] = ()  # a few sample messages or counts
    origin: str = ""  # the fleet node that made it ("": this node; see fleet/)

    @property
    def permanent(self) -> bool:
        return self.expires_at is None

    def active(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class Change:
    """What enforcement must do, in order: add a ban or remove one."""

    op: Literal["add", "remove"]
    ban: Ban


# ------------------------------------------------------------------ feeds


@dataclass(frozen=True)
class FeedState:
    """Where a feed stands; what a restart resumes from."""

    last_id: str = "100"
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_full: float | None = None
    sent: tuple[float, ...] = ()  # recent request times, for pacing


__all__ = [
    "AF_INET",
    "AF_INET6",
    "FORWARD",
    "Ban",
    "Change",
    "Decision",
    "FeedState",
    "Network",
    "Peer",
    "Verdict",
    "VerdictKind",
    "canonical",
    "inet_ntop",
    "inet_pton",
]
