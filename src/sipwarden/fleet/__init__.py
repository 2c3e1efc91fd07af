"""The fleet: several sipwarden nodes sharing bans, failure counts and
intel through Redis (``[fleet]``).

- ``link``: the connection, its credentials and whether Redis answers.

(The ban stream, the shared failure counters and the shared intel are
built on the link; see docs/architecture.md.)
"""

from __future__ import annotations

from .link import FleetAuthError, FleetLink, make_client, node_name, shown_url

__all__ = ["FleetAuthError", "FleetLink", "make_client", "node_name", "shown_url"]
