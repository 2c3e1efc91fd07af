"""The rate stage: a source over a request-rate limit is banned.

Reasons: ``rate.requests`` (every request counts) and ``rate.<method>``
(per-method limits, e.g. ``rate.register``), with a ``ban`` verdict and a
``Decision`` for the ban book (progressive duration; evidence: the message
that went over). The key is the address, or the /24 or /64 it is counted
in (``limits.prefix_v4``/``prefix_v6``), and it is forgotten once asked
for, so the next window starts clean.

An address on the ban book's allow list is never limited: over its limit it
is forwarded (``forward``, no later stage asked) and its count forgotten.
Responses are not counted. ``limits`` (the ``RateLimiter``) does the
counting; this stage only turns its answer into a verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ...sip import Peek
from ...values import FORWARD, Decision, Peer, Verdict
from ..limits import RateLimiter
from ..stage import Banning, evidence


class LimitStage:
    """Counts each request and bans a source over its limit."""

    name: Final = "limits"

    def __init__(
        self, limiter: RateLimiter, exempt: Callable[[str], bool] = lambda key: False
    ) -> None:
        self.limiter = limiter
        self.exempt = exempt  # the ban book's allow list

    def decide(
        self, view: Peek, source: Peer, local_port: int, now: float
    ) -> Verdict | Banning | None:
        method = view.method
        if method is None:
            return None
        limit = self.limiter.hit(source.host, method, now)
        if limit is None:
            return None
        return self._over(limit.name, limit.count, view, source, now)

    def _over(
        self, name: str, count: int, view: Peek, source: Peer, now: float
    ) -> Verdict | Banning:
        """A source over a rate limit: banned (its key: the address, or the
        /24 or /64 it is counted in)."""
        limiter = self.limiter
        key = limiter.key(source.host)
        if self.exempt(key):
            limiter.forget(key)
            return FORWARD  # the allow list: never limited, never banned
        rate = limiter.rate(key, None if name == "requests" else name, now)
        what = "requests" if name == "requests" else f"{name} requests"
        detector = f"rate.{name.lower()}"
        decision = Decision(
            key,
            detector,
            f"{rate:.0f} {what} in {limiter.window:g} s (limit {count})",
            "progressive",
            (evidence(view, source),),
        )
        limiter.forget(key)
        return Banning(Verdict("ban", detector), decision)
