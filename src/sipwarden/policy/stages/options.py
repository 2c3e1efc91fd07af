"""The OPTIONS stage: OPTIONS only from trusted peers.

Scanners find SIP servers with OPTIONS (nmap, SIPVicious, Shodan), and
nothing but a trunk or an office's PBX has a reason to ask an edge what it
supports. Trusted peers never reach this stage, so any OPTIONS that does is
dropped silently (``options.untrusted``). Present only with
``policy.options = "drop"`` (the default).
"""

from __future__ import annotations

from typing import Final

from ...sip import Peek
from ...values import Peer, Verdict

OPTIONS_UNTRUSTED: Final = Verdict("drop", "options.untrusted")


class OptionsFromTrusted:
    """Drops OPTIONS (trusted peers are allowed before any stage)."""

    name: Final = "options"

    def decide(self, view: Peek, source: Peer, local_port: int, now: float) -> Verdict | None:
        return OPTIONS_UNTRUSTED if view.method == "OPTIONS" else None
