"""The source stages: what the source address alone decides, before any parse.

In the pipeline's order:

1. ``TrustedPeers`` (trunks, offices): ``allow`` (reason ``trusted-peer``)
   and nothing after it touches them: no stage, no limiter, no failure
   tracker; a feed listing one is reported, not obeyed;
2. ``BannedSources``: a source the ban book has banned is dropped
   (``banned``; with nftables its packets rarely get this far);
3. ``IntelStage``: a source a threat feed lists (``intel.<feed>``) or from a
   country the operator does not serve (``geo.<country>``, ``geo.unknown``)
   is dropped, unless the ban book's allow list has it (``intel.screen``
   decides; this stage only asks it when it has something to check).

Each costs a dict or set probe for a source seen before, so a banned or
listed source's flood stays cheap (``Policy.judge_bytes`` runs them before
``peek``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

from ...intel.screen import IntelScreen
from ...values import Network, Verdict
from ..bans import BanBook

TRUSTED: Final = Verdict("allow", "trusted-peer")
BANNED: Final = Verdict("drop", "banned")


class TrustedPeers:
    """Addresses and networks that are never scanned, limited or banned.

    Single addresses are a set lookup; networks are tested once per source
    and the answer kept in a bounded cache (sources can be spoofed by the
    million, so the cache is cleared when full rather than grown)."""

    CACHE: Final = 65_536
    name: Final = "trusted"

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = list(networks)
        self._hosts = {str(net.network_address) for net in self.networks if net.num_addresses == 1}
        self._ranges = [net for net in self.networks if net.num_addresses > 1]
        self._cache: dict[str, bool] = {}

    def __contains__(self, host: str) -> bool:
        if host in self._hosts:
            return True
        if not self._ranges:
            return False
        known = self._cache.get(host)
        if known is None:
            try:
                ip = ipaddress.ip_address(host)
                known = any(ip in net for net in self._ranges)
            except ValueError:
                known = False
            if len(self._cache) >= self.CACHE:
                self._cache.clear()
            self._cache[host] = known
        return known

    def screen(self, host: str, now: float) -> Verdict | None:
        if host in self._hosts:  # a trunk's address: one set probe, no call
            return TRUSTED
        return TRUSTED if self._ranges and host in self else None


class BannedSources:
    """Drops what the ban book has banned (it asks the book, never writes it)."""

    name: Final = "bans"

    def __init__(self, book: BanBook) -> None:
        self.book = book
        self._banned = book.banned  # looked up once: every packet asks

    def screen(self, host: str, now: float) -> Verdict | None:
        return BANNED if self._banned(host, now) is not None else None


class IntelStage:
    """Drops a source the feeds list or a country the operator refuses."""

    name: Final = "intel"

    def __init__(self, intel: IntelScreen) -> None:
        self.intel = intel

    def screen(self, host: str, now: float) -> Verdict | None:
        intel = self.intel
        # no feed entry, no country policy: nothing to ask (feeds load later)
        return intel.check(host, now) if intel.active else None
