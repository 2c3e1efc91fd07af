"""The address index: lookups, replace/add/remove/expire, and equivalence
with a brute-force ``ipaddress`` check."""

from __future__ import annotations

import gc
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipwarden.intel.index import AddressIndex, Entry, parse_target


def test_parse_target_canonical() -> None:
    assert parse_target("192.0.2.9/24").spelling == "192.0.2.0/24"
    assert parse_target("192.0.2.9/32").spelling == "192.0.2.9"
    assert parse_target("2001:DB8:0:0::1").spelling == "2001:db8::1"
    assert parse_target("2001:db8::1/32").spelling == "2001:db8::/32"
    assert parse_target("::ffff:192.0.2.1").spelling == "::ffff:192.0.2.1"  # the edge's spelling
    t = parse_target("10.0.0.0/8")
    assert (t.version, t.prefix, t.number) == (4, 8, 10 << 24)
    for bad in ("", "192.0.2", "01.2.3.4", "192.0.2.1/33", "2001:db8::/129", "x", "1.2.3.4/",
                "fe80::1%eth0", "1.2.3.4/-1", "1.2.3.4/²", "192.0.2.1 "):  # fmt: skip
        with pytest.raises(ValueError):
            parse_target(bad)


def test_lookup_hosts_networks_families() -> None:
    ix = AddressIndex()
    ix.replace(
        "f", ["192.0.2.7", "198.51.100.0/24", "10.0.0.0/8", "2001:db8::/32", "2001:db8:1::5"]
    )
    assert ix.lookup("192.0.2.7", 0) == Entry("192.0.2.7", ("f",), None)
    assert ix.lookup("192.0.2.8", 0) is None
    assert ix.lookup("198.51.100.200", 0) == Entry("198.51.100.0/24", ("f",), None)
    assert ix.lookup("10.255.255.255", 0) == Entry("10.0.0.0/8", ("f",), None)
    assert ix.lookup("11.0.0.0", 0) is None
    assert ix.lookup("2001:db8:ffff::1", 0) == Entry("2001:db8::/32", ("f",), None)
    assert ix.lookup("2001:db8:1::5", 0) == Entry("2001:db8:1::5", ("f",), None)
    assert ix.lookup("2001:db9::1", 0) is None
    assert ix.lookup("fe80::1%eth0", 0) is None
    # a dual-stack socket spells IPv4 sources as mapped addresses
    assert ix.lookup("::ffff:192.0.2.7", 0) == Entry("192.0.2.7", ("f",), None)
    assert ix.lookup("::ffff:198.51.100.1", 0) == Entry("198.51.100.0/24", ("f",), None)
    for junk in ("", "junk", "999.1.1.1", "::zz", "192.0.2.7:5060"):
        assert ix.lookup(junk, 0) is None
    assert len(ix) == 5


def test_most_specific_wins_and_expired_falls_through() -> None:
    ix = AddressIndex()
    ix.add("wide", "10.0.0.0/8")
    ix.add("narrow", "10.1.0.0/16", expires_at=100.0)
    ix.add("host", "10.1.2.3", expires_at=50.0)
    assert ix.lookup("10.1.2.3", 10).target == "10.1.2.3"  # type: ignore[union-attr]
    assert ix.lookup("10.1.2.3", 60).target == "10.1.0.0/16"  # type: ignore[union-attr]
    assert ix.lookup("10.1.2.3", 100).target == "10.0.0.0/8"  # type: ignore[union-attr]
    assert ix.lookup("10.2.0.0", 10).target == "10.0.0.0/8"  # type: ignore[union-attr]


def test_several_feeds_on_one_target() -> None:
    ix = AddressIndex()
    ix.add("a", "192.0.2.0/24", expires_at=100.0)
    ix.add("b", "192.0.2.0/24", expires_at=200.0)
    ix.add("c", "192.0.2.0/24")
    assert ix.lookup("192.0.2.1", 0) == Entry("192.0.2.0/24", ("a", "b", "c"), None)
    ix.remove("192.0.2.0/24", "c")
    assert ix.lookup("192.0.2.1", 0) == Entry("192.0.2.0/24", ("a", "b"), 200.0)
    assert ix.lookup("192.0.2.1", 150) == Entry("192.0.2.0/24", ("b",), 200.0)
    assert ix.lookup("192.0.2.1", 200) is None
    assert ix.counts() == {"a": 1, "b": 1}
    ix.add("a", "192.0.2.0/24", expires_at=300.0)  # a renewal replaces the listing
    assert ix.get("192.0.2.0/24") == Entry("192.0.2.0/24", ("a", "b"), 300.0)
    assert ix.remove("192.0.2.0/24")  # every feed
    assert not ix.remove("192.0.2.0/24")
    assert len(ix) == 0 and ix.lookup("192.0.2.1", 0) is None


def test_replace_swaps_one_feed_only() -> None:
    ix = AddressIndex()
    ix.replace("a", ["192.0.2.1", "198.51.100.0/24", "2001:db8::/48"])
    ix.replace("b", ["192.0.2.1", "203.0.113.0/24"])
    assert ix.replace("a", ["192.0.2.2", "198.51.100.0/24"]) == (1, 2)
    assert ix.lookup("192.0.2.1", 0) == Entry("192.0.2.1", ("b",), None)
    assert ix.lookup("192.0.2.2", 0) == Entry("192.0.2.2", ("a",), None)
    assert ix.lookup("2001:db8::1", 0) is None
    assert ix.lookup("203.0.113.9", 0) == Entry("203.0.113.0/24", ("b",), None)
    assert ix.counts() == {"a": 2, "b": 2}
    assert len(ix) == 4
    assert ix.clear("b") == 2
    assert {e.target for e in ix.entries()} == {"192.0.2.2", "198.51.100.0/24"}


def test_replace_is_all_or_nothing() -> None:
    ix = AddressIndex()
    ix.replace("a", ["192.0.2.1"])
    with pytest.raises(ValueError):
        ix.replace("a", ["192.0.2.2", "not-an-address"])
    assert [e.target for e in ix.entries()] == ["192.0.2.1"]


def test_replace_with_expiries_and_expire() -> None:
    ix = AddressIndex()
    ix.replace("a", [("192.0.2.1", 10.0), ("198.51.100.0/24", 20.0), "203.0.113.0/24"])
    ix.add("b", "192.0.2.1", expires_at=30.0)
    assert ix.lookup("192.0.2.1", 15) == Entry("192.0.2.1", ("b",), 30.0)
    assert ix.expire(15) == 0  # 192.0.2.1 is still listed by b
    assert ix.get("192.0.2.1") == Entry("192.0.2.1", ("b",), 30.0)
    assert ix.expire(25) == 1
    assert ix.lookup("198.51.100.1", 0) is None
    assert [e.target for e in ix.entries()] == ["192.0.2.1", "203.0.113.0/24"]
    assert [e.target for e in ix.entries(now=40)] == ["203.0.113.0/24"]
    assert ix.expire(40) == 1 and len(ix) == 1


def test_short_networks_and_stale_buckets() -> None:
    ix = AddressIndex()
    ix.replace("f", ["0.0.0.0/0", "64.0.0.0/4", "10.0.0.0/9", "2000::/3", "2001:db8::/24"])
    assert ix.lookup("1.2.3.4", 0).target == "0.0.0.0/0"  # type: ignore[union-attr]
    assert ix.lookup("70.1.1.1", 0).target == "64.0.0.0/4"  # type: ignore[union-attr]
    assert ix.lookup("10.100.0.1", 0).target == "10.0.0.0/9"  # type: ignore[union-attr]
    assert ix.lookup("2001:db8::1", 0).target == "2001:d00::/24"  # type: ignore[union-attr]
    assert ix.lookup("3fff::1", 0).target == "2000::/3"  # type: ignore[union-attr]
    assert ix.lookup("::1", 0) is None
    # many networks come and go: lookups stay right, the buckets are rebuilt
    many = [f"10.{i >> 8}.{i & 255}.0/24" for i in range(3000)]
    ix.replace("g", many)
    assert ix.lookup("10.5.7.1", 0).target == "10.5.7.0/24"  # type: ignore[union-attr]
    ix.replace("g", many[:10])
    assert ix.lookup("10.5.7.1", 0).target == "10.0.0.0/9"  # type: ignore[union-attr]
    assert ix.lookup("10.0.9.1", 0).target == "10.0.9.0/24"  # type: ignore[union-attr]
    assert len(ix) == 15


def test_values_are_not_tracked_by_the_collector() -> None:
    ix = AddressIndex()
    ix.replace("f", [f"192.0.{i}.{j}" for i in range(4) for j in range(50)])
    ix.replace("g", [(f"10.{i}.0.0/16", 1e9 + i) for i in range(50)])
    gc.collect()
    gc.collect()  # nested tuples: the inner ones are untracked first
    values = list(ix._hosts.values()) + [
        v for tables in ix._nets.values() for t in tables.values() for v in t.values()
    ]
    assert values and not any(gc.is_tracked(v) for v in values)
    assert len({id(v) for v in ix._hosts.values()}) == 1  # equal listings are shared


# ---------------------------------------------------------------- property


def _networks(version: int) -> st.SearchStrategy[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    width = 32 if version == 4 else 128
    # addresses near a few bases, so that networks nest and hosts hit them
    bases = (
        [0x0A000000, 0xC0000200, 0xFFFFFF00] if version == 4 else [0x20010DB8 << 96, 0, 1 << 127]
    )
    prefixes = (
        st.integers(0, 32)
        if version == 4
        else st.sampled_from([0, 3, 16, 24, 32, 48, 64, 127, 128])
    )

    def build(base: int, noise: int, prefix: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        shift = width - prefix
        number = (base ^ noise) % (1 << width) >> shift << shift
        return (
            ipaddress.ip_network((number, prefix))
            if version == 4
            else ipaddress.IPv6Network((number, prefix))
        )

    noise = st.integers(0, (1 << 12) - 1) | st.integers(0, (1 << width) - 1)
    return st.builds(build, st.sampled_from(bases), noise, prefixes)


_any_network = _networks(4) | _networks(6)


@settings(max_examples=60, deadline=None)
@given(
    nets=st.lists(st.tuples(st.sampled_from("abc"), _any_network), max_size=40),
    removed=st.sets(st.integers(0, 39)),
    probes=st.lists(_any_network, min_size=1, max_size=30),
)
def test_index_matches_brute_force(
    nets: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]],
    removed: set[int],
    probes: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> None:
    ix = AddressIndex()
    for feed, net in nets:
        ix.add(feed, str(net))
    gone = {nets[i] for i in removed if i < len(nets)}
    for feed, net in gone:
        ix.remove(str(net), feed)
    kept = set(nets) - gone
    for net in [*probes, *(n for _, n in nets)]:
        for ip in (net.network_address, net.broadcast_address):
            host = str(ip) if ip.version == 4 else _ntop(ip)
            matches = [n for f, n in kept if n.version == ip.version and ip in n]
            entry = ix.lookup(host, 0.0)
            if not matches:
                assert entry is None, (host, entry)
                continue
            assert entry is not None, host
            best = max(n.prefixlen for n in matches)
            got = ipaddress.ip_network(entry.target)
            assert got.prefixlen == best and ip in got
            assert set(entry.feeds) == {f for f, n in kept if n == got}
    assert len(ix) == len({n for _, n in kept})


def _ntop(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    import socket

    return socket.inet_ntop(socket.AF_INET6, ip.packed)
