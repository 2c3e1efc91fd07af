"""The policy pipeline: every inbound message gets one verdict, with its reason.

A ``Policy`` is an ordered list of small stages (``stage`` has their one
interface, ``stages/`` one module each), asked in order; the first that
decides wins:

1. unparsable input: empty and tiny datagrams are scanner probes
   (``scan.empty-datagram``, ``scan.tiny-datagram``), CRLF keep-alives are
   ignored (``keepalive``), anything else is ``malformed.<reason>``;
2. the source stages (``stages.screen``): trusted peers (``trusted-peer``,
   allowed: nothing below touches them), the ban book (``banned``), threat
   feeds and countries (``intel.<feed>``, ``geo.<country>``);
3. the message stages: sanity (``sanity.*``), the rules (operator's, then
   the pack: the rule id), the rate limiter (``rate.<limit>``), what an
   initial INVITE dials (``tollfraud.*``: a prefix walk, international calls
   from a source that never logged in, the quiet-time rule), OPTIONS from
   anyone but a trusted peer (``options.untrusted``);
4. ``forward``.

Which stages there are, and their settings, is the builder's business
(``build``: from the config, in one place); this module only runs them.
The source stages need only the address, so ``judge_bytes`` runs them
before the message is even peeked at: a banned or listed source's flood
costs a few dict probes per packet, not a parse.

Detectors only ask: a stage that wants a ban returns a ``Banning`` (its
verdict with a ``Decision``), and ``ban`` hands the decision to the ban
book, which alone decides; only what it records is enforced. The backend's
answers come back through ``answer``: the failure tracker reads them and
asks the ban book the same way, and a login that succeeded is reported to
the known-good record (``known_good``: the kernel's lane learns from it),
and a failed login or a probe for a user is told to the event queue
(``events``, observe's: the analysis reads them).
Each verdict is counted by kind and reason; the rules count their own hits. Everything here is sans-I/O (the clock is
passed in): the edge, ``explain`` and ``replay`` share it.

Monitor mode (``monitor``, ``[policy] mode = "monitor"``): the verdicts
are given and counted as ever (the edge forwards them all as if allowed),
but ``ban`` asks the ban book nothing: a would-be ban is a ``would-ban``
event (logged once per target and ban length, in a bounded table) and
the backend's answers are never rewritten to be uniform.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Final

from ..intel.numbers import Dialplan
from ..intel.screen import IntelScreen
from ..observe import LOGIN_FAILED as LOGIN_EVENT
from ..observe import WOULD_BAN, Event, EventQueue
from ..sip import Peek, SipError, peek
from ..values import FORWARD, Decision, Peer, Verdict, canonical
from .bans import BanBook
from .failures import LOGGED_IN, LOGIN_FAILED, NOT_FOUND, FailureTracker, failure
from .hostile import HostileSources
from .known_good import LOGINS, KnownGood
from .limits import RateLimiter
from .rules import Context, RuleSet
from .stage import Banning, SourceStage, Stage
from .stages import (
    TRUSTED,
    IntelStage,
    LimitStage,
    OptionsFromTrusted,
    RuleStage,
    Sanity,
    TrustedPeers,
)
from .tollfraud import TollFraud
from .uniform import UniformAnswers

log = logging.getLogger("sipwarden.policy")

TINY: Final = 32  # bytes: no SIP request is shorter; probes that short are scans
WOULD_BANS_KEPT: Final = 65_536  # monitor mode: targets whose would-be ban is remembered


class Policy:
    """One message in, one verdict out (see the module doc).

    ``trusted`` are asked first, then ``screens`` (the other source stages),
    then, on the peeked message, ``stages``; the default is the stages a
    policy without rules has (sanity, OPTIONS from trusted peers only).
    ``bans`` is the ban book every ``Banning`` goes to; ``failures`` and
    ``uniform`` read the backend's answers, ``known_good`` hears of the
    logins that succeeded. The stage lists are fixed at construction (a
    reload builds a new Policy); the counters are handed from one Policy to
    the next."""

    def __init__(
        self,
        *,
        trusted: TrustedPeers | None = None,
        screens: Sequence[SourceStage] = (),
        stages: Sequence[Stage] | None = None,
        bans: BanBook | None = None,
        failures: FailureTracker | None = None,
        uniform: UniformAnswers | None = None,
        known_good: KnownGood | None = None,
        hostile: HostileSources | None = None,
        decisions: Counter[str] | None = None,
        verdicts: Counter[Verdict] | None = None,
    ) -> None:
        self._trusted = trusted if trusted is not None else TrustedPeers([])
        self._screens = tuple(screens)
        self._stages = tuple(stages) if stages is not None else (Sanity(), OptionsFromTrusted())
        self._bans = bans
        self.failures = failures
        self.uniform = uniform
        self.known_good = known_good
        self.hostile = hostile  # who is hostile (fingerprints, detectors); None: none kept
        # what INVITEs dial, and the toll-fraud detectors (the builder sets
        # them; a reload hands them on)
        self.dialplan: Dialplan | None = None
        self.tollfraud: TollFraud | None = None
        # monitor mode: judge and record everything, enforce nothing (the
        # builder sets it from [policy] mode; the edge reads it off the hot path)
        self.monitor = False
        # monitor mode: target -> when its would-be ban would end (None: never),
        # so a source over a limit is one would-ban, not one per packet
        self.would_bans: dict[str, float | None] = {}
        # where failed logins are told (observe's queue; set by the daemon,
        # handed to the next policy on reload); None: not told
        self.events: EventQueue | None = None
        # decisions refused (allow list, book full) and asked, by detector
        self.decisions: Counter[str] = decisions if decisions is not None else Counter()
        # every verdict given, counted by the Verdict itself (built once per rule
        # or detector, so counting is one dict update); `counters` names them
        self.verdicts: Counter[Verdict] = verdicts if verdicts is not None else Counter()
        # what the hot path calls, looked up once: the trusted peers first
        self._screen_calls: tuple[Callable[[str, float], Verdict | None], ...] = (
            self._trusted.screen,
            *(stage.screen for stage in self._screens),
        )
        self._decide_calls: tuple[
            Callable[[Peek, Peer, int, float], Verdict | Banning | None], ...
        ] = tuple(stage.decide for stage in self._stages)
        # the parts others read (status, reload, explain), found once
        rules = next((s.rules for s in self._stages if isinstance(s, RuleStage)), None)
        self._rules = rules if rules is not None else RuleSet([])
        self._limiter = next((s.limiter for s in self._stages if isinstance(s, LimitStage)), None)
        self._intel = next((s.intel for s in self._screens if isinstance(s, IntelStage)), None)
        self._note_trusted = None if self._intel is None else self._intel.note_trusted

    # ------------------------------------------------------------- its parts

    @property
    def trusted(self) -> TrustedPeers:
        """The trusted peers (the first source stage; the answer path asks them too)."""
        return self._trusted

    @property
    def screens(self) -> tuple[SourceStage, ...]:
        """The source stages after the trusted peers, in order."""
        return self._screens

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The message stages, in order."""
        return self._stages

    @property
    def bans(self) -> BanBook | None:
        """The ban book (None: nothing is banned, nothing is dropped as banned)."""
        return self._bans

    @property
    def rules(self) -> RuleSet:
        """The rules in force (an empty set when the policy has none)."""
        return self._rules

    @property
    def limiter(self) -> RateLimiter | None:
        """The rate limiter, when the policy limits."""
        return self._limiter

    @property
    def intel(self) -> IntelScreen | None:
        """The feeds and countries screen, when the policy has one."""
        return self._intel

    @property
    def counters(self) -> Counter[str]:
        """Verdicts given, as ``"kind:reason"`` (``"forward:"``, ``"drop:ua.sipsak"``)."""
        named: Counter[str] = Counter()
        for verdict, count in self.verdicts.items():
            named[f"{verdict.kind}:{verdict.reason}"] += count
        return named

    # ------------------------------------------------------------ judging

    def judge(self, view: Peek, source: Peer, local_port: int, now: float = 0.0) -> Verdict:
        """Judge a message already peeked (``judge_bytes`` is the edge's way)."""
        host = source.host
        for screen in self._screen_calls:
            verdict = screen(host, now)
            if verdict is not None:
                break
        else:
            verdict = self._decide(view, source, local_port, now)
        self.verdicts[verdict] += 1
        return verdict

    def judge_bytes(
        self, data: bytes, source: Peer, local_port: int, now: float = 0.0
    ) -> tuple[Verdict, Peek | None]:
        """Peek and judge one framed message: the edge, ``explain`` and
        ``replay`` all come through here, so they agree. A source the ban
        book or the intel stage refuses is dropped unpeeked (the view is
        None then, as for unparsable input)."""
        host = source.host
        for screen in self._screen_calls:
            verdict = screen(host, now)
            if verdict is not None:
                if verdict is TRUSTED:  # peeked all the same: it is forwarded
                    note = self._note_trusted
                    if note is not None:
                        note(host, now)  # reported if a feed lists it
                    break
                self.verdicts[verdict] += 1
                return verdict, None
        try:
            view = peek(data)
        except SipError as exc:
            return self.judge_unparsed(data, exc), None
        if verdict is None:
            verdict = self._decide(view, source, local_port, now)
        self.verdicts[verdict] += 1
        return verdict, view

    def screen(self, host: str, now: float) -> Verdict | None:
        """What the source address alone decides: trusted, banned, listed
        by a feed or from a refused country; None when the message decides
        (``intel lookup`` and the edge's TCP accept ask this: it is not a
        packet, so a listed trusted peer is not reported)."""
        for screen in self._screen_calls:
            verdict = screen(host, now)
            if verdict is not None:
                return verdict
        return None

    def _decide(self, view: Peek, source: Peer, local_port: int, now: float) -> Verdict:
        """The message stages, in order: the first that decides wins."""
        for decide in self._decide_calls:
            verdict = decide(view, source, local_port, now)
            if verdict is not None:
                if isinstance(verdict, Banning):
                    self.ban(verdict.decision, now)
                    return verdict.verdict
                return verdict
        return FORWARD

    def judge_unparsed(self, data: bytes, error: SipError) -> Verdict:
        """The verdict on input that is not a SIP message (always a drop)."""
        if not data:
            reason = "scan.empty-datagram"
        elif not data.strip(b"\r\n"):
            reason = "keepalive"
        elif len(data) < TINY:
            reason = "scan.tiny-datagram"
        else:
            reason = f"malformed.{error.reason}"
        verdict = Verdict("drop", reason)
        self.verdicts[verdict] += 1
        return verdict

    # ------------------------------------------------------ the backend's answers

    def reads_answer(self, status: int) -> bool:
        """Whether ``answer`` wants the backend's answer with this status
        (the edge then finds its client; most 2xx are waved through)."""
        if status < 200 or 300 <= status < 400:
            return False  # provisional, redirect: say nothing about the source
        if status < 300:  # a success clears what is tracked, and makes a source known-good
            tracker = self.failures  # with a tap, told even when empty: the fleet may track it
            if tracker is not None and tracker.tap is not None:
                return True
            return bool(tracker) or self.known_good is not None
        return self.failures is not None or self.uniform is not None or self.events is not None

    def answer(
        self, data: bytes, view: Peek, client: str, credentials: bool, now: float
    ) -> bytes | None:
        """The backend's final answer to a request from ``client`` (its
        address); ``credentials``: the request carried Authorization or
        Proxy-Authorization. Feeds the failure tracker and the known-good
        record; returns the answer rewritten to be uniform (anti-enumeration),
        or None to relay it as is."""
        status = view.status
        if status is None or client in self._trusted:
            return None
        if 200 <= status < 300 and not credentials:
            return None  # not a login: nothing here learns from it (most of what passes)
        good = self.known_good
        if good is not None and credentials and 200 <= status < 300:
            with contextlib.suppress(SipError):
                if view.cseq_method in LOGINS:
                    good.logged_in(client, now)
        uniform = self.uniform
        if uniform is not None:
            uniform.learn(data, view, now)
        tracker, events = self.failures, self.events
        if tracker is not None or events is not None:
            try:  # the PBX's answer is relayed however broken; it just tells less
                method = view.cseq_method or ""
                who = view.to_user if method == "REGISTER" or not credentials else view.from_user
            except SipError:
                method, who = "", ""
            if events is not None and (kind := failure(status, method, credentials)):
                fields = (("account", who), ("method", method), ("status", status))
                events.push(Event(now, LOGIN_EVENT, client, kind, fields))
            if tracker is not None:
                decision = tracker.answer(client, status, method, who or "", credentials, now)
                if decision is not None:
                    self.ban(decision, now)
        if uniform is None or self.monitor:  # monitor: the PBX's own answer goes back
            return None
        return uniform.rewrite(data, view, credentials)

    def report(
        self,
        host: str,
        kind: str,
        account: str,
        now: float,
        evidence: str,
        *,
        at: float | None = None,
        origin: str = "log",
    ) -> bool:
        """What a PBX reported about ``host`` outside an answer we relayed (a
        log line, logwatch mode): ``kind`` is ``auth.failed``,
        ``auth.not-found`` or ``auth.ok``. The failures go to the same
        tracker and ban path as ``answer``'s, the same events are told
        (with ``origin``: where it was read); a success makes the source
        known-good. ``at`` is when the PBX saw it (the line's own time; the
        tracker's windows count in it), ``now`` the clock for the ban. A
        trusted peer is never counted. Whether a ban was made."""
        if kind not in (LOGIN_FAILED, NOT_FOUND, LOGGED_IN):
            raise ValueError(f"{kind!r}: report {LOGIN_FAILED}, {NOT_FOUND} or {LOGGED_IN}")
        if host in self._trusted:
            return False
        when = now if at is None else min(at, now)
        if kind == LOGGED_IN:
            if self.known_good is not None:
                self.known_good.logged_in(host, now)
        elif self.events is not None:
            fields = (("account", account), ("origin", origin))
            self.events.push(Event(when, LOGIN_EVENT, host, kind, fields))
        tracker = self.failures
        if tracker is None:
            return False
        decision = tracker.report(host, kind, account, when, evidence)
        return decision is not None and self.ban(decision, now)

    def tell(self, event: Event) -> None:
        """An event for observe's queue (none kept: nothing to do)."""
        if self.events is not None:
            self.events.push(event)

    # ------------------------------------------------------------ the ban path

    def ban(self, decision: Decision, now: float) -> bool:
        """Ask the ban book (every detector's decision comes through here,
        the analysis' too); whether a ban was made."""
        book = self._bans
        if book is None:
            return False
        if self.monitor:
            return self._would(decision, book, now)
        ban = book.decide(
            decision.target,
            reason=decision.reason,
            detector=decision.detector,
            now=now,
            duration=decision.duration,
            evidence=decision.evidence,
        )
        self.decisions[decision.detector if ban is not None else "refused"] += 1
        if ban is not None:
            log.warning(
                "banned %s until %s: %s (%s)",
                ban.target,
                "forever" if ban.expires_at is None else _when(ban.expires_at),
                ban.reason,
                ban.detector,
            )
        return ban is not None

    def _would(self, decision: Decision, book: BanBook, now: float) -> bool:
        """Monitor mode: what the book would have done, as a ``would-ban``
        event (the book is not asked: nothing is banned); never a ban."""
        try:
            target = canonical(decision.target)
        except ValueError:
            return False  # not an address or a network: the book would refuse it too
        held = self.would_bans.get(target, 0.0)
        if held is None or held > now:
            return False  # already told, and still "banned"
        refusal = book.refusal(target)
        if refusal is not None:
            self.decisions["refused"] += 1
            return False
        length: float | None
        if decision.duration == "progressive":
            steps = book.steps
            length = steps[min(book.offences(target, now) + 1, len(steps)) - 1]
        else:
            length = decision.duration
        if len(self.would_bans) >= WOULD_BANS_KEPT:
            self.would_bans.clear()  # bounded: at worst a source is told twice
        self.would_bans[target] = None if length is None else now + length
        self.decisions[f"would-ban:{decision.detector}"] += 1
        log.warning(
            "monitor mode: would ban %s for %s: %s (%s); not enforced",
            target,
            "ever" if length is None else f"{length:g} s",
            decision.reason,
            decision.detector,
        )
        self.tell(
            Event(
                now,
                WOULD_BAN,
                target,
                decision.reason,
                (
                    ("detector", decision.detector),
                    ("duration", length),
                    ("enforced", "no"),
                ),
            )
        )
        return False

    # ------------------------------------------------------------ explaining

    def explain(self, data: bytes, source: Peer, local_port: int) -> dict[str, Any]:
        """What each stage says about one message (for ``sipwarden explain``):
        every rule that matches, in order and whatever its mode, and the
        verdict the edge would give."""
        verdict, view = self.judge_bytes(data, source, local_port)
        if view is None:  # refused on its source alone: the rules still say their piece
            with contextlib.suppress(SipError):
                view = peek(data)
        matching = (
            []
            if view is None
            else [
                {"id": r.id, "action": r.action, "mode": r.mode, "origin": r.origin}
                for r in self.rules.matching(Context(view, source, local_port))
            ]
        )
        return {
            "source": f"{source.transport}:{source.host}:{source.port}",
            "parsed": view is not None,
            "trusted": source.host in self._trusted,
            "matching_rules": matching,
            "verdict": verdict.kind,
            "reason": verdict.reason,
            **({"code": verdict.code} if verdict.kind == "reject" else {}),
        }


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
