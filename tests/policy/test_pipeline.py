"""The policy pipeline: stage order, the switches, loading from the config,
and the rule index agreeing with testing every rule in order."""

from __future__ import annotations

import logging
import re
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipwarden.config import PolicyConfig, config_from_dict, load_config
from sipwarden.policy import (
    Context,
    Policy,
    PolicyError,
    RuleError,
    RuleSet,
    all_rules,
    build_policy,
    compile_rules,
    pack_rules,
    rules_policy,
)
from sipwarden.policy.stages import MONITOR_LOGGED
from sipwarden.sip import SipError, peek
from sipwarden.values import Peer

from ..conftest import SCANNERS

PHONE = Peer("udp", "203.0.113.9", 40000)
TRUNK = Peer("udp", "198.51.100.7", 5060)


def request(
    method: str = "REGISTER",
    *,
    user: str = "100",
    ua: str = "Yealink SIP-T46S 66.86.0.15",
    uri: str = "sip:pbx.example.com",
    extra: str = "",
    cseq_method: str | None = None,
) -> bytes:
    return (
        f"{method} {uri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 203.0.113.9:40000;branch=z9hG4bK776asdhds;rport\r\n"
        "Max-Forwards: 70\r\n"
        f'From: "Alice" <sip:{user}@pbx.example.com>;tag=1928301774\r\n'
        f"To: <sip:{user}@pbx.example.com>\r\n"
        "Call-ID: a84b4c76e66710@203.0.113.9\r\n"
        f"CSeq: 314159 {cseq_method or method}\r\n"
        f"User-Agent: {ua}\r\n"
        f"Contact: <sip:{user}@203.0.113.9:40000>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def policy(**settings: object) -> Policy:
    return rules_policy(PolicyConfig.model_validate(settings))


def verdict(p: Policy, data: bytes, source: Peer = PHONE) -> tuple[str, str]:
    v, _ = p.judge_bytes(data, source, 5060)
    return v.kind, v.reason


# ------------------------------------------------------------------ stages


def test_the_uri_scheme_check_ignores_case():
    assert verdict(policy(), request(uri="Sip:pbx.example.com")) == ("forward", "")
    assert verdict(policy(), request(uri="mailto:a@example.com")) == ("drop", "sanity.uri-scheme")


def test_a_clean_phone_is_forwarded_and_counted():
    p = policy()
    assert verdict(p, request()) == ("forward", "")
    assert verdict(p, request("INVITE", uri="sip:200@pbx.example.com")) == ("forward", "")
    assert p.counters["forward:"] == 2


def test_options_are_silence_unless_from_a_trusted_peer():
    p = policy(trusted_peers=["198.51.100.7"])
    assert verdict(p, request("OPTIONS")) == ("drop", "options.untrusted")
    assert verdict(p, request("OPTIONS"), TRUNK) == ("allow", "trusted-peer")
    assert verdict(policy(options="forward"), request("OPTIONS")) == ("forward", "")


def test_a_trusted_peer_is_allowed_before_any_rule_or_check():
    p = policy(trusted_peers=["192.0.2.0/28", "198.51.100.7"])
    scanner = (SCANNERS / "svmap_0.3.8_OPTIONS.sip").read_bytes()
    assert verdict(p, scanner, Peer("udp", "192.0.2.14", 5060)) == ("allow", "trusted-peer")
    assert verdict(p, scanner, Peer("udp", "192.0.2.16", 5060))[0] == "drop"
    assert verdict(p, request(ua="friendly-scanner"), TRUNK) == ("allow", "trusted-peer")
    assert p.counters["allow:trusted-peer"] == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            request().replace(b"Call-ID: a84b4c76e66710@203.0.113.9\r\n", b""),
            "sanity.missing-call-id",
        ),
        (request().replace(b"To: <sip:100@pbx.example.com>\r\n", b""), "sanity.missing-to"),
        (request(cseq_method="INVITE"), "sanity.cseq-method"),
        (request().replace(b"CSeq: 314159 REGISTER", b"CSeq: many REGISTER"), "sanity.bad-cseq"),
        (request(uri="sip:" + "a" * 1100 + "@pbx.example.com"), "sanity.uri-too-long"),
        (request(uri="http://pbx.example.com/"), "sanity.uri-scheme"),
    ],
)
def test_sanity_checks_drop_silently(data, reason):
    assert verdict(policy(), data) == ("drop", reason)
    assert verdict(policy(sanity=False), data)[0] == "forward"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "scan.empty-datagram"),
        (b"\r\n\r\n", "keepalive"),
        (b"\r\n", "keepalive"),
        (b"OPTIONS\r\n", "scan.tiny-datagram"),
        (b"\x00" * 4, "scan.tiny-datagram"),
        (b"hello there, this is not SIP at all\r\n\r\n", "malformed.bad-request-line"),
    ],
)
def test_what_does_not_parse_is_dropped_with_a_reason(data, reason):
    p = policy()
    v, view = p.judge_bytes(data, PHONE, 5060)
    assert view is None
    assert (v.kind, v.reason) == ("drop", reason)
    assert p.counters[f"drop:{reason}"] == 1


def test_the_operators_rules_come_before_the_pack_so_they_can_allow():
    rule = {
        "id": "our-sipsak-monitor",
        "action": "allow",
        "match": {"source": {"in": ["203.0.113.0/24"]}},
    }
    p = policy(rules=[rule])
    assert verdict(p, request(ua="sipsak 0.9.8.1")) == ("allow", "our-sipsak-monitor")
    assert verdict(p, request(ua="sipsak 0.9.8.1"), Peer("udp", "192.0.2.1", 5060)) == (
        "drop",
        "ua.sipsak",
    )


def test_reject_carries_its_code_and_ban_its_duration():
    p = policy(
        rules=[
            {
                "id": "no-intl",
                "action": "reject",
                "code": 403,
                "match": {"ruri.user": {"prefix": "00"}},
            },
            {"id": "ban-guess", "action": "ban", "duration": 600, "match": {"from.user": "admin"}},
        ]
    )
    v, _ = p.judge_bytes(request("INVITE", uri="sip:0044123@pbx.example.com"), PHONE, 5060)
    assert (v.kind, v.code, v.reason) == ("reject", 403, "no-intl")
    v, _ = p.judge_bytes(request(user="admin"), PHONE, 5060)
    assert (v.kind, v.ttl, v.passes) == ("ban", 600.0, False)


def test_monitor_mode_logs_a_bounded_number_of_times(caplog):
    p = policy(rules=[{"id": "try-me", "mode": "monitor", "match": {"method": "REGISTER"}}])
    caplog.set_level(logging.INFO, logger="sipwarden.policy")
    for _ in range(MONITOR_LOGGED + 5):
        assert verdict(p, request()) == ("forward", "")
    lines = [r.getMessage() for r in caplog.records if "try-me" in r.getMessage()]
    assert len(lines) == MONITOR_LOGGED
    assert "would drop REGISTER from 203.0.113.9:40000" in lines[0]
    assert "only counted" in lines[-1]
    assert p.rules.monitored["try-me"] == MONITOR_LOGGED + 5
    assert p.rules.hits["try-me"] == 0


def test_explain_lists_every_matching_rule_and_the_verdict():
    p = policy(
        rules=[
            {
                "id": "watch-yealink",
                "mode": "monitor",
                "match": {"header.user-agent": {"prefix": "yealink"}},
            },
            {"id": "block-100", "match": {"from.user": "100"}},
        ]
    )
    result = p.explain(request(), PHONE, 5060)
    assert [r["id"] for r in result["matching_rules"]] == ["watch-yealink", "block-100"]
    assert (result["verdict"], result["reason"]) == ("drop", "block-100")


# ----------------------------------------------------------------- loading


def test_switches_by_id_disable_monitor_and_enforce():
    ids = {r.id for r in pack_rules()}
    assert "ua.sipsak" in ids
    p = policy(disable=["ua.sipsak"])
    assert "ua.sipsak" not in {r.id for r in p.rules.rules}
    assert verdict(p, request(ua="sipsak 0.9.8.1")) == ("forward", "")
    p = policy(monitor=["ua.sipsak"])
    assert verdict(p, request(ua="sipsak 0.9.8.1")) == ("forward", "")
    assert p.rules.monitored["ua.sipsak"] == 1
    assert policy(pack=False).rules.rules == []


@pytest.mark.parametrize("key", ["disable", "monitor", "enforce"])
def test_an_unknown_id_names_the_key(key):
    with pytest.raises(PolicyError, match=rf"policy\.{key}\[0\]: no rule has the id 'ua\.nope'"):
        policy(**{key: ["ua.nope"]})


def test_a_rule_in_two_modes_is_a_config_error():
    from sipwarden.config import ConfigError

    with pytest.raises(ConfigError, match=r"policy: .*'ua.sipsak' is in both disable and monitor"):
        config_from_dict({"policy": {"disable": ["ua.sipsak"], "monitor": ["ua.sipsak"]}})


def test_rule_files_are_found_next_to_the_config_and_globs_expand(tmp_path):
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "rules.d" / "10-a.toml").write_text(
        '[[rule]]\nid = "a"\nmatch = { "from.user" = "alice" }\n'
    )
    (tmp_path / "rules.d" / "20-b.toml").write_text(
        '[[rule]]\nid = "b"\nmatch = { "from.user" = "bob" }\n'
    )
    (tmp_path / "edge.toml").write_text('[policy]\nrule_files = ["rules.d/*.toml"]\n')
    config = load_config(tmp_path / "edge.toml")
    ids = [r.id for r in all_rules(config.policy)]
    assert ids[:2] == ["a", "b"] and len(ids) > 2  # then the pack
    (tmp_path / "rules.d" / "30-c.toml").write_text(
        '[[rule]]\nid = "ua.sipsak"\nmatch = { method = "X" }\n'
    )
    with pytest.raises(
        RuleError,
        match=r"rule ua.sipsak: the id is used in both .*30-c.toml and pack/user_agents.toml",
    ):
        all_rules(config.policy)


def test_a_broken_rule_file_names_the_file_the_rule_and_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nid = "x"\nmatch = { "from.usr" = "alice" }\n')
    with pytest.raises(RuleError, match=r"bad.toml: rule x.match.from.usr: unknown field"):
        policy(rule_files=[str(bad)])
    bad.write_text("[[rule]\n")
    with pytest.raises(RuleError, match=r"bad.toml: not valid TOML"):
        policy(rule_files=[str(bad)])
    with pytest.raises(RuleError, match=r"missing.toml: cannot read"):
        policy(rule_files=[str(tmp_path / "missing.toml")])


def test_a_rule_file_that_is_not_utf8_is_a_rule_error_naming_the_key(tmp_path):
    """A RuleError: start-up stops with one line, a reload is refused and the
    rules in force stay (a UnicodeDecodeError escaped both)."""
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'[[rule]]\nid = "caf\xe9"\n')
    with pytest.raises(RuleError) as info:
        policy(rule_files=[str(latin1)])
    assert str(info.value) == (
        f"policy.rule_files: {latin1}: not UTF-8 text (byte 0xe9 at offset 18):"
        " save the file as UTF-8"
    )


def test_trusted_host_names_are_resolved_at_load():
    resolved = rules_policy(
        PolicyConfig(trusted_peers=["trunk.example.net", "10.0.0.0/8"]),
        resolve=lambda host: ["198.51.100.7", "2001:db8::7"],
    )
    assert "198.51.100.7" in resolved.trusted and "2001:db8::7" in resolved.trusted
    assert "10.9.8.7" in resolved.trusted and "198.51.100.8" not in resolved.trusted

    def fail(host: str) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(
        PolicyError, match=r"trusted_peers\[0\]: cannot resolve 'trunk.example.net'"
    ):
        rules_policy(PolicyConfig(trusted_peers=["trunk.example.net"]), resolve=fail)


def test_a_bad_trusted_peer_is_a_config_error():
    from sipwarden.config import ConfigError

    with pytest.raises(ConfigError, match=r"policy.trusted_peers: .*entry \[1\], 'not a host!'"):
        config_from_dict({"policy": {"trusted_peers": ["10.0.0.1", "not a host!"]}})


def test_a_rebuilt_policy_keeps_the_counts_of_the_rules_that_stay():
    old = policy()
    verdict(old, request(ua="sipsak"))
    new = rules_policy(PolicyConfig(), previous=old)
    assert new.rules.hits["ua.sipsak"] == 1
    assert new.verdicts is old.verdicts and new.counters["drop:ua.sipsak"] == 1


def test_the_builder_puts_the_stages_in_order():
    """One place says which stages a policy has: each switch adds or drops
    its stage, and the order is the module doc's."""
    full = build_policy(config_from_dict({"policy": {"trusted_peers": ["198.51.100.7"]}}))
    assert [s.name for s in full.screens] == ["bans", "intel"]
    assert [s.name for s in full.stages] == ["sanity", "rules", "limits", "tollfraud", "options"]
    assert TRUNK.host in full.trusted and full.limiter is not None and full.intel is not None
    bare = rules_policy(PolicyConfig(pack=False, sanity=False, options="forward"))
    assert (bare.screens, bare.stages, bare.bans, bare.limiter, bare.intel) == (
        (),
        (),
        None,
        None,
        None,
    )
    assert verdict(bare, request("OPTIONS", cseq_method="INVITE")) == ("forward", "")
    unlimited = build_policy(config_from_dict({"limits": {"enabled": False}}))
    assert [s.name for s in unlimited.stages] == ["sanity", "rules", "tollfraud", "options"]


def test_stages_ask_for_bans_and_only_the_ban_book_makes_them():
    """A ``ban`` rule and a source over its rate limit both end in the book
    (with their detector's id); an allow-listed source over its limit is
    forwarded and never banned."""
    config = config_from_dict(
        {
            "policy": {
                "rules": [{"id": "ban-admin", "action": "ban", "match": {"from.user": "admin"}}]
            },
            "limits": {"methods": {"REGISTER": 3}},
            "bans": {"allow": ["192.0.2.0/24"]},
        }
    )
    p = build_policy(config)
    assert p.bans is not None
    v, _ = p.judge_bytes(request(user="admin"), PHONE, 5060, 1.0)
    assert (v.kind, v.reason) == ("ban", "ban-admin")
    assert p.bans.banned(PHONE.host, 1.0).detector == "ban-admin"
    assert verdict(p, request(), PHONE) == ("drop", "banned")
    flooder = Peer("udp", "203.0.113.77", 5060)
    kinds = [p.judge_bytes(request(), flooder, 5060, 2.0)[0].kind for _ in range(5)]
    assert kinds[-1] == "drop" and "ban" in kinds
    assert p.bans.banned(flooder.host, 2.0).detector == "rate.register"
    friend = Peer("udp", "192.0.2.20", 5060)
    assert {p.judge_bytes(request(), friend, 5060, 3.0)[0].kind for _ in range(10)} == {"forward"}
    assert p.bans.banned(friend.host, 3.0) is None
    assert p.decisions == {"ban-admin": 1, "rate.register": 1}


# ------------------------------------------------------------------- index

FIELDS_AND_VALUES = {
    "method": ["REGISTER", "INVITE", "OPTIONS", "register"],
    "from.user": ["100", "alice", "sipsak", "Admin"],
    "ruri.user": ["00", "0044", "200", "+44"],
    "header.user-agent": ["Yealink", "friendly-scanner", "sipsak", "scan", "agent"],
    "via.branch": ["z9hG4bK", "776", "z9hG4bK776asdhds"],
    "header.x-missing": ["a"],
    "from.display": ["alice", "sipvicious"],
}
OPS = ["equals", "prefix", "suffix", "contains", "regex", "in"]
NETWORKS = ["203.0.113.0/24", "203.0.113.9", "10.0.0.0/8", "2001:db8::/32", "192.0.2.0/25"]
SOURCES = [PHONE, Peer("udp", "10.1.2.3", 5060), Peer("tcp", "2001:db8::5", 5060, 3)]


@st.composite
def conditions(draw):
    field = draw(st.sampled_from(sorted(FIELDS_AND_VALUES)))
    value = draw(st.sampled_from(FIELDS_AND_VALUES[field]))
    op = draw(st.sampled_from(OPS))
    operand: object = (
        [value, draw(st.sampled_from(FIELDS_AND_VALUES[field]))] if op == "in" else value
    )
    if op == "regex":
        escaped = re.escape(value)
        operand = draw(
            st.sampled_from(
                [
                    f"^{escaped}",
                    f"{escaped}$",
                    escaped,
                    f"(?:{escaped})+",
                    f"^zz|{escaped}",
                    rf"\A{escaped}",
                ]
            )
        )
    leaf = {field: {op: operand, "case_sensitive": draw(st.booleans())}}
    if draw(st.integers(0, 5)) == 0:
        leaf = {"source": {"in": draw(st.lists(st.sampled_from(NETWORKS), min_size=1, max_size=2))}}
    shape = draw(st.sampled_from(["leaf", "all", "any", "not"]))
    if shape == "leaf":
        return leaf
    other = {
        draw(st.sampled_from(["method", "from.user"])): draw(st.sampled_from(["REGISTER", "100"]))
    }
    if shape == "not":
        return {"not": leaf}
    return {shape: [leaf, other]}


@st.composite
def messages(draw):
    return request(
        draw(st.sampled_from(["REGISTER", "INVITE", "OPTIONS"])),
        user=draw(st.sampled_from(["100", "alice", "sipsak", "ADMIN"])),
        ua=draw(
            st.sampled_from(["Yealink SIP-T46S", "friendly-scanner", "SIPSAK 0.9", "Test Agent"])
        ),
        uri=draw(
            st.sampled_from(["sip:pbx.example.com", "sip:0044123@pbx.example.com", "sip:+44@h"])
        ),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(
        st.tuples(conditions(), st.sampled_from(["enforce", "monitor"])), min_size=1, max_size=12
    ),
    data=st.lists(messages(), min_size=1, max_size=4),
)
def test_the_index_picks_the_same_rule_as_testing_every_rule_in_order(specs, data):
    rules = compile_rules(
        [{"id": f"r{i}", "mode": mode, "match": cond} for i, (cond, mode) in enumerate(specs)], "p"
    )
    indexed = RuleSet(rules)
    for message in data:
        ctx = Context(peek(message), SOURCES[len(message) % len(SOURCES)], 5060)
        expected = next((r for r in indexed.matching(ctx) if r.mode == "enforce"), None)
        monitored_before = sum(indexed.monitored.values())
        assert indexed.evaluate(ctx) is expected
        monitored = [
            r for r in indexed.matching(ctx) if r.mode == "monitor"
        ]  # those before the winner are counted
        if expected is not None:
            monitored = [r for r in monitored if rules.index(r) < rules.index(expected)]
        assert sum(indexed.monitored.values()) - monitored_before == len(monitored)


def test_guards_are_chosen_and_ungroupable_regexes_stay_unindexed():
    rules = compile_rules(
        tomllib.loads(
            """
            [[rule]]
            id = "a"
            match = { all = [ { "header.user-agent" = { regex = "scan" } }, { method = "REGISTER" } ] }
            [[rule]]
            id = "b"
            match = { "header.user-agent" = { regex = "(a)\\\\1" } }
            [[rule]]
            id = "c"
            match = { any = [ { method = "INVITE" }, { method = "BYE" } ] }
            [[rule]]
            id = "d"
            match = { "headers.via" = { contains = "10.0.0.1" } }
            """
        )["rule"],
        "t",
    )
    assert rules[0].guard is not None and (rules[0].guard.field, rules[0].guard.op) == (
        "method",
        "equals",
    )
    assert [r.guard for r in rules[1:]] == [None, None, None]


def test_the_pack_is_indexed_so_a_clean_message_meets_few_rules():
    ruleset = RuleSet(pack_rules())
    unguarded = [ruleset.rules[i].id for i in ruleset._unguarded]
    assert len(unguarded) <= 3, unguarded


def test_a_sip_error_in_a_field_is_absent_not_a_crash():
    data = request().replace(
        b'From: "Alice" <sip:100@pbx.example.com>;tag=1928301774', b"From: <<<"
    )
    with pytest.raises(SipError):
        peek(data).from_user  # noqa: B018
    assert verdict(policy(rules=[{"id": "x", "match": {"from.user": "100"}}]), data)[0] == "forward"
