"""Threat intelligence: lists of hostile addresses shared by others.

Sans-I/O, like the rest of the core: APIBAN's paging (``apiban``), list
feeds' syntax (``feeds``), the address index the edge asks per source
(``index``), country range tables and the country policy (``geo``), the
stage that screens sources (``screen``), what the kernel's feed sets
hold (``kernel``) and the number classifier of the dialplan (``numbers``:
imported by its users, not here, as it loads phonenumbers). What fetches them (httpx, files, MaxMind readers) is in
``fetch/``; their state and entries live in SQLite (``store/intel.py``).
"""

from .apiban import (
    ApibanSettings,
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
    "ApibanSettings",
    "ApibanSync",
    "Done",
    "Progress",
    "Request",
    "SyncResult",
    "Wait",
    "check_request",
    "parse_check",
]
