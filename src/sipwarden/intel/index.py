"""The address index: every address and network the threat feeds list.

Operations: ``lookup(host, now)`` per packet, before parsing (is the source
listed, by which feeds, until when); ``replace(feed, targets)`` when a feed
is refreshed; ``add``/``remove`` for incremental updates (an APIBAN
``since`` poll); ``expire(now)`` now and then.

Goals: ≤ 1 µs per lookup, hit or miss, with 100,000 entries of both
families, addresses and CIDRs of many prefix lengths mixed; bounded, small
memory; a refresh that cannot leave the index half-updated.

Plan:

- Single addresses are a dict keyed by the address as the edge spells it
  (``inet_ntop``: dotted IPv4, RFC 5952 IPv6), so a hit is one probe and no
  parsing. An IPv4-mapped source (``::ffff:192.0.2.7``, a dual-stack
  socket) is looked up as the IPv4 address.
- Networks are indexed per prefix length, as in the ban book: prefix length
  -> network number -> listing, one shift and one probe per length. A feed
  may use twenty lengths, so a bucket map says which lengths are worth
  probing: per /16 (IPv4) or /32 (IPv6), the lengths of the networks that
  overlap it, longest first. A miss in an empty bucket is one probe; a
  network shorter than the bucket is entered in each bucket it covers (at
  most 256), and only the rare shorter ones are probed for every address.
  Removing a network leaves its length in the buckets (an extra probe, never
  a wrong answer) until the buckets are rebuilt.
- No object per entry that the garbage collector must walk: keys are
  strings and ints, values are tuples of ``(feed, expires_at)`` pairs (plain
  tuples of strings and floats, which the collector untracks), shared
  between entries when they are equal and have no expiry. ``Entry`` is only
  built for a hit.
- ``replace`` parses and checks every target before it touches the index,
  then applies the difference in one synchronous step (nothing else runs
  on the event loop in between: a lookup sees the old list or the new).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final, NamedTuple

from ..values import AF_INET, AF_INET6, inet_ntop, inet_pton

Listing = tuple[tuple[str, float | None], ...]  # (feed, expires_at) pairs, by feed
Key = str | tuple[int, int, int]  # an address's spelling, or (version, prefix, network number)

_AF: Final = {4: AF_INET, 6: AF_INET6}
_WIDTH: Final = {4: 32, 6: 128}
_BUCKET: Final = {4: 16, 6: 32}  # prefix length of the bucket map's keys
_SPREAD: Final = 8  # a network up to this many bits shorter than a bucket is spread over buckets
_MAPPED: Final = "::ffff:"
SPELLED: Final = 4096  # networks whose spelling a lookup remembers
_pton, _INET, _INET6, _from_bytes = (inet_pton, AF_INET, AF_INET6, int.from_bytes)


class Entry(NamedTuple):
    """A listed address or network, as a lookup answers it."""

    target: str  # canonical address or CIDR
    feeds: tuple[str, ...]  # the feeds that list it (and have not expired)
    expires_at: float | None  # the latest of its listings' ends; None: no end

    def active(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


class Target(NamedTuple):
    """A parsed address or network."""

    version: int  # 4 or 6
    prefix: int  # prefix length (32 or 128 for an address)
    number: int  # the network address as an integer, host bits cleared
    spelling: str  # canonical: ``192.0.2.7``, ``192.0.2.0/24``, ``2001:db8::/32``


def address_number(host: str) -> tuple[int, int] | None:
    """(IP version, the address as an integer) for an address as the edge
    spells it; an IPv4-mapped IPv6 address is its IPv4 address. None if
    ``host`` is not an address. (Per new source on the packet path: the
    common shapes are tested first, the names bound locally.)"""
    try:
        if ":" not in host:
            return 4, _from_bytes(_pton(_INET, host))
        if "." in host and host.startswith(_MAPPED):
            return 4, _from_bytes(_pton(_INET, host[7:]))
        if "%" in host:
            host = host.partition("%")[0]
        return 6, _from_bytes(_pton(_INET6, host))
    except OSError:
        return None


def parse_target(text: str) -> Target:
    """An address or CIDR, IPv4 or IPv6, to its canonical form. Host bits of
    a CIDR are cleared (``192.0.2.9/24`` is ``192.0.2.0/24``); a /32 or /128
    is the address. Addresses are spelled as ``inet_ntop`` does (the edge's
    spelling). Raises ValueError."""
    addr, slash, length = text.partition("/")
    version = 6 if ":" in addr else 4
    width = _WIDTH[version]
    if "%" in addr:
        raise ValueError(f"scoped address: {text!r}")
    try:
        packed = inet_pton(_AF[version], addr)
    except (OSError, ValueError):
        raise ValueError(f"not an address: {text!r}") from None
    if slash:
        if not (length.isascii() and length.isdigit()) or len(length) > 3:
            raise ValueError(f"bad prefix length: {text!r}")
        prefix = int(length)
        if prefix > width:
            raise ValueError(f"prefix length over {width}: {text!r}")
    else:
        prefix = width
    shift = width - prefix
    number = int.from_bytes(packed) >> shift << shift
    return Target(version, prefix, number, _spell(version, number, prefix))


def host_spelling(address: str) -> str:
    """An address (any spelling) as the edge spells a source: ``inet_ntop``,
    an IPv4-mapped IPv6 address as its IPv4 address. ValueError for a
    network or anything else."""
    target = parse_target(address.strip())
    if target.prefix != _WIDTH[target.version]:
        raise ValueError(f"not an address: {address!r}")
    if target.version == 6 and target.number >> 32 == 0xFFFF:
        return _spell(4, target.number & 0xFFFFFFFF, 32)
    return target.spelling


def _spell(version: int, number: int, prefix: int) -> str:
    width = _WIDTH[version]
    addr = inet_ntop(_AF[version], number.to_bytes(width // 8))
    return addr if prefix == width else f"{addr}/{prefix}"


def _entry(target: str, listing: Listing, now: float) -> Entry | None:
    """The entry for ``listing`` at ``now``; None when every listing ended."""
    if len(listing) == 1:  # the common case: one feed
        feed, expires = listing[0]
        if expires is None or now < expires:
            return Entry(target, (feed,), expires)
        return None
    feeds: list[str] = []
    latest: float | None = 0.0
    for feed, expires in listing:
        if expires is None:
            feeds.append(feed)
            latest = None
        elif now < expires:
            feeds.append(feed)
            if latest is not None and expires > latest:
                latest = expires
    return Entry(target, tuple(feeds), latest) if feeds else None


class AddressIndex:
    """Addresses and networks listed by feeds (see the module doc)."""

    def __init__(self) -> None:
        self._hosts: dict[str, Listing] = {}
        # version -> prefix length -> network number -> listing
        self._nets: dict[int, dict[int, dict[int, Listing]]] = {4: {}, 6: {}}
        # version -> bucket number -> prefix lengths to probe, longest first
        self._buckets: dict[int, dict[int, tuple[int, ...]]] = {4: {}, 6: {}}
        # version -> prefix lengths too short for the buckets, longest first
        self._always: dict[int, tuple[int, ...]] = {4: (), 6: ()}
        self._network_count = 0
        self._stale = 0  # networks removed since the buckets were built
        self._shared: dict[Listing, Listing] = {}  # equal listings without expiry, shared
        self._combos: dict[tuple[int, ...], tuple[int, ...]] = {}  # shared bucket tuples
        self._spelled: dict[int, str] = {}  # networks hit lately, spelled (bounded)
        # bumped by every change: whoever caches answers (the intel stage)
        # compares it, one integer, instead of being told
        self.generation = 0

    # ------------------------------------------------------------ questions

    def __len__(self) -> int:
        return len(self._hosts) + self._network_count

    @property
    def has_networks(self) -> bool:
        return self._network_count > 0

    def lookup(self, host: str, now: float) -> Entry | None:
        """The entry (most specific first) listing ``host``, an address as the
        edge spells it; None when it is not listed, or not an address."""
        if self._network_count:
            return self.find(host, address_number(host), now)
        return self.find(host, None, now)

    def find(self, host: str, number: tuple[int, int] | None, now: float) -> Entry | None:
        """``lookup`` with the address already parsed (``address_number``):
        a caller that needs the number for more than this parses once.
        ``number`` may be None when the index holds no networks."""
        hosts = self._hosts
        listing = hosts.get(host)
        if listing is not None:
            entry = _entry(host, listing, now)
            if entry is not None:
                return entry
        if ":" in host and "." in host and host.startswith(_MAPPED):
            host = host[7:]
            listing = hosts.get(host)
            if listing is not None:
                entry = _entry(host, listing, now)
                if entry is not None:
                    return entry
        if not self._network_count or number is None:
            return None
        version, value = number
        if version == 6:
            width, bucket = 128, 96
        else:
            width, bucket = 32, 16
        tables = self._nets[version]
        lengths = self._buckets[version].get(value >> bucket)
        if lengths is not None:
            for prefix in lengths:
                listing = tables[prefix].get(value >> (width - prefix))
                if listing is not None:
                    entry = self._network_entry(version, value, prefix, listing, now)
                    if entry is not None:
                        return entry
        for prefix in self._always[version]:
            listing = tables[prefix].get(value >> (width - prefix))
            if listing is not None:
                entry = self._network_entry(version, value, prefix, listing, now)
                if entry is not None:
                    return entry
        return None

    def matches(self, address: str, now: float) -> list[Entry]:
        """Every entry that holds ``address`` (any spelling), the address
        itself first, then its networks from the longest prefix: for the
        operator's ``intel lookup``, not the packet path (it probes every
        prefix length in use). Raises ValueError if it is not an address."""
        spelling = host_spelling(address)
        number = address_number(spelling)
        assert number is not None
        version, value = number
        found: list[Entry] = []
        listing = self._hosts.get(spelling)
        if listing is not None:
            entry = _entry(spelling, listing, now)
            if entry is not None:
                found.append(entry)
        tables = self._nets[version]
        for prefix in sorted(tables, reverse=True):
            listing = tables[prefix].get(value >> (_WIDTH[version] - prefix))
            if listing is not None:
                entry = self._network_entry(version, value, prefix, listing, now)
                if entry is not None:
                    found.append(entry)
        return found

    def get(self, target: str) -> Entry | None:
        """The entry for exactly ``target`` (an address or CIDR, any
        spelling), expired listings included; None if not listed."""
        key = _key(parse_target(target.strip()))
        listing = self._get(key)
        if listing is None:
            return None
        return _entry(_key_spelling(key), listing, float("-inf"))

    def entries(self, now: float | None = None) -> Iterator[Entry]:
        """Every entry (those still active at ``now``, when given)."""
        when = float("-inf") if now is None else now
        for key, listing in self._items():
            entry = _entry(_key_spelling(key), listing, when)
            if entry is not None:
                yield entry

    def counts(self) -> dict[str, int]:
        """Entries per feed, expired listings included."""
        counts: dict[str, int] = {}
        for _, listing in self._items():
            for feed, _expires in listing:
                counts[feed] = counts.get(feed, 0) + 1
        return counts

    # -------------------------------------------------------------- changes

    def add(self, feed: str, target: str, expires_at: float | None = None) -> Entry:
        """List ``target`` (an address or CIDR) for ``feed`` until
        ``expires_at`` (None: until removed); a listing already there is
        replaced. Raises ValueError for a bad target."""
        key = _key(parse_target(target.strip()))
        self._list(key, feed, expires_at)
        entry = _entry(_key_spelling(key), self._get(key) or (), float("-inf"))
        assert entry is not None
        return entry

    def remove(self, target: str, feed: str | None = None) -> bool:
        """Unlist ``target`` for ``feed`` (None: for every feed). Returns
        whether something was removed."""
        key = _key(parse_target(target.strip()))
        listing = self._get(key)
        if listing is None:
            return False
        kept = () if feed is None else tuple(p for p in listing if p[0] != feed)
        if len(kept) == len(listing):
            return False
        self._put(key, kept)
        return True

    def replace(
        self, feed: str, targets: Iterable[str | tuple[str, float | None]]
    ) -> tuple[int, int]:
        """Make ``feed``'s listings exactly ``targets`` (addresses or CIDRs,
        alone or with an expiry). Every target is checked first: a bad one
        raises ValueError and leaves the index as it was. Returns (added,
        removed) targets."""
        wanted: dict[Key, float | None] = {}
        for item in targets:
            text, expires = (item, None) if isinstance(item, str) else item
            wanted[_key(parse_target(text.strip()))] = expires
        # from here on nothing raises: the whole change is one synchronous step
        removed = 0
        for key, listing in list(self._items()):
            if key in wanted:
                continue
            kept = tuple(p for p in listing if p[0] != feed)
            if len(kept) != len(listing):
                self._put(key, kept)
                removed += 1
        added = 0
        for key, expires in wanted.items():
            added += self._list(key, feed, expires)
        self._tidy()
        return added, removed

    @staticmethod
    def prepare(targets: Iterable[str]) -> dict[str, Key]:
        """Parse ``targets`` for ``apply`` (pure: safe on another thread, so
        a big list is not parsed on the packets' thread). Bad targets are
        left out."""
        keys: dict[str, Key] = {}
        for text in targets:
            try:
                keys[text] = _key(parse_target(text.strip()))
            except ValueError:
                continue
        return keys

    def apply(
        self,
        feed: str,
        listed: Iterable[tuple[Key, float | None]],
        unlisted: Iterable[Key] = (),
    ) -> None:
        """List and unlist prepared keys for ``feed`` (the keeper's
        incremental update: no parsing, no scan of the index)."""
        for key in unlisted:
            listing = self._get(key)
            if listing is not None:
                self._put(key, tuple(p for p in listing if p[0] != feed))
        for key, expires in listed:
            self._list(key, feed, expires)
        self._tidy()

    def clear(self, feed: str) -> int:
        """Drop every listing of ``feed``; returns how many."""
        return self.replace(feed, ())[1]

    def expire(self, now: float) -> int:
        """Drop the listings that ended before ``now``; returns how many
        targets are no longer listed at all."""
        gone = 0
        for key, listing in list(self._items()):
            kept = tuple(p for p in listing if p[1] is None or now < p[1])
            if len(kept) != len(listing):
                self._put(key, kept)
                gone += not kept
        self._tidy()
        return gone

    # --------------------------------------------------------------- inside

    def _network_entry(
        self, version: int, value: int, prefix: int, listing: Listing, now: float
    ) -> Entry | None:
        shift = _WIDTH[version] - prefix
        key = (value >> shift) << 9 | prefix << 1 | (version == 6)
        target = self._spelled.get(key)
        if target is None:
            if len(self._spelled) >= SPELLED:
                self._spelled.clear()
            target = self._spelled[key] = _spell(version, value >> shift << shift, prefix)
        return _entry(target, listing, now)

    def _items(self) -> Iterator[tuple[Key, Listing]]:
        yield from self._hosts.items()
        for version, tables in self._nets.items():
            for prefix, table in tables.items():
                shift = _WIDTH[version] - prefix
                for index, listing in table.items():
                    yield (version, prefix, index << shift), listing

    def _get(self, key: Key) -> Listing | None:
        if isinstance(key, str):
            return self._hosts.get(key)
        version, prefix, number = key
        table = self._nets[version].get(prefix)
        return None if table is None else table.get(number >> (_WIDTH[version] - prefix))

    def _list(self, key: Key, feed: str, expires: float | None) -> int:
        """Add or renew one listing; returns 1 if the target is new to the feed."""
        listing = self._get(key) or ()
        others = tuple(p for p in listing if p[0] != feed)
        self._put(key, tuple(sorted((*others, (feed, expires)), key=_by_feed)))
        return int(len(others) == len(listing))

    def _put(self, key: Key, listing: Listing) -> None:
        """Store ``listing`` for ``key`` (an empty one removes the key)."""
        self.generation += 1
        if listing and all(expires is None for _, expires in listing):
            listing = self._shared.setdefault(listing, listing)
        if isinstance(key, str):
            if listing:
                self._hosts[key] = listing
            else:
                self._hosts.pop(key, None)
            return
        version, prefix, number = key
        tables = self._nets[version]
        table = tables.get(prefix)
        if table is None:
            table = tables[prefix] = {}
        index = number >> (_WIDTH[version] - prefix)
        if listing:
            if index not in table:
                self._network_count += 1
                self._enter(version, prefix, number)
            table[index] = listing
        elif table.pop(index, None) is not None:
            self._network_count -= 1
            self._stale += 1

    def _enter(self, version: int, prefix: int, number: int) -> None:
        """Make the buckets the network overlaps probe its prefix length."""
        bucket = _BUCKET[version]
        if prefix < bucket - _SPREAD:
            if prefix not in self._always[version]:
                self._always[version] = tuple(
                    sorted((*self._always[version], prefix), reverse=True)
                )
            return
        buckets = self._buckets[version]
        first = number >> (_WIDTH[version] - bucket)
        for index in range(first, first + (1 << max(0, bucket - prefix))):
            lengths = buckets.get(index, ())
            if prefix not in lengths:
                combo = tuple(sorted((*lengths, prefix), reverse=True))
                buckets[index] = self._combos.setdefault(combo, combo)

    def _tidy(self) -> None:
        """Rebuild the buckets once many networks have gone, and forget the
        shared listings and prefix tables nothing uses."""
        if self._stale <= 1000 + self._network_count // 4:
            return
        self._stale = 0
        self._buckets = {4: {}, 6: {}}
        self._always = {4: (), 6: ()}
        self._combos = {}
        used: dict[Listing, Listing] = {}
        for version, tables in self._nets.items():
            for prefix in [p for p, table in tables.items() if not table]:
                del tables[prefix]
            for prefix, table in tables.items():
                shift = _WIDTH[version] - prefix
                for index, listing in table.items():
                    self._enter(version, prefix, index << shift)
                    used[listing] = listing
        used.update((listing, listing) for listing in self._hosts.values())
        self._shared = {k: v for k, v in self._shared.items() if k in used}


def _by_feed(pair: tuple[str, float | None]) -> str:
    return pair[0]


def _key(target: Target) -> Key:
    if target.prefix == _WIDTH[target.version]:
        return target.spelling
    return (target.version, target.prefix, target.number)


def _key_spelling(key: Key) -> str:
    if isinstance(key, str):
        return key
    version, prefix, number = key
    return _spell(version, number, prefix)
