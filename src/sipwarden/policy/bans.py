"""The ban book: every ban, why it was made, and when it ends.

Detectors (the rules, the failure tracker, the rate limiter) emit decisions;
only the ban book turns them into bans, and only what it records is enforced
(in the edge, and in the kernel by ``enforce/``). Sans-I/O: the clock is
passed in, persistence is the store's job (it replays ``changes``).

- Progressive bans, as fail2ban's ``bantime.increment`` and recidive jail:
  a target's n-th ban within ``memory`` seconds lasts ``steps[n-1]`` (the last
  step repeats; ``None`` is permanent). A decision with an explicit duration
  (a rule's ``duration``, an operator's ``bans add --for``) uses that instead.
- The allow list always wins: an allowed address is never banned. The deny
  list is static: those targets are banned for good without being recorded.
- No ban of the world: a ban wider than ``widest_v4``/``widest_v6``, or one
  touching a protected network (loopback, the unspecified address, and what
  the daemon adds: this machine's own addresses, the PBX), is refused
  however it was asked for (detector, rule, operator, API); ``refusal``
  says why, so the operator's surfaces can answer with the reason. A ban
  length must be more than 0 and at most ``MAX_DURATION`` (ValueError).
- Targets are addresses or networks (CIDRs), IPv4 and IPv6. ``banned(host)``
  is the hot-path lookup: one dict probe, then the (few) network bans.
- A ban received from the fleet (``receive``: another node made it) goes
  through the same refusals (this node's allow list and trusted peers, the
  protected networks, the widest prefix win over it), keeps its origin and
  its offence (the origin counted it), and counts in this book's history,
  so a source's third ban anywhere is its third here. Applying one twice,
  or one a longer ban outlasts, changes nothing; an unban received
  (``lift_received``) lifts only that ban or an older one, never allows.
- Bounded: at most ``max_bans`` active bans and ``max_history`` targets
  remembered (oldest forgotten first), because sources can be spoofed.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from ..values import (
    AF_INET,
    AF_INET6,
    MAX_DURATION,
    Ban,
    Change,
    Network,
    canonical,
    inet_pton,
)

DEFAULT_STEPS: Final[tuple[float | None, ...]] = (600.0, 3600.0, 86400.0, None)
EVIDENCE_KEPT: Final = 5  # sample lines per ban
MAX_EVIDENCE_CHARS: Final = 2000  # per sample
SAME_TIME: Final = 0.001  # creation times this close are one ban (the store's precision)
# never banned, whatever asks: a ban on them cuts the machine off from itself
# (the loopback address local programs use; the rest of 127.0.0.0/8 is free,
# which is how the demo and the tests give each simulated attacker its own)
ALWAYS_PROTECTED: Final[tuple[tuple[Network, str], ...]] = (
    (ipaddress.ip_network("127.0.0.1/32"), "loopback"),
    (ipaddress.ip_network("::1/128"), "loopback"),
    (ipaddress.ip_network("0.0.0.0/32"), "the unspecified address"),
    (ipaddress.ip_network("::/128"), "the unspecified address"),
)


@dataclass
class BanBook:
    steps: Sequence[float | None] = DEFAULT_STEPS
    memory: float = 30 * 86400.0  # seconds a past ban still counts as an offence
    allow: Sequence[Network] = ()
    deny: Sequence[Network] = ()
    max_bans: int = 1_000_000
    max_history: int = 100_000
    widest_v4: int = 8  # the shortest prefix a ban may have
    widest_v6: int = 32
    # (network, why): never banned (this machine's addresses, the PBX); the
    # daemon sets them (``protect``), ALWAYS_PROTECTED come on top
    protected: Sequence[tuple[Network, str]] = ()
    changes: list[Change] = field(default_factory=list)  # drained by the store and enforcer
    # called when ``changes`` goes from empty to not (the daemon schedules a
    # flush: a ban reaches the kernel in milliseconds, not at the next tick)
    on_change: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("steps: at least one ban length")
        self._hosts: dict[str, Ban] = {}  # single-address bans
        self._networks: dict[str, tuple[Network, Ban]] = {}  # CIDR bans
        # the same, for lookups: (version, prefix length) -> network number -> ban;
        # an address is tested with one shift and one dict probe per prefix
        # length in use (a handful), however many networks are banned
        self._net_index: dict[tuple[int, int], dict[int, Ban]] = {}
        # (expires_at, target) of every timed ban stored; stale entries (a
        # ban lifted or replaced since) are skipped when they come up
        self._expiries: list[tuple[float, str]] = []
        # target -> creation times of its past bans (for progressive lengths)
        self._history: OrderedDict[str, list[float]] = OrderedDict()
        self._allow = list(self.allow)
        self.set_lists(self.allow, self.deny)
        self.protect(self.protected)

    def set_lists(self, allow: Sequence[Network], deny: Sequence[Network]) -> None:
        """New allow and deny lists (a reload); bans in force stay."""
        self._allow = list(allow)
        self._deny: dict[tuple[int, int], dict[int, Ban]] = {}
        for net in deny:
            ban = Ban(canonical(str(net)), "deny list", "deny-list", 0.0, None)
            _index(self._deny, net, ban)

    def protect(self, protected: Iterable[tuple[Network, str]]) -> None:
        """Networks never banned, with why (see ``ALWAYS_PROTECTED``)."""
        self._protected = [*ALWAYS_PROTECTED, *protected]

    # ------------------------------------------------------------ questions

    @property
    def protected_networks(self) -> list[Network]:
        """What no ban may touch (the feeds' kernel sets leave it out too)."""
        return [net for net, _ in self._protected]

    def refusal(self, target: str) -> str | None:
        """Why ``target`` (canonical) may not be banned, or None if it may."""
        net = ipaddress.ip_network(target, strict=False)
        widest = self.widest_v4 if net.version == 4 else self.widest_v6
        if net.prefixlen < widest:
            return (
                f"it is wider than /{widest} (bans.widest_v{net.version}): it would cut off"
                f" {net.num_addresses:,} addresses"
            )
        for protected, why in self._protected:
            if _overlaps(net, protected) and _within(net, protected):
                return f"it covers {protected} ({why})"
        if self.allowed(target):
            return "it is on the allow list (or a trusted peer)"
        return None

    @property
    def allow_networks(self) -> list[Network]:
        """The allow list in force (trusted peers included, see ``build.with_state``)."""
        return list(self._allow)

    def allowed(self, target: str) -> bool:
        if not self._allow:  # (asked per new source under a spoofed flood: no parse for nothing)
            return False
        net = ipaddress.ip_network(target, strict=False)
        return any(_overlaps(net, a) and _within(net, a) for a in self._allow)

    def banned(self, host: str, now: float) -> Ban | None:
        """The ban in force on ``host`` (an address), if any."""
        ban = self._hosts.get(host)
        if ban is not None and ban.active(now):
            return ban
        if self._net_index or self._deny:
            number = _number(host)
            if number is None:
                return None
            version, value = number
            return _lookup(self._net_index, version, value, now) or _lookup(
                self._deny, version, value, now
            )
        return None

    def active(self, now: float) -> list[Ban]:
        bans = list(self._hosts.values()) + [b for _, b in self._networks.values()]
        return sorted((b for b in bans if b.active(now)), key=lambda b: (b.created_at, b.target))

    def get(self, target: str) -> Ban | None:
        key = canonical(target)
        entry = self._networks.get(key)
        return self._hosts.get(key) if entry is None else entry[1]

    def offences(self, target: str, now: float) -> int:
        """Bans of ``target`` within the memory window before ``now``."""
        return sum(1 for t in self._history.get(canonical(target), ()) if now - t < self.memory)

    # ------------------------------------------------------------ decisions

    def decide(
        self,
        target: str,
        *,
        reason: str,
        detector: str,
        now: float,
        duration: float | Literal["progressive"] | None = "progressive",
        evidence: Iterable[str] = (),
    ) -> Ban | None:
        """Ban ``target`` (an address or CIDR). Returns the ban, or None when
        it may not be banned (``refusal``) or a longer ban is already in
        force. ValueError for a target that is not an address or CIDR, or a
        length that is not more than 0 and at most ``MAX_DURATION``."""
        key = canonical(target)
        if duration != "progressive" and duration is not None and not 0 < duration <= MAX_DURATION:
            raise ValueError(f"a ban lasts more than 0 and at most {MAX_DURATION:.0f} s")
        if self.refusal(key) is not None:
            return None
        current = self.get(key)
        offence = self.offences(key, now) + 1
        if duration == "progressive":
            length = self.steps[min(offence, len(self.steps)) - 1]
        else:
            length = duration
        expires = None if length is None else now + length
        if current is not None and current.active(now) and _outlasts(current.expires_at, expires):
            return None
        ban = Ban(
            key,
            reason,
            detector,
            now,
            expires,
            offence,
            tuple(e[:MAX_EVIDENCE_CHARS] for e in list(evidence)[:EVIDENCE_KEPT]),
        )
        if current is None and len(self._hosts) + len(self._networks) >= self.max_bans:
            return None  # full: the kernel set and memory stay bounded; counted by the caller
        self._store(ban)
        self._remember(key, now)
        self._changed(Change("add", ban))
        return ban

    def lift(self, target: str) -> Ban | None:
        """End the ban on ``target`` now (an operator's ``bans remove``)."""
        key = canonical(target)
        ban = self._hosts.pop(key, None)
        if ban is None:
            entry = self._networks.pop(key, None)
            ban = None if entry is None else entry[1]
            if entry is not None:
                _unindex(self._net_index, entry[0])
        if ban is not None:
            self._changed(Change("remove", ban))
        return ban

    def expire(self, now: float) -> list[Ban]:
        """Drop the bans that have ended; returns them. Runs every second on
        the packets' thread, so it pops a heap of expiry times (the bans
        that end now) rather than looking at every ban in force."""
        ended: list[Ban] = []
        heap = self._expiries
        while heap and heap[0][0] <= now:
            expires, target = heapq.heappop(heap)
            ban = self.get(target)
            if ban is not None and ban.expires_at == expires:  # not lifted, not replaced
                ended.append(ban)
        for ban in ended:
            self._hosts.pop(ban.target, None)
            entry = self._networks.pop(ban.target, None)
            if entry is not None:
                _unindex(self._net_index, entry[0])
            self._changed(Change("remove", ban))
        return ended

    def restore(self, bans: Iterable[Ban], now: float) -> list[tuple[Ban, str]]:
        """Load bans from the store at start: all of them count as history,
        the ones still in force are enforced again (as "add" changes).
        Returns those in force that may no longer be banned (an older
        release let them in, or the allow list grew), with why: they are
        lifted (as "remove" changes after the adds)."""
        refused: list[tuple[Ban, str]] = []
        for ban in sorted(bans, key=lambda b: b.created_at):
            self._remember(ban.target, ban.created_at)
            if ban.active(now):
                self._store(ban)
                self.changes.append(Change("add", ban))
                why = self.refusal(ban.target)
                if why is not None:
                    refused.append((ban, why))
        for ban, _ in refused:
            if self.get(ban.target) is ban:
                self.lift(ban.target)
        return refused

    def adopt(self, ban: Ban, now: float) -> None:
        """A ban another worker made (it is in the store and the kernel
        already): enforce it here too, without a change to write."""
        self._remember(ban.target, ban.created_at)
        current = self.get(ban.target)
        if ban.active(now) and (
            current is None or not _outlasts(current.expires_at, ban.expires_at)
        ):
            self._store(ban)

    def receive(self, ban: Ban, now: float) -> Ban | None:
        """A ban another fleet node made (``ban.origin`` names it; its
        ``expires_at`` already on this node's clock: now plus the time it has
        left). Returns the ban made here, or None when it changes nothing:
        refused here (``refusal``), already over, already applied (the same
        target and creation time), outlasted by the ban in force, or the book
        is full."""
        key = canonical(ban.target)
        if self.refusal(key) is not None or not ban.active(now):
            return None
        self._remember(key, ban.created_at)  # the same ban twice is remembered once
        current = self.get(key)
        if current is not None and current.active(now):
            if _same(current, ban) or _outlasts(current.expires_at, ban.expires_at):
                return None
        elif len(self._hosts) + len(self._networks) >= self.max_bans:
            return None
        ban = replace(
            ban,
            target=key,
            evidence=tuple(e[:MAX_EVIDENCE_CHARS] for e in ban.evidence[:EVIDENCE_KEPT]),
        )
        self._store(ban)
        self._changed(Change("add", ban))
        return ban

    def lift_received(self, target: str, created_at: float) -> Ban | None:
        """An unban another fleet node made, of its ban created at
        ``created_at``: lift the ban in force on ``target`` if it is that one
        or older (a newer ban, made since, stays). None: nothing lifted."""
        current = self.get(target)
        if current is None or current.created_at > created_at + SAME_TIME:
            return None
        return self.lift(target)

    def drain(self) -> list[Change]:
        changes, self.changes = self.changes, []
        return changes

    # -------------------------------------------------------------- inside

    def _changed(self, change: Change) -> None:
        self.changes.append(change)
        if len(self.changes) == 1 and self.on_change is not None:
            self.on_change()

    def _store(self, ban: Ban) -> None:
        if ban.expires_at is not None:
            heapq.heappush(self._expiries, (ban.expires_at, ban.target))
        net = ipaddress.ip_network(ban.target, strict=False)
        if net.num_addresses == 1:
            self._hosts[ban.target] = ban
        else:
            self._networks[ban.target] = (net, ban)
            _index(self._net_index, net, ban)

    def _remember(self, key: str, when: float) -> None:
        times = self._history.pop(key, [])
        if not any(abs(t - when) <= SAME_TIME for t in times):  # one ban, one offence
            times.append(when)
            times.sort()
        self._history[key] = times[-len(self.steps) - 1 :]  # enough to pick the next step
        while len(self._history) > self.max_history:
            self._history.popitem(last=False)


def _number(host: str) -> tuple[int, int] | None:
    """(IP version, the address as an integer); None if not an address."""
    try:
        if ":" in host:
            return 6, int.from_bytes(inet_pton(AF_INET6, host.split("%", 1)[0]))
        return 4, int.from_bytes(inet_pton(AF_INET, host))
    except OSError:
        return None


def _index(index: dict[tuple[int, int], dict[int, Ban]], net: Network, ban: Ban) -> None:
    bits = net.max_prefixlen - net.prefixlen
    index.setdefault((net.version, net.prefixlen), {})[int(net.network_address) >> bits] = ban


def _unindex(index: dict[tuple[int, int], dict[int, Ban]], net: Network) -> None:
    key = (net.version, net.prefixlen)
    table = index.get(key)
    if table is not None:
        table.pop(int(net.network_address) >> (net.max_prefixlen - net.prefixlen), None)
        if not table:
            del index[key]


def _lookup(
    index: dict[tuple[int, int], dict[int, Ban]], version: int, value: int, now: float
) -> Ban | None:
    """A ban in force on a network holding the address."""
    width = 32 if version == 4 else 128
    for (v, prefix), table in index.items():
        if v == version:
            ban = table.get(value >> (width - prefix))
            if ban is not None and ban.active(now):
                return ban
    return None


def _same(a: Ban, b: Ban) -> bool:
    """The same ban (its target and creation time), seen twice."""
    return a.target == b.target and abs(a.created_at - b.created_at) <= SAME_TIME


def _outlasts(current: float | None, new: float | None) -> bool:
    """Whether a ban ending at ``current`` lasts at least as long as ``new``."""
    if current is None:
        return True
    return new is not None and current >= new


def _overlaps(a: Network, b: Network) -> bool:
    return a.version == b.version


def _within(net: Network, allowed: Network) -> bool:
    """A ban on ``net`` would touch ``allowed`` (one contains the other)."""
    return net.subnet_of(allowed) or allowed.subnet_of(net)  # type: ignore[arg-type]
