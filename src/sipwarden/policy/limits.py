"""Per-source rate limits, in the spirit of Kamailio's pike module.

Operations: ``hit(host, method, now)`` counts one request and answers the
:class:`Limit` it exceeds (the method's own first, then ``"requests"``, all
methods together) or None; ``key(host)`` is what a ban should target;
``forget(key)`` resets a key once it is banned; ``rate(key, method, now)`` is
the current estimate, for evidence and metrics; ``reconfigured(...)`` gives
a limiter with new thresholds that keeps the counts.

Goals:
- a flood from one source (sipp at hundreds per second, SIPVicious at 80+/s)
  is caught within a fraction of a second, while a phone (a REGISTER and its
  re-send after the challenge every minute or so, a dozen SUBSCRIBEs at boot,
  calls) never comes near a limit;
- memory is bounded whatever arrives: UDP sources can be spoofed by the
  million;
- cheap: it runs once per request that passed the other checks, well under
  1 µs per call in CPython.

Plan: the sliding-window estimate made of two fixed windows (as Cloudflare's
rate limiter): ``current + previous × (the part of the previous window still
inside the sliding one)``; for a steady rate it is within ``(r·w - 1,
r·w + 2)`` of the true ``r·w`` (see the tests for the derivation), with no
per-request timestamps. Two dicts, ``current`` and ``previous``, map a source
key to a small list of counts (all requests, then one slot per limited
method); a window ends by ``previous, current = current, {}`` (O(1)). Sans-I/O:
the clock is passed in (monotonic seconds).

- Bound: when ``current`` holds ``max_sources`` keys and a new one arrives,
  the window ends early (counter ``early-rotations``), so at most
  ``2 × max_sources`` entries are ever held. Such a window is shorter, so its
  counts weigh in full rather than by its share of the sliding window: a
  spoofed flood can make limits looser (the history is shorter), never
  tighter. A flood big enough for that is itself worth an alarm.
- Keys: the address itself, or its network (``prefix_v4`` / ``prefix_v6``),
  so a ban on the key covers what was counted. The edge names addresses in
  canonical form, so /32 and /128 need no parsing; other prefixes (a /64 by
  default for IPv6: one customer gets a /64) are worked out once per address
  with inet_pton/inet_ntop and kept in a bounded cache.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

TOTAL: Final = "requests"  # the Limit on all methods together
DEFAULT_METHODS: Final[Mapping[str, int]] = MappingProxyType({"REGISTER": 20, "INVITE": 20})
KEY_CACHE: Final = 65_536  # addresses whose network key is remembered
_ZERO80: Final = bytes(10)


@dataclass(frozen=True)
class Limit:
    name: str  # "requests" (any method) or a method, e.g. "REGISTER", "INVITE"
    count: int  # allowed per window


_Counts = list[int]  # [all, method 1..k] in this window, then the same for the previous one


class RateLimiter:
    """Requests per source key over a sliding window (see the module doc)."""

    __slots__ = (
        "_blank",
        "_cache",
        "_caps",
        "_current",
        "_end",
        "_exact4",
        "_exact6",
        "_half",
        "_limits",
        "_mask4",
        "_mask6",
        "_previous",
        "_slots",
        "_span",
        "_start",
        "_suffix4",
        "_suffix6",
        "_width",
        "counters",
        "max_sources",
        "methods",
        "prefix_v4",
        "prefix_v6",
        "requests",
        "window",
    )

    def __init__(
        self,
        *,
        window: float = 2.0,
        requests: int = 100,
        methods: Mapping[str, int] = DEFAULT_METHODS,
        prefix_v4: int = 32,
        prefix_v6: int = 64,
        max_sources: int = 100_000,
    ) -> None:
        if not window > 0:
            raise ValueError("window: seconds, more than 0")
        if not 0 <= prefix_v4 <= 32 or not 0 <= prefix_v6 <= 128:
            raise ValueError("prefix_v4: 0 to 32, prefix_v6: 0 to 128")
        if max_sources < 1:
            raise ValueError("max_sources: at least 1")
        if TOTAL in methods:
            raise ValueError(f"methods: {TOTAL!r} names the limit on all methods")
        for name, count in {TOTAL: requests, **methods}.items():
            if count < 0:
                raise ValueError(f"{name}: a count per window, 0 or more")
        self.window = float(window)
        self.requests = requests
        self.methods = dict(methods)
        self.prefix_v4 = prefix_v4
        self.prefix_v6 = prefix_v6
        self.max_sources = max_sources
        self.counters: Counter[str] = Counter()
        # slot 0 counts every request, slot i a limited method; the previous
        # window's counts follow at +_width
        self._limits = (Limit(TOTAL, requests), *(Limit(m, c) for m, c in methods.items()))
        self._caps = tuple(limit.count for limit in self._limits)
        self._slots = {m: i for i, m in enumerate(methods, 1)}
        self._width = len(self._limits)
        self._half = [0] * self._width
        self._blank = [0] * (2 * self._width)
        self._current: dict[str, _Counts] = {}
        self._previous: dict[str, _Counts] = {}
        # the current window is [_start, _end); the previous one lasted _span
        # (a window ended early is shorter). -inf: the first hit starts one.
        self._start = self._end = float("-inf")
        self._span = self.window
        self._exact4 = prefix_v4 == 32
        # an IPv4-mapped address is keyed by its IPv4 prefix: as itself only at /32
        self._exact6 = prefix_v6 == 128 and prefix_v4 == 32
        self._mask4 = (1 << 32) - (1 << (32 - prefix_v4))
        self._mask6 = (1 << 128) - (1 << (128 - prefix_v6))
        self._suffix4 = "" if prefix_v4 == 32 else f"/{prefix_v4}"
        self._suffix6 = "" if prefix_v6 == 128 else f"/{prefix_v6}"
        self._cache: dict[str, str] = {}  # address -> network key (not for /32, /128)

    # ---------------------------------------------------------- hot path

    def hit(self, host: str, method: str, now: float) -> Limit | None:
        """Count one request from ``host`` (an address as the edge names it)
        and return the Limit it exceeds, or None."""
        if now >= self._end:
            self._roll(now)
        if ":" in host:
            # a "." means an embedded IPv4 (::ffff:a.b.c.d), which inet_ntop
            # and ipaddress spell differently: those take the slow path
            if self._exact6 and "." not in host:
                key = host
            else:
                key = self._cache.get(host) or self._key6(host)
        elif self._exact4:
            key = host
        else:
            key = self._cache.get(host) or self._key4(host)
        width = self._width
        current = self._current
        counts = current.get(key)
        if counts is None:  # the key's first request in this window
            if len(current) >= self.max_sources:
                current = self._end_early(now)
            # its entry starts with its previous-window counts copied in
            # (that window no longer changes): a hit is one dict lookup
            previous = self._previous.get(key)
            counts = self._blank.copy() if previous is None else self._half + previous[:width]
            current[key] = counts
        caps = self._caps
        total = counts[0] + 1
        counts[0] = total
        slot = self._slots.get(method)
        if slot is not None:
            count = counts[slot] + 1
            counts[slot] = count
            # current + previous bounds the estimate from above: the weight
            # is only worked out when a source comes near a limit
            before = counts[slot + width]
            if count + before > caps[slot]:
                left = self._end - now
                if (
                    count + (before if self._span <= left else before * (left / self._span))
                    > caps[slot]
                ):
                    return self._limits[slot]
        before = counts[width]
        if total + before > caps[0]:
            left = self._end - now
            if total + (before if self._span <= left else before * (left / self._span)) > caps[0]:
                return self._limits[0]
        return None

    def _weight(self, now: float) -> float:
        """The share of the previous window still inside the sliding one:
        ``(window - elapsed) / span``, at most 1 (all of a short window)."""
        left = self._end - now  # = window - time elapsed in the current one
        return 1.0 if self._span <= left else left / self._span

    def _end_early(self, now: float) -> dict[str, _Counts]:
        """The table is full: this window ends now (see the module doc)."""
        self.counters["early-rotations"] += 1
        self._previous, self._current = self._current, {}
        self._span = now - self._start
        self._start, self._end = now, now + self.window
        return self._current

    def _roll(self, now: float) -> None:
        if now < self._end + self.window:  # the window just ended: it becomes the previous
            self._previous = self._current
            self._span = self._end - self._start
            self._start, self._end = self._end, self._end + self.window
        else:  # a whole window without requests: nothing is left to weigh
            self._previous = {}
            self._span = self.window
            self._start, self._end = now, now + self.window
        self._current = {}

    # -------------------------------------------------------------- keys

    def key(self, host: str) -> str:
        """The key ``host`` is counted under (what a ban should target), in
        canonical form: ``192.0.2.7``, ``192.0.2.0/24``, ``2001:db8:1:2::/64``.
        Any spelling of an address; raises ValueError if it is not one."""
        return self._network_key(host)

    # An address not in the cache: inet_pton, mask, inet_ntop (C, a tenth of
    # ipaddress's time) give the text ipaddress would, as the edge's own
    # names do (its flows are named with inet_ntop). Where the first 80 bits
    # are zero (IPv4-mapped ::ffff:a.b.c.d and the like, which inet_ntop may
    # write with dots) ipaddress says.

    def _key4(self, host: str) -> str:
        try:
            packed = socket.inet_pton(socket.AF_INET, host)
        except (OSError, ValueError):
            return self._slow(host)
        network = (int.from_bytes(packed) & self._mask4).to_bytes(4)
        return self._remember(host, socket.inet_ntop(socket.AF_INET, network) + self._suffix4)

    def _key6(self, host: str) -> str:
        try:
            packed = socket.inet_pton(socket.AF_INET6, host)
        except (OSError, ValueError):
            return self._slow(host)
        if packed[:10] == _ZERO80:
            return self._slow(host)
        network = (int.from_bytes(packed) & self._mask6).to_bytes(16)
        return self._remember(host, socket.inet_ntop(socket.AF_INET6, network) + self._suffix6)

    def _slow(self, host: str) -> str:
        try:
            key = self._network_key(host)
        except ValueError:
            key = host  # not an address (the edge always passes one): counted as is
        return self._remember(host, key)

    def _remember(self, host: str, key: str) -> str:
        if len(self._cache) >= KEY_CACHE:
            self._cache.clear()  # cleared rather than grown: sources can be spoofed
        self._cache[host] = key
        return key

    def _network_key(self, host: str) -> str:
        ip = ipaddress.ip_address(host.strip())
        if isinstance(ip, ipaddress.IPv4Address):
            prefix = self.prefix_v4
        elif ip.ipv4_mapped is not None:
            prefix = 96 + self.prefix_v4  # an IPv4 client of a dual-stack socket
        else:
            prefix = self.prefix_v6
        if prefix == ip.max_prefixlen:
            return str(ip)
        return str(ipaddress.ip_network((ip, prefix), strict=False))

    def _canonical(self, key: str) -> str:
        """A key as hit() stores it, from any spelling of it."""
        try:
            net = ipaddress.ip_network(key.strip(), strict=False)
        except ValueError:
            return key
        return str(net.network_address) if net.num_addresses == 1 else str(net)

    # ---------------------------------------------------------- questions

    def rate(self, key: str, method: str | None, now: float) -> float:
        """The current estimate for ``key`` (a key as ``key()`` gives it), in
        requests per window (the unit of ``Limit.count``; divide by
        ``window`` for per second): all methods if ``method`` is None, else
        a limited method (KeyError if it is not limited)."""
        slot = 0 if method is None else self._slots[method]
        if now >= self._end:
            self._roll(now)
        key = self._canonical(key)
        counts = self._current.get(key)
        if counts is not None:
            return counts[slot] + counts[slot + self._width] * self._weight(now)
        previous = self._previous.get(key)
        return 0.0 if previous is None else previous[slot] * self._weight(now)

    def forget(self, key: str) -> None:
        """Reset a key's counts (it was banned: its next request, after the
        ban, starts afresh)."""
        key = self._canonical(key)
        self._current.pop(key, None)
        self._previous.pop(key, None)

    def __len__(self) -> int:
        """Entries held, both windows (a key in both counts twice): the
        memory figure, at most ``2 × max_sources``."""
        return len(self._current) + len(self._previous)

    # ------------------------------------------------------------ reload

    def reconfigured(
        self,
        *,
        window: float | None = None,
        requests: int | None = None,
        methods: Mapping[str, int] | None = None,
        prefix_v4: int | None = None,
        prefix_v6: int | None = None,
        max_sources: int | None = None,
    ) -> RateLimiter:
        """A limiter with new settings (None: unchanged) that takes over this
        one's counts, which is left empty: call it where the limiter is
        swapped, on the thread that calls ``hit``. Counts of a method that
        becomes limited start at 0; new prefixes mean new keys, so counts
        start afresh then. O(1) unless the limited methods change (then one
        pass over the entries)."""
        new = RateLimiter(
            window=self.window if window is None else window,
            requests=self.requests if requests is None else requests,
            methods=self.methods if methods is None else methods,
            prefix_v4=self.prefix_v4 if prefix_v4 is None else prefix_v4,
            prefix_v6=self.prefix_v6 if prefix_v6 is None else prefix_v6,
            max_sources=self.max_sources if max_sources is None else max_sources,
        )
        new.counters = self.counters
        if (new.prefix_v4, new.prefix_v6) == (self.prefix_v4, self.prefix_v6):
            current, previous = self._current, self._previous
            if list(new._slots) != list(self._slots):
                current = self._remapped(current, new)
                previous = self._remapped(previous, new)
            # fewer sources allowed: the bound holds at once, at the cost of
            # the history of a table over it
            if len(previous) > new.max_sources:
                previous = {}
            if len(current) > new.max_sources:
                current = {}
            new._current, new._previous = current, previous
            new._start, new._span = self._start, self._span
            new._end = self._start + new.window
            new._cache = self._cache
        self._current, self._previous, self._cache = {}, {}, {}
        self._start = self._end = float("-inf")
        return new

    def _remapped(self, table: dict[str, _Counts], new: RateLimiter) -> dict[str, _Counts]:
        old_width, width = self._width, new._width
        moves = [(0, 0)] + [(i, new._slots[m]) for m, i in self._slots.items() if m in new._slots]
        remapped = {}
        for key, counts in table.items():
            fresh = [0] * (2 * width)
            for old, slot in moves:
                fresh[slot] = counts[old]
                fresh[slot + width] = counts[old + old_width]
            remapped[key] = fresh
        return remapped
