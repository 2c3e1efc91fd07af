"""Toll-fraud detectors: what a source's INVITEs dial, as the dialplan reads it.

Operations: ``TollFraud.invite(host, number, now, known_good=...)`` for each
INVITE a source sends, with its R-URI user classified by the dialplan
(``intel.numbers.Dialplan.classify``), returning a ``Decision`` when the
source has earned a ban; ``quiet_action(number, ...)`` for the quiet-time
rule. Sans-I/O; the clock is passed in; nothing here bans.

Two detectors, after what toll-fraud callers do (research/deception.md §4):

- ``tollfraud.prefix-walk``: one destination (the number's ``tail``, its
  E.164 digits) tried behind ``walk_prefixes`` or more different prefixes
  (``00``, ``011``, ``9011``, ``+``, ``000``, none...) within ``window``:
  the caller is looking for the prefix that routes. A phone redialling one
  number, however often, uses one prefix and is no walk;
- ``tollfraud.international``: ``international`` INVITEs to international
  numbers within ``window`` from a source that never logged in. A PBX's
  guest or anonymous context is where these land; a phone that registered
  is not counted.

Known-good sources (they logged in) and trusted peers are never counted
for international calls, and by default not for a walk either
(``walk_known_good``): an INVITE over UDP can carry a forged source, and a
phone that dials one contact as ``+44...`` and another time as ``0...``
would look like a walk. Both bans are ``bantime`` ("progressive": the ban
book's steps, longer each time); their evidence is the INVITEs that made
them, one line each: when, the dial string, how it reads, its prefix.

Quiet time (``[schedule.quiet] international``): ``quiet_action`` says
whether an INVITE to an international number from a source neither trusted
nor known-good is dropped or alerted while the schedule says quiet.

Bounded: at most ``max_sources`` sources (least recently touched forgotten
first); per source, at most ``max_tails`` destinations (the least recently
dialled forgotten first) with at most ``walk_prefixes`` prefixes each, and
at most ``international`` INVITEs abroad; only tuples of strings and floats.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, Literal

from ..intel.numbers import Number
from ..values import Decision
from .wording import last, span, utc

PREFIX_WALK: Final = "tollfraud.prefix-walk"
INTERNATIONAL: Final = "tollfraud.international"
EVIDENCE_KEPT: Final = 5
QuietAction = Literal["allow", "drop", "alert"]


# what is kept of one INVITE: (when, prefix, dial string, how it reads)
_Tried = tuple[float, str, str, str]


@dataclass(slots=True)
class _Source:
    # tuples of strings and floats only, no dict and no objects: the garbage
    # collector stops tracking them, so 100,000 sources do not lengthen
    # every full collection (see failures.py)
    # (tail, ((when, prefix, dialled, reading), ...)), the last dialled last;
    # per tail one entry per distinct prefix, the latest
    tails: tuple[tuple[str, tuple[_Tried, ...]], ...] = ()
    international: tuple[_Tried, ...] = ()


@dataclass
class TollFraud:
    window: float = 3600.0
    walk_prefixes: int = 2  # one destination behind this many prefixes: a walk
    walk_known_good: bool = False  # look for a walk from known-good sources too
    international: int = 10  # international INVITEs within window, never logged in
    bantime: float | Literal["progressive"] = "progressive"
    max_sources: int = 100_000
    max_tails: int = 16  # destinations remembered per source

    def __post_init__(self) -> None:
        self._sources: OrderedDict[str, _Source] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sources)

    def forget(self, host: str) -> None:
        """Drop what is known of ``host`` (it was banned: start afresh)."""
        self._sources.pop(host, None)

    def invite(
        self, host: str, number: Number, now: float, known_good: bool = False
    ) -> Decision | None:
        """One INVITE from ``host`` to ``number``; ``known_good``: the source
        logged in (or is a trusted peer): see the module doc."""
        walk = bool(number.tail) and (not known_good or self.walk_known_good)
        abroad = number.international and not known_good
        if not (walk or abroad):
            return None
        src = self._source(host)
        tried = (now, number.prefix, number.dialled, _reading(number))
        if walk:
            decision = self._walk(host, src, number.tail, tried, now)
            if decision is not None:
                return decision
        if abroad:
            recent = [t for t in src.international if now - t[0] < self.window]
            src.international = (*last(recent, self.international - 1), tried)
            if len(src.international) >= self.international:
                return self._decide(
                    host,
                    INTERNATIONAL,
                    f"{len(src.international)} INVITEs to international numbers within"
                    f" {span(self.window)} from a source that never logged in",
                    src.international,
                )
        return None

    # -------------------------------------------------------------- inside

    def _walk(
        self, host: str, src: _Source, tail: str, tried: _Tried, now: float
    ) -> Decision | None:
        before: tuple[_Tried, ...] = ()
        others = []
        for entry in src.tails:
            if entry[0] == tail:
                before = entry[1]
            else:
                others.append(entry)
        # this prefix counts once, as its latest; the others while in the window
        kept = [t for t in before if now - t[0] < self.window and t[1] != tried[1]]
        walk = (*last(kept, self.walk_prefixes - 1), tried)
        src.tails = (*last(others, self.max_tails - 1), (tail, walk))
        if len(walk) < self.walk_prefixes:
            return None
        prefixes = ", ".join(repr(t[1]) if t[1] else "none" for t in walk)
        return self._decide(
            host,
            PREFIX_WALK,
            f"one number ({_destination(tail, tried[3])}) dialled behind {len(walk)} prefixes"
            f" ({prefixes}) within {span(self.window)}",
            walk,
        )

    def _decide(self, host: str, detector: str, reason: str, tried: tuple[_Tried, ...]) -> Decision:
        self._sources.pop(host, None)
        evidence = tuple(
            f"{utc(when)} INVITE to {dialled} ({reading}, prefix {prefix or 'none'})"
            for when, prefix, dialled, reading in tried[-EVIDENCE_KEPT:]
        )
        return Decision(host, detector, reason, self.bantime, evidence)

    def _source(self, host: str) -> _Source:
        src = self._sources.get(host)
        if src is None:
            src = self._sources[host] = _Source()
            if len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(host)
        return src


def quiet_action(
    number: Number, *, quiet: bool, vouched: bool, action: QuietAction
) -> Literal["drop", "alert"] | None:
    """The quiet-time rule (``[schedule.quiet] international``): "drop" or
    "alert" for an INVITE to an international ``number`` while ``quiet``
    from a source not ``vouched`` for (neither a trusted peer nor
    known-good), as ``action`` says; None when it lets the call be ("allow",
    by day, a vouched source, a national number or no number at all)."""
    if action == "allow" or not quiet or vouched or not number.international:
        return None
    return action


def _reading(number: Number) -> str:
    """How a number reads, for the evidence: "international, IL +972597562518"."""
    kind = "international" if number.international else "national"
    where = f"{number.country} " if number.country else ""
    digits = f"+{number.e164}" if number.e164 else f"digits {number.tail}"
    return f"{kind}, {where}{digits}"


def _destination(tail: str, reading: str) -> str:
    return reading.partition(", ")[2] or tail
