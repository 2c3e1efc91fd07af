"""Threat-feed entries as the kernel can hold them, in nftables interval sets.

Operations: ``kernel_targets(entries, exclude)`` whenever the feeds' entries
change or one of them expires; the result goes to the enforcer's
``load_feeds``.

Goals: a result nft takes in one transaction (an interval set refuses an
element that overlaps another, so no target may be inside another); nothing
the operator trusts dropped by the kernel (trusted peers, the allow list);
well under a second for 100,000 entries of both families, addresses and
networks of twenty prefix lengths mixed.

Plan:

- Targets are integers, per family and prefix length: prefix length ->
  index -> value, where the index is the network number shifted right by
  the host bits. ``x`` of length ``p`` is inside a network of length
  ``q < p`` exactly when ``x >> (p - q)`` is that network's index: one
  probe per pair of distinct lengths present, never per pair of targets
  and never per possible length (a /32 is not tried at 32 supernets).
- Nesting: lengths in increasing order, each table's entries inside a kept
  shorter one are dropped (one comprehension per pair of lengths). The
  outer one keeps its own expiry: when it ends, the caller computes again
  and the inner ones come back.
- Exclusions: a target inside an excluded network is dropped (the same
  probes); an excluded network inside a target (excluded networks are few)
  is found from the excluded side, and that target is split by halving
  around its holes, as ``ipaddress.address_exclude`` does, every piece
  with the target's expiry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Final

from ..values import AF_INET, AF_INET6, inet_ntop
from .index import parse_target

Table = dict[int, dict[int, tuple[float | None, str]]]  # length -> index -> (expires_at, spelling)
Holes = dict[int, set[int]]  # length -> indexes of excluded networks

_WIDTH: Final = {4: 32, 6: 128}
_AF: Final = {4: AF_INET, 6: AF_INET6}


def kernel_targets(
    entries: Mapping[str, float | None], exclude: Iterable[str] = ()
) -> dict[str, float | None]:
    """The entries (canonical address or CIDR -> expires_at, None: no end)
    to load into the kernel's interval sets: no target inside another (the
    outer one is kept, with its own expiry), none inside an ``exclude``
    network, and a target holding an excluded network split into the
    pieces around it. Pass only the entries in force: an expired network
    would hide the ones inside it. Bad entries are skipped; a bad
    ``exclude`` (any spelling of an address or CIDR) raises ValueError."""
    holes: dict[int, Holes] = {4: {}, 6: {}}
    for text in exclude:
        t = parse_target(text.strip())
        index = t.number >> (_WIDTH[t.version] - t.prefix)
        holes[t.version].setdefault(t.prefix, set()).add(index)
    tables: dict[int, Table] = {4: {}, 6: {}}
    for text, expires in entries.items():
        try:
            version, prefix, number, spelling = parse_target(text)
        except ValueError:
            continue
        by_length = tables[version]
        items = by_length.get(prefix)
        if items is None:
            items = by_length[prefix] = {}
        index = number >> (_WIDTH[version] - prefix)
        old = items.get(index)
        if old is None or (old[0] is not None and (expires is None or expires > old[0])):
            items[index] = (expires, spelling)  # two spellings of one target: the later end
    result: dict[str, float | None] = {}
    for version, table in tables.items():
        _outermost(table)
        _drop_excluded(table, holes[version])
        split = _containing(table, holes[version])
        for prefix, items in table.items():
            for index, (expires, spelling) in items.items():
                inner = split.get((prefix, index))
                if inner is None:
                    result[spelling] = expires
                    continue
                for p, i in _pieces(prefix, index, inner):
                    result[_spell(version, p, i)] = expires
    return result


def _outermost(table: Table) -> None:
    """Drop every target inside another (in place)."""
    kept: list[int] = []
    for p in sorted(table):
        items = table[p]
        for q in kept:  # every shorter target left is outermost already
            outer, shift = table[q], p - q
            for index in [i for i in items if i >> shift in outer]:
                del items[index]
        if items:
            kept.append(p)


def _drop_excluded(table: Table, holes: Holes) -> None:
    """Drop every target inside an excluded network (in place)."""
    for p, items in table.items():
        for q, indexes in holes.items():
            if q <= p:
                shift = p - q
                for index in [i for i in items if i >> shift in indexes]:
                    del items[index]


def _containing(table: Table, holes: Holes) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """(length, index) of each target holding excluded networks -> those."""
    found: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for q, indexes in holes.items():
        for p, items in table.items():
            if p < q:
                shift = q - p
                for h in indexes:
                    if h >> shift in items:
                        found.setdefault((p, h >> shift), []).append((q, h))
    return found


def _pieces(prefix: int, index: int, holes: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """The networks (length, index) covering the network ``index`` of length
    ``prefix`` minus ``holes`` (all inside it), in address order."""
    if not holes:
        yield prefix, index
        return
    if any(q == prefix for q, _ in holes):  # this whole network is excluded
        return
    child = prefix + 1
    for half in (index << 1, index << 1 | 1):
        yield from _pieces(child, half, [(q, h) for q, h in holes if h >> (q - child) == half])


def _spell(version: int, prefix: int, index: int) -> str:
    width = _WIDTH[version]
    addr = inet_ntop(_AF[version], (index << (width - prefix)).to_bytes(width // 8))
    return addr if prefix == width else f"{addr}/{prefix}"
