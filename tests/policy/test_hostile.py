"""Who is hostile: fingerprint hits earn a progressive ban past a
threshold, never for a source that logged in; while deception engages a
source, its ban waits for the deception to end."""

from __future__ import annotations

import gc

from sipwarden.config import config_from_dict
from sipwarden.policy import build_policy
from sipwarden.policy.hostile import HostileSources, Threshold, family
from sipwarden.values import Peer

from ..conftest import SCANNERS, tracked_after_collection

SVWAR = (SCANNERS / "svwar_0.3.8_REGISTER_100.sip").read_bytes()
ATTACKER = Peer("udp", "203.0.113.9", 5060)
PHONE = Peer("udp", "198.51.100.20", 5060)


def test_fingerprint_hits_earn_a_progressive_ban_past_the_threshold() -> None:
    policy = build_policy(config_from_dict({"fingerprints": {"hits": 3, "window": 60}}))
    assert policy.bans is not None and policy.hostile is not None
    verdicts = [policy.judge_bytes(SVWAR, ATTACKER, 5060, 100.0 + i)[0] for i in range(3)]
    assert {v.kind for v in verdicts} == {"drop"} and verdicts[0].reason.startswith("scan.")
    ban = policy.bans.banned(ATTACKER.host, 103.0)
    assert ban is not None and ban.detector == "fingerprint.scan", ban
    assert "3 packets with scanner fingerprints" in ban.reason and ban.evidence
    assert policy.decisions["fingerprint.scan"] == 1
    # banned now: the next packet is dropped before any rule looks at it
    assert policy.judge_bytes(SVWAR, ATTACKER, 5060, 104.0)[0].reason == "banned"


def test_hits_spread_wider_than_the_window_are_no_ban() -> None:
    policy = build_policy(config_from_dict({"fingerprints": {"hits": 3, "window": 10}}))
    for i in range(6):  # one every 6 s: never 3 within 10 s
        policy.judge_bytes(SVWAR, ATTACKER, 5060, 100.0 + 6 * i)
    assert policy.bans is not None and policy.bans.banned(ATTACKER.host, 140.0) is None
    assert ATTACKER.host in policy.hostile  # type: ignore[operator]


def test_a_source_that_logged_in_is_never_banned_on_a_fingerprint() -> None:
    policy = build_policy(config_from_dict({"fingerprints": {"hits": 2}}))
    assert policy.known_good is not None and policy.hostile is not None
    policy.known_good.logged_in(PHONE.host, 50.0)
    for i in range(20):  # forged packets with its address: dropped, nothing more
        assert policy.judge_bytes(SVWAR, PHONE, 5060, 100.0 + i)[0].kind == "drop"
    assert policy.bans is not None and policy.bans.banned(PHONE.host, 120.0) is None
    assert PHONE.host not in policy.hostile
    assert policy.hostile.counters["spared-known-good"] == 20


def test_no_fingerprint_bans_when_switched_off() -> None:
    policy = build_policy(config_from_dict({"fingerprints": {"ban": False, "hits": 1}}))
    assert policy.hostile is None
    policy.judge_bytes(SVWAR, ATTACKER, 5060, 100.0)
    assert policy.bans is not None and policy.bans.banned(ATTACKER.host, 100.0) is None


def test_a_deceived_sources_ban_waits_for_the_deception_to_end() -> None:
    hostile = HostileSources(thresholds={"scan": Threshold(2, 60.0)}, idle=30.0, budget=1000)
    assert hostile.hit("203.0.113.9", "scan.sipvicious-tag", "a", 0.0) is None
    assert hostile.engage("203.0.113.9", 300, 1.0)  # deception answered it
    assert hostile.hit("203.0.113.9", "scan.sipvicious-tag", "b", 2.0) is None  # owed
    assert hostile.counters["deferred"] == 1
    assert hostile.ended(20.0) == []  # still engaged
    (owed,) = hostile.ended(40.0)  # idle for 30 s: the deception ended
    assert owed.target == "203.0.113.9" and owed.detector == "fingerprint.scan"
    assert "203.0.113.9" not in hostile
    # a spent budget ends it too
    hostile.mark("198.51.100.3", "scan.sipvicious-tag", 0.0)
    assert hostile.engage("198.51.100.3", 600, 1.0)
    assert not hostile.engage("198.51.100.3", 600, 2.0)  # 1,200 bytes: spent
    (spent,) = hostile.ended(3.0)  # deceived: hostile, so banned at the end all the same
    assert spent.detector == "fingerprint.scan" and "the deception ended" in spent.reason
    assert "198.51.100.3" not in hostile


def test_the_table_is_bounded_and_families_are_the_first_part() -> None:
    hostile = HostileSources(max_sources=3)
    for i in range(5):
        hostile.mark(f"203.0.113.{i}", "ua.friendly-scanner", float(i))
    assert len(hostile) == 3 and hostile.counters["forgotten"] == 2
    # the latest stay (which of the older ones goes first is not kept)
    assert "203.0.113.3" in hostile and "203.0.113.4" in hostile
    assert hostile.why("203.0.113.4") == "ua.friendly-scanner"
    assert family("scan.sipvicious-tag") == "scan" and family("ua.friendly-scanner") == "ua"


def test_a_fingerprinted_flood_leaves_nothing_per_source_for_the_collector() -> None:
    """A spoofed flood of fingerprinted packets fills the table: what it
    keeps per source is packed in bytes, so the table is never a container
    the collector walks (a slots object and a dict per source were), and
    5,000 more sources add no tracked object."""
    hostile = HostileSources(max_sources=10_000)

    def flood(first: int, count: int) -> None:
        for i in range(first, first + count):
            host = f"198.18.{i >> 8 & 255}.{i & 255}"
            assert hostile.hit(host, "ua.friendly-scanner", "UA friendly-scanner", float(i)) is None

    flood(0, 100)
    before = tracked_after_collection()
    flood(100, 5_000)
    assert len(hostile) == 5_100
    assert not gc.is_tracked(hostile._sources.young) and not gc.is_tracked(hostile._sources.old)
    assert tracked_after_collection() - before < 100
    assert hostile.why("198.18.19.235") == "ua.friendly-scanner"  # source 5,099: kept whole
