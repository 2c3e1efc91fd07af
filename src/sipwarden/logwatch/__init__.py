"""Logwatch mode: the PBX's own logs (files, the systemd journal) turned
into failures for the same tracker, ban book and kernel enforcement the
edge uses, for PBXs sipwarden can stand neither in front of nor beside.

``patterns`` (with ``timestamps``) reads one line into a ``LogRecord`` by
a format's pattern file (``formats/``); ``follow`` and ``journal`` are the
sources; ``coverage`` counts what each source read, matched and missed;
``mode`` is the ``Mode`` the daemon runs.
"""

from __future__ import annotations

from .patterns import CHALLENGE, KINDS, SHIPPED, Format, LogRecord, PatternError, load

__all__ = ["CHALLENGE", "KINDS", "SHIPPED", "Format", "LogRecord", "PatternError", "load"]
