"""sipwarden's own bans as a feed: for other edges, firewalls and blocklists.

Operations (pure: the bans in, text out): ``as_text(bans, now)``,
``as_json(bans)`` and ``as_nft(bans, now, table=, set_prefix=)``, where
``bans`` are the rows ``BanStore.in_force`` gives (the array ``bans list
--json`` and ``GET /api/v1/bans`` print); ``export(fmt, ...)`` picks one.

Goals: each format loads as is where it is meant to go. ``text`` is a
generic feed (``intel/feeds.py``: another sipwarden reads it exactly, and so
does any consumer of one-address-per-line lists: nothing after an entry).
``json`` is the very array of ``bans list --json``. ``nft`` is an ``nft -f``
script that can be loaded again and again, at any time, into a live ruleset:
one transaction that leaves the sets holding exactly the bans in force, and
touches nothing but them.

Plan:

- Only the bans still in force at ``now`` are listed, spelled as feeds
  spell them (``parse_target``), each once.
- ``nft``: ``table inet <table>`` with two interval sets, ``<set>4`` and
  ``<set>6`` (``flags interval,timeout``), created if missing, flushed and
  refilled. No chain: the consumer's own rules in that table use the sets
  (a chain of ours would fight theirs), and ``add table``/``add set`` leave
  those rules alone. A timed ban carries the seconds it has left, rounded
  up (capped at nft's maximum), so the kernel lifts it on time even when
  the script is not reloaded. nft refuses overlapping intervals, so a
  network or address inside another banned network is left out
  (``kernel_targets``, as for the feeds): the outer one covers it until it
  ends, and the next export lists the inner one again. Elements go 500 to
  an ``add element`` statement, as the enforcer loads them.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ..intel.index import parse_target
from ..intel.kernel import kernel_targets
from .nftables import MAX_TIMEOUT, element_statements

FORMATS: Final = ("text", "json", "nft")
DEFAULT_TABLE: Final = "sipwarden_feed"
DEFAULT_SET: Final = "sipwarden_bans"
# nft 1.0.6 accepts no quoted names, so a name is letters, digits and _ (and
# not one of nft's keywords, such as `ip` or `set`: nft refuses those)
_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}\Z")

Row = Mapping[str, Any]  # a ban as `bans list --json` prints it: "ip", "expires_at", ...


def check_name(name: str) -> str:
    """``name`` if it can name an nftables table or set; else ValueError."""
    if not _NAME.match(name):
        raise ValueError(
            f"{name!r} is not an nftables name (a letter, then letters, digits or _, 32 at most)"
        )
    return name


def as_text(bans: Sequence[Row], now: float) -> str:
    """One address or CIDR per line under a comment header."""
    targets = list(_in_force(bans, now))
    return "\n".join([f"# sipwarden bans, {_utc(now)}, {len(targets)} entries", *targets]) + "\n"


def as_json(bans: Sequence[Row]) -> str:
    """The array, exactly as ``bans list --json`` prints it."""
    return json.dumps(list(bans), indent=2) + "\n"


def as_nft(
    bans: Sequence[Row],
    now: float,
    *,
    table: str = DEFAULT_TABLE,
    set_prefix: str = DEFAULT_SET,
) -> str:
    """An ``nft -f`` script that makes the two sets hold the bans in force
    (see the module doc). ValueError for a bad table or set name."""
    for what, name in (("table", table), ("set", set_prefix)):
        try:
            check_name(name)
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
    t = f"inet {table}"
    listed = _in_force(bans, now)
    kept = kernel_targets(listed)
    left_out = len(listed) - len(kept)
    lines = [
        f"# sipwarden bans, {_utc(now)}, {len(kept)} entries"
        + (f" ({left_out} inside a banned network left out)" if left_out else ""),
        "# Sets only, no chain: match them from a chain of yours in this table, e.g.",
        f"#   add chain {t} input {{ type filter hook input priority -10; }}",
        f"#   add rule {t} input ip saddr @{set_prefix}4 drop",
        f"#   add rule {t} input ip6 saddr @{set_prefix}6 drop",
        f"add table {t}",
    ]
    for version, kind in ((4, "ipv4_addr"), (6, "ipv6_addr")):
        name = f"{set_prefix}{version}"
        lines.append(f"add set {t} {name} {{ type {kind}; flags interval,timeout; }}")
        lines.append(f"flush set {t} {name}")
    by_set = {
        f"{set_prefix}{version}": [
            _element(target, expires, now)
            for target, expires in kept.items()
            if (":" in target) == (version == 6)
        ]
        for version in (4, 6)
    }
    lines += element_statements("add", table, by_set)
    return "\n".join(lines) + "\n"


def export(
    fmt: str,
    bans: Sequence[Row],
    now: float,
    *,
    table: str = DEFAULT_TABLE,
    set_prefix: str = DEFAULT_SET,
) -> str:
    """The bans in format ``fmt`` (one of ``FORMATS``)."""
    if fmt == "text":
        return as_text(bans, now)
    if fmt == "json":
        return as_json(bans)
    if fmt == "nft":
        return as_nft(bans, now, table=table, set_prefix=set_prefix)
    raise ValueError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")


def _element(target: str, expires_at: float | None, now: float) -> str:
    if expires_at is None:
        return target
    return f"{target} timeout {min(math.ceil(expires_at - now), MAX_TIMEOUT)}s"


def _utc(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def _in_force(bans: Sequence[Row], now: float) -> dict[str, float | None]:
    """Target (spelled as feeds spell it) -> expires_at of the bans in force
    at ``now``, in the bans' order; one per target, the longest."""
    found: dict[str, float | None] = {}
    for ban in bans:
        expires_at = ban["expires_at"]
        if expires_at is not None and not (math.isfinite(expires_at) and expires_at > now):
            continue  # over (or a NaN an older release let in)
        try:
            target = parse_target(ban["ip"]).spelling
        except ValueError:  # a scoped address an older release let in: no feed can hold it
            continue
        if target in found:
            old = found[target]
            if old is None or (expires_at is not None and expires_at <= old):
                continue
        found[target] = expires_at
    return found
