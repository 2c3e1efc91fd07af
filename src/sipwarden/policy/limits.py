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
inside the sliding one)``, with no per-request timestamps. For a steady rate
r it lies in ``(r·w, r·w + 1]``, as the true count over the sliding window
does (the derivation is in the tests): a limit of c requests per window
stops exactly the steady rates over c/w, give or take one request. Bursts
are judged as if spread evenly over their window. Two dicts, ``current`` and
``previous``, map a source key to its counts (all requests, then one per
limited method) packed in one int; a window ends by ``previous, current =
current, {}`` (O(1)). Sans-I/O: the clock is passed in (monotonic seconds).

- One int per key, not a list: ints are not tracked by the cyclic garbage
  collector, so a spoofed flood churning hundreds of thousands of entries
  does not set off full collections that walk them all (tens of ms each),
  and a hit is one addition, one store and one test (see ``RateLimiter``).
- Bound: when ``current`` holds ``max_sources`` keys and a new one arrives,
  the window ends early (counter ``early-rotations``), so at most
  ``2 × max_sources`` entries are ever held. Such a window is shorter, so its
  counts weigh in full rather than by its share of the sliding window: a
  spoofed flood can make limits looser (the history is shorter), never
  tighter. A flood big enough for that is itself worth an alarm.
- Quiet time (``[schedule.quiet]``): with ``quiet`` (``QuietLimits``: the
  schedule's ``quiet(now)`` and stricter counts for the same limits), the
  limiter asks the schedule once per window, when one ends, and swaps the
  counts it compares with (the bias below): no cost per request. The
  bounds stay above the estimates whatever the counts, so a swap in the
  middle of a window is exact from the next request on.
- Keys: the address itself, or its network (``prefix_v4`` / ``prefix_v6``),
  so a ban on the key covers what was counted. The edge names addresses in
  canonical form, so /32 and /128 need no parsing; other prefixes (a /64 by
  default for IPv6: one customer gets a /64) are worked out once per address
  with inet_pton/inet_ntop and kept in a bounded cache.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, NamedTuple

from ..values import AF_INET, AF_INET6, inet_ntop, inet_pton

TOTAL: Final = "requests"  # the Limit on all methods together
DEFAULT_METHODS: Final[Mapping[str, int]] = MappingProxyType({"REGISTER": 20, "INVITE": 20})
KEY_CACHE: Final = 65_536  # addresses whose network key is remembered
MAX_COUNT: Final = 2**40  # the largest limit
MAX_SLOTS: Final = 12  # see reconfigured()
BITS: Final = 48  # a packed count's field: no key sends 2^46 requests in two windows
_FIELD: Final = (1 << BITS) - 1
_TOP: Final = 1 << (BITS - 1)
_SLOT: Final = 3 * BITS  # a slot's fields: bound, current, previous
_ZERO80: Final = bytes(10)


@dataclass(frozen=True)
class Limit:
    name: str  # "requests" (any method) or a method, e.g. "REGISTER", "INVITE"
    count: int  # allowed per window


class QuietLimits(NamedTuple):
    """The limits in quiet time: ``when(now)`` says whether now is quiet
    (``Schedule.quiet``); ``requests`` and ``methods`` replace the day's
    counts (a method the day does not limit cannot be limited only at night:
    add it to the day's ``methods``; one left out keeps the day's count)."""

    when: Callable[[float], bool]
    requests: int
    methods: Mapping[str, int] = MappingProxyType({})


class RateLimiter:
    """Requests per source key over a sliding window (see the module doc).

    A key's entry is an int of ``BITS``-bit fields, three per slot (slot 0
    counts all requests, the others one limited method each): a *bound*,
    the current window's count and the previous window's. A request adds
    one constant (a 1 in the bound and the count of slot 0 and of its
    method's slot). The bound is never below the estimate: it starts as
    the previous count (the weight is at most 1), grows with each request
    as the estimate does, and the weight only shrinks. Adding the bias
    ``2^(BITS-1) - 1 - limit`` sets a bound's top bit exactly when it is
    over its limit: one addition and one AND tell that a source is nowhere
    near a limit. Only then are the estimates worked out, and the bounds
    brought down to them if none is over (``_near``), so a source near a
    limit pays for that once every few requests, not at each one.
    """

    __slots__ = (
        "_bias",
        "_cache",
        "_caps",
        "_clear",
        "_counted",
        "_current",
        "_end",
        "_exact4",
        "_exact6",
        "_incs",
        "_layout",
        "_limits",
        "_mask4",
        "_mask6",
        "_plain",
        "_previous",
        "_quiet_now",
        "_slots",
        "_span",
        "_start",
        "_suffix4",
        "_suffix6",
        "counters",
        "max_sources",
        "methods",
        "prefix_v4",
        "prefix_v6",
        "quiet",
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
        quiet: QuietLimits | None = None,
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
            if not 0 <= count <= MAX_COUNT:
                raise ValueError(f"{name}: a count per window, 0 to 2^40")
        if quiet is not None:
            for name, count in {TOTAL: quiet.requests, **quiet.methods}.items():
                if name != TOTAL and name not in methods:
                    raise ValueError(f"quiet {name}: not limited by day (add it to methods)")
                if not 0 <= count <= MAX_COUNT:
                    raise ValueError(f"quiet {name}: a count per window, 0 to 2^40")
        self.window = float(window)
        self.requests = requests
        self.methods = dict(methods)
        self.prefix_v4 = prefix_v4
        self.prefix_v6 = prefix_v6
        self.max_sources = max_sources
        self.counters: Counter[str] = Counter()
        self.quiet = quiet
        self._quiet_now = False  # the counts in use are the quiet ones
        self._arrange((TOTAL, *methods))
        self._current: dict[str, int] = {}
        self._previous: dict[str, int] = {}
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

    def _arrange(self, layout: Sequence[str | None]) -> None:
        """Slots for ``layout`` (slot 0 for all requests, then a method each;
        None: a method no longer limited, see ``reconfigured``) and the
        constants the hot path works with."""
        self._layout = tuple(layout)
        self._slots = {m: i for i, m in enumerate(layout) if i and m is not None}
        self._use(self._quiet_now)
        count = 1 + (1 << BITS)  # a request: one more in a slot's bound and count
        # method -> (what a request adds, the top bits that mean "near a limit")
        self._incs = {
            m: (count * (1 + (1 << i * _SLOT)), _TOP | _TOP << i * _SLOT)
            for m, i in self._slots.items()
        }
        self._plain = (count, _TOP)  # a method without a limit of its own
        # every slot's count, shifted down to its bound's place
        self._counted = sum(_FIELD << i * _SLOT for i in range(len(layout)))
        self._clear = {i: ~(_FIELD << i * _SLOT) for i in self._caps}  # all but a bound

    def _use(self, quiet: bool) -> None:
        """Compare with the quiet counts (``quiet`` true) or the day's."""
        self._quiet_now = quiet = quiet and self.quiet is not None
        requests, methods = self.requests, self.methods
        if quiet and self.quiet is not None:
            requests = self.quiet.requests
            methods = {**methods, **self.quiet.methods}
        self._caps = {0: requests} | {i: methods[m] for m, i in self._slots.items()}
        self._limits = {
            i: Limit(TOTAL if i == 0 else self._layout[i] or "", c) for i, c in self._caps.items()
        }
        self._bias = sum((_TOP - 1 - cap) << (i * _SLOT) for i, cap in self._caps.items())

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
        current = self._current
        counts = current.get(key)
        if counts is None:  # the key's first request in this window
            if len(current) >= self.max_sources:
                current = self._end_early(now)
            before = self._previous.get(key)
            # it starts from its counts in the previous window, which no
            # longer change, as previous counts and bounds
            if before is None:
                counts = 0
            else:
                counts = (before >> BITS & self._counted) * (1 + (1 << 2 * BITS))
        inc, tops = self._incs.get(method, self._plain)
        counts += inc
        current[key] = counts
        if (counts + self._bias) & tops:  # a bound is over its limit
            return self._near(key, counts, self._slots.get(method, 0), now)
        return None

    def _near(self, key: str, counts: int, slot: int, now: float) -> Limit | None:
        """The limit the estimate is over, the method's own first; if none
        is, their bounds come down to the estimates (``int(e) + 1``: above
        them whatever the rounding)."""
        weight = self._weight(now)
        for s in (slot, 0) if slot else (0,):
            current, previous = self._split(counts, s)
            estimate = current + previous * weight
            if estimate > self._caps[s]:
                return self._limits[s]
            counts = counts & self._clear[s] | int(estimate) + 1 << s * _SLOT
        self._current[key] = counts
        return None

    def _split(self, counts: int, slot: int) -> tuple[int, int]:
        """A slot's counts in an entry: (current window, previous window)."""
        at = slot * _SLOT
        return counts >> (at + BITS) & _FIELD, counts >> (at + 2 * BITS) & _FIELD

    def _weight(self, now: float) -> float:
        """The share of the previous window still inside the sliding one:
        ``(window - elapsed) / span``, at most 1 (all of a short window)."""
        left = self._end - now  # = window - time elapsed in the current one
        return 1.0 if self._span <= left else left / self._span

    def _end_early(self, now: float) -> dict[str, int]:
        """The table is full: this window ends now (see the module doc)."""
        self.counters["early-rotations"] += 1
        if self.quiet is not None and self.quiet.when(now) != self._quiet_now:
            self._use(not self._quiet_now)
        self._previous, self._current = self._current, {}
        self._span = now - self._start
        self._start, self._end = now, now + self.window
        return self._current

    def _roll(self, now: float) -> None:
        if self.quiet is not None and self.quiet.when(now) != self._quiet_now:
            self._use(not self._quiet_now)
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
            packed = inet_pton(AF_INET, host)
        except (OSError, ValueError):
            return self._slow(host)
        network = (int.from_bytes(packed) & self._mask4).to_bytes(4)
        return self._remember(host, inet_ntop(AF_INET, network) + self._suffix4)

    def _key6(self, host: str) -> str:
        try:
            packed = inet_pton(AF_INET6, host)
        except (OSError, ValueError):
            return self._slow(host)
        if packed[:10] == _ZERO80:
            return self._slow(host)
        network = (int.from_bytes(packed) & self._mask6).to_bytes(16)
        return self._remember(host, inet_ntop(AF_INET6, network) + self._suffix6)

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
            current, previous = self._split(counts, slot)
        else:
            before = self._previous.get(key)
            if before is None:
                return 0.0
            current, previous = 0, self._split(before, slot)[0]
        return current + previous * self._weight(now)

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
        quiet: QuietLimits | Literal["keep"] | None = "keep",
    ) -> RateLimiter:
        """A limiter with new settings (None: unchanged; for ``quiet``,
        "keep" keeps this one's and None means none) that takes over this
        one's counts, in O(1), leaving this one empty: call it where the
        limiter is swapped, on the thread that calls ``hit``.

        A method that stays limited keeps its slot, one that is no longer
        limited leaves its slot unused (its counts fade within two windows,
        unread), a newly limited one gets a new slot and starts at 0, so no
        entry is rewritten. Counting starts afresh when the prefixes change
        (new keys) and when the slots would pass ``MAX_SLOTS`` (the layout
        is compacted then: a few windows of history, once in a long while)."""
        new = RateLimiter(
            window=self.window if window is None else window,
            requests=self.requests if requests is None else requests,
            methods=self.methods if methods is None else methods,
            prefix_v4=self.prefix_v4 if prefix_v4 is None else prefix_v4,
            prefix_v6=self.prefix_v6 if prefix_v6 is None else prefix_v6,
            max_sources=self.max_sources if max_sources is None else max_sources,
            quiet=self.quiet if quiet == "keep" else quiet,
        )
        new.counters = self.counters
        layout = [m if m in new.methods else None for m in self._layout]
        layout[0] = TOTAL
        layout += [m for m in new.methods if m not in self._slots]
        same_keys = (new.prefix_v4, new.prefix_v6) == (self.prefix_v4, self.prefix_v6)
        if same_keys and len(layout) <= MAX_SLOTS:
            new._arrange(layout)
            current, previous = self._current, self._previous
            # fewer sources allowed: the bound holds at once, at the cost of
            # the history of a table over it
            new._current = {} if len(current) > new.max_sources else current
            new._previous = {} if len(previous) > new.max_sources else previous
            new._start, new._span = self._start, self._span
            new._end = self._start + new.window
            if new.quiet is not None and new._start > float("-inf"):
                new._use(new.quiet.when(new._start))  # the new schedule's answer
            new._cache = self._cache
        elif self._current or self._previous:
            new.counters["reconfigure-resets"] += 1
        self._current, self._previous, self._cache = {}, {}, {}
        self._start = self._end = float("-inf")
        return new
