"""Countries from a MaxMind-format database and from zone files; the cache;
the country policy."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipwarden.fetch.geoip import MaxMindCountries, open_countries, zone_file_ranges
from sipwarden.intel.geo import Countries, CountryPolicy, CountryRanges, iso_code

from .geodata import RANGES, REGISTERED_ONLY, UNKNOWN, write_mmdb, write_zones

PROBES = {
    "192.0.2.1": "XA",
    "192.0.2.255": "XA",
    "198.51.100.77": "XB",
    "203.0.113.200": "XA",
    "233.252.0.9": "XC",
    "2001:db8::1": "XB",
    "2001:db8:ffff:ffff::": "XB",
    "3fff:fff::1": "XC",
    "::ffff:198.51.100.1": "XB",  # a dual-stack socket's spelling
}


@pytest.fixture(scope="module")
def mmdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mmdb(tmp_path_factory.mktemp("geo") / "countries.mmdb")


def test_mmdb_lookups(mmdb: Path) -> None:
    reader = MaxMindCountries(mmdb)
    try:
        for host, code in PROBES.items():
            assert reader.lookup(host) == code, host
        for host in UNKNOWN:
            assert reader.lookup(host) is None, host
        assert reader.lookup("100.64.1.1") == "XD"  # registered_country only
        for junk in ("", "junk", "192.0.2.1:5060"):
            assert reader.lookup(junk) is None
        assert reader.metadata.database_type == "GeoLite2-Country"
    finally:
        reader.close()


def test_mmdb_preloaded_matches_the_reader(mmdb: Path) -> None:
    reader = MaxMindCountries(mmdb)
    ranges = reader.ranges()
    for host in [*PROBES, *UNKNOWN, "100.64.1.1", "100.127.255.255", "100.128.0.0"]:
        assert ranges.lookup(host) == reader.lookup(host), host
    assert ranges.countries() == {"XA", "XB", "XC", "XD"}
    reader.close()
    countries = open_countries(mmdb, preload=True)
    assert countries.country("203.0.113.5") == "XA"


@pytest.mark.parametrize("style", ["zone", "txt"])
def test_zone_files(tmp_path: Path, style: str) -> None:
    zones = write_zones(tmp_path / "zones", style=style)
    (zones / "README").write_text("not a country\n")
    (zones / "xd-aggregated.zone").write_text("100.64.0.0/10\nbogus\n")
    countries = open_countries(zones)
    for host, code in {**PROBES, "100.64.0.1": "XD"}.items():
        assert countries.country(host) == code, host
    for host in UNKNOWN:
        assert countries.country(host) is None
    assert isinstance(countries.source, CountryRanges) and countries.source.bad == 1


def test_zone_files_in_several_directories(tmp_path: Path) -> None:
    v4 = write_zones(tmp_path / "v4", {k: v for k, v in RANGES.items() if ":" not in k})
    v6 = write_zones(tmp_path / "v6", {k: v for k, v in RANGES.items() if ":" in k})
    ranges = zone_file_ranges(v4, v6)
    for host, code in PROBES.items():
        assert ranges.lookup(host) == code


def test_ranges_merge_and_nest() -> None:
    ranges = CountryRanges(
        [
            ("10.0.0.0/25", "xa"),
            ("10.0.0.128/25", "XA"),  # adjacent, same country: merged
            ("10.0.1.0/24", "XB"),
            ("10.0.1.128/25", "XC"),  # inside XB's: the most specific wins
            ("10.0.0.0/22", "XD"),  # around them: only the rest is XD
            ("0.0.0.0/0", "XE"),  # around everything: only the gaps
            ("2001:db8::/32", "XB"),
            ("2001:db8::/32", "XB"),  # twice
        ]
    )
    hosts = ("10.0.0.1", "10.0.0.200", "10.0.1.5", "10.0.1.200", "10.0.2.1", "10.0.4.1", "0.0.0.0")
    assert [ranges.lookup(h) for h in hosts] == ["XA", "XA", "XB", "XC", "XD", "XE", "XE"]
    assert ranges.lookup("255.255.255.255") == "XE"
    assert ranges.lookup("2001:db8::1") == "XB" and ranges.lookup("::1") is None
    assert len(ranges) == 7  # IPv4: XE, XA (the pair as one), XB, XC, XD, XE; IPv6: XB


@st.composite
def _nets(draw: st.DrawFn) -> tuple[list[tuple[str, str]], list[str]]:
    """Distinct networks of both families (nested, adjacent, spanning
    buckets: prefixes from /0) with codes, and addresses to look up: at and
    around every network's edges, and at bucket edges."""
    version = draw(st.sampled_from([4, 6]))
    width = 32 if version == 4 else 128
    nets: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, str] = {}
    for _ in range(draw(st.integers(1, 30))):
        prefix = draw(st.integers(0, width))
        # a few /8s (or /16s) worth of space, so that networks nest and touch
        top = draw(st.integers(0, 3)) << (width - 8)
        number = top | draw(st.integers(0, (1 << (width - 6)) - 1))
        net = ipaddress.ip_network((number >> (width - prefix) << (width - prefix), prefix))
        nets.setdefault(net, draw(st.sampled_from(["XA", "XB", "XC"])))
    probes = set()
    for net in nets:
        first, last = int(net.network_address), int(net.broadcast_address)
        probes |= {first - 1, first, last, last + 1, (first >> (width - 16) << (width - 16)) - 1}
    probes |= set(draw(st.lists(st.integers(0, (1 << width) - 1), max_size=10)))
    spell = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    hosts = [str(spell(p)) for p in probes if 0 <= p < 1 << width]
    return [(str(n), c) for n, c in nets.items()], hosts


@given(_nets())
@settings(max_examples=300, deadline=None)
def test_ranges_agree_with_the_most_specific_network(case: Any) -> None:
    pairs, hosts = case
    ranges = CountryRanges(pairs)
    nets = [(ipaddress.ip_network(n), c) for n, c in pairs]
    for host in hosts:
        ip = ipaddress.ip_address(host)
        holding = [(n.prefixlen, c) for n, c in nets if ip in n]
        want = max(holding)[1] if holding else None
        assert ranges.lookup(host) == want, (host, pairs)


def test_iso_code_shapes() -> None:
    assert iso_code({"country": {"iso_code": "fr"}}) == "FR"
    assert iso_code({"registered_country": {"iso_code": "DE"}}) == "DE"
    assert iso_code({"country_code": "it"}) == "IT"
    assert iso_code({"country": {"names": {}}}) is None
    assert iso_code(None) is None and iso_code("XA") is None


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def lookup(self, host: str) -> str | None:
        self.calls += 1
        return "XA" if host.startswith("192.0.2.") else None

    def close(self) -> None:
        pass


def test_cache_is_bounded_and_remembers_unknown() -> None:
    source = Counting()
    countries = Countries(source, cache_size=100)
    assert countries.country("192.0.2.1") == "XA"
    assert countries.country("192.0.2.1") == "XA"
    assert countries.country("10.0.0.1") is None
    assert countries.country("10.0.0.1") is None
    assert source.calls == 2
    for i in range(1000):  # a spoofed flood
        countries.country(f"10.1.{i >> 8}.{i & 255}")
        assert countries.cached() <= 100
    assert source.calls == 1002


def test_policy_allow_deny_unknown() -> None:
    allow = CountryPolicy(allow=["xa", "XB"])
    assert allow.allowed("XA") and allow.allowed("XB") and not allow.allowed("XC")
    assert allow.allowed(None)
    assert not CountryPolicy(allow=["XA"], unknown="drop").allowed(None)
    deny = CountryPolicy(deny=["XC"], unknown="drop")
    assert deny.allowed("XA") and not deny.allowed("XC") and not deny.allowed(None)
    everyone = CountryPolicy()
    assert everyone.allowed("XC") and everyone.allowed(None)
    assert CountryPolicy(allow=[]).allowed("XA") is False  # an empty allow list allows none
    with pytest.raises(ValueError):
        CountryPolicy(allow=["XA"], deny=["XB"])
    with pytest.raises(ValueError):
        CountryPolicy(deny=["France"])
    with pytest.raises(TypeError):
        CountryPolicy(allow="XA")
    with pytest.raises(ValueError):
        CountryPolicy(unknown="block")  # type: ignore[arg-type]
    assert "allow=['XA', 'XB']" in repr(allow)


def test_policy_over_a_database(mmdb: Path) -> None:
    countries = open_countries(mmdb)
    policy = CountryPolicy(deny=["XB"], unknown="drop")
    verdicts = {
        h: policy.allowed(countries.country(h)) for h in ("192.0.2.1", "2001:db8::1", "10.0.0.1")
    }
    assert verdicts == {"192.0.2.1": True, "2001:db8::1": False, "10.0.0.1": False}
    assert REGISTERED_ONLY  # used by the database
    countries.close()
