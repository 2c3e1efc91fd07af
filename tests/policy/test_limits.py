"""The rate limiter: floods caught fast, phones never limited, the estimate's
bounds, aggregation by network, the memory bound, forget and reload.

All on a simulated clock (``now`` is passed in)."""

from __future__ import annotations

import gc
import ipaddress
import math
import socket

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sipwarden.policy import limits
from sipwarden.policy.limits import KEY_CACHE, Limit, RateLimiter

ATTACKER = "192.0.2.66"
PHONE = "198.51.100.7"
W = 2.0  # the default window


def flood(
    limiter: RateLimiter, host: str, rate: float, start: float, seconds: float
) -> float | None:
    """REGISTERs from ``host`` at ``rate`` per second: when the first is limited."""
    for i in range(int(rate * seconds)):
        now = start + i / rate
        if limiter.hit(host, "REGISTER", now) is not None:
            return now - start
    return None


def phone_events(start: float = 0.0, boots: int = 3) -> list[tuple[float, str]]:
    """A day of a desk phone: at each boot a dozen SUBSCRIBEs (BLF keys, MWI)
    and a challenged REGISTER; then a challenged REGISTER every 60 s, a
    re-SUBSCRIBE every hour and a call every 7 minutes (INVITE, challenge,
    INVITE again, ACK, later BYE)."""
    events: list[tuple[float, str]] = []
    day = 86400.0
    for boot in range(boots):
        t0 = start + boot * day / boots
        events += [(t0 + 0.01 * i, "SUBSCRIBE") for i in range(12)]
        events += [(t0 + 0.2, "REGISTER"), (t0 + 0.25, "REGISTER")]
    for t in range(0, int(day), 60):
        events += [(start + t + 1.0, "REGISTER"), (start + t + 1.04, "REGISTER")]
    for t in range(30, int(day), 420):
        events += [(start + t + d, m) for d, m in ((0, "INVITE"), (0.05, "INVITE"), (0.1, "ACK"))]
        events.append((start + t + 90.0, "BYE"))
    for t in range(3600, int(day), 3600):
        events += [(start + t + 0.02 * i, "SUBSCRIBE") for i in range(12)]
    return sorted(events)


def phone_day(limiter: RateLimiter, host: str, start: float = 0.0) -> list[Limit]:
    """Every limit a phone's day runs into."""
    return [hit for now, method in phone_events(start) if (hit := limiter.hit(host, method, now))]


# ------------------------------------------------------------ detection


def test_a_register_flood_is_caught_within_150_ms():
    limiter = RateLimiter()
    caught = flood(limiter, ATTACKER, 200, 0.0, 1.0)
    assert caught is not None and caught <= 0.15
    assert limiter.hit(ATTACKER, "REGISTER", 0.2) == Limit("REGISTER", 20)


@settings(max_examples=60, deadline=None)
@given(
    phase=st.floats(0.0, 4 * W),
    rate=st.sampled_from([200.0, 500.0, 1000.0]),
)
def test_a_flood_is_caught_fast_whatever_the_window_phase(phase, rate):
    """Other traffic set the windows going at 0; the flood starts anywhere:
    a window ending mid-flood must not let it through."""
    limiter = RateLimiter()
    limiter.hit(PHONE, "REGISTER", 0.0)
    caught = flood(limiter, ATTACKER, rate, phase, 1.0)
    assert caught is not None and caught <= 0.15


@settings(max_examples=30, deadline=None)
@given(phase=st.floats(0.0, 4 * W))
def test_sipvicious_speed_is_caught_within_a_third_of_a_second(phase):
    limiter = RateLimiter()
    limiter.hit(PHONE, "REGISTER", 0.0)
    caught = flood(limiter, ATTACKER, 80, phase, 2.0)
    assert caught is not None and caught <= 0.35


def test_the_methods_own_limit_comes_first_then_all_requests():
    limiter = RateLimiter(requests=5, methods={"REGISTER": 3})
    assert [limiter.hit(ATTACKER, "REGISTER", 0.0) for _ in range(4)] == [None] * 3 + [
        Limit("REGISTER", 3)
    ]
    other = "192.0.2.67"
    assert [limiter.hit(other, "SUBSCRIBE", 0.0) for _ in range(6)] == [None] * 5 + [
        Limit("requests", 5)
    ]
    assert limiter.hit(other, "REGISTER", 0.0) == Limit("requests", 5)  # 1 REGISTER of 7
    # a request over both limits names the method's
    third = "192.0.2.68"
    assert [limiter.hit(third, "REGISTER", 0.0) for _ in range(6)][-1] == Limit("REGISTER", 3)


# ------------------------------------------------------------ no false positives


def test_a_phone_is_never_limited_over_a_day():
    assert phone_day(RateLimiter(), PHONE) == []


def test_a_phone_is_never_limited_under_ipv6_aggregation():
    assert phone_day(RateLimiter(), "2001:db8:1:2::77") == []


def test_other_sources_are_unaffected_by_a_flood():
    """A flood at 500/s through the phone's first five minutes, from another
    address of the same /24 (not aggregated by default)."""
    limiter = RateLimiter()
    attacker = "198.51.100.66"
    events = [(now, PHONE, method) for now, method in phone_events()]
    events += [(i / 500, attacker, "REGISTER") for i in range(500 * 300)]
    limited: dict[str, int] = {PHONE: 0, attacker: 0}
    for now, host, method in sorted(events):
        if limiter.hit(host, method, now) is not None:
            limited[host] += 1
    assert limited[PHONE] == 0
    assert limited[attacker] > 0.9 * 500 * 300


# --------------------------------------------------- the estimate's bounds


# Steady streams run on dyadic times (multiples of 1/1024 s), which floats
# hold exactly: a request landing exactly on a window's edge stays there.
spacing = st.integers(4, 4096).map(lambda m: m / 1024)  # 256 to 0.25 requests per second
phase = st.integers(0, 10 * 1024).map(lambda m: m / 1024)


@settings(max_examples=40, deadline=None)
@given(period=spacing, phase=phase, own_grid=st.booleans(), windows=st.integers(3, 4))
def test_the_estimate_of_a_steady_rate_is_within_one_above(period, phase, own_grid, windows):
    """A request every p = 1/r seconds, R = r·w. At a request, ``e`` seconds
    into the current window that started at ``s`` (f = e/w), write
    r·e = a + α (a whole, 0 <= α < 1):

    - current counts the requests in [s, now]: a + 1 (the one at now, and
      the first at or after s is at s + α·p);
    - the previous window counts those in [s - w, s): at s - (1 - α)·p - j·p
      for j >= 0 while that is >= s - w, so floor(R + α) of them;
    - estimate = a + 1 + floor(R + α)·(1 - f), with f = (a + α)/R:
      above R + (1 - α)·f >= R (floor(x) > x - 1), and
      at most R + 1 - α·f <= R + 1 (floor(x) <= x).

    So the estimate lies in (R, R + 1], as the true count over the sliding
    window does (ceil(R) or floor(R) + 1): a steady rate is neither under-
    nor over-counted by more than the request being counted."""
    limiter = RateLimiter(requests=10**9, methods={"REGISTER": 10**9}, prefix_v4=24)
    if not own_grid:
        limiter.hit("203.0.113.1", "ACK", 0.0)  # another source started the windows
    expected = W / period
    for k in range(int(windows * W / period)):
        now = phase + k * period
        limiter.hit("192.0.2.1", "REGISTER", now)
        if now < phase + 2 * W:
            continue  # the previous window is not all inside the stream yet
        for method in (None, "REGISTER"):
            estimate = limiter.rate("192.0.2.0/24", method, now)
            assert expected < estimate <= expected + 1 + 1e-9, (k, now)


@settings(max_examples=60, deadline=None)
@given(period=spacing, phase=phase, own_grid=st.booleans())
def test_a_steady_rate_is_limited_exactly_when_the_bounds_say(period, phase, own_grid):
    """So a limit of ``c`` never limits a steady rate with r·w + 1 <= c (not
    even while the stream starts), and always limits one with r·w >= c once
    a whole window of it is behind."""
    expected = W / period
    lenient = RateLimiter(methods={"REGISTER": math.ceil(expected + 1)}, requests=10**9)
    strict = RateLimiter(methods={"REGISTER": math.floor(expected)}, requests=10**9)
    if not own_grid:
        lenient.hit("203.0.113.1", "ACK", 0.0)
        strict.hit("203.0.113.1", "ACK", 0.0)
    for k in range(int(4 * W / period)):
        now = phase + k * period
        assert lenient.hit(PHONE, "REGISTER", now) is None
        limited = strict.hit(PHONE, "REGISTER", now)
        if now >= phase + 2 * W:
            assert limited is not None


@settings(max_examples=100, deadline=None)
@given(
    caps=st.tuples(st.integers(0, 12), st.integers(0, 8), st.integers(0, 8)),
    window=st.sampled_from([0.5, 2.0, 3.0]),
    max_sources=st.integers(1, 4),
    stream=st.lists(
        st.tuples(
            st.sampled_from(["192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8:0:1::1"]),
            st.sampled_from(["REGISTER", "INVITE", "SUBSCRIBE"]),
            st.sampled_from([0.0, 0.01, 0.1, 0.3, 0.7, 1.1, 2.5, 7.0]),
        ),
        max_size=150,
    ),
)
@example(  # a bound brought down to the estimate must stay above it (int(e) + 1)
    caps=(2, 0, 0),
    window=2.0,
    max_sources=2,
    stream=[
        ("192.0.2.1", "REGISTER", 0.0),
        ("192.0.2.1", "REGISTER", 0.7),
        ("192.0.2.2", "REGISTER", 0.0),
        ("2001:db8::1", "REGISTER", 1.1),
        ("192.0.2.1", "SUBSCRIBE", 1.1),
        ("192.0.2.1", "SUBSCRIBE", 0.0),
    ],
)
def test_hit_answers_as_the_estimate_says(caps, window, max_sources, stream):
    """Whatever the shortcuts (the packed bounds), hit() answers exactly as
    the estimates rate() reports: the method's own limit if it is over it,
    else the limit on all requests if that is over, else None."""
    requests, register, invite = caps
    limiter = RateLimiter(
        window=window,
        requests=requests,
        methods={"REGISTER": register, "INVITE": invite},
        max_sources=max_sources,
    )
    now = 0.0
    for host, method, step in stream:
        now += step
        answer = limiter.hit(host, method, now)
        key = limiter.key(host)
        expected = None
        if method != "SUBSCRIBE" and limiter.rate(key, method, now) > limiter.methods[method]:
            expected = Limit(method, limiter.methods[method])
        elif limiter.rate(key, None, now) > requests:
            expected = Limit("requests", requests)
        assert answer == expected


def test_a_source_near_a_limit_is_looked_at_closely_only_now_and_then(monkeypatch):
    """8 REGISTERs a second against 20 a window: current + previous is over
    the limit at every request, the estimate (about 16) never is. The bounds
    come down to the estimate, so only every few requests pay for it."""
    looks = 0
    near = RateLimiter._near

    def counted(self, *args):
        nonlocal looks
        looks += 1
        return near(self, *args)

    monkeypatch.setattr(RateLimiter, "_near", counted)
    limiter = RateLimiter()
    for k in range(8 * 60):
        assert limiter.hit(PHONE, "REGISTER", k / 8) is None
    assert 0 < looks < 8 * 60 / 3


def test_a_window_without_requests_empties_both():
    limiter = RateLimiter()
    flood(limiter, ATTACKER, 100, 0.0, 1.0)
    assert limiter.rate(ATTACKER, "REGISTER", 2.5) > 0  # the previous window still weighs
    assert limiter.rate(ATTACKER, "REGISTER", 4.5) == 0.0
    assert len(limiter) == 0


def test_rate_answers_without_counting():
    limiter = RateLimiter()
    for i in range(10):
        limiter.hit(PHONE, "INVITE", i * 0.01)
    assert limiter.rate(PHONE, "INVITE", 0.5) == 10.0
    assert limiter.rate(PHONE, None, 0.5) == 10.0
    assert limiter.rate(PHONE, "REGISTER", 0.5) == 0.0
    assert limiter.rate("203.0.113.1", None, 0.5) == 0.0  # never seen
    with pytest.raises(KeyError):
        limiter.rate(PHONE, "SUBSCRIBE", 0.5)  # not a limited method: not counted apart


# -------------------------------------------------------------- aggregation


def test_keys():
    assert RateLimiter().key("192.0.2.7") == "192.0.2.7"
    assert RateLimiter(prefix_v4=24).key("192.0.2.7") == "192.0.2.0/24"
    assert RateLimiter(prefix_v4=20).key("192.0.31.7") == "192.0.16.0/20"
    assert RateLimiter().key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert RateLimiter(prefix_v6=48).key("2001:db8:1:2::6") == "2001:db8:1::/48"
    assert RateLimiter(prefix_v6=128).key("2001:db8:1:2::6") == "2001:db8:1:2::6"
    # an IPv4 client of a dual-stack socket keeps its IPv4 prefix
    assert RateLimiter().key("::ffff:192.0.2.7") == "::ffff:c000:207"
    assert RateLimiter(prefix_v4=24).key("::ffff:192.0.2.7") == "::ffff:c000:200/120"
    with pytest.raises(ValueError):
        RateLimiter().key("pbx.example.com")


@pytest.mark.parametrize(
    "spelling",
    [
        "2001:db8:1:2::1",
        "2001:0db8:0001:0002:0000:0000:0000:0001",
        "2001:DB8:1:2:0:0:0:1",
        "2001:db8:1:2:0::1",
    ],
)
def test_any_ipv6_spelling_gives_the_same_key(spelling):
    for prefix in (64, 128, 56):
        limiter = RateLimiter(prefix_v6=prefix)
        assert limiter.key(spelling) == limiter.key("2001:db8:1:2::1")
    limiter = RateLimiter()  # /64: hit() canonicalises the network too
    limiter.hit(spelling, "REGISTER", 0.0)
    assert limiter.rate("2001:db8:1:2::/64", None, 0.0) == 1.0


def test_a_flood_spread_over_a_slash_24_is_caught_only_when_aggregated():
    def spread(limiter: RateLimiter) -> Limit | None:
        for i in range(400):  # 200/s over 0.. 2 s, each address under 1/s
            hit = limiter.hit(f"203.0.113.{1 + i % 254}", "REGISTER", i / 200)
            if hit is not None:
                return hit
        return None

    assert spread(RateLimiter()) is None
    aggregated = RateLimiter(prefix_v4=24)
    assert spread(aggregated) == Limit("REGISTER", 20)
    assert aggregated.key("203.0.113.99") == "203.0.113.0/24"
    assert aggregated.rate("203.0.113.0/24", "REGISTER", 0.2) > 20
    assert aggregated.rate("203.0.113.99", "REGISTER", 0.2) == 0.0  # counted under the network


def test_a_flood_spread_over_a_slash_64_is_caught_by_default():
    def spread(limiter: RateLimiter) -> Limit | None:
        for i in range(400):
            hit = limiter.hit(f"2001:db8:1:2::{i + 1:x}", "REGISTER", i / 200)
            if hit is not None:
                return hit
        return None

    assert spread(RateLimiter(prefix_v6=128)) is None
    assert spread(RateLimiter()) == Limit("REGISTER", 20)


def spellings(packed: bytes) -> list[str]:
    ip = ipaddress.ip_address(packed)
    return [str(ip), ip.exploded, str(ip).upper(), socket.inet_ntop(_family(packed), packed)]


def _family(packed: bytes) -> socket.AddressFamily:
    return socket.AF_INET6 if len(packed) == 16 else socket.AF_INET


some_ipv6 = st.one_of(
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=4, max_size=4).map(lambda b: bytes(10) + b"\xff\xff" + b),  # v4-mapped
    st.binary(min_size=4, max_size=4).map(lambda b: bytes(12) + b),  # v4-compatible
    st.binary(min_size=6, max_size=6).map(lambda b: bytes(10) + b),  # first 80 bits zero
)


@settings(max_examples=100, deadline=None)
@given(
    packed=st.one_of(some_ipv6, st.binary(min_size=4, max_size=4)),
    prefix_v4=st.sampled_from([0, 8, 20, 24, 31, 32]),
    prefix_v6=st.sampled_from([0, 1, 48, 56, 64, 88, 100, 112, 127, 128]),
)
def test_the_cached_shortcut_agrees_with_ipaddress(packed, prefix_v4, prefix_v6):
    """The key hit() counts under is key()'s, for any spelling; except that
    per IPv6 address (and IPv4), hit() takes an address as it comes: as
    the edge (inet_ntop) or ipaddress writes it."""
    canonical = spellings(packed)[0], spellings(packed)[-1]
    for text in spellings(packed):
        limiter = RateLimiter(prefix_v4=prefix_v4, prefix_v6=prefix_v6)
        if prefix_v6 == 128 and prefix_v4 == 32 and text not in canonical:
            continue
        limiter.hit(text, "REGISTER", 0.0)
        assert limiter.rate(limiter.key(text), None, 0.0) == 1.0, text
        assert len(limiter) == 1


def test_an_ipv4_mapped_address_keeps_its_ipv4_key_however_spelled():
    limiter = RateLimiter()
    for host in ("::ffff:192.0.2.7", "::ffff:c000:207", "0:0:0:0:0:ffff:c000:207"):
        limiter.hit(host, "REGISTER", 0.0)
    assert limiter.rate("::ffff:c000:207", "REGISTER", 0.0) == 3.0
    assert limiter.rate("::/64", None, 0.0) == 0.0


@settings(max_examples=200, deadline=None)
@given(
    packed=st.one_of(
        st.binary(min_size=16, max_size=16),
        st.binary(min_size=4, max_size=4).map(lambda b: bytes(10) + b"\xff\xff" + b),
        st.binary(min_size=4, max_size=4).map(lambda b: bytes(12) + b),
    ),
    prefix_v4=st.sampled_from([32, 24, 16]),
    prefix_v6=st.sampled_from([128, 64, 48]),
)
def test_hit_counts_under_key_for_addresses_as_the_edge_spells_them(packed, prefix_v4, prefix_v6):
    """The edge names addresses with inet_ntop (``::ffff:192.0.2.7`` for an
    IPv4-mapped one, where ipaddress says ``::ffff:c000:207``)."""
    limiter = RateLimiter(prefix_v4=prefix_v4, prefix_v6=prefix_v6)
    host = socket.inet_ntop(socket.AF_INET6, packed)
    limiter.hit(host, "INVITE", 0.0)
    assert limiter.rate(limiter.key(host), "INVITE", 0.0) == 1.0
    v4 = socket.inet_ntop(socket.AF_INET, packed[-4:])
    limiter.hit(v4, "INVITE", 0.0)
    assert limiter.rate(limiter.key(v4), "INVITE", 0.0) == 1.0


def test_a_host_that_is_not_an_address_is_counted_as_is():
    limiter = RateLimiter(prefix_v4=16, prefix_v6=48)
    assert limiter.hit("not:an:address", "REGISTER", 0.0) is None
    assert limiter.rate("not:an:address", None, 0.0) == 1.0


def test_the_key_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(limits, "KEY_CACHE", 100)
    limiter = RateLimiter(prefix_v4=24)
    for i in range(1000):
        limiter.hit(f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::1", "REGISTER", 0.0)
        limiter.hit(f"10.0.{i >> 8}.{i & 255}", "REGISTER", 0.0)
        assert len(limiter._cache) <= 100
    assert KEY_CACHE == 65_536
    assert limiter.rate("2001:db8:0:1::/64", None, 0.0) == 1.0  # still counted right


# ------------------------------------------------------------ memory bound


@settings(max_examples=60, deadline=None)
@given(
    max_sources=st.integers(1, 40),
    stream=st.lists(
        st.tuples(st.integers(0, 500), st.floats(0.0, 1.0), st.sampled_from(["REGISTER", "ACK"])),
        max_size=400,
    ),
)
def test_memory_is_bounded_whatever_arrives(max_sources, stream):
    limiter = RateLimiter(max_sources=max_sources, prefix_v6=128)
    now = 0.0
    for source, step, method in stream:
        now += step
        host = f"10.{source >> 8}.{source & 255}.1" if source % 2 else f"2001:db8::{source:x}"
        limiter.hit(host, method, now)
        assert len(limiter) <= 2 * max_sources
        assert len(limiter._current) <= max_sources


def test_a_full_table_ends_the_window_early():
    limiter = RateLimiter(max_sources=100)
    for i in range(1000):
        limiter.hit(f"10.0.{i >> 8}.{i & 255}", "REGISTER", i * 1e-4)
    assert limiter.counters["early-rotations"] == 9
    assert len(limiter) == 200


def test_a_spoofed_flood_hides_neither_a_flooder_nor_limits_a_phone():
    """Spoofed sources fill the table every half second; a real flooder is
    still caught and a phone is still left alone (short windows weigh in
    full: limits get looser under early rotation, never tighter)."""
    limiter = RateLimiter(max_sources=1000)
    caught = None
    registers = 0
    for i in range(2000 * 20):  # 2,000 spoofed sources per second for 20 s
        now = i / 2000
        limiter.hit(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "INVITE", now)
        if i % 10 == 0 and caught is None and now >= 5.0:  # 200/s from 5 s
            caught = limiter.hit(ATTACKER, "REGISTER", now) and now - 5.0
        if i % 2000 == 0:  # the phone re-registers, challenged, every second
            registers += 1
            assert limiter.hit(PHONE, "REGISTER", now) is None
            assert limiter.hit(PHONE, "REGISTER", now + 0.0001) is None
    assert limiter.counters["early-rotations"] >= 30
    assert caught is not None and caught <= 0.15


# ------------------------------------------------------------ forget, reload


def test_forget_resets_a_key():
    limiter = RateLimiter(prefix_v4=24)
    flood(limiter, ATTACKER, 200, 0.0, 1.0)
    key = limiter.key(ATTACKER)
    assert limiter.rate(key, "REGISTER", 0.2) > 20
    limiter.forget(key)
    assert limiter.rate(key, "REGISTER", 0.2) == 0.0
    assert limiter.hit("192.0.2.1", "REGISTER", 0.2) is None  # same /24: a fresh start
    limiter.forget("192.0.2.5/24")  # any spelling of the key
    assert limiter.rate(key, None, 0.2) == 0.0
    limiter.forget("203.0.113.0/24")  # unknown: nothing to do


def test_forget_reaches_the_previous_window():
    limiter = RateLimiter()
    flood(limiter, ATTACKER, 200, 0.0, 1.0)
    assert limiter.rate(ATTACKER, None, 2.5) > 0  # from the previous window
    limiter.forget(ATTACKER)
    assert limiter.rate(ATTACKER, None, 2.5) == 0.0


def test_reconfigured_keeps_the_counts():
    limiter = RateLimiter()
    for i in range(15):
        limiter.hit(PHONE, "REGISTER", i * 0.01)
    limiter.hit(PHONE, "INVITE", 0.2)
    limiter.counters["early-rotations"] += 1
    before = limiter.rate(PHONE, "REGISTER", 0.3)
    tighter = limiter.reconfigured(methods={"REGISTER": 15, "INVITE": 20})
    assert tighter.rate(PHONE, "REGISTER", 0.3) == before == 15.0
    assert tighter.rate(PHONE, "INVITE", 0.3) == 1.0
    assert tighter.hit(PHONE, "REGISTER", 0.3) == Limit("REGISTER", 15)
    assert tighter.counters["early-rotations"] == 1
    assert len(limiter) == 0  # the old one handed its tables over
    assert tighter.window == 2.0 and tighter.requests == 100  # unchanged settings stay


def test_reconfigured_with_other_methods_moves_the_counts_that_remain():
    limiter = RateLimiter(methods={"REGISTER": 20, "INVITE": 20})
    for i in range(5):
        limiter.hit(PHONE, "REGISTER", 0.1 * i)
        limiter.hit(PHONE, "SUBSCRIBE", 0.1 * i)
    limiter.hit(PHONE, "INVITE", 1.0)
    limiter.hit(PHONE, "INVITE", 2.5)  # next window: INVITE 1 in both
    new = limiter.reconfigured(methods={"SUBSCRIBE": 4, "INVITE": 20})
    assert new.rate(PHONE, None, 2.5) == pytest.approx(1 + 11 * 0.75)
    assert new.rate(PHONE, "INVITE", 2.5) == pytest.approx(1 + 0.75)
    assert new.rate(PHONE, "SUBSCRIBE", 2.5) == 0.0  # was not counted apart
    with pytest.raises(KeyError):
        new.rate(PHONE, "REGISTER", 2.5)


@settings(max_examples=60, deadline=None)
@given(
    stream=st.lists(
        st.tuples(
            st.sampled_from(["192.0.2.1", "192.0.2.2"]),
            st.sampled_from(["REGISTER", "INVITE", "SUBSCRIBE", "BYE"]),
            st.sampled_from([0.0, 0.05, 0.3, 0.9]),
        ),
        min_size=2,
        max_size=80,
    ),
    switches=st.lists(
        st.tuples(
            st.integers(0, 79),
            st.dictionaries(
                st.sampled_from(["REGISTER", "INVITE", "SUBSCRIBE"]), st.integers(0, 6), max_size=3
            ),
            st.integers(0, 15),
        ),
        min_size=1,
        max_size=12,
    ),
)
@example(  # other methods: bounds and counts stay where they are
    stream=[("192.0.2.1", "REGISTER", 0.0)] * 5,
    switches=[(4, {"INVITE": 3, "REGISTER": 3}, 10)],
)
def test_after_reconfigured_hit_still_answers_as_the_estimate_says(stream, switches):
    limiter = RateLimiter(requests=10, methods={"REGISTER": 4, "INVITE": 3})
    at = {i % len(stream): (methods, requests) for i, methods, requests in switches}
    now = 0.0
    for i, (host, method, step) in enumerate(stream):
        if i in at:
            methods, requests = at[i]
            kept = {m: limiter.rate(host, m, now) for m in limiter.methods if m in methods}
            total = limiter.rate(host, None, now)
            resets = limiter.counters["reconfigure-resets"]
            limiter = limiter.reconfigured(requests=requests, methods=methods)
            if limiter.counters["reconfigure-resets"] == resets:
                assert limiter.rate(host, None, now) == total
                assert {m: limiter.rate(host, m, now) for m in kept} == kept
            else:
                assert len(limiter) == 0
        now += step
        answer = limiter.hit(host, method, now)
        expected = None
        if method in limiter.methods and limiter.rate(host, method, now) > limiter.methods[method]:
            expected = Limit(method, limiter.methods[method])
        elif limiter.rate(host, None, now) > limiter.requests:
            expected = Limit("requests", limiter.requests)
        assert answer == expected


def test_a_method_limited_again_starts_from_zero():
    limiter = RateLimiter(methods={"REGISTER": 20})
    for _ in range(10):
        limiter.hit(PHONE, "REGISTER", 0.0)
    limiter = limiter.reconfigured(methods={})
    limiter.hit(PHONE, "REGISTER", 0.1)
    limiter = limiter.reconfigured(methods={"REGISTER": 3})
    assert limiter.rate(PHONE, "REGISTER", 0.1) == 0.0  # not the 10 of its old slot
    assert limiter.rate(PHONE, None, 0.1) == 11.0
    assert [limiter.hit(PHONE, "REGISTER", 0.2) for _ in range(4)][-2:] == [
        None,
        Limit("REGISTER", 3),
    ]


def test_the_slots_are_compacted_after_many_reloads():
    limiter = RateLimiter()
    limiter.hit(PHONE, "REGISTER", 0.0)
    for i in range(limits.MAX_SLOTS):
        limiter = limiter.reconfigured(methods={"REGISTER": 20} if i % 2 else {"INVITE": 20})
    assert limiter.counters["reconfigure-resets"] == 1
    assert len(limiter._layout) <= 3
    limiter.hit(PHONE, "INVITE", 0.1)
    assert limiter.rate(PHONE, None, 0.1) >= 1.0


def test_the_tables_are_not_walked_by_the_cyclic_gc():
    """Entries are ints: a spoofed flood's churn sets off no full collections."""
    limiter = RateLimiter(max_sources=1000)
    for i in range(3000):
        limiter.hit(f"2001:db8::{i:x}", "REGISTER", i * 1e-3)
        limiter.hit(f"10.0.{i >> 8}.{i & 255}", "INVITE", i * 1e-3)
    assert not any(map(gc.is_tracked, (limiter._current, limiter._previous, limiter._cache)))


def test_reconfigured_with_other_prefixes_starts_afresh():
    limiter = RateLimiter()
    limiter.hit(PHONE, "REGISTER", 0.0)
    new = limiter.reconfigured(prefix_v4=24)
    assert len(new) == 0
    assert new.key(PHONE) == "198.51.100.0/24"


def test_reconfigured_to_fewer_sources_keeps_the_bound():
    limiter = RateLimiter(max_sources=100)
    for i in range(150):
        limiter.hit(f"10.0.0.{i}", "REGISTER", 0.0)
    assert len(limiter) == 150
    new = limiter.reconfigured(max_sources=10)
    assert len(new) == 0  # both tables were over the new bound
    for i in range(30):
        new.hit(f"10.0.1.{i}", "REGISTER", 0.0)
        assert len(new) <= 2 * 10
    smaller = new.reconfigured(max_sources=15)
    assert len(smaller) == 20  # within the bound: kept


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window": 0},
        {"requests": -1},
        {"requests": 2**41},
        {"methods": {"REGISTER": -1}},
        {"methods": {"requests": 5}},
        {"prefix_v4": 33},
        {"prefix_v6": -1},
        {"max_sources": 0},
    ],
)
def test_settings_are_checked(kwargs):
    with pytest.raises(ValueError):
        RateLimiter(**kwargs)
