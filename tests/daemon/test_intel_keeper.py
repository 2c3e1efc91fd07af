"""The intel keeper in-process: the store and the index kept in step, the
fetches of worker 0 (APIBAN against the local mock, list feeds from files
and a local HTTP server), the kernel's feed sets through the real
enforcer in a namespace, turns taken with `intel sync`, lookups, a new
country database. The real daemon is in tests/edge/test_intel.py."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sipwarden.config import IntelConfig, config_from_dict
from sipwarden.daemon import intel as keeper_module
from sipwarden.daemon.intel import IntelKeeper, feed_specs, sync_apiban
from sipwarden.enforce import NftablesEnforcer
from sipwarden.fetch.geoip import open_geo
from sipwarden.intel.index import AddressIndex
from sipwarden.policy import build_policy
from sipwarden.store.intel import IntelStore
from sipwarden.store.lock import feed_lock
from sipwarden.values import Peer

from ..conftest import need
from ..edge.netns import Namespace, namespace
from ..intel.mock_apiban import MockApiban
from ..intel.test_apiban import run

KEY = "s3cr3t-k3y-0123456789"
DAY = 86400.0
T = TypeVar("T")


def intel(**sections: Any) -> IntelConfig:
    return config_from_dict({"intel": sections}).intel


def apiban(base: str, **extra: Any) -> dict[str, Any]:
    # the rate window scaled down: 11 requests a second
    return {"key": KEY, "url": base, "rate_window": 1, "refresh": 3600, **extra}


async def until(predicate: Callable[[], Any], seconds: float = 10.0) -> Any:
    """Poll (every 50 ms, at most ``seconds``) until ``predicate()`` is truthy."""
    for _ in range(int(seconds / 0.05)):
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true after {seconds} s: {predicate}")


def test_specs_name_the_feeds_and_never_hold_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIPWARDEN_APIBAN_KEY", raising=False)
    assert feed_specs(intel()) == {}  # no key: no APIBAN
    monkeypatch.setenv("SIPWARDEN_APIBAN_KEY", KEY)
    specs = feed_specs(intel(feeds=[{"name": "voipbl", "url": "https://example.org/list"}]))
    assert list(specs) == ["apiban:sip", "voipbl"]
    assert specs["apiban:sip"].life == 7 * DAY and specs["voipbl"].life is None
    assert KEY not in repr(specs)
    assert feed_specs(intel(apiban={"enabled": False})) == {}


def test_the_index_follows_the_store(tmp_path: Path) -> None:
    db = tmp_path / "sipwarden.db"
    now = time.time()
    store = IntelStore(db)
    store.replace("blocklist", ["192.0.2.0/24", "2001:db8::7"], now, {})
    config = intel(feeds=[{"name": "blocklist", "path": "x.txt"}])

    async def scenario() -> None:
        index = AddressIndex()
        keeper = IntelKeeper(config, db, index)
        await keeper.start()  # loaded before the edge's first packet
        try:
            assert index.lookup("192.0.2.9", now) is not None
            assert index.lookup("2001:db8::7", now) is not None
            await asyncio.to_thread(
                store.replace, "blocklist", ["192.0.2.0/24", "198.51.100.1"], now + 1, {}
            )
            await until(lambda: index.lookup("198.51.100.1", now) is not None, 5)
            assert index.lookup("2001:db8::7", now) is None  # unlisted
            assert keeper.loaded() == {"blocklist": 2}
            # a reload without the feed: its entries leave the index
            keeper.configure(intel())
            await until(lambda: len(index) == 0, 5)
            assert keeper.loaded() == {}
        finally:
            await keeper.stop()

    run(scenario())
    store.close()


def test_a_feed_entry_wider_than_a_ban_may_be_is_left_out(tmp_path: Path) -> None:
    """A feed listing 0.0.0.0/0 (a broken or hostile list) must not drop the
    world, in the edge nor in the kernel: the same cap as for bans."""
    db = tmp_path / "sipwarden.db"
    now = time.time()
    store = IntelStore(db)
    store.replace("blocklist", ["0.0.0.0/0", "::/0", "10.0.0.0/7", "192.0.2.0/24"], now, {})
    config = intel(feeds=[{"name": "blocklist", "path": "x.txt"}])

    async def scenario() -> None:
        index = AddressIndex()
        keeper = IntelKeeper(config, db, index, widest=(8, 32))
        await keeper.start()
        try:
            assert index.lookup("192.0.2.9", now) is not None
            assert index.lookup("198.51.100.1", now) is None
            assert index.lookup("2001:db8::1", now) is None
            assert keeper.loaded() == {"blocklist": 1}
            assert keeper.counters["too-wide:blocklist"] == 3
        finally:
            await keeper.stop()

    run(scenario())
    store.close()


def test_apiban_entries_fall_out_after_their_life(tmp_path: Path) -> None:
    db = tmp_path / "sipwarden.db"
    clock = [1_800_000_000.0]
    store = IntelStore(db)
    from sipwarden.values import FeedState

    store.save(
        "apiban:sip",
        FeedState(last_id="1799999000"),
        {"45.0.0.1": clock[0] - 7 * DAY + 30, "45.0.0.2": clock[0] - DAY},
        [],
        clock[0],
    )
    store.close()

    async def scenario() -> None:
        index = AddressIndex()
        keeper = IntelKeeper(intel(apiban=apiban("http://127.0.0.1:9/api/")), db, index)
        keeper.clock = lambda: clock[0]
        await keeper.start()
        try:
            assert keeper.loaded() == {"apiban:sip": 2}
            clock[0] += 31  # the first one is 7 days old now
            assert index.lookup("45.0.0.1", clock[0]) is None  # a lookup sees the end at once
            clock[0] += 60  # its re-read is due (at most once a minute)
            assert await keeper.sync_index()
            assert keeper.loaded() == {"apiban:sip": 1}
            assert index.get("45.0.0.1") is None and index.get("45.0.0.2") is not None
        finally:
            await keeper.stop()

    run(scenario())


def test_worker_zero_fetches_apiban_and_lists_and_loads_the_kernel(tmp_path: Path) -> None:
    """The real enforcer: nft runs in a namespace the test makes."""
    need(os.geteuid() == 0, "nftables needs root")
    need(shutil.which("nft") is not None, "nftables is not installed (apt-get install nftables)")
    db = tmp_path / "sipwarden.db"
    listed = tmp_path / "list.txt"
    listed.write_text("# a blocklist\n198.51.100.0/24\n2001:db8::/48\n203.0.113.5\n")

    async def scenario(ns: Namespace) -> None:
        async with MockApiban(key=KEY, rate_window=1.0, batch=100) as mock:
            start = int(time.time()) - 3600
            for i in range(300):
                mock.add(f"45.1.{i // 250}.{i % 250 + 1}", start + i)
            mock.add("2a01:4f8::9", start + 400)
            config = intel(
                apiban=apiban(mock.base),
                feeds=[{"name": "local", "path": str(listed), "refresh": 3600}],
            )
            index = AddressIndex()
            kernel = NftablesEnforcer(table="swkeeper", command_prefix=ns.command())
            await kernel.start([], time.time())  # as the daemon's reconcile does
            keeper = IntelKeeper(
                config,
                db,
                index,
                fetch=True,
                enforcer=kernel,
                # trusted peer and allow list: never in the kernel, a network split around it
                exclude=lambda: ["203.0.113.5/32", "198.51.100.128/25"],
            )
            await keeper.start()
            try:
                await until(lambda: keeper.loaded() == {"apiban:sip": 301, "local": 3})
                assert index.lookup("45.1.0.7", time.time()) is not None
                assert index.lookup("198.51.100.200", time.time()) is not None
                held: dict[str, float | None] = {}
                for _ in range(100):  # at most 10 s
                    held = await kernel.feed_elements()
                    if len(held) == 301 + 2:
                        break
                    await asyncio.sleep(0.1)
                assert len(held) == 303, held
                assert "203.0.113.5" not in held and "198.51.100.0/24" not in held
                assert "198.51.100.0/25" in held and held["198.51.100.0/25"] is None
                assert "2001:db8::/48" in held and held["2001:db8::/48"] is None
                left = start + 400 + 7 * DAY - time.time()  # the kernel's timeout, in seconds
                assert held["2a01:4f8::9"] == pytest.approx(left, abs=5)
                await until(lambda: keeper.rows)
                shown = {f["feed"]: f for f in keeper.status()["feeds"]}
                assert shown["apiban:sip"]["entries"] == 301 and shown["local"]["in_force"] == 3
                assert shown["apiban:sip"]["last_error"] is None
                assert keeper.status()["kernel"]["elements"] == 303
                assert KEY not in str(keeper.status())
                assert mock.max_in_window <= 11
            finally:
                await keeper.stop()
                await kernel.stop()

    with namespace() as ns:
        run(scenario(ns))


def test_a_failing_list_keeps_its_last_good_list_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "sipwarden.db"
    listed = tmp_path / "list.txt"
    listed.write_text("192.0.2.1\n192.0.2.2\n")
    config = intel(feeds=[{"name": "local", "path": str(listed), "refresh": 3600}])

    async def scenario() -> None:
        keeper = IntelKeeper(config, db, AddressIndex(), fetch=True)
        await keeper.start()
        await until(lambda: keeper.loaded() == {"local": 2})
        await keeper.stop()
        listed.unlink()  # gone: every fetch now fails
        index = AddressIndex()
        keeper = IntelKeeper(config, db, index, fetch=True)
        await keeper.start()
        try:
            assert keeper.loaded() == {"local": 2}  # from the store, before any fetch
            await until(lambda: keeper.status()["feeds"][0]["last_error"])
            (feed,) = keeper.status()["feeds"]
            assert "FileNotFoundError" in feed["last_error"] and feed["entries"] == 2
            assert index.lookup("192.0.2.2", time.time()) is not None
        finally:
            await keeper.stop()

    run(scenario())


def test_the_daemon_and_intel_sync_take_turns(tmp_path: Path) -> None:
    db = tmp_path / "sipwarden.db"

    async def scenario() -> None:
        async with MockApiban(key=KEY, rate_window=1.0) as mock:
            mock.add("45.2.0.1", int(time.time()) - 60)
            settings = keeper_module.apiban_settings(intel(apiban=apiban(mock.base)))
            assert settings is not None
            store = IntelStore(db)
            async with feed_lock(db, "apiban:sip") as mine:  # `intel sync` holds it
                assert mine
                assert await sync_apiban(db, store, settings) is None  # the daemon skips
                assert mock.requests == []
            result = await sync_apiban(db, store, settings)
            assert result is not None and result.ok and result.total == 1
            store.close()

    run(scenario())


def test_lookup_says_who_lists_an_address_since_when(tmp_path: Path) -> None:
    db = tmp_path / "sipwarden.db"
    now = time.time()
    store = IntelStore(db)
    store.replace("local", ["192.0.2.0/24", "192.0.2.7"], now - 100, {})
    store.close()
    config = config_from_dict(
        {
            "policy": {"trusted_peers": ["192.0.2.9"]},
            "intel": {"feeds": [{"name": "local", "path": "x"}]},
        }
    )
    policy = build_policy(config)
    assert policy.intel is not None

    async def scenario() -> tuple[dict[str, Any], ...]:
        keeper = IntelKeeper(config.intel, db, policy.intel.index)  # type: ignore[union-attr]
        await keeper.start()
        try:
            return (
                await keeper.lookup(policy, "192.0.2.7"),
                await keeper.lookup(policy, "192.0.2.9"),
                await keeper.lookup(policy, "198.51.100.1"),
                await keeper.lookup(policy, "::ffff:192.0.2.7"),  # a dual-stack socket's spelling
            )
        finally:
            await keeper.stop()

    listed, trusted, clean, mapped = run(scenario())
    assert mapped == listed  # the same address, as the edge sees it
    assert listed["verdict"] == "drop (intel.local)"
    assert [(i["target"], i["first_seen"]) for i in listed["listed"]] == [
        ("192.0.2.7", now - 100),
        ("192.0.2.0/24", now - 100),
    ]
    assert trusted["verdict"] == "allow (trusted-peer)" and trusted["trusted"]
    assert trusted["listed"][0]["target"] == "192.0.2.0/24"  # listed, and it keeps working
    assert clean["verdict"] == "pass" and clean["listed"] == []
    with pytest.raises(ValueError):
        run(IntelKeeper(config.intel, db, AddressIndex()).lookup(policy, "192.0.2.0/24"))
    verdict, _ = policy.judge_bytes(b"x" * 40, Peer("udp", "192.0.2.7", 5060), 5060, now)
    assert verdict.reason == "intel.local"


def test_a_country_database_replaced_on_disk_is_reopened(tmp_path: Path) -> None:
    from ..intel.geodata import write_mmdb

    db = tmp_path / "sipwarden.db"
    mmdb = tmp_path / "countries.mmdb"
    write_mmdb(mmdb, {"192.0.2.0/24": "XA"}, {})
    config = config_from_dict(
        {"intel": {"geoip": {"database": str(mmdb), "allow_countries": ["XA"]}}}
    )
    policy = build_policy(config, countries=open_geo(config.intel.geoip))
    screen = policy.intel
    assert screen is not None
    assert screen.check("192.0.2.5", 0.0) is None  # XA: allowed

    async def scenario() -> tuple[bool, bool, bool]:
        keeper = IntelKeeper(config.intel, db, screen.index, screen=lambda: screen)
        await keeper.start()
        try:
            unchanged = await keeper.reopen_countries()
            fresh = tmp_path / "new.mmdb"  # geoipupdate writes a new file, then renames it
            write_mmdb(fresh, {"192.0.2.0/24": "XB"}, {})
            fresh.replace(mmdb)
            reopened = await keeper.reopen_countries()
            broken = tmp_path / "broken.mmdb"
            broken.write_bytes(b"not a database")
            broken.replace(mmdb)
            refused = await keeper.reopen_countries()
            return unchanged, reopened, refused
        finally:
            await keeper.stop()

    unchanged, reopened, refused = run(scenario())
    assert (unchanged, reopened, refused) == (False, True, False)
    verdict = screen.check("192.0.2.5", 0.0)
    assert verdict is not None and verdict.reason == "geo.XB"  # the new database, kept


def test_a_restart_asks_a_list_feed_changed_since(tmp_path: Path) -> None:
    from aiohttp import web

    from ..intel.test_feeds import serve

    db = tmp_path / "sipwarden.db"
    asked: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        asked.append(request.headers.get("If-None-Match"))
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304)
        return web.Response(text="192.0.2.1\n192.0.2.2\n", headers={"ETag": '"v1"'})

    async def run_once(config: IntelConfig, requests: int) -> None:
        keeper = IntelKeeper(config, db, AddressIndex(), fetch=True)
        await keeper.start()
        try:
            await until(lambda: len(asked) == requests and keeper.rows, 5)
            await until(lambda: keeper.loaded() == {"remote": 2}, 5)
        finally:
            await keeper.stop()

    async def scenario() -> tuple[list[dict[str, Any]], int]:
        async with serve(handler) as url:
            config = intel(feeds=[{"name": "remote", "url": url, "refresh": 3600}])
            await run_once(config, 1)  # a start
            await run_once(config, 2)  # a restart
            store = IntelStore(db)
            try:
                return [r.as_dict() for r in store.status()], store.count("remote")
            finally:
                store.close()

    rows, count = run(scenario())
    assert asked == [None, '"v1"']  # the restart's first request was conditional
    assert count == 2 and rows[0]["last_error"] is None and rows[0]["etag"] == '"v1"'


def test_a_feeds_new_list_and_its_failure_are_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keeper_module, "STATUS_EVERY", 0.1)  # the store's view, looked at often
    db = tmp_path / "sipwarden.db"
    listed = tmp_path / "list.txt"
    listed.write_text("192.0.2.1\n192.0.2.2\n")
    config = intel(feeds=[{"name": "local", "path": str(listed), "refresh": 1}])
    told: list[Any] = []

    async def scenario() -> None:
        keeper = IntelKeeper(config, db, AddressIndex(), fetch=True, on_event=told.append)
        await keeper.start()
        try:
            await until(lambda: told)
            listed.unlink()  # the next fetch fails
            await until(lambda: len(told) >= 2)
        finally:
            await keeper.stop()

    run(scenario())
    updated, failed = told[:2]
    assert (updated.kind, updated.reason) == ("feed", "local")
    assert dict(updated.fields) == {"state": "updated", "entries": 2}
    assert dict(failed.fields)["state"] == "failed"
    assert "FileNotFoundError" in str(dict(failed.fields)["error"])
    assert dict(failed.fields)["entries"] == 2  # the last good list is kept
