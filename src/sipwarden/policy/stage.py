"""The one small interface every stage of the policy pipeline has.

A stage looks at one inbound message and either decides (a ``Verdict``) or
has no opinion (``None``: the next stage is asked). The pipeline asks its
stages in order and the first that decides wins; when none does, the
message is forwarded. There are two forms, for two moments:

- a ``SourceStage`` needs only the source address (trusted peers, the ban
  book, threat feeds and countries). These run before the message is even
  peeked at: a banned or listed source's flood costs a few dict probes per
  packet, not a parse;
- a ``Stage`` reads the peeked message too (sanity, the rules, the rate
  limiter, OPTIONS).

A stage that wants a source banned does not ban: it returns a ``Banning``,
the verdict with the ``Decision`` it asks of the ban book, and the pipeline
hands the decision to the book, which alone makes bans (and may refuse:
the allow list, a full book). So no stage holds the ban path.

Stages are plain objects with no I/O; each is built from the config in one
place (``build``) and keeps what it needs (a rule set, a limiter). The shape
follows CrowdSec's bucket processors: one small interface, one module per
behaviour (``stages/``).
"""

from __future__ import annotations

from typing import Final, NamedTuple, Protocol

from ..sip import Peek
from ..values import Decision, Peer, Verdict

EVIDENCE_CHARS: Final = 600  # of a message kept as a ban's evidence


class Banning(NamedTuple):
    """A stage's verdict that asks the ban book for a ban."""

    verdict: Verdict
    decision: Decision


class SourceStage(Protocol):
    """Decides on the source address alone, before any parse."""

    @property
    def name(self) -> str: ...

    def screen(self, host: str, now: float) -> Verdict | None: ...


class Stage(Protocol):
    """Decides on a peeked message, its source and the local port it came to."""

    @property
    def name(self) -> str: ...

    def decide(
        self, view: Peek, source: Peer, local_port: int, now: float
    ) -> Verdict | Banning | None: ...


def evidence(view: Peek, source: Peer) -> str:
    """A message, as a ban keeps it: where from, and its head."""
    text = view.data[:EVIDENCE_CHARS].decode("utf-8", "replace")
    return f"from {source.transport}:{source.host}:{source.port}\n{text}"
