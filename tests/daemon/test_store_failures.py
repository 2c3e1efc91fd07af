"""No ban is lost to a broken store: the keeper holds what the store could
not take and writes it once it can; a store deleted under the daemon is
rebuilt from the bans in force; ``list`` shows what is in force, written or
not. A full disk is a real one: a small tmpfs the test mounts (root)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sipwarden.daemon import bans as keeper_module
from sipwarden.daemon.bans import BanKeeper
from sipwarden.enforce import NullEnforcer
from sipwarden.policy.bans import BanBook
from sipwarden.store import BanStore

from ..disk import fill, small_disk


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk") as mounted:
        yield mounted


async def until(check: Callable[[], Awaitable[Any]], seconds: float) -> Any:
    """Await ``check()`` every 0.1 s until it is truthy, ``seconds`` at most."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await check()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.1)


def ban_many(keeper: BanKeeper, first: int, count: int) -> None:
    now = keeper.clock()
    for n in range(first, first + count):
        made = keeper.book.decide(
            f"203.0.113.{n}", reason="5 failed logins", detector="auth.brute-force", now=now
        )
        assert made is not None


def stored(path: Path) -> set[str]:
    store = BanStore(path)
    try:
        return {row["ip"] for row in store.in_force(keeper_module.time.time())}
    finally:
        store.close()


def test_bans_made_while_the_disk_is_full_are_held_then_written(disk: Path) -> None:
    path = disk / "sipwarden.db"

    async def main() -> None:
        keeper = BanKeeper(BanBook(), path, NullEnforcer())
        await keeper.start()
        try:
            ban_many(keeper, 1, 10)
            await until(lambda: asyncio.sleep(0, not keeper.book.changes), 5)
            await keeper._settle()
            filler = fill(disk)
            ban_many(keeper, 11, 30)
            await keeper._settle()
            assert keeper.store_error is not None and "disk is full" in keeper.store_error
            assert str(path) in keeper.store_error
            assert keeper.counters["store-unwritten"] == 30
            assert len(keeper.unwritten()) == 30
            listed = {row["ip"] for row in await keeper.list()}
            assert listed == {f"203.0.113.{n}" for n in range(1, 41)}  # in force: all
            filler.unlink()  # space again: the next tick writes what was held

            async def written() -> bool:
                return keeper.store_error is None and not keeper.unwritten()

            assert await until(written, 5)
            assert keeper.counters["store-written-late"] == 30
            assert keeper.counters["store-unwritten"] == 0
        finally:
            await keeper.stop()

    asyncio.run(main())
    assert stored(path) == {f"203.0.113.{n}" for n in range(1, 41)}


def test_past_the_bound_the_oldest_held_changes_are_let_go_loudly(
    disk: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Memory stays bounded; the kernel (its elements carry each ban's
    detector and reason) is the record of what was let go."""
    monkeypatch.setattr(keeper_module, "MAX_UNWRITTEN", 5)
    path = disk / "sipwarden.db"

    async def main() -> None:
        keeper = BanKeeper(BanBook(), path, NullEnforcer())
        await keeper.start()
        try:
            fill(disk)
            ban_many(keeper, 1, 12)
            await keeper._settle()
            assert len(keeper.unwritten()) == 5
            assert keeper.counters["store-let-go"] == 7
            assert [c.ban.target for c in keeper.unwritten()] == [
                f"203.0.113.{n}" for n in range(8, 13)
            ]
            assert len(await keeper.list()) == 12  # all still in force
        finally:
            await keeper.stop()

    asyncio.run(main())
    assert "no longer held" in caplog.text and "the kernel keeps those bans" in caplog.text


def test_a_store_deleted_while_running_is_rebuilt_from_the_bans_in_force(tmp_path: Path) -> None:
    path = tmp_path / "sipwarden.db"

    async def main() -> None:
        keeper = BanKeeper(BanBook(), path, NullEnforcer())
        await keeper.start()
        try:
            ban_many(keeper, 1, 5)
            await keeper._settle()
            for name in ("sipwarden.db", "sipwarden.db-wal", "sipwarden.db-shm"):
                (tmp_path / name).unlink(missing_ok=True)

            async def rebuilt() -> bool:
                return path.exists() and keeper.counters["store-rebuilt"] == 1

            assert await until(rebuilt, 5)
            await keeper._settle()
            ban_many(keeper, 6, 1)  # and it goes on writing to the new one
            await keeper._settle()
        finally:
            await keeper.stop()

    asyncio.run(main())
    assert stored(path) == {f"203.0.113.{n}" for n in range(1, 7)}
