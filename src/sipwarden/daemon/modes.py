"""Modes: the ways traffic reaches the policy, run side by side by one daemon.

The edge (an inline proxy) is the first, host mode (NFQUEUE, ``hostmode/``)
the second; logwatch and the fleet come next. The daemon owns the policy, the keepers and the
control socket; a mode owns its sockets (or queue, or log files) and judges
what it receives with the policy the daemon gives it. Adding a mode is
writing a class with this shape and listing it where ``app.serve`` builds
the modes: nothing else changes.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..policy import Policy


class Mode(Protocol):
    # the key its counters have in `status` ("edge")
    name: str
    # the policy in force: the daemon swaps it whole on reload, between packets
    policy: Policy
    # what the mode saw and did, summed over the workers in `status`
    counters: Counter[str]
    # when the PBX last answered through this mode (wall clock; None: not
    # yet, or a mode that sees no answers): the dashboard's PBX health
    pbx_answered_at: float | None

    async def start(self) -> None:
        """Open what the mode listens on; raise if it cannot (startup stops)."""

    async def stop(self) -> None:
        """Close it all; the kernel's bans stay."""

    def describe(self) -> str:
        """One line for the start banner: what it listens on, where it sends."""
        ...
