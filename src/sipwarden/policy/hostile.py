"""Who is hostile: the sources a scanner fingerprint, an attack tool's
User-Agent, a detector or an operator's rule has named, and the
fingerprint hits that earn a ban.

Why: the pack alone only drops, so a source that keeps sending
fingerprinted traffic costs the edge a parse and a rule walk per packet
forever; a ban moves it to the kernel. And deception (``deception/``) must
answer only sources that are hostile: this is the one place that says so.

Rules:

- A hit of a fingerprint (a rule of the built-in pack) marks the source
  hostile and counts in its family (``scan``, ``ua``: the rule id's first
  part); ``hits`` of one family within ``window`` seconds earn a ban (a
  ``Decision``, progressive like the rest: the ban book decides).
- A source that logged in (known-good: the PBX accepted its password, a
  round trip a forged packet cannot make) is never marked nor banned on a
  fingerprint alone: its fingerprinted packets are dropped, nothing more,
  so one forged packet can never get a phone banned.
- ``mark`` names a source hostile for another reason (a detector's ban, an
  operator's ``deceive`` rule).
- While deception engages a source (``engage``), its ban waits: it is
  asked when the deception ends, the source idle for ``idle`` seconds or
  its deception budget (``budget`` bytes sent to it) spent. ``ended(now)``
  gives those decisions (the one it earned, else one for what named it
  hostile); the caller runs it every second.

Bounded: at most ``max_sources`` sources (the least recently seen
forgotten first, to within a generation: ``recent.RecentMap``); per source
a few numbers and the hit times one threshold needs, kept marshalled
(bytes): the table holds only strings and bytes, which the garbage
collector never tracks, so a fingerprinted flood from 100,000 spoofed
sources adds nothing to what a collection walks (a slots object and a dict
per source did). ``ended`` costs the engaged sources, not the table. Sans-I/O: the clock is passed in.
"""

from __future__ import annotations

import marshal
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from ..values import Decision
from .recent import RecentMap

EVIDENCE_KEPT: Final = 5


class Threshold(NamedTuple):
    hits: int  # fingerprint hits of one family...
    window: float  # ...within this many seconds: a ban


@dataclass(slots=True)
class _Source:  # (a source's state while it is worked on; kept packed: see _pack)
    since: float  # first named hostile
    last: float  # last packet seen from it (hit, or deceived)
    why: str  # the first reason (a rule id, a detector)
    hits: dict[str, tuple[float, ...]] = field(default_factory=dict)  # family -> recent times
    evidence: tuple[str, ...] = ()
    engaged: bool = False  # deception answers it
    spent: int = 0  # bytes deception sent it
    owed: Decision | None = None  # the ban it earned while deceived


def family(rule_id: str) -> str:
    """``scan.sipvicious-tag`` -> ``scan``: the fingerprints' families."""
    return rule_id.partition(".")[0]


@dataclass
class HostileSources:
    thresholds: dict[str, Threshold] = field(
        default_factory=lambda: {"scan": Threshold(10, 60.0), "ua": Threshold(10, 60.0)}
    )
    idle: float = 60.0  # deception ends when the source is quiet this long...
    budget: int = 1_000_000  # ...or once this many bytes were sent to it
    max_sources: int = 100_000
    ban: bool = True  # fingerprint hits earn bans ([fingerprints] ban)
    deceive: bool = False  # hostile sources get deception's answers ([deception] enabled)
    # "marked", "fingerprint-bans", "deferred", "spared-known-good", "forgotten"
    counters: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._sources: RecentMap[bytes] = RecentMap(self.max_sources)  # host -> _pack(source)
        # the sources deception engages: ``ended`` (every second, on the
        # packets' thread) looks at these, not at every hostile source
        self._engaged: set[str] = set()

    def __len__(self) -> int:
        return len(self._sources)

    def __contains__(self, host: object) -> bool:
        return isinstance(host, str) and host in self._sources

    def hostile(self, host: str) -> bool:
        return host in self._sources

    def why(self, host: str) -> str | None:
        """The first reason ``host`` was named hostile (None: it is not)."""
        packed = self._sources.peek(host)
        return None if packed is None else _unpack(packed).why

    def hit(
        self, host: str, rule_id: str, line: str, now: float, *, known_good: bool = False
    ) -> Decision | None:
        """A fingerprint ``rule_id`` matched a packet of ``host`` (``line``:
        the evidence); the ban it earned, if one (see the module doc)."""
        if known_good:
            self.counters["spared-known-good"] += 1
            return None
        src = self._source(host, rule_id, now)
        name = family(rule_id)
        src.evidence = (*src.evidence[1 - EVIDENCE_KEPT :], line)
        threshold = self.thresholds.get(name)
        if threshold is None or not self.ban:
            self._save(host, src)
            return None
        recent = tuple(t for t in src.hits.get(name, ()) if now - t < threshold.window)
        recent = (*recent[1 - threshold.hits :], now)
        src.hits[name] = recent
        if len(recent) < threshold.hits:
            self._save(host, src)
            return None
        src.hits[name] = ()  # asked once; the ban book counts the offences
        decision = Decision(
            host,
            f"fingerprint.{name}",
            f"{len(recent)} packets with scanner fingerprints ({name}) within"
            f" {threshold.window:g} s",
            "progressive",
            src.evidence,
        )
        if src.engaged:
            src.owed = decision
            self.counters["deferred"] += 1
            self._save(host, src)
            return None
        self.counters["fingerprint-bans"] += 1
        self._save(host, src)
        return decision

    def mark(self, host: str, why: str, now: float) -> None:
        """Name ``host`` hostile (a detector's ban, a ``deceive`` rule)."""
        self._save(host, self._source(host, why, now))

    def owe(self, decision: Decision, now: float) -> None:
        """Name ``decision``'s target hostile for it, its ban owed when the
        deception it now gets ends (a toll-fraud walk, with deception on)."""
        src = self._source(decision.target, decision.detector, now)
        src.owed = decision
        self.counters["deferred"] += 1
        self._save(decision.target, src)

    def engage(self, host: str, sent: int, now: float) -> bool:
        """Deception answered ``host`` with ``sent`` bytes; whether it may go
        on (False once its budget is spent: ``ended`` then asks its ban)."""
        packed = self._sources.get(host)
        if packed is None:
            return False
        src = _unpack(packed)
        src.engaged = True
        self._engaged.add(host)
        src.last = now
        src.spent += sent
        self._save(host, src)
        return src.spent < self.budget

    def ended(self, now: float) -> list[Decision]:
        """The bans of sources whose deception ended (idle, or their budget
        spent): the one each earned meanwhile, or, a deceived source being
        hostile by definition, one for what named it (``fingerprint.<family>``
        for a fingerprint). They are forgotten here (the ban book has them)."""
        owed = []
        for host in list(self._engaged):
            packed = self._sources.peek(host)
            if packed is None:  # forgotten meanwhile (the table's bound)
                self._engaged.discard(host)
                continue
            src = _unpack(packed)
            if now - src.last >= self.idle or src.spent >= self.budget:
                self._sources.pop(host)
                self._engaged.discard(host)
                owed.append(
                    src.owed
                    or Decision(
                        host,
                        f"fingerprint.{family(src.why)}" if "." in src.why else src.why,
                        f"deceived after {src.why}; the deception ended",
                        "progressive",
                        src.evidence,
                    )
                )
        return owed

    def forget(self, host: str) -> None:
        self._sources.pop(host)
        self._engaged.discard(host)

    def _source(self, host: str, why: str, now: float) -> _Source:
        """``host``'s state, made if new, seen ``now`` (the caller saves it)."""
        packed = self._sources.get(host)
        if packed is None:
            self.counters["marked"] += 1
            return _Source(since=now, last=now, why=why)
        src = _unpack(packed)
        src.last = now
        return src

    def _save(self, host: str, src: _Source) -> None:
        """Keep ``src`` as ``host``'s state (one of the least recently seen
        forgotten past ``max_sources``, which a reload may set)."""
        self._sources.limit = self.max_sources
        if self._sources.put(host, _pack(src)):
            self.counters["forgotten"] += 1


def _pack(src: _Source) -> bytes:
    owed = None if src.owed is None else tuple(src.owed)
    hits = tuple(src.hits.items())
    return marshal.dumps(
        (src.since, src.last, src.why, hits, src.evidence, src.engaged, src.spent, owed)
    )


def _unpack(packed: bytes) -> _Source:
    since, last, why, hits, evidence, engaged, spent, owed = marshal.loads(packed)
    decision = None if owed is None else Decision(*owed)
    return _Source(since, last, why, dict(hits), evidence, engaged, spent, decision)


KnownGoodCheck = Callable[[str, float], bool]
