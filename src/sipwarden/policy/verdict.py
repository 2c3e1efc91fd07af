"""Verdicts: what the policy pipeline decides about one message, and why."""

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
    ttl: float = 0.0  # seconds, for "ban" (0: the ban book's default)

    @property
    def passes(self) -> bool:
        """Whether the message goes on to the proxy."""
        return self.kind in ("forward", "allow")


FORWARD: Final = Verdict("forward")
Judge = Callable[[Peek, Flow, int], Verdict]  # (message, source, local port) -> verdict
