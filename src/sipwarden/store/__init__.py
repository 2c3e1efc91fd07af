"""Persistence: SQLite by default (bans: ``store/sqlite.py``; events and
flows: ``store/observe.py``; the honeypot's calls: ``store/honeypot.py``;
where logwatch mode is in each log: ``store/logwatch.py``; where this node
is in the fleet's ban stream: ``store/fleet.py``). Written in
batches, off the hot path. The store keeps every ban's record; the kernel holds what
is in force and, while the store cannot be written, is the record (the
daemon merges what the store lacks back at start). ``StoreError`` is one
line naming the file and what to do."""

from .db import StoreError
from .fleet import FleetCursor
from .honeypot import HoneypotStore
from .logwatch import LogPositions, Position
from .observe import ObserveStore
from .sqlite import BanStore

__all__ = [
    "BanStore",
    "FleetCursor",
    "HoneypotStore",
    "LogPositions",
    "ObserveStore",
    "Position",
    "StoreError",
]
