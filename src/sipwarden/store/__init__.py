"""Persistence: SQLite by default (``store/sqlite.py``). Written in batches,
off the hot path; the store is the truth that the kernel sets are
reconciled with at start."""

from .sqlite import BanStore

__all__ = ["BanStore"]
