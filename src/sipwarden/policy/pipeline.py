"""The policy pipeline: every inbound message gets one verdict, with its reason.

Stages, in order (the first that decides wins):

1. unparsable input: empty and tiny datagrams are scanner probes
   (``scan.empty-datagram``, ``scan.tiny-datagram``), CRLF keep-alives are
   ignored (``keepalive``), anything else is ``malformed.<reason>``;
2. trusted peers (trunks, offices): ``allow`` (reason ``trusted-peer``) and
   nothing below touches them;
3. sanity checks in the spirit of Kamailio's sanity module: mandatory
   headers, CSeq method, Request-URI length and scheme (``sanity.*``);
4. the rules: the operator's first, then the built-in pack, so an operator
   can allow what the pack would drop;
5. OPTIONS from anyone but a trusted peer: dropped (``options.untrusted``);
6. ``forward``.

Each verdict is counted by kind and reason; the rules count their own hits.
Everything here is sans-I/O: the edge, ``explain`` and ``replay`` share it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from ..proxy.flow import Flow
from ..sip import Peek, SipError, peek
from ..sip.peek import CALL_ID, CSEQ, FROM, TO, VIA
from .rules import Context, Rule, RuleSet
from .verdict import FORWARD, Verdict

TRUSTED: Final = Verdict("allow", "trusted-peer")
OPTIONS_UNTRUSTED: Final = Verdict("drop", "options.untrusted")

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

    def judge(self, view: Peek, source: Flow, local_port: int) -> Verdict:
        verdict = self._decide(view, source, local_port)
        self.verdicts[verdict] += 1
        return verdict

    def judge_bytes(
        self, data: bytes, source: Flow, local_port: int
    ) -> tuple[Verdict, Peek | None]:
        """Peek and judge one framed message: the edge, ``explain`` and
        ``replay`` all come through here, so they agree."""
        try:
            view = peek(data)
        except SipError as exc:
            return self.judge_unparsed(data, exc), None
        return self.judge(view, source, local_port), view

    def explain(self, data: bytes, source: Flow, local_port: int) -> dict[str, Any]:
        """What each stage says about one message (for ``sipwarden explain``):
        every rule that matches, in order and whatever its mode, and the
        verdict the edge would give."""
        verdict, view = self.judge_bytes(data, source, local_port)
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

    def _decide(self, view: Peek, source: Flow, local_port: int) -> Verdict:
        if source.host in self.trusted:
            return TRUSTED
        if self.sanity:
            insane = self._insane(view)
            if insane:
                return Verdict("drop", insane)
        if self.rules.rules:
            rule = self.rules.evaluate(Context(view, source, local_port))
            if rule is not None:
                return rule.verdict
        if self.options_from_trusted_only and view.method == "OPTIONS":
            return OPTIONS_UNTRUSTED
        return FORWARD

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
