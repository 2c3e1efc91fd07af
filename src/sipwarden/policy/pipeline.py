"""The policy pipeline: every inbound message gets one verdict, with its reason.

Stages, in order (the first that decides wins):

1. unparsable input: empty and tiny datagrams are scanner probes
   (``scan.empty-datagram``, ``scan.tiny-datagram``), CRLF keep-alives are
   ignored (``keepalive``), anything else is ``malformed.<reason>``;
2. trusted peers (trunks, offices): ``allow`` (reason ``trusted-peer``) and
   nothing below touches them (a feed listing one is reported);
3. the ban book: a banned source is dropped (``banned``; with nftables its
   packets rarely get this far);
4. the intel stage: a source a threat feed lists (``intel.<feed>``) or from
   a country the operator does not serve (``geo.<country>``,
   ``geo.unknown``) is dropped, unless the ban book's allow list has it;
5. sanity checks in the spirit of Kamailio's sanity module: mandatory
   headers, CSeq method, Request-URI length and scheme (``sanity.*``);
6. the rules: the operator's first, then the built-in pack, so an operator
   can allow what the pack would drop (a rule whose action is ``ban`` asks
   the ban book for one);
7. the rate limiter: a source over its limit is banned (``rate.<limit>``);
   an address on the ban book's allow list is never limited;
8. OPTIONS from anyone but a trusted peer: dropped (``options.untrusted``);
9. ``forward``.

Stages 2 to 4 need only the source address, so ``judge_bytes`` runs them
before the message is even peeked at: a banned or listed source's flood
costs a few dict probes per packet, not a parse.

The backend's answers come back through ``answer``: the failure tracker
reads them, and asks the ban book when a source has failed too often.
Detectors only ask; the ban book decides, and only what it records is
enforced. Each verdict is counted by kind and reason; the rules count their
own hits. Everything here is sans-I/O (the clock is passed in): the edge,
``explain`` and ``replay`` share it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from ..intel.screen import IntelScreen
from ..sip import Peek, SipError, peek
from ..sip.peek import CALL_ID, CSEQ, FROM, TO, VIA
from ..values import FORWARD, Decision, Peer, Verdict
from .bans import BanBook
from .failures import FailureTracker
from .limits import RateLimiter
from .rules import Context, Rule, RuleSet
from .uniform import UniformAnswers

TRUSTED: Final = Verdict("allow", "trusted-peer")
BANNED: Final = Verdict("drop", "banned")
OPTIONS_UNTRUSTED: Final = Verdict("drop", "options.untrusted")
EVIDENCE_CHARS: Final = 600  # of a message kept as a ban's evidence

log = logging.getLogger("sipwarden.policy")

TINY: Final = 32  # bytes: no SIP request is shorter; probes that short are scans
MONITOR_LOGGED: Final = 10  # per monitor rule and reload, then only counted
_MANDATORY: Final = ((VIA, "via"), (FROM, "from"), (TO, "to"), (CALL_ID, "call-id"), (CSEQ, "cseq"))
_SCHEMES: Final = ("sip:", "sips:", "tel:", "SIP:", "SIPS:", "TEL:")  # the fast test
_SCHEME_NAMES: Final = ("sip", "sips", "tel")  # any case

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedPeers:
    """Addresses and networks that are never scanned, limited or banned.

    Single addresses are a set lookup; networks are tested once per source
    and the answer kept in a bounded cache (sources can be spoofed by the
    million, so the cache is cleared when full rather than grown)."""

    CACHE: Final = 65_536

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = list(networks)
        self._hosts = {str(net.network_address) for net in self.networks if net.num_addresses == 1}
        self._ranges = [net for net in self.networks if net.num_addresses > 1]
        self._cache: dict[str, bool] = {}

    def __contains__(self, host: str) -> bool:
        if host in self._hosts:
            return True
        if not self._ranges:
            return False
        known = self._cache.get(host)
        if known is None:
            try:
                ip = ipaddress.ip_address(host)
                known = any(ip in net for net in self._ranges)
            except ValueError:
                known = False
            if len(self._cache) >= self.CACHE:
                self._cache.clear()
            self._cache[host] = known
        return known


@dataclass
class Policy:
    """One message in, one verdict out (see the module doc)."""

    rules: RuleSet = field(default_factory=lambda: RuleSet([]))
    trusted: TrustedPeers = field(default_factory=lambda: TrustedPeers([]))
    sanity: bool = True
    options_from_trusted_only: bool = True
    max_uri_length: int = 1024
    # the state that outlives a reload (handed from one Policy to the next):
    # bans, request rates, failures
    bans: BanBook | None = None
    limiter: RateLimiter | None = None
    failures: FailureTracker | None = None
    uniform: UniformAnswers | None = None
    intel: IntelScreen | None = None  # feeds and countries (its index outlives a reload)
    # decisions refused (allow list, book full) and asked, by detector
    decisions: Counter[str] = field(default_factory=Counter)
    # every verdict given, counted by the Verdict itself (built once per rule
    # or detector, so counting is one dict update); `counters` names them
    verdicts: Counter[Verdict] = field(default_factory=Counter)
    _monitor_logged: Counter[str] = field(default_factory=Counter)

    @property
    def counters(self) -> Counter[str]:
        """Verdicts given, as ``"kind:reason"`` (``"forward:"``, ``"drop:ua.sipsak"``)."""
        named: Counter[str] = Counter()
        for verdict, count in self.verdicts.items():
            named[f"{verdict.kind}:{verdict.reason}"] += count
        return named

    def judge(self, view: Peek, source: Peer, local_port: int, now: float = 0.0) -> Verdict:
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
        if host in self.trusted:
            if self.intel is not None:
                self.intel.note_trusted(host, now)
        else:
            refused = self._screen(host, now)
            if refused is not None:
                self.verdicts[refused] += 1
                return refused, None
        try:
            view = peek(data)
        except SipError as exc:
            return self.judge_unparsed(data, exc), None
        verdict = self._decide(view, source, local_port, now, screened=True)
        self.verdicts[verdict] += 1
        return verdict, view

    def screen(self, host: str, now: float) -> Verdict | None:
        """What the source address alone decides: trusted, banned, listed
        by a feed or from a refused country; None when the message decides
        (``intel lookup`` asks this)."""
        if host in self.trusted:
            return TRUSTED
        return self._screen(host, now)

    def _screen(self, host: str, now: float) -> Verdict | None:
        """The stages that need only the source address (trusted peers excepted)."""
        book = self.bans
        if book is not None and book.banned(host, now) is not None:
            return BANNED
        intel = self.intel
        if intel is not None and intel.active:
            return intel.check(host, now)
        return None

    def reads_answer(self, status: int) -> bool:
        """Whether ``answer`` wants the backend's answer with this status
        (the edge then finds its client; most 2xx are waved through)."""
        if status < 200 or 300 <= status < 400:
            return False  # provisional, redirect: say nothing about the source
        if status < 300:
            return bool(self.failures)  # a success only clears what is tracked
        return self.failures is not None or self.uniform is not None

    def answer(
        self, data: bytes, view: Peek, client: str, credentials: bool, now: float
    ) -> bytes | None:
        """The backend's final answer to a request from ``client`` (its
        address); ``credentials``: the request carried Authorization or
        Proxy-Authorization. Feeds the failure tracker; returns the answer
        rewritten to be uniform (anti-enumeration), or None to relay it as is."""
        status = view.status
        if status is None or client in self.trusted:
            return None
        uniform = self.uniform
        if uniform is not None:
            uniform.learn(data, view, now)
        tracker = self.failures
        if tracker is not None:
            try:  # the PBX's answer is relayed however broken; it just tells less
                method = view.cseq_method or ""
                who = view.to_user if method == "REGISTER" or not credentials else view.from_user
            except SipError:
                method, who = "", ""
            decision = tracker.answer(client, status, method, who or "", credentials, now)
            if decision is not None:
                self._ban(decision, now)
        return None if uniform is None else uniform.rewrite(data, view, credentials)

    def _ban(self, decision: Decision, now: float) -> bool:
        """Ask the ban book; whether a ban was made."""
        book = self.bans
        if book is None:
            return False
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
            "trusted": source.host in self.trusted,
            "matching_rules": matching,
            "verdict": verdict.kind,
            "reason": verdict.reason,
            **({"code": verdict.code} if verdict.kind == "reject" else {}),
        }

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

    def _decide(
        self, view: Peek, source: Peer, local_port: int, now: float, screened: bool = False
    ) -> Verdict:
        host = source.host
        if host in self.trusted:
            return TRUSTED
        if not screened:
            refused = self._screen(host, now)
            if refused is not None:
                return refused
        if self.sanity:
            insane = self._insane(view)
            if insane:
                return Verdict("drop", insane)
        if self.rules.rules:
            rule = self.rules.evaluate(Context(view, source, local_port))
            if rule is not None:
                if rule.verdict.kind == "ban":
                    self._ban(
                        Decision(
                            host,
                            rule.id,
                            rule.description or f"rule {rule.id}",
                            rule.duration or "progressive",
                            (_evidence(view, source),),
                        ),
                        now,
                    )
                return rule.verdict
        method = view.method
        if self.limiter is not None and method is not None:
            limit = self.limiter.hit(host, method, now)
            if limit is not None:
                return self._over(limit.name, limit.count, view, source, now)
        if self.options_from_trusted_only and method == "OPTIONS":
            return OPTIONS_UNTRUSTED
        return FORWARD

    def _over(self, name: str, count: int, view: Peek, source: Peer, now: float) -> Verdict:
        """A source over a rate limit: banned (its key: the address, or the
        /24 or /64 it is counted in)."""
        limiter = self.limiter
        assert limiter is not None
        key = limiter.key(source.host)
        if self.bans is not None and self.bans.allowed(key):
            limiter.forget(key)
            return FORWARD  # the allow list: never limited, never banned
        rate = limiter.rate(key, None if name == "requests" else name, now)
        what = "requests" if name == "requests" else f"{name} requests"
        detector = f"rate.{name.lower()}"
        self._ban(
            Decision(
                key,
                detector,
                f"{rate:.0f} {what} in {limiter.window:g} s (limit {count})",
                "progressive",
                (_evidence(view, source),),
            ),
            now,
        )
        limiter.forget(key)
        return Verdict("ban", detector)

    def _insane(self, view: Peek) -> str:
        values = view._values
        if None in (values[VIA], values[FROM], values[TO], values[CALL_ID], values[CSEQ]):
            for slot, name in _MANDATORY:
                if values[slot] is None:
                    return f"sanity.missing-{name}"
        if view.method is None:
            return ""
        try:
            cseq_method = view.cseq_method
        except SipError:
            return "sanity.bad-cseq"
        if cseq_method != view.method:
            return "sanity.cseq-method"
        uri = view.uri_text or ""
        if len(uri) > self.max_uri_length:
            return "sanity.uri-too-long"
        if not uri.startswith(_SCHEMES) and uri.partition(":")[0].lower() not in _SCHEME_NAMES:
            return "sanity.uri-scheme"
        return ""

    def __post_init__(self) -> None:
        self.rules.on_monitor = self._log_monitored

    def _log_monitored(self, rule: Rule, ctx: Context) -> None:
        """Monitor mode logs what a rule would have done, a few times per
        rule (a flood must not become a log flood), then only counts."""
        logged = self._monitor_logged[rule.id]
        if logged >= MONITOR_LOGGED:
            return
        self._monitor_logged[rule.id] = logged + 1
        view, source = ctx.view, ctx.source
        log.info(
            "monitor: rule %s would %s %s from %s:%d (Call-ID %s)%s",
            rule.id,
            rule.action,
            view.method or view.status,
            source.host,
            source.port,
            view.call_id,
            "; further hits are only counted" if logged + 1 == MONITOR_LOGGED else "",
        )


def _evidence(view: Peek, source: Peer) -> str:
    """A message, as a ban keeps it: where from, and its head."""
    text = view.data[:EVIDENCE_CHARS].decode("utf-8", "replace")
    return f"from {source.transport}:{source.host}:{source.port}\n{text}"


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
