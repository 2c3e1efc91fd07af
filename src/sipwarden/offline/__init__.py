"""Offline mode: what the policy would have done with a packet capture.

``replay(path, policy)`` judges every SIP message of a capture as the live
edge judges it (the packets are read by ``sipwarden.packet``) and returns a
``ReplayReport``: totals, and per source the verdicts and the rules hit, as
JSON-ready dicts or printed tables.
"""

from .replay import ReplayError, replay
from .report import VERDICT_KINDS, ReplayReport, ReplayTotals, SourceStats

__all__ = [
    "VERDICT_KINDS",
    "ReplayError",
    "ReplayReport",
    "ReplayTotals",
    "SourceStats",
    "replay",
]
