"""The intel stage: feeds and countries judged on the source address alone,
inside the policy pipeline (order, allow list, trusted peers, the cache
following the index, explain)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipwarden.config import config_from_dict
from sipwarden.fetch.geoip import open_countries, open_geo
from sipwarden.intel.geo import Countries, CountryPolicy, CountryRanges
from sipwarden.intel.index import AddressIndex
from sipwarden.intel.screen import IntelScreen, feed_reason
from sipwarden.policy import build_policy
from sipwarden.values import Peer

from ..policy.test_pipeline import request
from .geodata import write_mmdb, write_zones

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def mmdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mmdb(tmp_path_factory.mktemp("geo") / "countries.mmdb")


def screen(**kwargs: object) -> IntelScreen:
    index = AddressIndex()
    index.add("apiban:sip", "198.51.100.66", NOW + 60)
    index.add("voipbl", "233.252.0.0/24")
    return IntelScreen(index, **kwargs)  # type: ignore[arg-type]


def test_feed_listed_sources_are_dropped_by_feed() -> None:
    s = screen()
    assert s.check("198.51.100.66", NOW) == ("drop", "intel.apiban-sip", 0, 0.0)
    assert s.check("233.252.0.9", NOW).reason == "intel.voipbl"  # type: ignore[union-attr]
    assert s.check("::ffff:233.252.0.9", NOW).reason == "intel.voipbl"  # type: ignore[union-attr]
    assert s.check("198.51.100.67", NOW) is None
    assert s.check("not an address", NOW) is None
    assert feed_reason("apiban:all") == "intel.apiban-all"


def test_an_entry_past_its_expiry_no_longer_drops() -> None:
    s = screen()
    assert s.check("198.51.100.66", NOW + 61) is None


def test_the_cache_follows_the_index() -> None:
    s = screen()
    assert s.check("192.0.2.50", NOW) is None  # cached as passing
    s.index.add("blocklist", "192.0.2.0/26")
    assert s.check("192.0.2.50", NOW).reason == "intel.blocklist"  # type: ignore[union-attr]
    s.index.replace("blocklist", [])
    assert s.check("192.0.2.50", NOW) is None


def test_the_cache_is_bounded() -> None:
    s = screen(cache_size=100)
    for i in range(1000):
        s.check(f"10.0.{i // 256}.{i % 256}", NOW)
    assert len(s._cache) <= 100


def test_allow_list_wins_and_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    s = screen(exempt=lambda host: host == "198.51.100.66")
    with caplog.at_level(logging.WARNING, "sipwarden.intel"):
        assert s.check("198.51.100.66", NOW) is None
        assert s.check("198.51.100.66", NOW) is None
    assert s.listed_exempt == {"198.51.100.66": ("apiban:sip",)}
    assert [r.getMessage() for r in caplog.records] == [
        "198.51.100.66 is on the allow list but listed by apiban:sip (198.51.100.66):"
        " it keeps working; check it"
    ]


def test_trusted_peer_listed_is_reported_once() -> None:
    s = screen()
    s.note_trusted("233.252.0.7", NOW)
    s.note_trusted("233.252.0.7", NOW)
    s.note_trusted("192.0.2.1", NOW)
    assert s.listed_exempt == {"233.252.0.7": ("voipbl",)}


def test_a_delisted_exempt_source_is_no_longer_reported() -> None:
    s = screen(exempt=lambda host: host == "198.51.100.66")
    s.check("198.51.100.66", NOW)
    s.note_trusted("233.252.0.7", NOW)
    assert set(s.listed_exempt) == {"198.51.100.66", "233.252.0.7"}
    s.index.remove("198.51.100.66")
    s.index.remove("233.252.0.0/24")
    s.check("198.51.100.66", NOW)
    s.note_trusted("233.252.0.7", NOW)
    assert s.listed_exempt == {}


@pytest.mark.parametrize("source", ["mmdb", "preloaded", "zones"])
def test_country_policy(source: str, mmdb: Path, tmp_path: Path) -> None:
    if source == "zones":
        countries = open_countries(write_zones(tmp_path / "zones"))
    else:
        countries = open_countries(mmdb, preload=source == "preloaded")
    s = IntelScreen(AddressIndex(), countries=countries, country_policy=CountryPolicy(allow=["XA"]))
    assert s.active
    assert s.check("192.0.2.10", NOW) is None  # XA
    assert s.check("203.0.113.10", NOW) is None  # XA
    assert s.check("198.51.100.10", NOW) == ("drop", "geo.XB", 0, 0.0)
    assert s.check("2001:db8::5", NOW).reason == "geo.XB"  # type: ignore[union-attr]
    assert s.check("::ffff:198.51.100.10", NOW).reason == "geo.XB"  # type: ignore[union-attr]
    assert s.check("10.1.2.3", NOW) is None  # unknown: allowed by default
    strict = IntelScreen(
        AddressIndex(),
        countries=countries,
        country_policy=CountryPolicy(allow=["XA"], unknown="drop"),
        exempt=lambda host: host == "198.51.100.10",
    )
    assert strict.check("10.1.2.3", NOW).reason == "geo.unknown"  # type: ignore[union-attr]
    assert strict.check("198.51.100.10", NOW) is None  # the allow list wins


def test_nothing_to_check_is_inactive() -> None:
    assert not IntelScreen(AddressIndex()).active


@settings(max_examples=200, deadline=None)
@given(
    listed=st.sets(st.integers(0, 255), max_size=20),
    nets=st.sets(st.sampled_from([0, 64, 128, 192]), max_size=2),
    hosts=st.lists(st.integers(0, 255), min_size=1, max_size=40),
    allow=st.sets(st.sampled_from(["XA", "XB"]), max_size=2),
)
def test_screen_agrees_with_its_parts(
    listed: set[int], nets: set[int], hosts: list[int], allow: set[str]
) -> None:
    """Whatever the cache holds, the answer is the feed index's, then the
    country policy's, asked directly."""
    index = AddressIndex()
    index.replace("f", [f"192.0.2.{i}" for i in listed] + [f"192.0.2.{n}/26" for n in nets])
    ranges = CountryRanges([("192.0.2.0/25", "XA"), ("192.0.2.128/25", "XB")])
    policy = CountryPolicy(allow=sorted(allow)) if allow else None
    s = IntelScreen(index, countries=Countries(ranges), country_policy=policy)
    for n in hosts + hosts:
        host = f"192.0.2.{n}"
        entry = index.lookup(host, NOW)
        if entry is not None:
            expected = "intel.f"
        elif policy is not None and not policy.allowed(ranges.lookup(host)):
            expected = f"geo.{ranges.lookup(host)}"
        else:
            expected = None
        got = s.check(host, NOW)
        assert (got and got.reason) == expected


# -------------------------------------------------------------- the pipeline


def armed(mmdb: Path, **intel: object) -> object:
    config = config_from_dict(
        {
            "policy": {"trusted_peers": ["198.51.100.7"]},
            "bans": {"allow": ["198.51.100.8"]},
            "intel": intel,
        }
    )
    return build_policy(config, countries=open_geo(config.intel.geoip))


def test_pipeline_drops_before_parsing_and_trusted_win(mmdb: Path) -> None:
    policy = armed(mmdb, geoip={"database": str(mmdb), "allow_countries": ["XA"]})
    assert policy.intel is not None  # type: ignore[attr-defined]
    policy.intel.index.add("apiban:sip", "192.0.2.66")  # type: ignore[attr-defined]

    def judge(host: str, data: bytes = request()) -> tuple[str, str, bool]:
        verdict, view = policy.judge_bytes(data, Peer("udp", host, 5062), 5060, NOW)  # type: ignore[attr-defined]
        return verdict.kind, verdict.reason, view is not None

    assert judge("192.0.2.10") == ("forward", "", True)  # XA
    assert judge("198.51.100.10") == ("drop", "geo.XB", False)  # not even peeked
    assert judge("198.51.100.10", b"\x00garbage") == ("drop", "geo.XB", False)
    assert judge("192.0.2.66") == ("drop", "intel.apiban-sip", False)  # XA, but listed
    assert judge("198.51.100.7") == ("allow", "trusted-peer", True)  # XB, trusted
    assert judge("198.51.100.8") == ("forward", "", True)  # XB, on the allow list
    counters = policy.counters  # type: ignore[attr-defined]
    assert counters["drop:geo.XB"] == 2 and counters["drop:intel.apiban-sip"] == 1


def test_a_reload_keeps_the_feed_entries(mmdb: Path) -> None:
    config = config_from_dict({})
    first = build_policy(config)
    assert first.intel is not None
    first.intel.index.add("voipbl", "203.0.113.0/24")
    second = build_policy(config, previous=first)
    assert second.intel is not None and second.intel.index is first.intel.index
    verdict, _ = second.judge_bytes(request(), Peer("udp", "203.0.113.1", 5062), 5060, NOW)
    assert verdict.reason == "intel.voipbl"


def test_explain_shows_the_rules_of_a_refused_source(mmdb: Path) -> None:
    policy = armed(mmdb, geoip={"database": str(mmdb), "deny_countries": ["XB"]})
    report = policy.explain(  # type: ignore[attr-defined]
        request(ua="friendly-scanner"), Peer("udp", "198.51.100.10", 5062), 5060
    )
    assert report["reason"] == "geo.XB"
    assert report["parsed"] is True
    assert report["matching_rules"]  # the pack's SIPVicious rule still matches


def test_country_config_errors_name_the_key(tmp_path: Path) -> None:
    from sipwarden.policy import PolicyError

    bad = tmp_path / "not.mmdb"
    bad.write_bytes(b"not a database")
    config = config_from_dict(
        {"intel": {"geoip": {"database": str(bad), "allow_countries": ["XA"]}}}
    )
    with pytest.raises(PolicyError, match=r"intel\.geoip\.database"):
        build_policy(config, countries=open_geo(config.intel.geoip))
