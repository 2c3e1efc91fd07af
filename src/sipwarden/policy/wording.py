"""What the detectors share when they write evidence and reasons for people
(``failures.py``, ``tollfraud.py``): a span of time, a UTC moment, and the
last items of a bounded history."""

from __future__ import annotations

import time
from typing import TypeVar

_T = TypeVar("_T")


def span(seconds: float) -> str:
    """``250 ms``, ``4.2 s``, ``30 s``, ``10 min``, ``3 h``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def last(items: list[_T], n: int) -> list[_T]:
    """The last ``n`` items (none for n <= 0; ``items[-0:]`` would be all)."""
    return items[-n:] if n > 0 else []


def utc(now: float) -> str:
    """``2026-12-06T10:00:00Z``: an evidence line's moment."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
