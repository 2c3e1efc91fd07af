"""Threat intelligence: lists of hostile addresses shared by others.

APIBAN (``intel/apiban.py``) first: a sans-I/O core that pages through the
list politely (``ApibanSync``) and a thin httpx adapter (``ApibanClient``);
the feeds' state and entries live in SQLite (``store/intel.py``).
"""

from .apiban import (
    ApibanClient,
    ApibanConfig,
    ApibanError,
    ApibanSync,
    Done,
    Progress,
    Request,
    SyncResult,
    Wait,
    check_request,
    parse_check,
)

__all__ = [
    "ApibanClient",
    "ApibanConfig",
    "ApibanError",
    "ApibanSync",
    "Done",
    "Progress",
    "Request",
    "SyncResult",
    "Wait",
    "check_request",
    "parse_check",
]
