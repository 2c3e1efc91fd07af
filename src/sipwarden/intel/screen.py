"""The intel stage: drop a known-bad source's packet on its source address alone.

Operations: ``check(host, now)`` per packet, before the message is parsed:
a drop verdict (``intel.<feed>``, ``geo.<country>``, ``geo.unknown``) or
None to go on; ``note_trusted(host, now)`` for a trusted peer's packet
(never dropped here, but reported when a feed lists it).

Goals: ≤ 2 µs per packet with 100,000 feed entries and a country database
loaded, for a source seen before and for a new (spoofed) source on every
packet; bounded memory under a spoofed flood; the allow list and trusted
peers always win, and a listed one is reported, not dropped.

Plan:

- A bounded per-host cache of the answer (cleared when full, like
  ``TrustedPeers``): a source seen before costs one dict probe. The index
  bumps ``generation`` on every change, and the cache is cleared when it
  moves, so a refreshed feed takes effect on the next packet.
- A new source: the address is parsed once (``address_number``) and the
  number serves both the feed index (``find``) and the country table
  (``lookup_number``, a bisect); a MaxMind reader that was not preloaded
  is asked by the address text.
- Only a listed or refused source pays for the allow-list check (parsing
  networks): it is rare, and its answer is cached like any other.
- Verdicts are built once per feed or country and reused, so counting
  them is one dict update.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from ..values import Verdict
from .geo import Countries, CountryPolicy
from .index import AddressIndex, Entry, address_number

log = logging.getLogger("sipwarden.intel")

CACHE: Final = 65_536  # hosts whose answer is remembered
REPORTED: Final = 1_000  # exempt sources listed by a feed, kept for status
_PASS: Final = Verdict("forward", "intel.pass")  # cached "go on" (never returned)
UNKNOWN_COUNTRY: Final = Verdict("drop", "geo.unknown")


def feed_reason(feed: str) -> str:
    """A feed's name as a verdict reason: ``apiban:sip`` -> ``intel.apiban-sip``."""
    return "intel." + feed.replace(":", "-")


class IntelScreen:
    """Feeds and country policy over one source address (see the module doc).

    ``exempt(host)``: the ban book's allow list (trusted peers never reach
    ``check``). ``countries`` without ``country_policy`` answers
    ``country`` (lookups) but drops nothing."""

    def __init__(
        self,
        index: AddressIndex,
        *,
        countries: Countries | None = None,
        country_policy: CountryPolicy | None = None,
        exempt: Callable[[str], bool] = lambda host: False,
        cache_size: int = CACHE,
    ) -> None:
        self.index = index
        self.countries = countries
        self.country_policy = country_policy if countries is not None else None
        self.exempt = exempt
        self.cache_size = cache_size
        self._cache: dict[str, Verdict] = {}
        self._generation = index.generation
        self._feed_verdicts: dict[str, Verdict] = {}
        self._country_verdicts: dict[str, Verdict] = {}
        # the per-packet readers, only when a policy asks every packet
        source = countries.source if countries is not None and country_policy is not None else None
        self._by_number = getattr(source, "lookup_number", None)
        self._by_text = None if source is None else source.lookup
        # whether a new source's address must be parsed (networks to probe, or countries)
        self._parse = index.has_networks or self._by_number is not None
        # exempt (allow list, trusted) sources a feed lists: host -> feeds
        self.listed_exempt: dict[str, tuple[str, ...]] = {}
        self._noted: dict[str, int] = {}  # trusted hosts checked, at which generation

    @property
    def active(self) -> bool:
        """Whether there is anything to check (no feed entry, no country
        policy: the pipeline skips the stage)."""
        return len(self.index) > 0 or self.country_policy is not None

    def check(self, host: str, now: float) -> Verdict | None:
        index = self.index
        if index.generation != self._generation:
            self._generation = index.generation
            self._cache.clear()
            self._parse = index.has_networks or self._by_number is not None
        cache = self._cache
        verdict = cache.get(host)
        if verdict is None:
            # a new source: inlined, this is the spoofed flood's per-packet cost
            number = address_number(host) if self._parse else None
            entry = index.find(host, number, now)
            if entry is not None:
                verdict = self._listed(host, entry)
            else:
                if self.listed_exempt:  # an exempt source no longer listed: no longer reported
                    self.listed_exempt.pop(host, None)
                verdict = _PASS if self.country_policy is None else self._by_country(host, number)
            if len(cache) >= self.cache_size:
                cache.clear()
            cache[host] = verdict
        return None if verdict is _PASS else verdict

    def swap_countries(self, countries: Countries) -> Countries | None:
        """Use ``countries`` from now on (a new database: geoipupdate ran);
        returns the old source, for the caller to close."""
        old, self.countries = self.countries, countries
        source = countries.source if self.country_policy is not None else None
        self._by_number = getattr(source, "lookup_number", None)
        self._by_text = None if source is None else source.lookup
        self._parse = self.index.has_networks or self._by_number is not None
        self._cache.clear()
        return old

    def note_trusted(self, host: str, now: float) -> None:
        """A trusted peer's packet (it passes whatever the feeds say): report
        it once per index generation if a feed lists it."""
        generation = self.index.generation
        if self._noted.get(host) == generation:
            return
        if len(self._noted) >= REPORTED:
            self._noted.clear()
        self._noted[host] = generation
        entry = self.index.lookup(host, now)
        if entry is not None:
            self._report(host, entry, "a trusted peer")
        else:
            self.listed_exempt.pop(host, None)  # delisted since: no longer reported

    def country(self, host: str) -> str | None:
        """The source's country, when a country source is configured."""
        if self.countries is None:
            return None
        return self.countries.country(host)

    # --------------------------------------------------------------- inside

    def _listed(self, host: str, entry: Entry) -> Verdict:
        if self.exempt(host):
            self._report(host, entry, "on the allow list")
            return _PASS
        feed = entry.feeds[0]
        verdict = self._feed_verdicts.get(feed)
        if verdict is None:
            verdict = self._feed_verdicts[feed] = Verdict("drop", feed_reason(feed))
        return verdict

    def _by_country(self, host: str, number: tuple[int, int] | None) -> Verdict:
        policy = self.country_policy
        assert policy is not None
        if self._by_number is not None:
            code = None if number is None else self._by_number(*number)
        else:
            assert self._by_text is not None
            code = self._by_text(host)
        if policy.allowed(code) or self.exempt(host):
            return _PASS
        if code is None:
            return UNKNOWN_COUNTRY
        verdict = self._country_verdicts.get(code)
        if verdict is None:
            verdict = self._country_verdicts[code] = Verdict("drop", f"geo.{code}")
        return verdict

    def _report(self, host: str, entry: Entry, what: str) -> None:
        if self.listed_exempt.get(host) == entry.feeds:
            return
        if len(self.listed_exempt) >= REPORTED:
            return  # bounded; the count in status says there are more
        self.listed_exempt[host] = entry.feeds
        log.warning(
            "%s is %s but listed by %s (%s): it keeps working; check it",
            host,
            what,
            ", ".join(entry.feeds),
            entry.target,
        )
