"""A bounded map of recently touched keys, in tables the garbage collector
never walks.

Why: the policy keeps state per source (the failure tracker, the
reflection budget), and a spoofed flood fills it by the hundred thousand.
An ``OrderedDict`` is always tracked by the cyclic collector, and a plain
dict is tracked again whenever a tuple (or any container) is put in it:
either is then walked entry by entry by every full collection (10 ms and
more at 100,000 entries, a pause of the event loop). A dict whose keys and
values are all atomic (str, bytes, int, float) is never tracked, so a
``RecentMap`` takes only those (the callers pack their state into one).

Least recently touched first, in two generations: ``young``, where new and
touched keys go, and ``old``, the young of before. A key read or written
in ``old`` moves to ``young``. When a new key finds the map full, one key
of ``old`` is forgotten (any: dict order is not kept there, and
``popitem`` takes the last in O(1)); when ``old`` is empty, ``young``
becomes ``old`` first. So every key touched since ``old`` was made
outlives every key not touched since: an LRU to within one generation,
with no per-entry object.

The generations are the plain dicts ``young`` and ``old``: a hot path may
look a key up in them itself (two dict probes, no method call) and write a
key found in ``young`` straight into it; anything else goes through the
methods (``put`` keeps the bound). Whether a generation swap happened is
``young``'s identity: fetch it again after a ``get`` or ``put``.

Bounds: at most ``limit`` keys, ever.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

V = TypeVar("V", int, float, str, bytes)


class RecentMap(Generic[V]):
    """See the module doc. Values must be atomic: str, bytes, int, float."""

    __slots__ = ("limit", "old", "young")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit: at least 1")
        self.limit = limit
        self.young: dict[str, V] = {}
        self.old: dict[str, V] = {}

    def __len__(self) -> int:
        return len(self.young) + len(self.old)

    def __contains__(self, key: str) -> bool:
        return key in self.young or key in self.old

    def __iter__(self) -> Iterator[str]:
        """The keys, those of the older generation first (a copy: the map
        may change meanwhile)."""
        return iter([*self.old, *self.young])

    def get(self, key: str) -> V | None:
        """``key``'s value (now among the most recently touched), or None."""
        value = self.young.get(key)
        if value is None:
            value = self.old.pop(key, None)
            if value is not None:
                self.young[key] = value
        return value

    def peek(self, key: str) -> V | None:
        """``key``'s value, its place left as it is."""
        value = self.young.get(key)
        return self.old.get(key) if value is None else value

    def put(self, key: str, value: V) -> bool:
        """Set ``key`` (now among the most recently touched); True when a
        key was forgotten to make room for it."""
        young = self.young
        if key in young:
            young[key] = value
            return False
        old = self.old
        if old.pop(key, None) is not None:
            young[key] = value
            return False
        forgot = False
        # (a loop: a reload may have lowered the limit under what is held)
        while len(young) + len(old) >= self.limit:
            if not old:  # a new generation: the young are old now
                self.old, self.young = young, old
                old, young = young, old
            old.popitem()
            forgot = True
        young[key] = value
        return forgot

    def pop(self, key: str) -> V | None:
        """Forget ``key``; its value, or None."""
        value = self.young.pop(key, None)
        return self.old.pop(key, None) if value is None else value

    def clear(self) -> None:
        self.young, self.old = {}, {}
