"""Enforcement: the ban book's bans applied in the kernel (``nftables``), or
not at all (``none``: the edge alone drops a banned source's messages).

The daemon drives an ``Enforcer``: ``start`` reconciles the kernel with the
store (the truth) once, ``apply`` applies each drained batch of changes;
``stop`` leaves the kernel state in place so bans survive restarts and
crashes; ``flush`` is ``sipwarden firewall flush``. ``load_feeds`` keeps the
threat feeds' entries in sets of their own (``start`` empties them). The
lane (``lane.py``: known-good sources first, unknown ones rate-limited per
prefix and in total) has its own methods: ``start_lane``, ``load_trusted``,
``add_known_good``, ``lane_counters``, ``lane_view``; with ``none`` there is
no lane. ``drop_counts`` reads what the kernel dropped for a ban or a feed
per source (``drops.py``); with ``none``, nothing."""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Final, Protocol

from ..values import Ban, Change, Network
from .drops import DEFAULT as DEFAULT_COUNTING
from .drops import DropCounting
from .lane import LaneSettings, LaneView
from .nftables import EnforcerError, NftablesEnforcer

KINDS: Final = ("none", "nftables")


class Enforcer(Protocol):
    name: str  # "nftables" | "none"
    # "batches", "elements-added", "elements-removed", "elements-skipped", "errors",
    # "batches-failed", "conntrack-deleted", "conntrack-failed"; the feeds': "feed-batches",
    # "feed-batches-failed", "feed-errors", and "feed-elements" (held after the last load)
    counters: collections.Counter[str]

    async def start(self, bans: Sequence[Ban], now: float) -> None:
        """Create the table if missing and make the kernel hold exactly the
        bans active at ``now``, in one transaction. Raises EnforcerError if
        the kernel cannot be changed at all (nft missing, not permitted)."""

    async def apply(self, changes: Sequence[Change], now: float) -> None:
        """Apply ``changes`` in one batch; never raises for kernel errors
        (logged and counted)."""

    async def stop(self) -> None:
        """Leave the kernel state as it is."""

    async def flush(self) -> None:
        """Remove sipwarden's table entirely (fine if absent)."""

    async def load_feeds(self, wanted: Mapping[str, float | None], now: float) -> None:
        """Make the feed sets hold exactly ``wanted`` (canonical target ->
        expires_at, None: no end; disjoint, as ``intel.kernel.kernel_targets``
        gives it), each element timing out at its expiry; the expired are
        left out. Never raises for a refused element (logged and counted);
        raises EnforcerError if the kernel cannot be changed at all."""

    async def elements(self) -> dict[str, float | None]:
        """The bans: target -> seconds left (None: permanent), read from the kernel."""
        ...

    async def bans(self, now: float) -> list[Ban]:
        """The bans the kernel holds, each rebuilt from its element's record
        (detector, reason, when, offence; ``nftables.comment``) with the
        time it has left: what the store lacks is merged from here at start."""
        ...

    async def feed_elements(self) -> dict[str, float | None]:
        """The feed sets' content, as ``elements`` gives the bans."""
        ...

    async def dropped(self) -> int:
        """Packets the bans' drop rules have counted since the last start."""
        ...

    async def feed_dropped(self) -> int:
        """Packets the feed sets' drop rules have counted since the last start."""
        ...

    async def drop_counts(self) -> dict[str, tuple[int, int]]:
        """Packets and bytes (whole IP packets) the kernel dropped for a ban
        or a feed since the last start, per source address, cumulative;
        "*": those of sources it could not count apart (``drops.py``)."""
        ...

    async def start_lane(self, settings: LaneSettings | None, trusted: Sequence[Network]) -> None:
        """Build the lane with ``trusted`` (peers, allow list), keeping the
        known-good sources; None removes it. Raises EnforcerError if refused."""

    async def load_trusted(self, trusted: Sequence[Network]) -> None:
        """The lane's trusted networks are now ``trusted`` (never raises)."""

    async def add_known_good(self, entries: Mapping[str, float], now: float) -> list[str]:
        """Add or renew known-good sources (address -> expires_at) in one
        batch; the addresses not taken (never raises)."""
        ...

    async def lane_counters(self) -> dict[str, int]:
        """The lane's packet counters (``lane.COUNTERS``' keys); {} without a lane."""
        ...

    async def lane_view(self) -> LaneView:
        """The lane in the kernel: counters, known-good sources, trusted networks."""
        ...


class NullEnforcer:
    """``enforcer = "none"``: everything stays in the edge."""

    def __init__(self) -> None:
        self.name = "none"
        self.counters: collections.Counter[str] = collections.Counter()
        self.feeds: dict[str, float | None] = {}  # the last load_feeds, for tests and status

    async def start(self, bans: Sequence[Ban], now: float) -> None:
        return None

    async def apply(self, changes: Sequence[Change], now: float) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def flush(self) -> None:
        return None

    async def load_feeds(self, wanted: Mapping[str, float | None], now: float) -> None:
        self.feeds = dict(wanted)

    async def elements(self) -> dict[str, float | None]:
        return {}

    async def bans(self, now: float) -> list[Ban]:
        return []

    async def feed_elements(self) -> dict[str, float | None]:
        return {}

    async def dropped(self) -> int:
        return 0

    async def feed_dropped(self) -> int:
        return 0

    async def drop_counts(self) -> dict[str, tuple[int, int]]:
        return {}

    async def start_lane(self, settings: LaneSettings | None, trusted: Sequence[Network]) -> None:
        return None

    async def load_trusted(self, trusted: Sequence[Network]) -> None:
        return None

    async def add_known_good(self, entries: Mapping[str, float], now: float) -> list[str]:
        return []

    async def lane_counters(self) -> dict[str, int]:
        return {}

    async def lane_view(self) -> LaneView:
        return LaneView(present=False, counters={}, known_good={}, trusted=[])


def make_enforcer(
    kind: str,
    *,
    table: str = "sipwarden",
    ports: Sequence[tuple[str, int]] = (),
    nft: str = "nft",
    conntrack: bool = True,
    command_prefix: Sequence[str] = (),
    drop_counting: DropCounting | None = DEFAULT_COUNTING,
) -> Enforcer:
    """The enforcer named ``kind``. ``ports``: (transport, port) pairs whose
    traffic a banned source loses (tls, ws, wss count as tcp); empty: all
    of its traffic. ``command_prefix``: run nft and conntrack through it,
    e.g. ``("ip", "netns", "exec", "NS")``. ``drop_counting``: the per-source
    drop counts' bounds; None: none counted."""
    if kind == "none":
        return NullEnforcer()
    if kind == "nftables":
        return NftablesEnforcer(
            table=table,
            ports=ports,
            nft=nft,
            conntrack=conntrack,
            command_prefix=command_prefix,
            drop_counting=drop_counting,
        )
    raise ValueError(f"enforcer: unknown kind {kind!r} (one of {', '.join(map(repr, KINDS))})")


__all__ = [
    "KINDS",
    "DropCounting",
    "Enforcer",
    "EnforcerError",
    "LaneSettings",
    "LaneView",
    "NftablesEnforcer",
    "NullEnforcer",
    "make_enforcer",
]
