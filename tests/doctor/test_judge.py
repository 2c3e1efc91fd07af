"""The doctor's pure judgements: capabilities, /proc/net, the nftables ruleset."""

from __future__ import annotations

from typing import Any

from sipwarden.doctor.judge import Probe, fate, has_net_admin, listeners

UDP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 0100007F:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0 0
  101: 00000000:13C5 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4343 2 0 0
  102: 0100007F:0035 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4444 2 0 0
"""
UDP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  5: 00000000000000000000000001000000:13C4 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 555 2 0 0
  6: 00000000000000000000000000000000:13C6 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 556 2 0 0
"""


def test_capabilities() -> None:
    assert has_net_admin("Name:\tx\nCapEff:\t000001ffffffffff\n") is True
    assert has_net_admin("CapEff:\t0000000000000000\n") is False
    assert has_net_admin("CapEff:\t0000000000001000\n") is True  # bit 12 alone
    assert has_net_admin("CapEff:\t0000000000000400\n") is False  # net_bind_service only
    assert has_net_admin("Name:\tx\n") is None


def test_listeners() -> None:
    found = listeners(UDP, "udp")
    assert [(x.host, x.port, x.inode, x.public) for x in found] == [
        ("127.0.0.1", 5060, 4242, False),
        ("0.0.0.0", 5061, 4343, True),
    ]  # the connected socket (state 01) is not a listener
    six = listeners(UDP6, "udp")
    assert [(x.host, x.port, x.public) for x in six] == [("::1", 5060, False), ("::", 5062, True)]


def chain(name: str, hook: str, policy: str, family: str = "inet") -> dict[str, Any]:
    return {
        "chain": {
            "family": family,
            "table": "filter",
            "name": name,
            "type": "filter",
            "hook": hook,
            "prio": 0,
            "policy": policy,
        }
    }


def rule(chain_name: str, *expr: dict[str, Any], family: str = "inet") -> dict[str, Any]:
    return {"rule": {"family": family, "table": "filter", "chain": chain_name, "expr": list(expr)}}


def dport(proto: str, right: Any) -> dict[str, Any]:
    return {
        "match": {
            "op": "==",
            "left": {"payload": {"protocol": proto, "field": "dport"}},
            "right": right,
        }
    }


def saddr_not(address: str) -> dict[str, Any]:
    return {
        "match": {
            "op": "!=",
            "left": {"payload": {"protocol": "ip", "field": "saddr"}},
            "right": address,
        }
    }


def saddr_is(address: str) -> dict[str, Any]:
    return {
        "match": {
            "op": "==",
            "left": {"payload": {"protocol": "ip", "field": "saddr"}},
            "right": address,
        }
    }


ESTABLISHED = {
    "match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}
}
LO = {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo"}}
PBX = Probe("ip", "udp", 5080)


def test_no_ruleset_passes_everything() -> None:
    assert fate({"nftables": []}, PBX).passes


def test_a_limit_to_the_edge_drops_strangers() -> None:
    rules = {
        "nftables": [
            chain("input", "input", "accept"),
            rule("input", dport("udp", 5080), saddr_not("127.0.0.1"), {"drop": None}),
        ]
    }
    verdict = fate(rules, PBX)
    assert not verdict.passes and "inet filter input" in verdict.where
    assert fate(rules, Probe("ip", "udp", 5060)).passes  # another port: untouched
    assert fate(rules, Probe("ip", "tcp", 5080)).passes  # another protocol


def test_accept_from_the_edge_then_policy_drop() -> None:
    rules = {
        "nftables": [
            chain("input", "input", "drop"),
            rule("input", ESTABLISHED, {"accept": None}),
            rule("input", LO, {"accept": None}),
            rule("input", dport("udp", 5080), saddr_is("127.0.0.1"), {"accept": None}),
            rule(
                "input", dport("udp", {"set": [5060, {"range": [10000, 20000]}]}), {"accept": None}
            ),
        ]
    }
    assert not fate(rules, PBX).passes  # strangers fall to the policy
    assert fate(rules, Probe("ip", "udp", 15000)).passes  # the RTP range
    assert fate(rules, Probe("ip", "udp", 5060)).passes
    assert not fate(rules, Probe("ip", "udp", 9999)).passes


def test_jumps_and_families() -> None:
    rules = {
        "nftables": [
            chain("input", "input", "accept", family="ip"),
            {"chain": {"family": "ip", "table": "filter", "name": "sip"}},
            rule("input", dport("udp", 5080), {"jump": {"target": "sip"}}, family="ip"),
            rule("sip", {"counter": {"packets": 0, "bytes": 0}}, {"drop": None}, family="ip"),
        ]
    }
    assert not fate(rules, PBX).passes  # dropped in the chain jumped to
    assert fate(rules, Probe("ip6", "udp", 5080)).passes  # an ip table does not see IPv6


def test_an_unreadable_accept_does_not_open_the_port() -> None:
    mark = {"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 1}}
    rules = {
        "nftables": [
            chain("input", "input", "drop"),
            rule("input", mark, {"accept": None}),
            rule(
                "input",
                {
                    "match": {
                        "op": "==",
                        "left": {"payload": {"protocol": "udp", "field": "dport"}},
                        "right": "@rtp",
                    }
                },
                {"accept": None},
            ),
        ]
    }
    assert not fate(rules, Probe("ip", "udp", 12000)).passes
