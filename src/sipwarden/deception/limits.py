"""How often deception may answer: per source and in total (token buckets),
and at most once per source per interval (the SIPVicious stopper).

Why: every fake answer is traffic the edge chooses to send; a scanner sends
100 requests a second or more, and many sources at once may be forged. The
reflection budget (``policy.reflection``) bounds the bytes an unverified
source gets; these bound the answers themselves, verified or not, so that
deception stays cheap and a flood of hostile sources gets silence past the
total.

Sans-I/O, the clock passed in. Bounds: at most ``max_sources`` sources
remembered each (the least recently answered forgotten first: forgetting one
gives it a fresh bucket, never more than ``burst`` at once).
"""

from __future__ import annotations

from collections import OrderedDict


class AnswerLimiter:
    """``take(source, now)``: True if one more answer may go to ``source``
    now (``rate`` a second with bursts of ``burst`` per source; ``total`` a
    second over all sources, one second deep); the answer is then counted."""

    def __init__(self, *, rate: float, burst: int, total: float, max_sources: int = 65_536) -> None:
        if rate <= 0 or burst < 1 or total <= 0 or max_sources < 1:
            raise ValueError("rate and total must be > 0, burst and max_sources >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.total = total
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at
        self._total_tokens = total
        self._total_at: float | None = None
        self.withheld = 0  # answers refused, for the caller's counters

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, source: str, now: float) -> bool:
        buckets = self._buckets
        tokens, at = buckets.pop(source, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        if tokens < 1 or not self._take_total(now):
            buckets[source] = (tokens, now)
            self.withheld += 1
            return False
        buckets[source] = (tokens - 1, now)
        if len(buckets) > self.max_sources:
            buckets.popitem(last=False)
        return True

    def _take_total(self, now: float) -> bool:
        if self._total_at is not None:
            elapsed = max(0.0, now - self._total_at)
            self._total_tokens = min(self.total, self._total_tokens + elapsed * self.total)
        self._total_at = now
        if self._total_tokens < 1:
            return False
        self._total_tokens -= 1
        return True


class OncePer:
    """``take(key, now)``: True at most once per ``interval`` seconds per key."""

    def __init__(self, interval: float, *, max_sources: int = 65_536) -> None:
        if interval <= 0 or max_sources < 1:
            raise ValueError("interval must be > 0 and max_sources >= 1")
        self.interval = interval
        self.max_sources = max_sources
        self._last: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last)

    def take(self, key: str, now: float) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last.pop(key, None)
        self._last[key] = now
        if len(self._last) > self.max_sources:
            self._last.popitem(last=False)
        return True
