"""The rule language: compiling, matching on every kind of field, and errors
that say where. (The built-in pack and its wiring into the edge come next.)"""

from __future__ import annotations

import tomllib

import pytest

from sipwarden.policy.rules import Context, RuleError, RuleSet, compile_rules
from sipwarden.sip import peek
from sipwarden.values import Peer

from ..conftest import SCANNERS

PHONE = Peer("udp", "203.0.113.9", 40000)
NMAP = (SCANNERS / "nmap_7.93_sV_SIPOptions_udp.sip").read_bytes()
SVCRACK = (SCANNERS / "svcrack_0.3.8_REGISTER_auth_pw100.sip").read_bytes()
SIPSAK = (SCANNERS / "sipsak_0.9.8.1_OPTIONS.sip").read_bytes()
SHODAN = (SCANNERS / "shodan_style_OPTIONS_udp_no_rport.sip").read_bytes()


def ctx(data: bytes, source: Peer = PHONE, port: int = 5060) -> Context:
    return Context(peek(data), source, port)


def rules(text: str) -> RuleSet:
    return RuleSet(compile_rules(tomllib.loads(text)["rule"], "test.toml"))


def first(ruleset: RuleSet, data: bytes, **kw) -> str | None:
    rule = ruleset.evaluate(ctx(data, **kw))
    return None if rule is None else rule.id


def test_the_seed_example_is_one_short_rule():
    rs = rules(
        """
        [[rule]]
        id = "nmap-probe"
        action = "drop"
        match = { method = "OPTIONS", "from.user" = "nm" }
        """
    )
    assert first(rs, NMAP) == "nmap-probe"
    assert first(rs, SIPSAK) is None
    assert rs.hits["nmap-probe"] == 1


@pytest.mark.parametrize(
    "condition,data,expected",
    [
        ('{ "header.user-agent" = { contains = "FRIENDLY" } }', SVCRACK, True),
        (
            '{ "header.user-agent" = { contains = "FRIENDLY", case_sensitive = true } }',
            SVCRACK,
            False,
        ),
        ('{ "header.user-agent" = { regex = "^friendly-(scanner|request)$" } }', SVCRACK, True),
        ('{ "header.user-agent" = { prefix = "friendly" } }', SVCRACK, True),
        ('{ "header.user-agent" = { suffix = "scanner" } }', SVCRACK, True),
        ('{ "header.user-agent" = { in = ["sipsak", "friendly-scanner"] } }', SVCRACK, True),
        ('{ "header.authorization" = { exists = true } }', SVCRACK, True),
        ('{ "header.authorization" = { absent = true } }', NMAP, True),
        ('{ "header.i" = "50000" }', NMAP, True),  # a compact name
        ('{ "header.accept" = "application/sdp" }', NMAP, True),  # a header peek does not index
        ('{ "headers.via" = { contains = "branch=foo" } }', NMAP, True),
        ('{ "via.branch" = "foo" }', NMAP, True),
        ('{ "via.rport" = { exists = true } }', NMAP, True),  # nmap 7.93 sends ;rport
        ('{ "via.rport" = { exists = true } }', SHODAN, False),
        ('{ "to.user" = "nm2" }', NMAP, True),
        ('{ "from.tag" = "root" }', NMAP, True),
        ('{ "from.host" = "nm" }', NMAP, True),
        ('{ "ruri.host" = "nm" }', NMAP, True),
        ('{ "ruri.user" = { exists = true } }', NMAP, False),
        ('{ source = { in = ["203.0.113.0/24"] } }', NMAP, True),
        ('{ source = { in = ["198.51.100.7"] } }', NMAP, False),
        ('{ transport = "udp" }', NMAP, True),
        ("{ local_port = { ge = 5060, lt = 5061 } }", NMAP, True),
        ("{ size = { lt = 100 } }", NMAP, False),
        ("{ status = { exists = true } }", NMAP, False),
        ('{ any = [ { method = "INVITE" }, { method = "OPTIONS" } ] }', NMAP, True),
        ('{ all = [ { method = "OPTIONS" }, { "from.user" = "x" } ] }', NMAP, False),
        ('{ not = { method = "REGISTER" } }', NMAP, True),
    ],
)
def test_fields_and_operators(condition, data, expected):
    rs = rules(f'[[rule]]\nid = "r"\nmatch = {condition}\n')
    assert (first(rs, data) == "r") is expected


def test_sdp_session_name_and_body():
    sdp = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=SIPPTS\r\n"
    invite = (
        b"INVITE sip:1@pbx SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:1@pbx>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
        + f"Content-Length: {len(sdp)}\r\n\r\n".encode()
        + sdp
    )
    rs = rules(
        '[[rule]]\nid = "sippts"\nmatch = { "sdp.s" = "sippts" }\n[[rule]]\nid = "b"\nmatch = { body = { contains = "IP4" } }\n'
    )
    assert first(rs, invite) == "sippts"


def test_monitor_mode_counts_and_lets_the_next_rule_decide():
    rs = rules(
        """
        [[rule]]
        id = "try-me"
        mode = "monitor"
        match = { method = "OPTIONS" }
        [[rule]]
        id = "real"
        match = { "via.branch" = "foo" }
        """
    )
    assert first(rs, NMAP) == "real"
    assert rs.monitored["try-me"] == 1 and rs.hits["try-me"] == 0


def test_a_broken_header_reads_as_absent_not_as_a_crash():
    broken = NMAP.replace(b"From: <sip:nm@nm>;tag=root", b'From: "unterminated <sip:nm@nm>')
    rs = rules('[[rule]]\nid = "r"\nmatch = { "from.user" = { exists = true } }\n')
    assert first(rs, broken) is None


@pytest.mark.parametrize(
    "text,words",
    [
        (
            '[[rule]]\nid = "r"\nmatch = { "frm.user" = "x" }',
            ["test.toml", "rule r", "frm.user", "unknown field"],
        ),
        (
            '[[rule]]\nid = "r"\nmatch = { method = { startswith = "X" } }',
            ["rule r", "match.method.startswith", "unknown operator"],
        ),
        (
            '[[rule]]\nid = "r"\nmatch = { method = { regex = "(" } }',
            ["rule r", "match.method.regex", "bad regex"],
        ),
        (
            '[[rule]]\nid = "r"\naction = "nuke"\nmatch = { method = "X" }',
            ["rule r", "action", "forward, drop"],
        ),
        (
            '[[rule]]\nid = "r"\nmode = "maybe"\nmatch = { method = "X" }',
            ["rule r", "mode", "enforce, monitor"],
        ),
        (
            '[[rule]]\nid = "r"\naction = "reject"\nmatch = { method = "X" }',
            ["rule r", "code", "400 to 699"],
        ),
        ('[[rule]]\nid = "R!"\nmatch = { method = "X" }', ["rule R!", "id"]),
        ('[[rule]]\nid = "r"', ["rule r", "no match"]),
        ('[[rule]]\nid = "r"\nmatch = { any = [] }', ["match.any", "non-empty"]),
        ('[[rule]]\nid = "r"\nmatch = { source = { in = ["300.1.1.1"] } }', ["match.source.in"]),
        ('[[rule]]\nid = "r"\nmatch = { size = { lt = "big" } }', ["match.size.lt", "a number"]),
        (
            '[[rule]]\nid = "r"\nwhat = 1\nmatch = { method = "X" }',
            ["rule r", "unknown key", "what"],
        ),
        (
            '[[rule]]\nid = "r"\nmatch = { method = "X" }\n[[rule]]\nid = "r"\nmatch = { method = "Y" }',
            ["rule r", "twice"],
        ),
    ],
)
def test_errors_name_the_file_the_rule_and_the_field(text, words):
    with pytest.raises(RuleError) as info:
        compile_rules(tomllib.loads(text)["rule"], "test.toml")
    for word in words:
        assert word in str(info.value), (word, str(info.value))


# --- the built-in User-Agent rules ------------------------------------------------

ATTACK_USER_AGENTS = [
    "sipcli",
    "sipvicious",
    "sip-scan",
    "sipsak",
    "sundayddr",
    "friendly-scanner",
    "iWar",
    "CSipSimple",
    "SIVuS",
    "Gulp",
    "sipv",
    "smap",
    "friendly-request",
    "VaxIPUserAgent",
    "VaxSIPUserAgent",
    "siparmyknife",
    "Test Agent",
    "pplsip",
    "Nmap NSE",
]


def with_user_agent(ua: str) -> bytes:
    return SIPSAK.replace(b"User-Agent: sipsak 0.9.8.1", f"User-Agent: {ua}".encode())


def pack() -> RuleSet:
    from importlib.resources import files

    text = files("sipwarden.policy.pack").joinpath("user_agents.toml").read_text()
    return RuleSet(compile_rules(tomllib.loads(text)["rule"], "user_agents.toml"))


@pytest.mark.parametrize("ua", ATTACK_USER_AGENTS)
def test_every_attack_tool_user_agent_is_caught_in_any_case(ua):
    rs = pack()
    for variant in (
        ua,
        ua.upper(),
        ua.lower(),
        ua.swapcase(),
        f"{ua}/1.2",
        f"{ua} 0.3.8",
        f"{ua}-v2",
    ):
        rule = rs.evaluate(ctx(with_user_agent(variant)))
        assert rule is not None and rule.action == "drop", variant
        assert rule.description and rule.references and rule.false_positives


@pytest.mark.parametrize(
    "ua",
    [
        "Testing Agent Pro",
        "Yealink SIP-T46S 66.86.0.15",
        "Zoiper rv2.10.20.4",
        "Linphone/5.2.0",
        "baresip v1.0.0",
        "MicroSIP/3.21.3",
        "Gulpfiction",
        "smapper",
    ],
)
def test_a_phone_is_not_mistaken_for_a_tool(ua):
    assert pack().evaluate(ctx(with_user_agent(ua))) is None


def test_the_real_scanner_captures_are_caught_by_their_user_agent():
    rs = pack()
    caught = {
        p.name: rs.evaluate(ctx(p.read_bytes()))
        for p in sorted(SCANNERS.glob("*.sip"))
        if b"User-Agent" in p.read_bytes()
    }
    assert caught and all(rule is not None for rule in caught.values()), caught
