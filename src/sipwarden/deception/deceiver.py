"""The deceiver: what a hostile source's message gets, instead of silence.

One object per worker, built from ``[deception]``; the edge hands it every
message the policy judged ``deceive`` and carries out the actions it
returns, every byte through the reflection budget at ratio 1.0 (an answer
never larger than what the source sent, until it proved it receives).

Rules, in order:

1. discovery stays silent: a tool's discovery probe (OPTIONS, svmap's and
   nmap's probes: ``answers.is_discovery``) gets nothing, so nmap, Shodan
   and svmap still find nothing with deception on;
2. a REGISTER (``register_ok``): the SIPVicious stopper first, for a source
   fingerprinted as SIPVicious when ``crash_scanners`` is on (at most one
   per source per ``crash_interval``), else the 200 OK (a guess carrying
   credentials: a 401, so no password is ever confirmed);
3. INVITE, ACK, CANCEL, BYE and the responses to our BYE (``honeypot``):
   the fake PBX (``honeypot.Honeypot``), which records what was dialled;
4. anything else: silence.

Every answer passes the answer limiter (per source and in total) before it
is an action; what it withholds is counted. Sans-I/O: the clock is the
caller's, and the honeypot's timers come back as ``Wake`` actions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING

from ..sip import Peek, SipError, parse
from ..values import Peer
from .answers import ScannerStopper, fingerprinted_as_sipvicious, is_discovery, register_answer
from .honeypot import Action, Honeypot, Send
from .limits import AnswerLimiter
from .records import CallRecords, Classifier, unchanged

if TYPE_CHECKING:  # the models only (see observe/analysis)
    from ..config import DeceptionConfig

HONEYPOT_METHODS = frozenset({"INVITE", "ACK", "CANCEL", "BYE"})


class Deceiver:
    def __init__(self, config: DeceptionConfig, *, classify: Classifier = unchanged) -> None:
        self.config = config
        self.limiter = AnswerLimiter(
            rate=config.rate,
            burst=config.burst,
            total=config.total_rate,
            max_sources=config.max_sources,
        )
        self.stopper = (
            ScannerStopper(interval=config.crash_interval, max_sources=config.max_sources)
            if config.crash_scanners
            else None
        )
        self.records = CallRecords(classify, max_keys=config.fake_pbx.max_records)
        self.honeypot = Honeypot(config.fake_pbx, self.records) if config.honeypot else None
        # answers by kind ("register-ok", "challenge", "svcrash", "180"...),
        # "silent-discovery", "withheld", "unparsable", "ignored"
        self.counters: Counter[str] = Counter()

    def message(
        self, data: bytes, view: Peek, source: Peer, now: float, fingerprints: Iterable[str]
    ) -> list[Action]:
        """The actions for one message of a hostile ``source`` (see the
        module doc); ``fingerprints``: the rule ids that named it hostile."""
        if view.is_request and is_discovery(view):
            self.counters["silent-discovery"] += 1
            return []
        method = view.method if view.is_request else view.cseq_method
        try:
            msg = parse(data)
        except SipError:
            self.counters["unparsable"] += 1
            return []
        if view.is_request and method == "REGISTER" and self.config.register_ok:
            answer = None
            if self.stopper is not None and fingerprinted_as_sipvicious(fingerprints):
                answer = self.stopper.answer(msg, view, source.host, now)
            if answer is None:
                answer = register_answer(msg, server=self.config.server_header)
            return self._limited([Send(source, answer.data, answer.kind)], now)
        if self.honeypot is not None and method in HONEYPOT_METHODS:
            return self._limited(self.honeypot.receive(msg, source, now), now)
        self.counters["ignored"] += 1
        return []

    def wake(self, token: Hashable, now: float) -> list[Action]:
        """A honeypot timer came due."""
        if self.honeypot is None:
            return []
        return self._limited(self.honeypot.wake(token, now), now)

    def _limited(self, actions: list[Action], now: float) -> list[Action]:
        """The actions the answer limiter lets through (timers always)."""
        kept: list[Action] = []
        for action in actions:
            if isinstance(action, Send):
                if not self.limiter.take(action.peer.host, now):
                    self.counters["withheld"] += 1
                    continue
                self.counters[action.what] += 1
            kept.append(action)
        return kept
