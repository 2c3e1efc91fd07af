"""The doctor's judgements, without I/O: text and JSON in, answers out.

What the probes (``probes.py``) read from the machine is judged here, so
that each judgement is tested on plain values:

- ``has_net_admin``: CAP_NET_ADMIN in the effective set (``CapEff`` of
  ``/proc/self/status``);
- ``listeners``: the bound UDP and listening TCP sockets of ``/proc/net/
  {udp,tcp,udp6,tcp6}``, with their socket inode (to name the owner);
- ``fate``: what this machine's nftables ruleset (``nft -j list ruleset``)
  does to a new packet from a stranger (any outside address) to a local
  port: the base chains of the input and prerouting hooks of its family,
  in order, jumps and gotos followed (at most ``MAX_DEPTH`` deep); the
  first rule whose every match a stranger meets decides, else the chain's
  policy.

Bounds and limits: a rule this module cannot read (a named set, a match on
something a stranger's packet is not known to have: a mark, a rate) is
passed over as not matching; "ct state" matches only when it names
``new``; an ``iifname``/``iif`` equal to ``lo`` never matches a stranger.
So a limit written in an unusual way may be missed (a bypass reported
where there is none), never the other way: an accept this module cannot
read is not taken as opening the port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

CAP_NET_ADMIN: Final = 12  # capability(7)
MAX_DEPTH: Final = 8  # jumps followed from a base chain
HOOKS: Final = ("prerouting", "input")  # where a packet to a local port is judged
UDP_BOUND: Final = "07"  # /proc/net/udp: every bound socket shows "close"
TCP_LISTEN: Final = "0A"

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Result:
    """One check's answer: ``status`` pass, fail or skip (not applicable,
    or not tried because an earlier check failed); ``detail`` says what was
    found, ``fix`` what to do (empty when nothing is to be done)."""

    check: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "ok": self.ok,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
        }


def passed(check: str, detail: str) -> Result:
    return Result(check, "pass", detail)


def failed(check: str, detail: str, fix: str) -> Result:
    return Result(check, "fail", detail, fix)


def skipped(check: str, detail: str) -> Result:
    return Result(check, "skip", detail)


# ------------------------------------------------------------ capabilities


def has_net_admin(status_text: str) -> bool | None:
    """Whether ``CapEff`` holds CAP_NET_ADMIN (None: no CapEff line)."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    return None


# ---------------------------------------------------------------- sockets


@dataclass(frozen=True)
class Listener:
    proto: Literal["udp", "tcp"]
    host: str
    port: int
    inode: int

    @property
    def public(self) -> bool:
        """Reachable from outside this machine: not a loopback address."""
        return not ipaddress.ip_address(self.host).is_loopback


def _address(hex_addr: str) -> tuple[str, int]:
    host, port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = ipaddress.IPv4Address(raw[::-1])  # one little-endian word
        return str(ip), int(port, 16)
    # four 32-bit words, each little-endian
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    v6 = ipaddress.IPv6Address(words)
    mapped = v6.ipv4_mapped
    return str(mapped if mapped is not None else v6), int(port, 16)


def listeners(text: str, proto: Literal["udp", "tcp"]) -> list[Listener]:
    """The bound UDP (or listening TCP) sockets of one /proc/net table."""
    wanted = UDP_BOUND if proto == "udp" else TCP_LISTEN
    found = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10 or parts[3] != wanted:
            continue
        host, port = _address(parts[1])
        found.append(Listener(proto, host, port, int(parts[9])))
    return found


# ----------------------------------------------------------------- nftables


@dataclass(frozen=True)
class Probe:
    """A new packet from a stranger: its family ("ip" or "ip6"), protocol and port."""

    family: Literal["ip", "ip6"]
    proto: Literal["udp", "tcp"]
    port: int


@dataclass(frozen=True)
class Fate:
    passes: bool
    where: str  # the chain (and rule) that decided, or "no chain" when none did


def fate(ruleset: Mapping[str, Any], probe: Probe) -> Fate:
    """What the ruleset does to ``probe`` (see the module doc)."""
    items = ruleset.get("nftables", [])
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[list[dict[str, Any]]]] = {}
    for item in items:
        if "chain" in item:
            c = item["chain"]
            chains[(c["family"], c["table"], c["name"])] = c
        elif "rule" in item:
            r = item["rule"]
            rules.setdefault((r["family"], r["table"], r["chain"]), []).append(r.get("expr", []))
    families = ("inet", probe.family)
    bases = sorted(
        (
            c
            for c in chains.values()
            if c.get("hook") in HOOKS and c["family"] in families and c.get("type") == "filter"
        ),
        key=lambda c: (HOOKS.index(c["hook"]), c.get("prio", 0)),
    )
    for base in bases:
        key = (base["family"], base["table"], base["name"])
        name = f"{base['family']} {base['table']} {base['name']}"
        verdict = _walk(rules, key, probe, 0)
        if verdict is None:
            verdict = base.get("policy", "accept"), f"{name} (policy {base.get('policy')})"
        elif verdict[0] != "accept":
            verdict = verdict[0], f"{name}: {verdict[1]}"
        if verdict[0] in ("drop", "reject"):
            return Fate(False, verdict[1])
    return Fate(True, "no chain drops it")


def _walk(
    rules: Mapping[tuple[str, str, str], Sequence[Sequence[dict[str, Any]]]],
    chain: tuple[str, str, str],
    probe: Probe,
    depth: int,
) -> tuple[str, str] | None:
    """The verdict of ``chain`` on the probe (None: it falls off the end)."""
    if depth > MAX_DEPTH:
        return None
    for number, exprs in enumerate(rules.get(chain, ()), 1):
        verdict: tuple[str, str] | None = None
        matched = True
        for expr in exprs:
            if "match" in expr:
                if not _meets(expr["match"], probe):
                    matched = False
                    break
            elif any(k in expr for k in ("accept", "drop", "reject")):
                kind = next(k for k in ("accept", "drop", "reject") if k in expr)
                verdict = kind, f"rule {number}"
            elif "jump" in expr or "goto" in expr:
                target = str((expr.get("jump") or expr.get("goto") or {}).get("target"))
                inner = _walk(rules, (chain[0], chain[1], target), probe, depth + 1)
                if inner is not None or "goto" in expr:
                    verdict = inner or ("return", "goto")
            elif "return" in expr:
                verdict = "return", f"rule {number}"
            elif any(k in expr for k in ("counter", "log", "comment", "limit")):
                if "limit" in expr:  # a rate: a stranger may be over it or under
                    matched = False
                    break
                continue
        if matched and verdict is not None:
            return None if verdict[0] == "return" else verdict
    return None


def _meets(match: Mapping[str, Any], probe: Probe) -> bool:
    """Whether a stranger's new packet meets one ``match`` (unknown: no)."""
    left, op, right = match.get("left"), match.get("op", "=="), match.get("right")
    if not isinstance(left, dict):
        return False
    hit: bool | None = None
    if "payload" in left:
        payload = left["payload"]
        proto, field = payload.get("protocol"), payload.get("field")
        if field == "dport" and proto in (probe.proto, "th"):
            hit = _holds(right, probe.port)
        elif field == "dport":
            return False  # another protocol's port: not this packet
        elif field == "saddr" and proto in ("ip", "ip6"):
            if proto != probe.family:
                return False
            # a stranger is none of the addresses named: == misses, != meets
            hit = False
    elif "meta" in left:
        key = left["meta"].get("key")
        if key == "l4proto":
            hit = _names(right, probe.proto)
        elif key == "nfproto":
            hit = _names(right, "ipv4" if probe.family == "ip" else "ipv6")
        elif key in ("iifname", "iif"):
            # a stranger comes in on anything but lo; on which one is not known
            return op == "!=" and _names(right, "lo")
    elif "ct" in left and left["ct"].get("key") == "state":
        hit = _names(right, "new")
    if hit is None:
        return False
    return not hit if op == "!=" else hit


def _items(right: Any) -> Iterable[Any]:
    if isinstance(right, dict) and isinstance(right.get("set"), list):
        return list(right["set"])
    if isinstance(right, list):
        return right
    return (right,)


def _holds(right: Any, port: int) -> bool:
    for item in _items(right):
        if isinstance(item, int) and item == port:
            return True
        if isinstance(item, dict) and "range" in item:
            low, high = item["range"]
            if isinstance(low, int) and isinstance(high, int) and low <= port <= high:
                return True
    return False


def _names(right: Any, word: str) -> bool:
    return any(isinstance(item, str) and item == word for item in _items(right))
