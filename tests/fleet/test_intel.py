"""Shared intel's parts: the payload and its bounds, the gate's rule, the
feeds' hash, the store's adoption of another node's list, and two nodes'
``FleetIntel`` against a real redis-server (one fetcher by lease, the list
taken by the other, a failed fetch that keeps it, a takeover when the
fetcher's lease runs out, every node for itself while Redis is away)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from sipwarden.config import FleetConfig
from sipwarden.fleet import FleetLink
from sipwarden.fleet import intel as fleet_intel
from sipwarden.fleet.intel import (
    FleetIntel,
    FleetIntelError,
    decode_entries,
    encode_entries,
    fetch_allowed,
    parse_feeds,
    state_as_dict,
    state_from_dict,
)
from sipwarden.store.intel import IntelStore
from sipwarden.values import FeedState

from .redis_server import PASSWORD, USER, redis_server

ENTRIES = [("203.0.113.7", 100.0, 200.0), ("2001:db8::/64", 150.0, 150.0)]


def test_the_payload_round_trips_and_refuses_what_is_not_its_feed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    packed = encode_entries("blocklist", ENTRIES)
    assert decode_entries("blocklist", packed) == ENTRIES
    with pytest.raises(FleetIntelError, match="malformed"):
        decode_entries("other", packed)  # another feed's list is never taken for this one
    with pytest.raises(FleetIntelError, match="not zlib"):
        decode_entries("blocklist", b"not compressed")
    for bad in (("not-an-address", 1.0, 2.0), ("203.0.113.5", float("nan"), 2.0),
                ("203.0.113.5", 1.0, float("inf"))):  # fmt: skip
        with pytest.raises(FleetIntelError, match="malformed"):  # refused whole
            decode_entries("blocklist", encode_entries("blocklist", [*ENTRIES, bad]))
    big = encode_entries("blocklist", [(f"203.0.113.{i}", 1.0, 2.0) for i in range(200)])
    monkeypatch.setattr(fleet_intel, "MAX_PAYLOAD", 1000)
    with pytest.raises(FleetIntelError, match="past 1000 bytes"):
        decode_entries("blocklist", big)


def test_the_gate_lets_the_lease_holder_fetch_and_everyone_after_a_long_outage() -> None:
    # the holder, while its lease lasts (even with Redis away: no one else can take it)
    assert fetch_allowed(10.0, 15.0, True, None, 300.0)
    assert fetch_allowed(10.0, 15.0, False, 9.0, 300.0)
    # a lease run out, Redis up: another node fetches
    assert not fetch_allowed(16.0, 15.0, True, None, 300.0)
    # Redis away: not yet for itself, then for itself
    assert not fetch_allowed(100.0, None, False, 0.0, 300.0)
    assert fetch_allowed(300.0, None, False, 0.0, 300.0)
    assert not fetch_allowed(300.0, None, True, None, 300.0)  # back: one fetcher again


def test_the_feeds_hash_and_the_state_parse_leniently() -> None:
    state = FeedState("1700000000", 5.0, "HTTP 500", 6.0, 1.0, (4.0, 5.0))
    assert state_from_dict(state_as_dict(state)) == state
    meta = b'{"node": "a", "state": {"last_success": 5.0}}'
    fields = {b"apiban:sip|v": b"3", b"apiban:sip|m": meta, b"x|m": b"{", b"y|v": b"z"}
    parsed = parse_feeds(fields)
    assert list(parsed) == ["apiban:sip"] and parsed["apiban:sip"][0] == 3
    assert parsed["apiban:sip"][1]["node"] == "a"


def test_the_store_adopts_another_nodes_list_and_state(tmp_path: Path) -> None:
    store = IntelStore(tmp_path / "s.db")
    try:
        store.outcome("blocklist", 50.0, "this node's own old error")
        state = FeedState("1700000000", 90.0, "the fetcher's error", 91.0, 10.0, (88.0, 89.0))
        assert store.adopt("blocklist", state, ENTRIES, {"source": "x"}, 100.0) == (2, 0)
        assert store.entries("blocklist") == {"203.0.113.7": 200.0, "2001:db8::/64": 150.0}
        kept = store.state("blocklist")
        assert kept is not None
        # paging and pacing are the fetcher's; the fetcher's error is not this node's
        assert (kept.last_id, kept.last_success, kept.sent) == ("1700000000", 90.0, (88.0, 89.0))
        assert kept.last_error is None
        assert store.stamps()["blocklist"] == 100.0 and store.info("blocklist") == {"source": "x"}
        # the same list again: nothing changed, the stamp stays (no worker reloads)
        assert store.adopt("blocklist", state, ENTRIES, None, 110.0) == (0, 0)
        assert store.stamps()["blocklist"] == 100.0 and store.info("blocklist") == {"source": "x"}
        # a re-sighting and a removal
        later = [("203.0.113.7", 100.0, 300.0)]
        assert store.adopt("blocklist", state, later, None, 120.0) == (1, 1)
        assert store.entries("blocklist") == {"203.0.113.7": 300.0}
        # the state alone
        assert store.adopt("blocklist", FeedState("x", 130.0), None, None, 130.0) == (0, 0)
        assert store.entries("blocklist") == {"203.0.113.7": 300.0}
        assert store.stamps()["blocklist"] == 120.0
    finally:
        store.close()


# ------------------------------------------------------- two nodes, real Redis


def node(url: str, name: str, store: Path, **options: float) -> FleetIntel:
    link = FleetLink(
        FleetConfig(redis=url, node=name, username=USER, password=PASSWORD, timeout=1.0)
    )
    return FleetIntel(
        link,
        store,
        lambda: {"blocklist": None},
        remote_every=0.0,
        poll=3600.0,  # no rounds of its own: the test makes them (and stops making them)
        close_link=True,
        **options,
    )


def test_one_node_fetches_the_other_takes_its_list_and_takes_over(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as server:

        async def scenario() -> None:
            a = node(server.url, "a", tmp_path / "a.db", lease=2.0, alone_after=1.0)
            b = node(server.url, "b", tmp_path / "b.db", lease=2.0, alone_after=1.0)
            await a.start()
            await b.start()
            try:
                assert a.may_fetch("blocklist") and not b.may_fetch("blocklist")
                # a's keeper fetches: a good list in a's store
                a.store.replace("blocklist", ["203.0.113.7", "203.0.113.8"], time.time(), {})
                await a.round()  # published
                await b.round()  # taken
                assert set(b.store.entries("blocklist")) == {"203.0.113.7", "203.0.113.8"}
                shown = b.status()["feeds"][0]
                assert (shown["role"], shown["taken_from"], shown["fetcher"]) == ("fleet", "a", "a")
                assert a.status()["feeds"][0]["role"] == "fetcher"
                # a fetch that fails: the last good list stays everywhere, the error is told
                a.store.outcome("blocklist", time.time(), "HTTP 503")
                await a.round()
                await b.round()
                assert set(b.store.entries("blocklist")) == {"203.0.113.7", "203.0.113.8"}
                assert b.status()["feeds"][0]["fetcher_last_error"] == "HTTP 503"
                # a's process hangs (no rounds, no release): its lease runs out, b takes over
                deadline = time.monotonic() + 10
                while not b.may_fetch("blocklist") and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    await b.round()
                assert b.may_fetch("blocklist") and b.status()["feeds"][0]["role"] == "fetcher"
                # b's fetch changes the list: a (back, not the holder) takes it
                b.store.replace("blocklist", ["203.0.113.9"], time.time(), {})
                await b.round()
                await a.round()
                assert not a.may_fetch("blocklist")
                assert set(a.store.entries("blocklist")) == {"203.0.113.9"}
                # Redis away: b keeps its lease until it runs out; a waits, then fetches alone
                server.stop()
                await a.round()
                await b.round()
                assert not a.link.up and not a.may_fetch("blocklist")
                await asyncio.sleep(2.2)
                await a.round()
                await b.round()
                assert a.may_fetch("blocklist") and b.may_fetch("blocklist")
                assert b.status()["feeds"][0]["role"] == "alone"
                server.start()  # back: one fetcher again
                await a.round()
                await b.round()
                assert [a.may_fetch("blocklist"), b.may_fetch("blocklist")].count(True) == 1
            finally:
                await b.stop()
                await a.stop()

        asyncio.run(scenario())


def test_a_new_fetcher_with_a_later_list_of_its_own_publishes_it(tmp_path: Path) -> None:
    """A node that fetched alone while Redis was away, and then takes the
    lease, keeps its later list and gives it to the fleet (rather than
    taking the fleet's older one)."""
    with redis_server(tmp_path / "redis") as server:

        async def scenario() -> None:
            b = node(server.url, "b", tmp_path / "b.db", lease=1.5)
            await b.start()
            b.store.replace("blocklist", ["203.0.113.1"], time.time(), {})
            await b.round()  # b's list is the fleet's
            a = node(server.url, "a", tmp_path / "a.db", lease=1.5)
            await a.start()  # a takes b's list
            assert set(a.store.entries("blocklist")) == {"203.0.113.1"}
            a.store.replace("blocklist", ["203.0.113.2"], time.time() + 1, {})  # a, alone
            try:
                # b hangs: its lease runs out, a takes it with its own later list
                deadline = time.monotonic() + 10
                while not a.may_fetch("blocklist") and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    await a.round()
                assert a.may_fetch("blocklist")
                await a.round()
                assert set(a.store.entries("blocklist")) == {"203.0.113.2"}
                await b.round()  # b finds its lease gone and takes a's list
                assert not b.may_fetch("blocklist")
                assert set(b.store.entries("blocklist")) == {"203.0.113.2"}
            finally:
                await a.stop()
                await b.stop()

        asyncio.run(scenario())
