"""What the kernel drops for a ban or a feed, counted per source address.

A banned flood never reaches the edge's socket, so the edge cannot count
it; the kernel can. In sipwarden's table (``inet <table>``, beside the
bans' sets and chain of ``nftables.py``):

- ``drops4``/``drops6``: dynamic sets (``flags dynamic,timeout``) of at most
  ``size`` source addresses each, every element with a counter (packets,
  bytes) and a timeout of ``idle`` seconds renewed by each packet, so a
  quiet source leaves and a flood's element stays; the feed sets are
  interval sets, which cannot count per source, hence these;
- a named counter ``drops_uncounted``: the drops of sources that found their
  set full (both families);
- chains ``dropped4``/``dropped6``, the target of the bans' and the feeds'
  drop rules (``... saddr @ban4 ... counter jump dropped4``):

      update @drops4 { ip saddr counter } drop
      counter name "drops_uncounted" drop

Why two rules: an ``update`` that cannot add to a full set ends its rule
(nft 1.0.6 on Linux 6.18, tried: ``update ... drop`` in one rule then lets
the packet through), so the second rule drops what the first could not
count, and counts it. The drop never depends on the count.

Bytes are what nft counts at prerouting: the whole IP packet (an IPv4
UDP datagram's 20-byte IP and 8-byte UDP headers included; 48 bytes for
IPv6), not the SIP payload the edge's flows count; nothing is
subtracted, here or in ``observe/drops.py`` (whose docstring says so).

Cost: on a banned or listed source's packets only (everything else never
leaves the bans' rules): a jump, a hash lookup (or insert) in a set of at
most ``size`` elements, a per-CPU counter; ``bench/drops.py`` measures
it. Memory: an element holds its key, timeout and a per-CPU counter (16
bytes a CPU), bounded by ``size``.

``start`` rebuilds them (the counts start at zero, as the drop rules'
counters do); an older release's table, without them, gets them at the
first start; switched off, they are removed (``removal``).

Reading them (``NftablesEnforcer.drop_counts``): ``nft -j list`` of the two
sets and the counter, handed to this file run as a script (stdlib only),
which prints one ``address packets bytes`` line per source (``main``):
``json.loads`` of 65,536 elements (7.7 MB) holds the interpreter's lock
for ~0.1-0.25 s, which in a child process does not stall worker 0's
packets; splitting the lines back, ~1 µs a source, runs on a thread.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

COUNT_SETS: Final = ("drops4", "drops6")
CHAINS: Final = {"drops4": "dropped4", "drops6": "dropped6"}  # the drop rules jump here
UNCOUNTED: Final = "drops_uncounted"  # the named counter of the drops a full set could not count
OVERFLOW: Final = "*"  # their key in ``counts`` (observe/flows.py names its overflow flow so)
SIZE: Final = 65_536  # sources per family
IDLE: Final = 600  # seconds an element outlives its source's last dropped packet
MAX_SIZE: Final = 16_777_216
MAX_IDLE: Final = 99_999_999  # nft 1.0.6 refuses longer timeouts


@dataclass(frozen=True)
class DropCounting:
    """How the kernel counts drops per source (``[firewall.drop_counts]``)."""

    size: int = SIZE
    idle: int = IDLE

    def __post_init__(self) -> None:
        if not 1 <= self.size <= MAX_SIZE:
            raise ValueError(f"drop_counts.size: {self.size} (1 to {MAX_SIZE} sources a family)")
        if not 1 <= self.idle <= MAX_IDLE:
            raise ValueError(f"drop_counts.idle: {self.idle} (1 to {MAX_IDLE} seconds)")


DEFAULT: Final = DropCounting()


def target(name: str) -> str:
    """The chain the drop rule of the set ``name`` (ban4, feed6...) jumps to."""
    return CHAINS["drops4" if name.endswith("4") else "drops6"]


def layout(table: str, counting: DropCounting) -> list[str]:
    """Statements that build (or rebuild, emptied) the counting sets, the
    counter and the chains; the drop rules must already be flushed (they
    jump to the chains), which they are in ``NftablesEnforcer._layout``."""
    t = f"inet {table}"
    lines = []
    for chain in CHAINS.values():  # emptied first: their rules name the sets
        lines += [f"add chain {t} {chain}", f"flush chain {t} {chain}"]
    for name in COUNT_SETS:  # deleted and made anew: the counts start at zero
        lines += [f"add set {t} {name} {_bare(name)}", f"delete set {t} {name}"]
        lines.append(
            f"add set {t} {name} {{ type {_kind(name)}; size {counting.size};"
            f" flags dynamic,timeout; timeout {counting.idle}s; }}"
        )
    lines += [f"add counter {t} {UNCOUNTED}", f"delete counter {t} {UNCOUNTED}"]
    lines.append(f"add counter {t} {UNCOUNTED}")
    for name, chain in CHAINS.items():
        family = "ip" if name.endswith("4") else "ip6"
        lines += [
            f"add rule {t} {chain} update @{name} {{ {family} saddr counter }} drop",
            f'add rule {t} {chain} counter name "{UNCOUNTED}" drop',
        ]
    return lines


def removal(table: str) -> list[str]:
    """Statements that remove them (each added first, so that deleting one
    that is not there is no error); the drop rules must already be flushed."""
    t = f"inet {table}"
    lines = []
    for chain in CHAINS.values():
        lines += [f"add chain {t} {chain}", f"flush chain {t} {chain}", f"delete chain {t} {chain}"]
    for name in COUNT_SETS:
        lines += [f"add set {t} {name} {_bare(name)}", f"delete set {t} {name}"]
    return [*lines, f"add counter {t} {UNCOUNTED}", f"delete counter {t} {UNCOUNTED}"]


def counts(listing: Iterable[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Source address -> (packets, bytes) in ``nft -j list set``'s listing of
    the counting sets, and ``OVERFLOW`` -> the uncounted drops in ``nft -j
    list counter``'s; an element without a counter or an address is skipped."""
    found: dict[str, tuple[int, int]] = {}
    for obj in listing:
        if not isinstance(obj, dict):
            continue
        s, counter = obj.get("set"), obj.get("counter")
        if isinstance(s, dict) and s.get("name") in COUNT_SETS:
            for item in s.get("elem", ()):
                element = _element(item)
                if element is not None:
                    found[element[0]] = element[1]
        elif isinstance(counter, dict) and counter.get("name") == UNCOUNTED:
            pair = _pair(counter)
            if pair is not None and pair[0] > 0:
                found[OVERFLOW] = pair
    return found


def listing(text: str) -> list[Any]:
    """The objects of one or more ``nft -j`` documents one after another
    (ValueError if one is not nft's JSON)."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return found
        doc, at = decoder.raw_decode(text, at)
        if not isinstance(doc, dict) or not isinstance(doc.get("nftables"), list):
            raise ValueError("not an nft -j listing (no nftables array)")
        found += doc["nftables"]


def to_lines(found: Mapping[str, tuple[int, int]]) -> str:
    return "".join(f"{source} {packets} {size}\n" for source, (packets, size) in found.items())


def from_lines(text: str) -> dict[str, tuple[int, int]]:
    """``to_lines`` read back (ValueError if a line is not one of its)."""
    found: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        source, packets, size = line.split(" ")
        found[source] = (int(packets), int(size))
    return found


def main() -> int:
    """nft -j listings on stdin -> ``counts`` as lines on stdout."""
    try:
        found = counts(listing(sys.stdin.read()))
    except ValueError as e:
        print(f"nft -j listing not understood: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(to_lines(found))
    return 0


def _element(item: Any) -> tuple[str, tuple[int, int]] | None:
    """(address, (packets, bytes)) of one element as nft -j prints it:
    ``{"elem": {"val": "203.0.113.5", "expires": 119, "counter": {...}}}``."""
    inner = item.get("elem") if isinstance(item, dict) else None
    if not isinstance(inner, dict) or not isinstance(inner.get("val"), str):
        return None
    pair = _pair(inner.get("counter"))
    if pair is None:
        return None
    try:
        return str(ipaddress.ip_address(inner["val"])), pair
    except ValueError:
        return None


def _pair(counter: Any) -> tuple[int, int] | None:
    if not isinstance(counter, dict):
        return None
    with contextlib.suppress(TypeError, ValueError):
        packets, size = int(counter.get("packets", 0)), int(counter.get("bytes", 0))
        if packets >= 0 and size >= 0:
            return packets, size
    return None


def _kind(name: str) -> str:
    return "ipv4_addr" if name.endswith("4") else "ipv6_addr"


def _bare(name: str) -> str:
    """A declaration any earlier ``drops`` set matches (``add set`` of an
    existing set fails if the type or flags differ; size and timeout may)."""
    return f"{{ type {_kind(name)}; flags dynamic,timeout; }}"


if __name__ == "__main__":  # run as a script (python -I drops.py) by drop_counts
    sys.exit(main())
