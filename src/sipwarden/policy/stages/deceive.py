"""The deception stage: a source already named hostile (``policy/hostile.py``:
a fingerprint, a detector, a ``deceive`` rule) gets the ``deceive`` verdict
for whatever it sends next, so the edge hands its messages to the deceiver
(``deception/``) rather than to the PBX: a cracker told "200 OK" never
reaches the real registrar, its calls reach the honeypot.

Only when ``[deception] enabled``: the builder leaves the stage out
otherwise. A source that logged in (known-good) is never deceived, so a
forged packet with a phone's address cannot turn the phone's own traffic
away. It runs last but OPTIONS, after the rules (a fingerprint hit is
deceived there already), the limits and the toll-fraud detectors (they
still count a deceived source's calls: a prefix walk is seen); its cost
for any other source is one dict probe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ...sip import Peek
from ...values import Peer, Verdict
from ..hostile import HostileSources

HOSTILE: Final = Verdict("deceive", "deception.hostile")


class DeceiveHostile:
    name: Final = "deceive"

    def __init__(
        self, hostile: HostileSources, known_good: Callable[[str, float], bool] | None
    ) -> None:
        self.hostile = hostile
        self.known_good = known_good

    def decide(self, view: Peek, source: Peer, local_port: int, now: float) -> Verdict | None:
        host = source.host
        if host not in self.hostile:
            return None
        good = self.known_good
        if good is not None and good(host, now):
            return None
        return HOSTILE
