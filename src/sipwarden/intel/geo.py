"""Countries of sources, and the operator's country policy.

Operations: ``Countries.country(host)`` per packet (an ISO 3166 code, upper
case, or None), ``CountryPolicy.allowed(code)`` on its answer.

Sources:

- MaxMind-format databases (GeoLite2-Country, DB-IP lite country, anything
  whose records carry ``country.iso_code``; ``registered_country`` when a
  network has no ``country``), read with ``maxminddb`` (its C reader when
  built, memory-mapped);
- country zone files, for operators without a MaxMind account: a directory
  with one file per country named by its code (``xa.zone``, ``XA.txt``,
  ipdeny's ``xa-aggregated.zone``), one CIDR per line, the feed syntax
  (comments, blank lines; bad lines counted and skipped).

Goals: ≤ 1 µs per packet for a known source, and a bounded cost for an
unknown one: sources can be spoofed by the million.

Plan: a bounded cache per host in front of every source (cleared when full,
as ``TrustedPeers``: a spoofed flood costs lookups, never memory). Zone
files become a table of disjoint ranges per family (sorted starts and ends
in arrays, the codes beside them), searched with ``bisect``: no object per
range for the collector to walk. A MaxMind database can be read record by
record (a tree walk in C, then the record decoded into dicts) or, with
``preload``, walked once into the same range table, for the spoofed-source
case where every packet misses the cache.
"""

from __future__ import annotations

import bisect
from array import array
from bisect import bisect_right
from collections.abc import Iterable
from typing import Any, Final, Literal, Protocol

from ..values import AF_INET, AF_INET6, inet_pton
from .index import parse_target

CACHE: Final = 65_536  # hosts remembered per Countries
_BUCKETS: Final = 1 << 16  # CountryRanges' buckets: an address's top 16 bits
_BUCKET_SHIFT: Final = {4: 32 - 16, 6: 128 - 16}


class CountrySource(Protocol):
    def lookup(self, host: str) -> str | None:
        """The country of ``host`` (an address), uncached; None if unknown."""
        ...

    def close(self) -> None: ...


def iso_code(record: Any) -> str | None:
    """The country code in a MaxMind-format record (GeoLite2 / DB-IP shape:
    ``{"country": {"iso_code": "FR"}}``; ``registered_country`` as a
    fallback; a flat ``country_code`` too), upper case."""
    if not isinstance(record, dict):
        return None
    for field in ("country", "registered_country"):
        sub = record.get(field)
        if isinstance(sub, dict):
            code = sub.get("iso_code")
            if isinstance(code, str) and code:
                return code.upper()
    code = record.get("country_code")
    return code.upper() if isinstance(code, str) and code else None


class CountryRanges:
    """Countries from (CIDR, code) pairs, as a table of disjoint ranges.

    CIDRs nest or are apart: the most specific network wins (as in a
    MaxMind tree); adjacent ranges of one country are merged."""

    def __init__(self, ranges: Iterable[tuple[str, str]], *, bad: int = 0) -> None:
        spans: dict[int, list[tuple[int, int, str]]] = {4: [], 6: []}
        codes: dict[str, str] = {}
        for cidr, code in ranges:
            target = parse_target(cidr)
            size = 1 << ((32 if target.version == 4 else 128) - target.prefix)
            code = codes.setdefault(code.upper(), code.upper())
            spans[target.version].append((target.number, target.number + size - 1, code))
        self.bad = bad  # lines skipped while loading
        self._starts: dict[int, Any] = {}
        self._ends: dict[int, Any] = {}
        self._codes: dict[int, list[str]] = {}
        # per family, for each value of an address's top 16 bits, the index
        # of the first range that starts there or later: a lookup bisects
        # only the ranges of its own bucket (a few), not the whole table
        self._first: dict[int, array[int]] = {}
        for version, items in spans.items():
            starts, ends, names = _flatten(items)
            # IPv4 in 4-byte arrays; IPv6 numbers do not fit a C integer
            self._starts[version] = array("I", starts) if version == 4 else starts
            self._ends[version] = array("I", ends) if version == 4 else ends
            self._codes[version] = names
            shift = _BUCKET_SHIFT[version]
            self._first[version] = array(
                "I", (bisect.bisect_left(starts, b << shift) for b in range(_BUCKETS + 1))
            )
        # what a lookup reads, one tuple per family (indexed by 4 and 6)
        self._tables: list[Any] = [None] * 7
        for version in (4, 6):
            self._tables[version] = (
                self._starts[version],
                self._ends[version],
                self._codes[version],
                self._first[version],
                _BUCKET_SHIFT[version],
            )

    def __len__(self) -> int:
        return sum(len(codes) for codes in self._codes.values())

    def countries(self) -> set[str]:
        return {code for codes in self._codes.values() for code in codes}

    def lookup(self, host: str) -> str | None:
        try:
            if ":" in host:
                if host.startswith("::ffff:") and "." in host:
                    return self.lookup(host[7:])
                version = 6
                value = int.from_bytes(inet_pton(AF_INET6, host.partition("%")[0]))
            else:
                version = 4
                value = int.from_bytes(inet_pton(AF_INET, host))
        except OSError:
            return None
        return self.lookup_number(version, value)

    def lookup_number(self, version: int, value: int) -> str | None:
        """``lookup`` of an address already parsed (``index.address_number``)."""
        starts, ends, codes, first, shift = self._tables[version]
        bucket = value >> shift
        # the range holding ``value`` starts in its bucket, or is the one
        # before the bucket's first (it began earlier and may reach in)
        i = bisect_right(starts, value, first[bucket], first[bucket + 1]) - 1
        if i >= 0 and value <= ends[i]:
            code: str = codes[i]
            return code
        return None

    def close(self) -> None:
        pass


def _flatten(items: list[tuple[int, int, str]]) -> tuple[list[int], list[int], list[str]]:
    """Nested (start, end, code) ranges to disjoint ones, the innermost
    winning: a sweep with the enclosing ranges on a stack."""
    starts: list[int] = []
    ends: list[int] = []
    names: list[str] = []

    def emit(start: int, end: int, code: str) -> None:
        if start > end:
            return
        if ends and start == ends[-1] + 1 and names[-1] == code:
            ends[-1] = end
        else:
            starts.append(start)
            ends.append(end)
            names.append(code)

    stack: list[list[Any]] = []  # [end, code, first address not yet emitted]
    for start, end, code in sorted(items, key=lambda s: (s[0], -s[1])):
        while stack and stack[-1][0] < start:
            outer_end, outer_code, cursor = stack.pop()
            emit(cursor, outer_end, outer_code)
        if stack:
            top = stack[-1]
            emit(top[2], start - 1, top[1])
            top[2] = max(top[2], end + 1)
        stack.append([end, code, start])
    while stack:
        outer_end, outer_code, cursor = stack.pop()
        emit(cursor, outer_end, outer_code)
    return starts, ends, names


class Countries:
    """``country(host)`` through a bounded cache, over one source."""

    def __init__(self, source: CountrySource, cache_size: int = CACHE) -> None:
        self.source = source
        self.cache_size = cache_size
        self._cache: dict[str, str] = {}  # host -> code, "" for unknown

    def country(self, host: str) -> str | None:
        code = self._cache.get(host)
        if code is None:
            code = self.source.lookup(host) or ""
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[host] = code
        return code or None

    def cached(self) -> int:
        return len(self._cache)

    def close(self) -> None:
        self._cache.clear()
        self.source.close()


def _codes(codes: Iterable[str] | None, field: str) -> frozenset[str] | None:
    if codes is None:
        return None
    if isinstance(codes, str):
        raise TypeError(f"{field}: a list of country codes, not a string")
    out = frozenset(c.strip().upper() for c in codes)
    for code in out:
        if len(code) != 2 or not code.isascii() or not code.isalpha():
            raise ValueError(f"{field}: not a country code: {code!r}")
    return out


class CountryPolicy:
    """Which countries may reach the edge: only those in ``allow``, or all
    but those in ``deny`` (one or the other, or neither: every country).
    ``unknown`` is for sources no database places (private, new or
    unlisted ranges): ``"allow"`` or ``"drop"``."""

    def __init__(
        self,
        allow: Iterable[str] | None = None,
        deny: Iterable[str] | None = None,
        unknown: Literal["allow", "drop"] = "allow",
    ) -> None:
        self.allow = _codes(allow, "allow")
        self.deny = _codes(deny, "deny") or frozenset()
        if self.allow is not None and self.deny:
            raise ValueError("a country policy has allow or deny, not both")
        if unknown not in ("allow", "drop"):
            raise ValueError(f"unknown: 'allow' or 'drop', not {unknown!r}")
        self.unknown = unknown

    def allowed(self, country: str | None) -> bool:
        if country is None:
            return self.unknown == "allow"
        if self.allow is not None:
            return country in self.allow
        return country not in self.deny

    def __repr__(self) -> str:
        rule = (
            f"allow={sorted(self.allow)}" if self.allow is not None else f"deny={sorted(self.deny)}"
        )
        return f"CountryPolicy({rule}, unknown={self.unknown!r})"
