"""Observation, the pure part: what happened (``events``), the traffic
(``flows``) and what the kernel dropped, as flows (``drops``), bounded and
sans-I/O; the daemon writes them, the API and the CLI read them. Later: the periodic analysis, schedules (quiet hours) and
the metrics model (issue 15)."""

from .drops import KernelDrops
from .events import (
    BAN,
    DECEPTION,
    FEED,
    FINDING,
    HEALTH,
    KINDS,
    LOGIN_FAILED,
    UNBAN,
    VERDICT,
    WOULD_BAN,
    Event,
    EventQueue,
)
from .flows import OVERFLOW, FlowKey, FlowTable, aggregate, ipfix

__all__ = [
    "BAN",
    "DECEPTION",
    "FEED",
    "FINDING",
    "HEALTH",
    "KINDS",
    "LOGIN_FAILED",
    "OVERFLOW",
    "UNBAN",
    "VERDICT",
    "WOULD_BAN",
    "Event",
    "EventQueue",
    "FlowKey",
    "FlowTable",
    "KernelDrops",
    "aggregate",
    "ipfix",
]
