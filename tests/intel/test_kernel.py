"""Feed entries for the kernel's interval sets: nesting, exclusions, splits,
and equivalence with a brute-force ``ipaddress`` check over every address
of two small spaces."""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipwarden.intel.index import parse_target
from sipwarden.intel.kernel import kernel_targets


def test_disjoint_entries_pass_unchanged() -> None:
    entries = {
        "192.0.2.7": 100.0,
        "198.51.100.0/24": None,
        "2001:db8::1": 50.0,
        "2001:db8:1::/48": None,
    }
    assert kernel_targets(entries) == entries
    assert kernel_targets({}) == {}


def test_the_outer_target_wins_with_its_own_expiry() -> None:
    entries = {
        "10.0.0.0/8": 100.0,
        "10.1.0.0/16": None,  # later than the outer: still left out (computed again at 100)
        "10.1.2.3": 50.0,
        "11.0.0.1": 7.0,
        "2001:db8::/32": 10.0,
        "2001:db8:1::/48": 20.0,
        "2001:db8:ffff::1": None,
        "2001:db9::1": 5.0,
    }
    assert kernel_targets(entries) == {
        "10.0.0.0/8": 100.0,
        "11.0.0.1": 7.0,
        "2001:db8::/32": 10.0,
        "2001:db9::1": 5.0,
    }


def test_bad_entries_are_skipped_spellings_merged() -> None:
    entries = {
        "junk": None,
        "192.0.2.1/33": None,
        "fe80::1%eth0": None,
        "192.0.2.9/24": 10.0,  # not canonical: taken as 192.0.2.0/24
        "192.0.2.0/24": 30.0,  # the same target: the later end
        "2001:DB8::1": 5.0,
        "2001:db8::1/128": None,
    }
    assert kernel_targets(entries) == {"192.0.2.0/24": 30.0, "2001:db8::1": None}


def test_a_bad_exclude_is_an_error() -> None:
    with pytest.raises(ValueError):
        kernel_targets({"192.0.2.1": None}, ["192.0.2.300"])


def test_excluded_targets_are_left_out() -> None:
    entries = {"192.0.2.7": None, "192.0.2.8": 5.0, "10.1.0.0/16": None, "2001:db8::1": None}
    exclude = [" 192.0.2.7 ", "10.0.0.9/8", "2001:db8::/64"]  # any spelling
    assert kernel_targets(entries, exclude) == {"192.0.2.8": 5.0}


def test_a_target_holding_an_excluded_network_is_split() -> None:
    assert kernel_targets({"192.0.2.0/24": 60.0}, ["192.0.2.7"]) == {
        "192.0.2.128/25": 60.0,
        "192.0.2.64/26": 60.0,
        "192.0.2.32/27": 60.0,
        "192.0.2.16/28": 60.0,
        "192.0.2.8/29": 60.0,
        "192.0.2.0/30": 60.0,
        "192.0.2.4/31": 60.0,
        "192.0.2.6": 60.0,
    }
    # holes one inside another, and a /32 written out
    found = kernel_targets({"10.0.0.0/30": None}, ["10.0.0.1", "10.0.0.0/31", "10.0.0.3/32"])
    assert found == {"10.0.0.2": None}
    found = kernel_targets({"2001:db8::/126": 9.0, "2001:db8::5": None}, ["2001:db8::1"])
    assert found == {"2001:db8::": 9.0, "2001:db8::2/127": 9.0, "2001:db8::5": None}
    # the split pieces are what the address set minus the hole is
    pieces = {ipaddress.ip_network(k) for k in kernel_targets({"10.0.0.0/8": None}, ["10.9.8.7"])}
    eight, hole = ipaddress.IPv4Network("10.0.0.0/8"), ipaddress.IPv4Network("10.9.8.7/32")
    expected = set(eight.address_exclude(hole))
    assert pieces == expected


def test_thirty_thousand_entries_are_merged_whole() -> None:
    """At a feed's scale (its speed is bench/intel.py's): every entry is
    covered by one target unless an excluded network holds it, no target
    holds another, none overlaps an excluded network."""
    rng = random.Random(6)
    entries: dict[str, float | None] = {}
    lengths4 = [32] * 10 + list(range(16, 32))
    lengths6 = [128] * 10 + [32, 40, 48, 56, 64, 80, 96, 112]
    while len(entries) < 30_000:
        if rng.random() < 0.7:
            p = rng.choice(lengths4)
            net = ipaddress.ip_network((rng.getrandbits(32) >> (32 - p) << (32 - p), p))
        else:
            p = rng.choice(lengths6)
            number = (0x20010DB8 << 96 | rng.getrandbits(96)) >> (128 - p) << (128 - p)
            net = ipaddress.ip_network((number, p))
        text = str(net.network_address) if net.num_addresses == 1 else str(net)
        entries[text] = None if rng.random() < 0.5 else 1e9 + rng.random() * 1e6
    exclude = [
        f"{rng.randrange(1, 224)}.{rng.randrange(256)}.0.{rng.randrange(256)}" for _ in range(300)
    ]
    targets = kernel_targets(entries, exclude)
    assert 0 < len(targets) <= len(entries) + 32 * len(exclude)
    nets = sorted(
        (ipaddress.ip_network(t) for t in targets), key=lambda n: (n.version, n.network_address)
    )
    for a, b in itertools.pairwise(nets):  # sorted: an overlap shows between neighbours
        assert a.version != b.version or not a.overlaps(b), (a, b)
    starts: dict[int, list[tuple[int, int]]] = {4: [], 6: []}  # (first, last), sorted
    for n in nets:
        starts[n.version].append((int(n.network_address), int(n.broadcast_address)))
    holes = [ipaddress.ip_network(e) for e in exclude]
    for hole in holes:  # the target starting last at or before the hole's end must end before it
        spans = starts[hole.version]
        i = bisect.bisect_right(spans, (int(hole.broadcast_address), 1 << 129)) - 1
        assert i < 0 or spans[i][1] < int(hole.network_address), hole
    for text in rng.sample(sorted(entries), 2000):
        net = ipaddress.ip_network(text)
        first, last = int(net.network_address), int(net.broadcast_address)
        spans = starts[net.version]
        i = bisect.bisect_right(spans, (first, 1 << 129)) - 1
        inside = i >= 0 and spans[i][0] <= first and last <= spans[i][1]
        excluded = any(net.version == h.version and net.overlaps(h) for h in holes)
        assert inside or excluded, text


# ---------------------------------------------- against a brute-force check

V4 = ipaddress.ip_network("10.0.0.0/24")
V6 = ipaddress.ip_network("2001:db8::/120")
EXPIRIES = st.sampled_from([None, 10.0, 20.0, 30.0])


@st.composite
def networks(draw: st.DrawFn, spelled: str = "canonical") -> str:
    space = draw(st.sampled_from([V4, V6]))
    prefix = draw(st.integers(space.prefixlen, space.max_prefixlen))
    offset = draw(st.integers(0, space.num_addresses - 1))
    address = space.network_address + offset
    if spelled == "any":  # host bits left set, /32 and /128 written out
        return f"{address}/{prefix}"
    net = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return str(net.network_address) if net.num_addresses == 1 else str(net)


def _net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(networks(), EXPIRIES, max_size=12),
    st.lists(networks("any"), max_size=4),
)
def test_same_as_brute_force(entries: dict[str, float | None], exclude: list[str]) -> None:
    found = kernel_targets(entries, exclude)
    nets = {k: _net(k) for k in found}
    for key in found:
        assert parse_target(key).spelling == key  # canonical
    listed = [(_net(k), v) for k, v in entries.items()]
    excluded = [_net(x) for x in exclude]
    for a, b in itertools.combinations(nets.values(), 2):
        assert a.version != b.version or not a.overlaps(b), (a, b)
    for space in (V4, V6):
        for address in space:
            covered = [key for key, n in nets.items() if address in n]
            wanted = any(address in n for n, _ in listed) and not any(
                address in x for x in excluded
            )
            assert bool(covered) == wanted, address
            if covered:  # the expiry of the outermost entry holding it
                outermost = min(
                    (n for n in listed if address in n[0]), key=lambda e: e[0].prefixlen
                )
                assert found[covered[0]] == outermost[1], address
