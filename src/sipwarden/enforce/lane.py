"""The lane: the kernel's pre-filter in front of the edge's SIP ports.

Under a flood from spoofed sources the edge's socket queue overflows, and
from then on the kernel drops a phone's REGISTER as readily as the
flood's: user space cannot choose what it never reads. So the choice is
made before the socket, in nftables, in sipwarden's table (``inet
<table>``, beside the bans' sets and chain of ``nftables.py``):

- ``good4``/``good6`` (``flags timeout``): the sources that logged in (a
  2xx to a REGISTER that carried credentials, learned by
  ``policy/known_good.py`` and pushed in batches by the daemon's lane
  keeper), each timing out ``known_good_timeout`` after its last report;
- ``trusted4``/``trusted6`` (intervals): trusted peers and the allow list;
- ``unknown4``/``unknown6`` (dynamic): one token bucket per source prefix
  (``prefix_v4``/``prefix_v6`` bits: a /24, a /48), filled by the packets;
- named counters ``lane_good``, ``lane_trusted``, ``lane_unknown_passed``,
  ``lane_prefix_dropped``, ``lane_total_dropped`` (``COUNTERS``);
- chain ``lane`` hooked at prerouting, priority raw + 1, which jumps to
  ``lane_sip`` for the SIP ports the edge listens on (UDP, and TCP SYNs:
  an established connection's segments are not limited):

      iif lo: accept (this host's own traffic)
      saddr @good4/@good6: accept, counted lane_good
      saddr @trusted4/@trusted6: accept, counted lane_trusted
      over prefix_rate a second from the source's prefix: drop, lane_prefix_dropped
      over total_rate a second from all unknown sources: drop, lane_total_dropped
      else: accept, counted lane_unknown_passed

Known-good sources pass before any limit; the unknown ones share what is
left, a prefix at a time, so a flood never gets more than ``total_rate``
packets a second to the edge, which keeps its queue short and its phones
answered. The bans' chain (priority raw) runs first: a banned source is
dropped whatever the lane thinks of it.

Why the known-good sets are never emptied here: they outlive the daemon
(a restart, an upgrade, a crash keep them, with their timeouts), so the
phones keep their lane while sipwarden is down and after it starts
again; the daemon does not need to know them (it reports each source
again at its next login, which renews its timeout). A reboot loses them:
each phone is back at its next login, and until then shares the unknown
sources' rate (``firewall flush`` removes the whole lane, until the daemon
starts again). Not written to the store: a write per login would buy
only the minutes after a reboot. ``start`` rebuilds everything
else (chains, trusted sets, buckets, counters: the counts start at zero,
as the bans' do) in one transaction; a lane switched off is removed.

Found out on nftables 1.0.6: a set or named counter still referenced by a
rule cannot be deleted, even by a transaction that flushes that rule's
chain later; flushing the chains first, in the same transaction, works.
A bucket set that is full takes no new prefix: that prefix then meets the
total limit only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..values import Network

GOOD_SETS: Final = ("good4", "good6")
TRUSTED_SETS: Final = ("trusted4", "trusted6")
BUCKET_SETS: Final = ("unknown4", "unknown6")
CHAINS: Final = ("lane", "lane_sip")
COUNTERS: Final = {  # what `status` and `firewall lane` call them -> the nft counter
    "good": "lane_good",
    "trusted": "lane_trusted",
    "unknown-passed": "lane_unknown_passed",
    "prefix-dropped": "lane_prefix_dropped",
    "total-dropped": "lane_total_dropped",
}
BUCKETS: Final = 65_536  # prefixes tracked per family at once
BUCKET_IDLE: Final = 60  # seconds a prefix's bucket outlives its last packet
TOTAL_BURST: Final = 0.2  # seconds of total_rate let through at once
DEFAULT_TOTAL_PER_WORKER: Final = 1000  # packets/s: see config.LaneConfig


@dataclass(frozen=True)
class LaneSettings:
    """What the lane lets through (``[firewall.lane]``, the edge's ports)."""

    ports: tuple[tuple[str, int], ...]  # (udp|tcp, port): the SIP ports it guards
    prefix_rate: int = 200  # packets a second per prefix of unknown sources
    total_rate: int = DEFAULT_TOTAL_PER_WORKER  # packets a second of all unknown sources
    prefix_v4: int = 24
    prefix_v6: int = 48
    known_good_timeout: float = 7200.0

    def __post_init__(self) -> None:
        if not self.ports:
            raise ValueError("lane: no SIP port to guard")
        if self.prefix_rate < 1 or self.total_rate < 1:
            raise ValueError("lane: rates are packets a second, at least 1")
        if not (8 <= self.prefix_v4 <= 32 and 16 <= self.prefix_v6 <= 128):
            raise ValueError("lane: prefix_v4 is 8 to 32 bits, prefix_v6 16 to 128")


@dataclass(frozen=True)
class LaneView:
    """The lane as the kernel holds it."""

    present: bool  # its counters are there: it was built
    counters: dict[str, int]  # COUNTERS' keys -> packets
    known_good: dict[str, float | None]  # address -> seconds left
    trusted: list[str]  # networks


def layout(table: str, settings: LaneSettings, trusted: Iterable[Network]) -> list[str]:
    """One transaction that builds the lane (or rebuilds it, with new
    settings), keeping the known-good sets' elements."""
    t = f"inet {table}"
    lines = [f"add table {t}"]
    # the chains first, emptied: what follows may delete what their rules name
    lines.append(
        f"add chain {t} lane {{ type filter hook prerouting priority raw + 1; policy accept; }}"
    )
    lines += [f"flush chain {t} lane", f"add chain {t} lane_sip", f"flush chain {t} lane_sip"]
    for name in GOOD_SETS:
        lines.append(f"add set {t} {name} {_SPEC[name]}")
    for name in TRUSTED_SETS:
        lines += [f"add set {t} {name} {_SPEC[name]}", f"flush set {t} {name}"]
    for name in BUCKET_SETS:  # deleted and made anew: the buckets start full
        lines += [f"add set {t} {name} {_SPEC[name]}", f"delete set {t} {name}"]
        lines.append(f"add set {t} {name} {_SPEC[name]}")
    for counter in COUNTERS.values():  # anew: the counts start at zero, as the bans' do
        lines += [f"add counter {t} {counter}", f"delete counter {t} {counter}"]
        lines.append(f"add counter {t} {counter}")
    ports = ", ".join(f"{proto} . {port}" for proto, port in settings.ports)
    lines.append(f"add rule {t} lane meta l4proto . th dport {{ {ports} }} jump lane_sip")
    rule = f"add rule {t} lane_sip"
    prefix_burst = max(settings.prefix_rate, 5)
    total_burst = max(int(settings.total_rate * TOTAL_BURST), 5)
    lines += [
        f'{rule} iif "lo" accept',
        f"{rule} tcp flags & (syn | ack) != syn accept",  # only a new connection is limited
        f'{rule} ip saddr @good4 counter name "lane_good" accept',
        f'{rule} ip6 saddr @good6 counter name "lane_good" accept',
        f'{rule} ip saddr @trusted4 counter name "lane_trusted" accept',
        f'{rule} ip6 saddr @trusted6 counter name "lane_trusted" accept',
        f"{rule} update @unknown4 {{ {_masked('ip', settings.prefix_v4, 32)}"
        f" limit rate over {settings.prefix_rate}/second burst {prefix_burst} packets }}"
        ' counter name "lane_prefix_dropped" drop',
        f"{rule} update @unknown6 {{ {_masked('ip6', settings.prefix_v6, 128)}"
        f" limit rate over {settings.prefix_rate}/second burst {prefix_burst} packets }}"
        ' counter name "lane_prefix_dropped" drop',
        f"{rule} limit rate over {settings.total_rate}/second burst {total_burst} packets"
        ' counter name "lane_total_dropped" drop',
        f'{rule} counter name "lane_unknown_passed"',
    ]
    return lines + trusted_elements(table, trusted)


def removal(table: str) -> list[str]:
    """One transaction that removes the lane (each object added first, so
    that deleting one that is not there is no error); the bans stay."""
    t = f"inet {table}"
    lines = [f"add table {t}"]
    for chain in CHAINS:
        lines += [f"add chain {t} {chain}", f"flush chain {t} {chain}"]
    for chain in CHAINS:
        lines.append(f"delete chain {t} {chain}")
    for name in GOOD_SETS + TRUSTED_SETS + BUCKET_SETS:  # as declared: nft refuses another kind
        lines += [f"add set {t} {name} {_SPEC[name]}", f"delete set {t} {name}"]
    for counter in COUNTERS.values():
        lines += [f"add counter {t} {counter}", f"delete counter {t} {counter}"]
    return lines


def trusted_elements(table: str, trusted: Iterable[Network]) -> list[str]:
    """The trusted sets' elements, overlaps merged (nft refuses them)."""
    by_family: dict[int, list[Network]] = {4: [], 6: []}
    for net in trusted:
        by_family[net.version].append(net)
    lines = []
    for version, name in ((4, "trusted4"), (6, "trusted6")):
        merged = [str(n) for n in ipaddress.collapse_addresses(by_family[version])]  # type: ignore[type-var]
        if merged:
            lines.append(f"add element inet {table} {name} {{ {', '.join(merged)} }}")
    return lines


def reload_trusted(table: str, trusted: Iterable[Network]) -> list[str]:
    """One transaction that makes the trusted sets hold ``trusted``."""
    return [f"flush set inet {table} {name}" for name in TRUSTED_SETS] + trusted_elements(
        table, trusted
    )


def known_good_elements(
    entries: Mapping[str, int],
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Address -> timeout (seconds) as elements per set: bare (to delete an
    old one: an add keeps an old timeout on older kernels) and with their
    timeouts (every key an address: ``is_address``)."""
    bare: dict[str, list[str]] = {name: [] for name in GOOD_SETS}
    timed: dict[str, list[str]] = {name: [] for name in GOOD_SETS}
    for host, timeout in entries.items():
        ip = ipaddress.ip_address(host)
        bare[f"good{ip.version}"].append(ip.compressed)
        timed[f"good{ip.version}"].append(f"{ip.compressed} timeout {timeout}s")
    return bare, timed


def is_address(text: str) -> bool:
    """Whether ``text`` is an IP address without a scope (only those may
    go into nft's input)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return "%" not in text


def counters(listing: Iterable[dict[str, Any]]) -> dict[str, int]:
    """The lane's counters in ``nft -j list counters``'s listing."""
    named = {nft: ours for ours, nft in COUNTERS.items()}
    found = dict.fromkeys(COUNTERS, 0)
    for obj in listing:
        counter = obj.get("counter")
        if isinstance(counter, dict) and counter.get("name") in named:
            found[named[counter["name"]]] = int(counter.get("packets", 0))
    return found


def set_elements(listing: Iterable[dict[str, Any]]) -> dict[str, float | None]:
    """A set's elements in ``nft -j list set``'s listing: address or network
    -> seconds left (None: no timeout)."""
    found: dict[str, float | None] = {}
    for obj in listing:
        s = obj.get("set")
        if not isinstance(s, dict):
            continue
        for item in s.get("elem", []):
            inner = item.get("elem") if isinstance(item, dict) else None
            value = inner["val"] if isinstance(inner, dict) else item
            left = float(inner.get("expires", 0)) if isinstance(inner, dict) else None
            if isinstance(value, str):
                found[value] = left
            elif isinstance(value, dict) and "prefix" in value:
                found[f"{value['prefix']['addr']}/{value['prefix']['len']}"] = left
            elif isinstance(value, dict) and "range" in value:
                first, last = (ipaddress.ip_address(a) for a in value["range"])
                for net in ipaddress.summarize_address_range(first, last):
                    found[str(net)] = left
    return found


def _kind(name: str) -> str:
    return "ipv4_addr" if name.endswith("4") else "ipv6_addr"


_SPEC: Final = {  # each set's declaration (``add set`` of an existing set must repeat it)
    **{name: f"{{ type {_kind(name)}; flags timeout; }}" for name in GOOD_SETS},
    **{name: f"{{ type {_kind(name)}; flags interval; }}" for name in TRUSTED_SETS},
    **{
        name: f"{{ type {_kind(name)}; size {BUCKETS}; flags dynamic,timeout;"
        f" timeout {BUCKET_IDLE}s; }}"
        for name in BUCKET_SETS
    },
}


def _masked(family: str, prefix: int, bits: int) -> str:
    """The source address cut to its prefix, as an nft expression."""
    if prefix == bits:
        return f"{family} saddr"
    net = ipaddress.ip_network(f"{'0.0.0.0' if bits == 32 else '::'}/{prefix}")
    return f"{family} saddr and {net.netmask}"


def total_rate(configured: int | None, workers: int) -> int:
    """The total rate in force: the configured one, or the default per worker."""
    return configured if configured is not None else DEFAULT_TOTAL_PER_WORKER * workers


def ports_of(listen: Sequence[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """(transport, port) of the listeners as nft protocols (tls is tcp), once each."""
    seen: dict[tuple[str, int], None] = {}
    for transport, port in listen:
        seen[("udp" if transport == "udp" else "tcp", int(port))] = None
    return tuple(sorted(seen))
