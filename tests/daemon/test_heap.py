"""settle_heap: what start-up made is frozen out of the garbage collector's
generations, and what a reload replaced is collected first."""

from __future__ import annotations

import gc
import weakref

from sipwarden.daemon.core import settle_heap


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_what_lives_is_frozen_and_frozen_garbage_is_collected_at_the_next_settle():
    try:
        old = Node()
        gone = weakref.ref(old)
        settle_heap()  # start-up: `old` (the policy in force, say) is frozen
        assert gc.get_freeze_count() > 0
        kept = Node()
        del old  # a reload replaced it: garbage, but frozen
        gc.collect()
        assert gone() is not None  # a frozen cycle is never walked
        settle_heap()  # the reload's settle: collected, then the living frozen
        assert gone() is None
        assert gc.get_freeze_count() > 0
        assert kept.me is kept
    finally:
        gc.unfreeze()
