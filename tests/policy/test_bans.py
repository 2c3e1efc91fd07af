"""The ban book: progressive lengths, allow and deny lists, expiry, restore."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipwarden.policy.bans import BanBook
from sipwarden.values import Ban, Change, canonical

H = 3600.0
ATTACKER = "192.0.2.66"


def book(**kw) -> BanBook:
    return BanBook(**kw)


def ban(b: BanBook, target: str = ATTACKER, now: float = 0.0, **kw) -> Ban | None:
    return b.decide(target, reason="5 failed logins", detector="auth-failures", now=now, **kw)


def test_repeat_offenders_get_longer_bans_then_a_permanent_one():
    b = book()
    lengths = []
    now = 0.0
    for _ in range(4):
        made = ban(b, now=now)
        assert made is not None
        lengths.append(None if made.expires_at is None else made.expires_at - now)
        now = (made.expires_at or now) + 1
    assert lengths == [600.0, H, 24 * H, None]
    assert ban(b, now=now) is None  # nothing outlasts a permanent ban
    assert [c.op for c in b.drain()] == ["add"] * 4


def test_offences_are_forgotten_after_the_memory_window():
    b = book(memory=7 * 24 * H)
    ban(b, now=0)
    ban(b, now=2 * 24 * H)
    made = ban(b, now=8 * 24 * H)  # the first is forgotten, the second still counts
    assert made is not None and made.offence == 2 and made.expires_at - made.created_at == H


def test_the_allow_list_always_wins_even_against_a_network_ban():
    b = book(allow=[ipaddress.ip_network("198.51.100.7"), ipaddress.ip_network("2001:db8:1::/48")])
    assert ban(b, "198.51.100.7") is None
    assert ban(b, "198.51.100.0/24") is None  # it would cover the trunk
    assert ban(b, "2001:db8:1::5") is None
    assert ban(b, "198.51.100.8") is not None
    assert b.banned("198.51.100.7", 1.0) is None


def test_network_bans_and_the_static_deny_list_cover_their_addresses():
    b = book(deny=[ipaddress.ip_network("203.0.113.0/24")])
    assert b.banned("203.0.113.200", 0).detector == "deny-list"
    ban(b, "2001:db8::/32")
    assert b.banned("2001:db8::1234", 1).target == "2001:db8::/32"
    assert b.banned("2001:db9::1", 1) is None
    assert b.banned("not an ip", 1) is None


def test_a_ban_ends_at_its_expiry_and_leaves_a_remove_change():
    b = book()
    made = ban(b, now=100.0)
    assert b.banned(ATTACKER, 100.0 + 599) == made
    assert b.banned(ATTACKER, 100.0 + 600) is None
    b.drain()
    assert b.expire(100.0 + 600) == [made]
    assert b.drain() == [Change("remove", made)]
    assert b.active(1000.0) == []


def test_a_shorter_ban_does_not_replace_a_longer_one():
    b = book()
    assert ban(b, now=0, duration=None) is not None  # permanent
    assert ban(b, now=1, duration=60) is None
    assert b.banned(ATTACKER, 10 * 365 * 24 * H).permanent


def test_lift_and_restore():
    b = book()
    made = ban(b, now=0)
    assert b.lift(ATTACKER) == made and b.banned(ATTACKER, 1) is None
    # a restart: the store gives the bans back; the expired one is history only
    old = Ban("192.0.2.1", "r", "d", created_at=0, expires_at=600)
    live = Ban("192.0.2.2", "r", "d", created_at=0, expires_at=10_000)
    fresh = book()
    fresh.restore([old, live], now=1000)
    assert fresh.banned("192.0.2.2", 1000) == live and fresh.banned("192.0.2.1", 1000) is None
    assert fresh.drain() == [Change("add", live)]
    assert ban(fresh, "192.0.2.1", now=2000).offence == 2  # the old ban still counts


def test_evidence_is_bounded():
    made = ban(book(), evidence=[f"REGISTER {'x' * 5000}"] * 20)
    assert len(made.evidence) == 5 and all(len(e) == 2000 for e in made.evidence)


def test_capacity_is_bounded():
    b = book(max_bans=3, max_history=5)
    made = [ban(b, f"192.0.2.{i}") for i in range(10)]
    assert sum(m is not None for m in made) == 3
    assert len(b._history) <= 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("192.0.2.7/32", "192.0.2.7"),
        ("192.0.2.9/24", "192.0.2.0/24"),
        ("2001:DB8::1", "2001:db8::1"),
        (" 2001:db8::/32 ", "2001:db8::/32"),
    ],
)
def test_targets_have_one_spelling(text, expected):
    assert canonical(text) == expected


def test_a_bad_target_is_a_clear_error():
    with pytest.raises(ValueError):
        ban(book(), "not-an-address")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.floats(0, 1e6)), max_size=40))
def test_banned_agrees_with_the_active_list(events):
    """Whatever the order of decisions, ``banned`` answers from exactly the
    bans ``active`` lists."""
    b = book()
    now = 0.0
    for host, dt in events:
        now += dt
        ban(b, f"10.0.0.{host}", now=now)
        b.expire(now)
    active = {x.target for x in b.active(now)}
    for host in range(21):
        assert (b.banned(f"10.0.0.{host}", now) is not None) == (f"10.0.0.{host}" in active)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2**32 - 1), st.integers(8, 32), st.booleans()),
        max_size=12,
    ),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20),
)
def test_the_network_index_agrees_with_testing_every_network(nets, probes):
    """banned() finds network bans by prefix-length tables; it must say what
    `address in network` says for every ban in force (lifted ones too)."""
    book = BanBook(max_bans=10**6)
    networks = []
    for n, (value, prefix, lift) in enumerate(nets):
        net = ipaddress.ip_network((value, prefix), strict=False)
        if book.decide(str(net), reason="r", detector="d", now=float(n), duration=None) is None:
            continue
        if lift:
            book.lift(str(net))
        else:
            networks.append(net)
    for value in probes + [int(net.network_address) for net in networks]:
        host = str(ipaddress.ip_address(value))
        expected = any(ipaddress.ip_address(value) in net for net in networks)
        assert (book.banned(host, 100.0) is not None) == expected, (host, networks)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 40),  # which address
            st.sampled_from(["decide", "lift"]),
            st.one_of(st.none(), st.floats(1, 100)),  # duration (None: permanent)
        ),
        max_size=40,
    ),
    st.floats(0, 200),
)
def test_expire_ends_exactly_the_bans_that_ran_out(steps, later):
    """expire() pops a heap of expiry times; it must end what looking at
    every ban would end, whatever was lifted or replaced meanwhile."""
    book = BanBook(steps=(10.0,))
    for n, (host, op, duration) in enumerate(steps):
        target = f"192.0.2.{host}"
        if op == "lift":
            book.lift(target)
        else:
            book.decide(target, reason="r", detector="d", now=float(n), duration=duration)
    book.drain()
    now = len(steps) + later
    expected = sorted(b.target for b in book.active(0.0) if not b.active(now))
    assert sorted(b.target for b in book.expire(now)) == expected
    assert all(b.active(now) for b in book.active(0.0))  # what is left is in force
    assert book.expire(now) == []
