"""The built-in scanner pack against real tools' messages (captured from the
tools themselves) and real phones' messages (which it must leave alone)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sipwarden.config import PolicyConfig
from sipwarden.policy import Context, RuleSet, pack_rules, rules_policy
from sipwarden.sip import peek
from sipwarden.values import Peer

from ..conftest import DATA, SCANNERS

ATTACKER = Peer("udp", "192.0.2.66", 5070)
TRUNK = Peer("udp", "198.51.100.7", 5060)
PHONES = sorted((DATA / "phones").glob("*.sip"))


CAPTURED = SCANNERS / "captured"


def scanner_requests() -> list[Path]:
    """Every captured scanner request: not svcrash's (a response we would
    send), not nmap's non-SIP probes or empty datagram (they never parse),
    not SIPp's (monitor mode by default; tested below)."""
    files = sorted(SCANNERS.glob("*.sip")) + sorted(CAPTURED.glob("*.sip"))
    return [
        p
        for p in files
        if not p.read_bytes().startswith(b"SIP/2.0 ")
        and p.stat().st_size
        and "_nonsip_" not in p.name
        and not p.name.startswith("sipp")
    ]


def test_nmaps_non_sip_probes_and_empty_datagram_are_dropped_unparsed():
    policy = rules_policy(PolicyConfig())
    probes = sorted(CAPTURED.glob("nmap_*_nonsip_*")) + sorted(CAPTURED.glob("nmap_*_empty_*"))
    assert len(probes) >= 5
    for path in probes:
        verdict, _ = policy.judge_bytes(path.read_bytes(), ATTACKER, 5060)
        assert verdict.kind == "drop", path.name
        assert verdict.reason.startswith(("malformed.", "scan.", "sanity.", "keepalive")), (
            path.name,
            verdict,
        )
    assert policy.counters["drop:scan.empty-datagram"] == 1


def test_sipps_default_scenarios_are_seen_by_the_monitor_rule_only():
    policy = rules_policy(PolicyConfig())
    sipp = sorted(CAPTURED.glob("sipp_*.sip"))
    assert len(sipp) >= 2
    for path in sipp:
        verdict, _ = policy.judge_bytes(path.read_bytes(), ATTACKER, 5060)
        assert verdict.passes, (path.name, verdict)
    assert policy.rules.monitored["scan.sipp-default"] == len(sipp)
    enforced = rules_policy(PolicyConfig(enforce=["scan.sipp-default"]))
    for path in sipp:
        assert enforced.judge_bytes(path.read_bytes(), ATTACKER, 5060)[0].reason == (
            "scan.sipp-default"
        )


def pack() -> RuleSet:
    return RuleSet(pack_rules())


def without_user_agent(data: bytes) -> bytes:
    return re.sub(rb"(?im)^User-Agent:[^\r\n]*\r\n", b"", data)


def edit_body(data: bytes, old: bytes, new: bytes) -> bytes:
    head, _, body = data.partition(b"\r\n\r\n")
    body = body.replace(old, new)
    head = re.sub(rb"Content-Length: *\d+", b"Content-Length: %d" % len(body), head)
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize("path", scanner_requests(), ids=lambda p: p.name)
def test_every_scanner_message_is_dropped_by_the_pack(path):
    policy = rules_policy(PolicyConfig())
    verdict, view = policy.judge_bytes(path.read_bytes(), ATTACKER, 5060)
    assert view is not None
    assert verdict.kind == "drop", verdict
    assert verdict.reason.startswith(("scan.", "ua.")), verdict


@pytest.mark.parametrize(
    "path",
    scanner_requests(),
    ids=lambda p: p.name,
)
def test_fingerprints_catch_the_tools_without_their_user_agent(path):
    """A User-Agent is trivial to change (SIPVicious -c leaves it out): the
    structural rules must still catch every tool with one."""
    stripped = without_user_agent(path.read_bytes())
    rule = pack().evaluate(Context(peek(stripped), ATTACKER, 5060))
    assert rule is not None and rule.id.startswith("scan."), path.name


@pytest.mark.parametrize("path", PHONES, ids=lambda p: p.name)
def test_real_phones_and_trunks_are_left_alone(path):
    data = path.read_bytes()
    assert pack().matching(Context(peek(data), ATTACKER, 5060)) == []
    policy = rules_policy(PolicyConfig(trusted_peers=["198.51.100.7"]))
    verdict, _ = policy.judge_bytes(data, TRUNK if b"OPTIONS" in data[:8] else ATTACKER, 5060)
    assert verdict.passes, verdict


def test_the_phone_corpus_is_not_empty():
    assert len(PHONES) >= 6
    assert len(scanner_requests()) >= 14


def test_every_pack_rule_is_documented_and_named_by_kind():
    rules = pack_rules()
    assert len({r.id for r in rules}) == len(rules)
    for rule in rules:
        assert rule.id.startswith(("scan.", "ua.")), rule.id
        assert rule.description and rule.references and rule.false_positives, rule.id
        assert rule.action == "drop", rule.id


def test_only_sipp_is_in_monitor_mode_by_default():
    assert [r.id for r in pack_rules() if r.mode == "monitor"] == ["scan.sipp-default"]


def test_every_fingerprint_rule_is_hit_by_some_real_or_documented_message():
    """No dead rules: each scan.* rule matches a captured message or the
    documented variant below (SIPVicious 0.2.x's 'Contact: None', sippts)."""
    svwar = (SCANNERS / "svwar_0.3.8_REGISTER_100.sip").read_bytes()
    documented = [
        svwar.replace(b"Contact: sip:100@127.0.0.1", b"Contact: None"),
        edit_body(
            (DATA / "phones" / "bria_INVITE.sip").read_bytes(),
            b"s=Bria 6 release 6.5.3 stamp 108291",
            b"s=SIPPTS",
        ),
        (DATA / "phones" / "yealink_T46S_REGISTER.sip")
        .read_bytes()
        .replace(b"192.168.1.23:5062;branch=z9hG4bK1843627089", b"10.0.0.1:5062;branch=1843627089"),
        (DATA / "phones" / "yealink_T46S_REGISTER.sip")
        .read_bytes()
        .replace(b";tag=2718336046", b";tag=31415SIPpTag001"),
    ]
    ruleset = pack()
    hit = set()
    for data in [p.read_bytes() for p in scanner_requests()] + documented:
        hit |= {r.id for r in ruleset.matching(Context(peek(data), ATTACKER, 5060))}
    fingerprints = {r.id for r in pack_rules() if r.id.startswith("scan.")}
    assert fingerprints - hit == set()


def test_the_nmap_probe_over_tcp_and_without_rport_is_dropped():
    for name in ("nmap_SIPOptions_tcp_probe.sip", "shodan_style_OPTIONS_udp_no_rport.sip"):
        data = (SCANNERS / name).read_bytes()
        rule = pack().evaluate(Context(peek(data), Peer("tcp", "192.0.2.66", 40000, 1), 5060))
        assert rule is not None and rule.id == "scan.nmap-options-probe", name
