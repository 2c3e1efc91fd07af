"""The toll-fraud stage: what an INVITE dials, read by the dialplan.

For each initial INVITE (no To tag: a re-INVITE's R-URI is a Contact, not a
dialled number) with a user in its R-URI, the dialplan classifies the user
(``intel.numbers``, cached per dial string) and:

- the detectors (``policy/tollfraud.py``) may ask for a ban: a prefix walk
  (``tollfraud.prefix-walk``) or international calls from a source that
  never logged in (``tollfraud.international``), returned as a ``Banning``
  for the ban book;
- the quiet-time rule (``[schedule.quiet] international``): while the
  schedule says quiet, an international call from a source neither trusted
  nor known-good is dropped (``tollfraud.quiet-international``) or, with
  "alert", let through and handed to ``alert`` (the caller's: an event).

With deception on (``deceive``), a detector's decision sends the source to
the honeypot instead (the verdict ``deceive``; its ban owed until the
deception ends). Trusted peers never reach a stage; ``vouched(host, now)`` says whether a
source is known-good (it logged in). The builder leaves the stage out when
the detectors are off and the rule is "allow", so it then costs nothing;
other methods cost one comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ...intel.numbers import Dialplan, Number
from ...sip import Peek
from ...values import Peer, Verdict
from ..hostile import HostileSources
from ..stage import Banning
from ..tollfraud import QuietAction, TollFraud, quiet_action

QUIET_INTERNATIONAL: Final = Verdict("drop", "tollfraud.quiet-international")


class TollFraudStage:
    """The toll-fraud detectors and the quiet-time rule on initial INVITEs."""

    name: Final = "tollfraud"

    def __init__(
        self,
        plan: Dialplan,
        detector: TollFraud | None = None,
        *,
        vouched: Callable[[str, float], bool],
        quiet: Callable[[float], bool] | None = None,
        international: QuietAction = "allow",
        alert: Callable[[Peer, Number, float], None] | None = None,
        deceive: HostileSources | None = None,
    ) -> None:
        self.plan = plan
        # with deception on: a detector's decision sends the source to the
        # honeypot, its ban owed until the deception ends
        self.deceive = deceive
        self.detector = detector
        self.vouched = vouched
        self.quiet = quiet if international != "allow" else None
        self.international = international
        self.alert = alert

    def decide(
        self, view: Peek, source: Peer, local_port: int, now: float
    ) -> Verdict | Banning | None:
        if view.method != "INVITE" or view.to_tag:
            return None
        user = view.ruri_user
        if not user:
            return None
        number = self.plan.classify(user)
        if not number.is_number:
            return None
        known = self.vouched(source.host, now)
        if self.detector is not None:
            decision = self.detector.invite(source.host, number, now, known)
            if decision is not None:
                if self.deceive is not None:
                    self.deceive.owe(decision, now)
                    return Verdict("deceive", decision.detector)
                return Banning(Verdict("ban", decision.detector), decision)
        if self.quiet is None:
            return None
        action = quiet_action(
            number, quiet=self.quiet(now), vouched=known, action=self.international
        )
        if action == "drop":
            return QUIET_INTERNATIONAL
        if action == "alert" and self.alert is not None:
            self.alert(source, number, now)
        return None
