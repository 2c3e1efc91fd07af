"""Events: what happened, as small immutable values, and the bounded queue
the packet path appends them to.

An event is one thing worth telling an operator: a message that was not
simply forwarded (a drop, a reject, a ban verdict), a ban or an unban, a
failed login, a feed change, an analysis finding. It is a ``NamedTuple``
(time, kind, source, reason, a few fields): cheap to make on the packet
path, immutable, and hashable.

Goals: appending never blocks and never grows without bound; under a flood
the queue keeps a sample and the exact count. Plan: ``EventQueue.push``
runs on the packet path; a writer calls ``drain`` every fraction of a
second and writes the batch (the store, the live stream, alerts).

- Sampling: between two drains, the first ``sample`` events of one (kind,
  source, reason) are queued whole; later ones are only counted, and
  ``drain`` hands each such count on as one summary event (its fields say
  ``repeated``: how many were not queued one by one). A flood of one source
  is a handful of events and an exact count, not a million rows.
- Bounds: at most ``max_events`` queued and ``max_keys`` (kind, source,
  reason) counted between drains; past either, an event is dropped and
  counted in ``dropped`` (never a wait, never an exception).

Sans-I/O: the clock is the caller's (each event carries its time).

What waits between drains is kept as flat exact tuples of atomics (time,
kind, source, reason, then each field's name and value: ``EventRow``),
which the garbage collector stops tracking at their first collection, not
``Event``s (a named tuple stays tracked; and a tuple holding tuples made
just before it is often met first and kept tracked, into the oldest
generation): up to ``max_events`` events a second are not walked by every
collection meanwhile. ``drain_rows`` hands them on as they are (the
writer's way: its thread reads them); ``drain`` makes them ``Event``s.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Final, NamedTuple

Field = tuple[str, str | int | float | None]
# an event as the queue keeps it: (time, kind, source, reason, name, value,
# name, value...), an exact tuple (see the module doc; ``row_fields``)
EventRow = tuple[Any, ...]
_SEP: Final = "\x1f"  # between a key's kind, source and reason (in none of them)

# the kinds the edge and the daemon emit (a string, so later issues add more)
VERDICT: Final = "verdict"  # a message not simply forwarded
BAN: Final = "ban"
UNBAN: Final = "unban"
LOGIN_FAILED: Final = "login-failed"
FEED: Final = "feed"
FINDING: Final = "finding"
HEALTH: Final = "health"  # sipwarden's own: the PBX silent, the store not writable...
DECEPTION: Final = "deception"  # an answer deception sent a hostile source
WOULD_BAN: Final = "would-ban"  # monitor mode: a ban the book was not asked for
KINDS: Final = (VERDICT, BAN, UNBAN, LOGIN_FAILED, FEED, FINDING, HEALTH, DECEPTION, WOULD_BAN)


class Event(NamedTuple):
    """One thing that happened (see the module doc)."""

    time: float  # epoch seconds
    kind: str  # VERDICT, BAN, ...
    source: str  # the address it concerns ("" when none)
    reason: str  # the rule, detector or feed id
    fields: tuple[Field, ...] = ()  # a few more facts: ("verdict", "drop"), ("port", 5060)

    @property
    def weight(self) -> int:
        """How many events this one stands for (a summary: its ``repeated``)."""
        for name, value in self.fields:
            if name == "repeated" and isinstance(value, int):
                return value
        return 1

    def as_dict(self) -> dict[str, object]:
        return {
            "time": self.time,
            "kind": self.kind,
            "source": self.source,
            "reason": self.reason,
            **dict(self.fields),
        }


@dataclass
class EventQueue:
    sample: int = 5  # events of one (kind, source, reason) queued whole between drains
    max_events: int = 50_000
    max_keys: int = 20_000
    dropped: int = 0  # events lost to the bounds, since the start
    counters: Counter[str] = field(default_factory=Counter)  # "queued", "repeated"

    def __post_init__(self) -> None:
        if self.sample < 1 or self.max_events < 1 or self.max_keys < 1:
            raise ValueError("sample, max_events and max_keys: at least 1")
        self._queued: list[EventRow] = []
        # since the last drain: "kind<SEP>source<SEP>reason" -> events pushed,
        # and the last one pushed of those over ``sample`` (for the summary).
        # Counts under string keys, not an object per key: a spoofed flood's
        # 50,000 keys a second add nothing for the garbage collector to walk
        # (a slots object each did; a tuple key makes the dict tracked)
        self._counts: dict[str, int] = {}
        self._last: dict[str, EventRow] = {}

    def __len__(self) -> int:
        return len(self._queued)

    def push(self, event: Event) -> None:
        """Queue ``event``, or count it (see the module doc). O(1)."""
        key = f"{event.kind}{_SEP}{event.source}{_SEP}{event.reason}"
        counts = self._counts
        count = counts.get(key)
        if count is None:
            if len(counts) >= self.max_keys:
                self.dropped += 1
                return
            count = 0
        if count >= self.sample:
            self._last[key] = _row(event)  # counted: drain() says how many
        elif len(self._queued) >= self.max_events:
            self.dropped += 1  # neither queued nor summarised
            counts[key] = count
            return
        else:
            self._queued.append(_row(event))
        counts[key] = count + 1

    def drain(self) -> list[Event]:
        """The events queued since the last drain, oldest first, then one
        summary per (kind, source, reason) that had more than ``sample``: its
        last event with ``("repeated", n)`` added."""
        return [Event(row[0], row[1], row[2], row[3], row_fields(row)) for row in self.drain_rows()]

    def drain_rows(self) -> list[EventRow]:
        """``drain``'s events as exact tuples of Event's fields (the
        writer's way: none is made an ``Event`` on the packets' thread)."""
        events, self._queued = self._queued, []
        counts, self._counts = self._counts, {}
        over, self._last = self._last, {}
        for key, last in over.items():  # (only keys counted past ``sample`` have one)
            extra = counts[key] - self.sample
            events.append((*last, "repeated", extra))
            self.counters["repeated"] += extra
        self.counters["queued"] += len(events)
        return events


def _row(event: Event) -> EventRow:
    fields = event.fields
    return event[:4] + tuple(chain.from_iterable(fields)) if fields else event[:4]


def row_fields(row: EventRow | Event) -> tuple[Field, ...]:
    """An event's fields, from its row or the Event itself."""
    if isinstance(row, Event):
        return row.fields
    return tuple(zip(row[4::2], row[5::2], strict=True))
