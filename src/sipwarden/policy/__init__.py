"""Verdicts on inbound messages: the policy pipeline's interface.

Every inbound message passes ``pipeline(view, source)`` before the proxy sees
it. This package grows the rule engine, rate limits and the ban book (issues
4 and 5); until then ``forward_all`` is the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal, NamedTuple

from ..proxy.flow import Flow
from ..sip import Peek

VerdictKind = Literal["forward", "drop", "reject", "ban", "deceive", "allow"]


class Verdict(NamedTuple):
    """What to do with a message, and why (the rule or detector id)."""

    kind: VerdictKind
    reason: str = ""
    code: int = 0  # the status for "reject"
    ttl: float = 0.0  # seconds, for "ban"

    @property
    def passes(self) -> bool:
        """Whether the message goes on to the proxy."""
        return self.kind in ("forward", "allow")


FORWARD: Final = Verdict("forward")
Pipeline = Callable[[Peek, Flow], Verdict]


def forward_all(view: Peek, source: Flow) -> Verdict:
    return FORWARD
