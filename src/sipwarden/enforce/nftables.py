"""Bans in the kernel: nftables sets that drop a banned source's packets.

Supports IPv4 and IPv6 addresses and networks (CIDRs), each with its own
timeout or none (permanent), dropping either everything a banned source
sends or only what it sends to the SIP ports. One table ``inet <table>``:

- sets ``ban4``/``ban6`` (addresses) and ``net4``/``net6`` (networks:
  interval sets), all with ``flags timeout``;
- sets ``feed4``/``feed6`` (interval sets, ``flags interval,timeout``):
  what the threat feeds list, loaded by ``load_feeds`` (see below);
- one chain hooked at prerouting, priority raw (-300), with one
  ``... saddr @set [meta l4proto . th dport {...}] counter drop`` rule per set,
  the bans' first (``dropped`` counts theirs, ``feed_dropped`` the feeds');
  with drop counting on (the default), the rules ``jump`` to chains that
  count each source's drops and drop (``drops.py``; ``drop_counts`` reads them).

Why priority raw: it runs before conntrack (-200) and before the filter
chains of any table, so a flow conntrack already knows is dropped too. A
drop placed after the usual ``ct state established accept`` in the same chain
never sees an established UDP flow (a scanner's packets keep it alive), which
is how fail2ban lets a banned SIP source keep talking. The conntrack entries
of a new ban are deleted as well, so no other rule (NAT, "established")
keeps treating its traffic as an existing flow.

Why the store is the truth: the kernel is only a copy. ``start`` replaces the
sets' content, in one transaction, with the bans in force, which corrects
whatever the kernel kept (bans lifted while the daemon was down, a reboot,
an operator's edits). The kernel timeouts are a safety net for when the
daemon is not running; normally the ban book removes expired bans itself.

Each ban element carries a comment (``sw1 <detector> <created_at> <offence>
<reason>``, at most 128 characters, nft's limit): what the store needs to
rebuild the ban. The kernel holds the bans even when the store could not
take them (a full disk, a store deleted or corrupted): ``bans`` reads them
back, and the daemon merges those the store lacks at its next start instead
of flushing them.

The feed sets: the intel side hands ``load_feeds`` the whole list it wants
(disjoint, see ``intel/kernel.py``) whenever it changes. The enforcer
remembers what it loaded (target -> expiry) and sends only the difference,
in one transaction; an expiry that moved by less than ``FEED_MOVED`` is left
alone (the edge drops the source anyway if the kernel lets it go a little
early). A difference with more deletions than the set's size allows
(``FEED_DELETE_BUDGET``), a refused difference, the first call and any call
after a failure replace the sets' whole content in one transaction instead
(a flush and the elements, ``ELEMENTS_PER_STATEMENT`` per statement: the
kernel swaps old for new at once, no packet sees a half-loaded set); a
refused replacement is loaded in halves, like the bans. ``start`` empties
the feed sets; the intel side loads them again afterwards. The Python side
of a load (diffing, the statements) runs on a thread: 100,000 targets take
~0.2 s of it.

Found out on nftables 1.0.6 (recorded where the code depends on it):
``delete element`` of an absent element fails, hence add-then-delete;
``add element`` of a present one keeps its old timeout on older kernels,
hence delete-then-add; nft refuses overlapping intervals (10.0.0.0/8 and
10.1.0.0/16) even when the other one is deleted in the same batch, hence
the split-and-retry (and, for the feeds, the full replacement: a ``flush
set`` followed by the new intervals in one batch is accepted); and timeouts
above 99,999,999 s are "value too large". Deleting from an interval set
costs time in proportion to the set's size, per deleted element (0.7 µs an
element here: 2,000 deletions from 13,000 intervals took 19 s, loading all
13,000 anew 0.1 s), hence the budget above; adding is cheap.

The same table carries the lane, the pre-filter that keeps phones served
under a flood: its sets, chains and counters are ``lane.py``'s, and the
``*_lane``/``*known_good``/``*trusted`` methods below are its only door.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import json
import logging
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..values import Ban, Change
from . import drops, lane
from .drops import DropCounting
from .lane import LaneSettings, LaneView

log = logging.getLogger("sipwarden.enforce")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ADVICE: Final = (
    "it needs CAP_NET_ADMIN (as a non-root user, ambient, so nft and conntrack get it):"
    " run sipwarden as its systemd unit does (`sipwarden service install`) or as root,"
    ' or set [firewall] enforcer = "none"'
)
SETS: Final = ("ban4", "ban6", "net4", "net6")
FEED_SETS: Final = ("feed4", "feed6")
FEED_MOVED: Final = 60.0  # seconds a feed entry's expiry may move before it is re-added
# deletions x elements in the set above which a feed change is loaded whole
# (nft 1.0.6: ~0.7 µs each, so ~0.15 s; a whole load of 100,000 takes ~0.9 s)
FEED_DELETE_BUDGET: Final = 200_000
CHAIN: Final = "prerouting"
MAX_TIMEOUT: Final = 99_999_999  # seconds (3.2 years): nft 1.0.6 refuses more; the book lifts it
TRANSPORTS: Final = {"udp": "udp", "tcp": "tcp", "tls": "tcp", "ws": "tcp", "wss": "tcp"}
COMMAND_TIMEOUT: Final = 30.0  # seconds for one nft or conntrack call
LISTING_TIMEOUT: Final = 300.0  # seconds for reading the table: 550,000 feed elements take 40 s
CONNTRACK_CONCURRENCY: Final = 8  # conntrack processes at once
CONNTRACK_LIST_ABOVE: Final = 8  # more new bans than this: list the flows once, delete only theirs
ELEMENTS_PER_STATEMENT: Final = 500  # start(), feeds: one `add element` carries many (faster)
_TABLE_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}\Z")
_DELETED: Final = re.compile(r"(\d+) flow entries have been deleted")
_FEED_ELEMENT: Final = re.compile(r"[0-9A-Fa-f.:/]+\Z")  # nothing nft could read as syntax
COMMENT_MAX: Final = 128  # characters nft keeps in an element's comment
COMMENT_TAG: Final = "sw1"  # the comment's format, so a later one can be told apart
_UNSAFE: Final = re.compile(
    r"[^\x20-\x7e]|[\"\\]"
)  # nft's quoted string: printable ASCII, no " or \


class EnforcerError(RuntimeError):
    """The kernel cannot be changed at all: nft missing, not permitted, or
    refusing sipwarden's table."""


@dataclass(frozen=True)
class _Target:
    net: Network

    @property
    def key(self) -> str:  # canonical, as the ban book writes it
        return str(self.net.network_address) if self.single else str(self.net)

    @property
    def single(self) -> bool:
        return self.net.num_addresses == 1

    @property
    def set(self) -> str:
        return ("ban" if self.single else "net") + str(self.net.version)


def _target(text: str) -> _Target:
    return _Target(ipaddress.ip_network(text.strip(), strict=False))


@dataclass(frozen=True)
class _Op:
    op: Literal["add", "remove"]
    target: _Target
    timeout: int | None  # seconds; None: permanent (or a removal)
    comment: str = ""  # an add's record of the ban (``comment``)


def comment(ban: Ban) -> str:
    """What an element carries of ``ban``, in nft's quoted-string alphabet."""
    detector = _UNSAFE.sub("?", ban.detector).replace(" ", "_") or "?"
    text = f"{COMMENT_TAG} {detector} {ban.created_at:.3f} {ban.offence} {ban.reason}"
    return _UNSAFE.sub("?", text)[:COMMENT_MAX]


def from_comment(target: str, text: str | None, left: float | None, now: float) -> Ban:
    """The ban an element records (``comment``), ending ``left`` seconds
    after ``now``; an element without sipwarden's comment (an older release
    wrote none, or an operator added it) is a ban by "kernel" made now."""
    expires = None if left is None else now + left
    fields = (text or "").split(" ", 4)
    if len(fields) >= 4 and fields[0] == COMMENT_TAG:
        with contextlib.suppress(ValueError):
            created, offence = float(fields[2]), int(fields[3])
            if math.isfinite(created) and offence >= 1:
                reason = fields[4] if len(fields) == 5 else ""
                return Ban(
                    target,
                    reason or "(no reason recorded)",
                    fields[1],
                    created,
                    expires,
                    offence,
                    ("restored from the kernel's ban set",),
                )
    return Ban(
        target,
        "found in the kernel's ban set with no record",
        "kernel",
        now,
        expires,
        1,
        ("restored from the kernel's ban set",),
    )


@dataclass(frozen=True)
class _Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


def _timeout(expires_at: float | None, now: float) -> int | None:
    """Seconds left, rounded up; None: permanent; 0: already over (or not
    a time at all: a NaN must not spoil the batch it is in)."""
    if expires_at is None:
        return None
    left = expires_at - now
    if not math.isfinite(left):
        return 0
    return 0 if left <= 0 else min(math.ceil(left), MAX_TIMEOUT)


def _element(target: _Target, timeout: int | None = None, note: str = "") -> str:
    text = target.key if timeout is None else f"{target.key} timeout {timeout}s"
    return f'{text} comment "{note}"' if note else text


def element_statements(verb: str, table: str, by_set: Mapping[str, Sequence[str]]) -> list[str]:
    """``verb element`` statements (add, delete) for each set's elements,
    ``ELEMENTS_PER_STATEMENT`` apiece: nft parses a few long statements much
    faster than many short ones."""
    lines = []
    for name, elements in by_set.items():
        for i in range(0, len(elements), ELEMENTS_PER_STATEMENT):
            chunk = ", ".join(elements[i : i + ELEMENTS_PER_STATEMENT])
            lines.append(f"{verb} element inet {table} {name} {{ {chunk} }}")
    return lines


@dataclass(frozen=True)
class Overview:
    """What the table holds and has dropped: the bans' sets and the feeds'."""

    elements: dict[str, float | None]  # target -> seconds left (None: no timeout)
    dropped: int
    feed_elements: dict[str, float | None]
    feed_dropped: int


def _elements(listing: Iterable[dict[str, Any]], names: Sequence[str]) -> dict[str, float | None]:
    """The elements of the sets ``names`` in ``nft -j``'s listing."""
    return {key: left for key, (left, _) in _noted_elements(listing, names).items()}


def _noted_elements(
    listing: Iterable[dict[str, Any]], names: Sequence[str]
) -> dict[str, tuple[float | None, str | None]]:
    """The elements of the sets ``names``: target -> (seconds left, comment)."""
    found: dict[str, tuple[float | None, str | None]] = {}
    for obj in listing:
        s = obj.get("set")
        if not s or s.get("name") not in names:
            continue
        for item in s.get("elem", []):
            inner = item["elem"] if isinstance(item, dict) and "elem" in item else None
            value = inner["val"] if inner is not None else item
            left: float | None = None
            if inner is not None and "timeout" in inner:
                left = float(inner.get("expires", 0))
            note = inner.get("comment") if inner is not None else None
            for key in _keys(value):
                found[key] = (left, note if isinstance(note, str) else None)
    return found


def _dropped(listing: Iterable[dict[str, Any]], names: Sequence[str]) -> int:
    """Packets counted by the drop rules that match the sets ``names``."""
    packets = 0
    for obj in listing:
        rule = obj.get("rule")
        if not rule or rule.get("chain") != CHAIN:
            continue
        exprs = [e for e in rule.get("expr", []) if isinstance(e, dict)]
        # the saddr match's right side names the set; the ports' is a dict
        sets = {r for e in exprs if "match" in e and isinstance(r := e["match"].get("right"), str)}
        if any(f"@{name}" in sets for name in names):
            packets += sum(int(e["counter"].get("packets", 0)) for e in exprs if "counter" in e)
    return packets


def _live_feeds(
    wanted: Mapping[str, float | None], now: float
) -> tuple[dict[str, float | None], list[str]]:
    """The feed targets still in force, and those nft could misread as syntax."""
    live: dict[str, float | None] = {}
    bad = []
    for target, expires_at in wanted.items():
        if not _FEED_ELEMENT.match(target):
            bad.append(target)
        elif _timeout(expires_at, now) != 0:
            live[target] = expires_at
    return live, bad


def _moved(old: float | None, new: float | None) -> bool:
    """Whether a feed element's kernel timeout is worth replacing."""
    if old is None or new is None:
        return old is not new
    return abs(new - old) > FEED_MOVED


def _refused(result: _Result) -> str:
    return result.stderr.strip().splitlines()[0] if result.stderr.strip() else f"exit {result.rc}"


class NftablesEnforcer:
    """The ``nftables`` enforcer (see the module docstring). ``command_prefix``
    runs nft and conntrack through another command, e.g. ``ip netns exec NS``."""

    def __init__(
        self,
        *,
        table: str = "sipwarden",
        ports: Sequence[tuple[str, int]] = (),
        nft: str = "nft",
        conntrack: bool = True,
        conntrack_command: str = "conntrack",
        command_prefix: Sequence[str] = (),
        timeout: float = COMMAND_TIMEOUT,
        drop_counting: DropCounting | None = drops.DEFAULT,  # None: no per-source counts
    ) -> None:
        if not _TABLE_NAME.match(table):
            raise ValueError(f"table: {table!r} is not an nftables name (letters, digits, _)")
        self.name = "nftables"
        self.counters: collections.Counter[str] = collections.Counter()
        self.table = table
        self.ports = _ports(ports)
        self.nft = nft
        self.conntrack = conntrack
        self.conntrack_command = conntrack_command
        self.command_prefix = tuple(command_prefix)
        self.timeout = timeout
        self.drop_counting = drop_counting
        self._lock = asyncio.Lock()  # one nft transaction at a time, in call order
        self._conntrack_warned = False
        # feed elements in the kernel (target -> expires_at); None: unknown, replace them all
        self._feeds: dict[str, float | None] | None = None
        # conntrack clean-ups under way: they run after the nft batch, not
        # before apply() returns (the ban is in force once the set has it;
        # the kernel drops the flow's packets before conntrack sees them)
        self._cleanups: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- API

    async def start(self, bans: Sequence[Ban], now: float) -> None:
        wanted = self._in_force(bans, now)
        elements = self._bulk_adds(wanted)
        async with self._lock:
            self._feeds = None  # the layout empties the feed sets
            self.counters["feed-elements"] = 0
            # table, sets, chain and rules, the sets emptied and refilled: one transaction,
            # so there is never a moment without the bans, nor a duplicated rule
            result = await self._nft(self._layout() + elements)
            if result.ok:
                self.counters["batches"] += 1
                self.counters["elements-added"] += len(wanted)
                return
            self._raise_if_unusable(result, "set up the table")
            # an element refused (it should not happen: overlaps were resolved above);
            # fall back to the layout alone, then the bans in pieces
            log.warning(
                "nftables refused the reconcile batch (%s); loading bans in pieces",
                _refused(result),
            )
            self.counters["batches-failed"] += 1
            result = await self._nft(self._layout())
            if not result.ok:
                raise EnforcerError(
                    f"nft refused to create table inet {self.table}: {_refused(result)} "
                    f"(`sipwarden firewall flush` removes a stale table)"
                )
            self.counters["batches"] += 1
            await self._apply_ops([_Op("add", t, timeout, note) for t, timeout, note in wanted])

    async def apply(self, changes: Sequence[Change], now: float) -> None:
        ops = self._ops(changes, now)
        if not ops:
            return
        async with self._lock:
            try:
                done = await self._apply_ops(ops)
            except EnforcerError as e:  # the kernel went away under us: the edge still enforces
                log.warning("nftables: %s changes not applied: %s", len(ops), e)
                self.counters["errors"] += len(ops)
                return
        if self.conntrack:
            added = [op.target for op in done if op.op == "add"]
            if added:
                task = asyncio.get_running_loop().create_task(self._forget_flows(added))
                self._cleanups.add(task)
                task.add_done_callback(self._cleanups.discard)

    async def stop(self) -> None:
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        async with self._lock:  # let a batch under way finish; the kernel keeps the bans
            pass

    async def flush(self) -> None:
        async with self._lock:
            self._feeds = None
            # `add` first so that deleting an absent table is not an error
            result = await self._nft(
                [f"add table inet {self.table}", f"delete table inet {self.table}"]
            )
            if not result.ok:
                self._raise_if_unusable(result, "remove the table")
                raise EnforcerError(
                    f"nft could not remove table inet {self.table}: {_refused(result)}"
                )

    async def load_feeds(self, wanted: Mapping[str, float | None], now: float) -> None:
        async with self._lock:
            # the Python side of 100,000 targets takes ~0.1 s: on a thread, off
            # the packets' loop (self._feeds changes only under the lock)
            live, bad = await asyncio.to_thread(_live_feeds, wanted, now)
            for target in bad[:10]:  # the count says how many more
                log.warning("nftables: not an address or network: %r", target)
            self.counters["feed-errors"] += len(bad)
            try:
                if self._feeds is None or not await self._feed_difference(live, now):
                    await self._feed_replace(live, now)
            except EnforcerError:
                self._feeds = None  # whatever the kernel holds now, the next call replaces it
                raise
            if self._feeds is not None:  # else _feed_replace counted what it could load
                self.counters["feed-elements"] = len(self._feeds)

    async def elements(self) -> dict[str, float | None]:
        return _elements(await self._listing(), SETS)

    async def bans(self, now: float) -> list[Ban]:
        listing: list[dict[str, Any]] = []
        for name in SETS:  # the ban sets alone: listing big feed sets takes seconds
            listing += await self._listing(("set", "inet", self.table, name))
        return [
            from_comment(target, note, left, now)
            for target, (left, note) in _noted_elements(listing, SETS).items()
        ]

    async def feed_elements(self) -> dict[str, float | None]:
        return _elements(await self._listing(), FEED_SETS)

    async def dropped(self) -> int:
        return _dropped(await self._listing(), SETS)

    async def feed_dropped(self) -> int:
        return _dropped(await self._listing(), FEED_SETS)

    async def overview(self) -> Overview:
        """All four from one listing (with big feed sets, listing is the cost)."""
        listing = await self._listing()
        return Overview(
            _elements(listing, SETS),
            _dropped(listing, SETS),
            _elements(listing, FEED_SETS),
            _dropped(listing, FEED_SETS),
        )

    async def drop_counts(self) -> dict[str, tuple[int, int]]:
        """What the kernel dropped for a ban or a feed since the last start,
        per source: address -> (packets, bytes: whole IP packets, headers
        included), and ``drops.OVERFLOW`` ("*") -> the drops of sources that
        found the counting set full. Cumulative: an element that timed out
        (``idle``) is gone, and starts from zero if its source comes back.
        {} when counting is off or there is no table. Each of its three nft
        calls and the JSON's reading (in a child process: see ``drops.py``)
        is bounded by ``timeout``. Raises EnforcerError if nft fails."""
        texts = []
        for what in (
            *(("set", "inet", self.table, name) for name in drops.COUNT_SETS),
            ("counter", "inet", self.table, drops.UNCOUNTED),
        ):
            result = await self._run([self.nft, "-j", "list", *what])
            if result.ok:
                texts.append(result.stdout)
            elif "No such file or directory" not in result.stderr:  # absent: nothing counted
                self._raise_if_unusable(result, "read the drop counts")
                raise EnforcerError(f"nft could not list {' '.join(what)}: {_refused(result)}")
        if not texts:
            return {}
        reader = [sys.executable, "-I", drops.__file__]  # stdlib only: isolated is enough
        result = await self._run(reader, "\n".join(texts).encode(), prefixed=False)
        try:
            if not result.ok:
                raise ValueError(_refused(result))
            # on a thread: 65,536 lines are ~50 ms of Python, which must not hold up the loop
            return await asyncio.to_thread(drops.from_lines, result.stdout)
        except ValueError as e:
            raise EnforcerError(f"the drop counts could not be read: {e}") from e

    # ------------------------------------------------------------ the lane

    async def start_lane(self, settings: LaneSettings | None, trusted: Sequence[Network]) -> None:
        """Build the lane (``lane.py``) with ``trusted`` (trusted peers and
        the allow list) in one transaction, keeping the known-good sets'
        elements; None removes it. Raises EnforcerError if nft refuses."""
        lines = (
            lane.removal(self.table)
            if settings is None
            else lane.layout(self.table, settings, trusted)
        )
        async with self._lock:
            result = await self._nft(lines)
        if not result.ok:
            self._raise_if_unusable(result, "set up the lane")
            raise EnforcerError(
                f"nft refused the lane in table inet {self.table}: {_refused(result)}"
                " (set [firewall.lane] enabled = false to run without it)"
            )

    async def load_trusted(self, trusted: Sequence[Network]) -> None:
        """Make the lane's trusted sets hold ``trusted`` (a reload changed
        them); never raises for a kernel error (logged and counted)."""
        async with self._lock:
            result = await self._nft(lane.reload_trusted(self.table, trusted))
        if not result.ok:
            self.counters["lane-errors"] += 1
            log.warning("nftables refused the lane's trusted sources: %s", _refused(result))

    async def add_known_good(self, entries: Mapping[str, float], now: float) -> list[str]:
        """Put ``entries`` (address -> when its entry should end) in the
        known-good sets, or renew them, in one transaction; returns the
        addresses not taken (every one if nft refused the batch). Never
        raises for a kernel error (logged and counted)."""
        items: dict[str, int] = {}
        refused = []
        for host, expires_at in entries.items():
            timeout = _timeout(expires_at, now)
            if timeout and lane.is_address(host):  # nothing but addresses reaches nft
                items[host] = timeout
            else:
                refused.append(host)
        if refused:
            self.counters["lane-errors"] += len(refused)
        if not items:
            return refused
        bare, timed = lane.known_good_elements(items)
        lines = (
            element_statements("add", self.table, bare)
            + element_statements("delete", self.table, bare)
            + element_statements("add", self.table, timed)
        )
        async with self._lock:
            try:
                result = await self._nft(lines)
            except EnforcerError as e:
                result = _Result(1, "", str(e))
        if not result.ok:
            self.counters["lane-errors"] += len(items)
            log.warning(
                "nftables: %d known-good sources not added: %s", len(items), _refused(result)
            )
            return refused + list(items)
        self.counters["lane-batches"] += 1
        self.counters["lane-known-good-added"] += len(items)
        return refused

    async def lane_counters(self) -> dict[str, int]:
        """The lane's counters (``lane.COUNTERS``' keys -> packets) since it
        was last started; empty when there is no lane."""
        result = await self._run([self.nft, "-j", "list", "counters", "table", "inet", self.table])
        if not result.ok:
            if "No such file or directory" in result.stderr:
                return {}
            self._raise_if_unusable(result, "read the lane's counters")
            raise EnforcerError(f"nft could not list the lane's counters: {_refused(result)}")
        listing = json.loads(result.stdout).get("nftables", [])
        names = {obj["counter"]["name"] for obj in listing if "counter" in obj}
        if not names & set(lane.COUNTERS.values()):
            return {}
        return lane.counters(listing)

    async def lane_view(self) -> LaneView:
        """The lane as the kernel holds it: counters, known-good sources
        (with their time left), trusted networks."""
        found: dict[str, dict[str, float | None]] = {}
        for name in lane.GOOD_SETS + lane.TRUSTED_SETS:
            result = await self._run(
                [self.nft, "-j", "list", "set", "inet", self.table, name],
                timeout=max(self.timeout, LISTING_TIMEOUT),
            )
            if not result.ok:
                if "No such file or directory" in result.stderr:
                    continue
                self._raise_if_unusable(result, "read the lane")
                raise EnforcerError(f"nft could not list set {name}: {_refused(result)}")
            found[name] = lane.set_elements(json.loads(result.stdout).get("nftables", []))
        counts = await self.lane_counters()
        return LaneView(
            present=bool(counts),
            counters=counts,
            known_good={k: v for name in lane.GOOD_SETS for k, v in found.get(name, {}).items()},
            trusted=[k for name in lane.TRUSTED_SETS for k in found.get(name, {})],
        )

    # --------------------------------------------------------------- inside

    def _set_lines(self, names: Sequence[str]) -> list[str]:
        """Create the sets ``names`` if missing, and empty them."""
        t = f"inet {self.table}"
        lines = []
        for name in names:
            kind = "ipv4_addr" if name.endswith("4") else "ipv6_addr"
            flags = "timeout" if name.startswith("ban") else "interval,timeout"
            lines.append(f"add set {t} {name} {{ type {kind}; flags {flags}; }}")
            lines.append(f"flush set {t} {name}")
        return lines

    def _layout(self) -> list[str]:
        t = f"inet {self.table}"
        lines = [f"add table {t}", *self._set_lines(SETS + FEED_SETS)]
        lines.append(
            f"add chain {t} {CHAIN} {{ type filter hook prerouting priority raw; policy accept; }}"
        )
        lines.append(f"flush chain {t} {CHAIN}")  # `add rule` appends: rebuild, never duplicate
        # after the flush: the counting chains cannot change while a rule jumps to them
        if self.drop_counting is None:
            lines += drops.removal(self.table)
        else:
            lines += drops.layout(self.table, self.drop_counting)
        match = ""
        if self.ports:
            match = (
                " meta l4proto . th dport { "
                + ", ".join(f"{p} . {n}" for p, n in self.ports)
                + " }"
            )
        for name in SETS + FEED_SETS:  # the bans first: a banned and listed source counts as banned
            family = "ip" if name.endswith("4") else "ip6"
            verdict = "drop" if self.drop_counting is None else f"jump {drops.target(name)}"
            lines.append(f"add rule {t} {CHAIN} {family} saddr @{name}{match} counter {verdict}")
        return lines

    def _in_force(self, bans: Iterable[Ban], now: float) -> list[tuple[_Target, int | None, str]]:
        """The bans to load: active, one per target (the longest), and no
        network inside another (nft refuses overlapping intervals: the outer
        one is kept; the edge still enforces the inner one once it ends)."""
        best: dict[str, tuple[_Target, int | None, str]] = {}
        for ban in bans:
            timeout = _timeout(ban.expires_at, now)
            if timeout == 0:
                continue
            try:
                target = _target(ban.target)
            except ValueError:
                log.warning("nftables: not an address or network: %r", ban.target)
                self.counters["errors"] += 1
                continue
            old = best.get(target.key)
            if old is None or (old[1] is not None and (timeout is None or timeout > old[1])):
                best[target.key] = (target, timeout, comment(ban))
        kept: list[tuple[_Target, int | None, str]] = []
        networks: set[Network] = set()
        for target, timeout, note in sorted(best.values(), key=lambda e: e[0].net.prefixlen):
            if not target.single:
                net = target.net
                if any(net.supernet(new_prefix=p) in networks for p in range(net.prefixlen)):
                    log.info("nftables: %s is inside a banned network; not loaded", target.key)
                    self.counters["elements-skipped"] += 1
                    continue
                networks.add(net)
            kept.append((target, timeout, note))
        return kept

    def _bulk_adds(self, wanted: Sequence[tuple[_Target, int | None, str]]) -> list[str]:
        by_set: dict[str, list[str]] = collections.defaultdict(list)
        for target, timeout, note in wanted:
            by_set[target.set].append(_element(target, timeout, note))
        return element_statements("add", self.table, by_set)

    def _ops(self, changes: Sequence[Change], now: float) -> list[_Op]:
        """Changes to apply, the last one per target only: the same final
        state, and the kernel refuses add/delete/add/delete of one interval
        element in a transaction (ENOENT on the second delete)."""
        latest: dict[str, _Op] = {}
        for change in changes:
            try:
                target = _target(change.ban.target)
            except ValueError:
                log.warning("nftables: not an address or network: %r", change.ban.target)
                self.counters["errors"] += 1
                continue
            latest.pop(target.key, None)  # re-inserted: keeps the order of the last changes
            if change.op == "add":
                timeout = _timeout(change.ban.expires_at, now)
                if timeout == 0:
                    self.counters["elements-skipped"] += 1
                    continue
                latest[target.key] = _Op("add", target, timeout, comment(change.ban))
            else:
                latest[target.key] = _Op("remove", target, None)
        return list(latest.values())

    def _batch(self, ops: Sequence[_Op]) -> list[str]:
        lines = []
        for op in ops:
            where = f"element inet {self.table} {op.target.set}"
            element = _element(op.target)
            # add+delete: present or not, the element is now absent, without an error;
            # then add with the new timeout (a plain add would keep an old timeout)
            lines.append(f"add {where} {{ {element} }}")
            lines.append(f"delete {where} {{ {element} }}")
            if op.op == "add":
                lines.append(f"add {where} {{ {_element(op.target, op.timeout, op.comment)} }}")
        return lines

    async def _apply_ops(self, ops: Sequence[_Op]) -> list[_Op]:
        """One transaction for ``ops``; if refused, halves in order, down to
        single changes, so one bad element costs log2(n) calls and blocks
        nothing else. Returns the ops applied."""
        result = await self._nft(self._batch(ops))
        if result.ok:
            self.counters["batches"] += 1
            adds = sum(1 for op in ops if op.op == "add")
            self.counters["elements-added"] += adds
            self.counters["elements-removed"] += len(ops) - adds
            return list(ops)
        self._raise_if_unusable(result, "change the ban sets")
        self.counters["batches-failed"] += 1
        if len(ops) > 1:
            middle = len(ops) // 2
            return await self._apply_ops(ops[:middle]) + await self._apply_ops(ops[middle:])
        op = ops[0]
        if op.op == "remove" and ("overlaps" in result.stderr or "conflicting" in result.stderr):
            # another network covers part of it, so it is not in the set: nothing to remove
            self.counters["elements-removed"] += 1
            return [op]
        log.warning("nftables refused to %s %s: %s", op.op, op.target.key, _refused(result))
        self.counters["errors"] += 1
        return []

    async def _feed_difference(self, live: Mapping[str, float | None], now: float) -> bool:
        """Send what changed since the last load in one transaction; False
        if nft refused it or it deletes too much to be worth it."""
        assert self._feeds is not None
        change = await asyncio.to_thread(self._feed_change, self._feeds, live, now)
        if change is None:
            self.counters["feed-replaced"] += 1  # cheaper than deleting one by one
            return False
        lines, after = change
        if lines:
            result = await self._nft(lines)
            if not result.ok:
                self._raise_if_unusable(result, "change the feed sets")
                # e.g. a new network overlapping one deleted in the same batch
                log.info("nftables refused the feed changes (%s); reloading", _refused(result))
                self.counters["feed-batches-failed"] += 1
                return False
            self.counters["feed-batches"] += 1
        self._feeds = after
        return True

    def _feed_change(
        self, feeds: Mapping[str, float | None], live: Mapping[str, float | None], now: float
    ) -> tuple[list[str], dict[str, float | None]] | None:
        """The transaction that takes the feed sets from ``feeds`` to
        ``live``, and what they hold after it; None when it deletes more
        than ``FEED_DELETE_BUDGET`` allows. Pure: run on a thread."""
        loaded = {k: e for k, e in feeds.items() if _timeout(e, now) != 0}  # not timed out yet
        removed = [k for k in loaded if k not in live]
        moved = [k for k, e in live.items() if k in loaded and _moved(loaded[k], e)]
        added = [k for k in live if k not in loaded]
        if (len(removed) + len(moved)) * len(loaded) > FEED_DELETE_BUDGET:
            return None
        if not (removed or moved or added):
            return [], loaded
        gone = [(k, None) for k in removed + moved]
        lines = (
            # add+delete: present or not, the element is now absent, without an error
            self._feed_lines("add", gone)
            + self._feed_lines("delete", gone)
            + self._feed_lines("add", [(k, _timeout(live[k], now)) for k in moved + added])
        )
        for k in removed:
            del loaded[k]
        for k in moved + added:
            loaded[k] = live[k]
        return lines, loaded

    async def _feed_replace(self, live: Mapping[str, float | None], now: float) -> None:
        """Make the feed sets hold exactly ``live``: one transaction, or, if
        nft refuses it, the elements in halves."""
        empty = [f"add table inet {self.table}", *self._set_lines(FEED_SETS)]

        def plan() -> tuple[list[tuple[str, int | None]], list[str]]:
            items = [(k, _timeout(e, now)) for k, e in live.items()]
            return items, self._feed_lines("add", items)

        items, lines = await asyncio.to_thread(plan)
        result = await self._nft(empty + lines)
        if result.ok:
            self.counters["feed-batches"] += 1
            self._feeds = dict(live)
            return
        self._raise_if_unusable(result, "load the feed sets")
        log.warning(
            "nftables refused the %s feed elements (%s); loading them in pieces",
            len(items),
            _refused(result),
        )
        self.counters["feed-batches-failed"] += 1
        result = await self._nft(empty)
        if not result.ok:
            raise EnforcerError(f"nft could not empty the feed sets: {_refused(result)}")
        self.counters["feed-batches"] += 1
        loaded = await self._feed_pieces(items)
        # something refused: unknown ground, the next call replaces everything again
        self._feeds = {k: live[k] for k in loaded} if len(loaded) == len(items) else None
        self.counters["feed-elements"] = len(loaded)

    async def _feed_pieces(self, items: Sequence[tuple[str, int | None]]) -> list[str]:
        """Add ``items`` in one transaction, or in halves down to single
        elements if refused; returns the targets added."""
        result = await self._nft(self._feed_lines("add", items))
        if result.ok:
            self.counters["feed-batches"] += 1
            return [k for k, _ in items]
        self._raise_if_unusable(result, "load the feed sets")
        self.counters["feed-batches-failed"] += 1
        if len(items) > 1:
            middle = len(items) // 2
            return await self._feed_pieces(items[:middle]) + await self._feed_pieces(items[middle:])
        log.warning("nftables refused the feed element %s: %s", items[0][0], _refused(result))
        self.counters["feed-errors"] += 1
        return []

    def _feed_lines(self, verb: str, items: Iterable[tuple[str, int | None]]) -> list[str]:
        """``verb`` (add, delete) elements of the feed sets, many per statement."""
        by_set: dict[str, list[str]] = {name: [] for name in FEED_SETS}
        for target, timeout in items:
            element = target if timeout is None else f"{target} timeout {timeout}s"
            by_set["feed6" if ":" in target else "feed4"].append(element)
        return element_statements(verb, self.table, by_set)

    async def _forget_flows(self, targets: Sequence[_Target]) -> None:
        """Delete the conntrack entries whose original source is a new ban's."""
        if len(targets) > CONNTRACK_LIST_ABOVE:
            sources = await self._conntrack_sources({t.net.version for t in targets})
            if sources is not None:  # only the bans that have flows
                targets = _with_flows(targets, sources)
        gate = asyncio.Semaphore(CONNTRACK_CONCURRENCY)

        async def forget(target: _Target) -> None:
            async with gate:
                await self._conntrack_delete(target)

        await asyncio.gather(*(forget(t) for t in targets))

    async def _conntrack_delete(self, target: _Target) -> None:
        net = target.net
        argv = [
            self.conntrack_command,
            "-D",
            "-f",
            f"ipv{net.version}",
            "-s",
            str(net.network_address),
        ]
        if not target.single:
            argv += ["--mask-src", str(net.netmask)]  # a network: conntrack-tools >= 1.4.6
        try:
            result = await self._run(argv)
        except EnforcerError as e:
            self._conntrack_failed(target, str(e))
            return
        deleted = _DELETED.search(result.stderr)
        if result.ok or (result.rc == 1 and deleted is not None and deleted.group(1) == "0"):
            # exit 1 with "0 flow entries have been deleted": there were none
            self.counters["conntrack-deleted"] += int(deleted.group(1)) if deleted else 0
        else:
            self._conntrack_failed(target, _refused(result))

    def _conntrack_failed(self, target: _Target, why: str) -> None:
        self.counters["conntrack-failed"] += 1
        if not self._conntrack_warned:  # once: a missing tool would say it for every ban
            self._conntrack_warned = True
            log.warning(
                "conntrack could not delete the flows of %s (%s); new bans still drop their "
                "packets (apt-get install conntrack, or set conntrack off)",
                target.key,
                why,
            )

    async def _conntrack_sources(self, versions: set[int]) -> set[IPAddress] | None:
        sources: set[IPAddress] = set()
        for version in sorted(versions):
            try:
                result = await self._run([self.conntrack_command, "-L", "-f", f"ipv{version}"])
            except EnforcerError:
                return None
            if not result.ok:
                return None
            for line in result.stdout.splitlines():
                _, found, rest = line.partition(" src=")
                if found:
                    with contextlib.suppress(ValueError):
                        sources.add(ipaddress.ip_address(rest.split(" ", 1)[0]))
        return sources

    async def _listing(self, what: Sequence[str] = ()) -> list[dict[str, Any]]:
        """``nft -j list`` of ``what`` (default: the whole table)."""
        result = await self._run(
            [self.nft, "-j", "list", *(what or ("table", "inet", self.table))],
            timeout=max(self.timeout, LISTING_TIMEOUT),
        )
        if not result.ok:
            if "No such file or directory" in result.stderr:
                return []  # no table (or set): nothing banned, nothing dropped
            self._raise_if_unusable(result, "read the table")
            raise EnforcerError(f"nft could not list table inet {self.table}: {_refused(result)}")
        data = json.loads(result.stdout)
        return [obj for obj in data.get("nftables", []) if isinstance(obj, dict)]

    def _raise_if_unusable(self, result: _Result, doing: str) -> None:
        if "Operation not permitted" in result.stderr or "Permission denied" in result.stderr:
            raise EnforcerError(f"nft is not permitted to {doing}: {ADVICE}")
        if f'exec of "{self.nft}" failed' in result.stderr:  # ip netns exec, nft missing
            raise EnforcerError(f"{self.nft} not found (apt-get install nftables), or {ADVICE}")

    async def _nft(self, lines: Sequence[str]) -> _Result:
        return await self._run([self.nft, "-f", "-"], ("\n".join(lines) + "\n").encode())

    async def _run(
        self,
        argv: Sequence[str],
        stdin: bytes | None = None,
        timeout: float | None = None,
        *,
        prefixed: bool = True,  # False: not through command_prefix (a local helper)
    ) -> _Result:
        full = [*self.command_prefix, *argv] if prefixed else list(argv)
        timeout = self.timeout if timeout is None else timeout
        try:
            proc = await asyncio.create_subprocess_exec(
                *full,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError as e:
            package = "nftables" if argv[0] == self.nft else "conntrack"
            raise EnforcerError(
                f"{full[0]} not found (apt-get install {package}), or {ADVICE}"
            ) from e
        except PermissionError as e:
            raise EnforcerError(f"cannot run {full[0]}: {e}; {ADVICE}") from e
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise EnforcerError(f"{' '.join(argv[:2])} took more than {timeout:g} s") from None
        assert proc.returncode is not None
        return _Result(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def _with_flows(targets: Sequence[_Target], sources: set[IPAddress]) -> list[_Target]:
    """The targets covering at least one of ``sources`` (set lookups, one per
    network prefix length, not targets x sources)."""
    singles = {t.net.network_address for t in targets if t.single}
    networks = {t.net for t in targets if not t.single}
    lengths = {(n.version, n.prefixlen) for n in networks}
    hit: set[Network] = set()
    for ip in sources:
        if ip in singles:
            hit.add(ipaddress.ip_network(ip))
        for version, length in lengths:
            if ip.version == version:
                net = ipaddress.ip_network(f"{ip}/{length}", strict=False)
                if net in networks:
                    hit.add(net)
    return [t for t in targets if t.net in hit]


def _ports(ports: Sequence[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """(transport, port) pairs as (udp|tcp, port), once each; tls, ws, wss are tcp."""
    seen: dict[tuple[str, int], None] = {}
    for transport, port in ports:
        proto = TRANSPORTS.get(transport.lower())
        if proto is None:
            raise ValueError(
                f"ports: unknown transport {transport!r} (one of {', '.join(TRANSPORTS)})"
            )
        if not 0 < int(port) < 65536:
            raise ValueError(f"ports: {port} is not a port number")
        seen[(proto, int(port))] = None
    return tuple(seen)


def _keys(value: Any) -> list[str]:
    """Canonical targets of one element value as nft -j prints it: an address,
    {"prefix": {"addr", "len"}} or {"range": [first, last]}."""
    if isinstance(value, str):
        return [str(ipaddress.ip_address(value))]
    if isinstance(value, dict) and "prefix" in value:
        prefix = value["prefix"]
        return [str(ipaddress.ip_network(f"{prefix['addr']}/{prefix['len']}", strict=False))]
    if isinstance(value, dict) and "range" in value:  # not written by us, but shown as it is
        first, last = (ipaddress.ip_address(a) for a in value["range"])
        return [
            str(n.network_address) if n.num_addresses == 1 else str(n)
            for n in ipaddress.summarize_address_range(first, last)
        ]
    return []
