"""The kernel as the record of the bans: each element carries what the store
needs to rebuild its ban (detector, reason, when, offence), so bans the
store lost (a full disk, then a SIGKILL; a store deleted) are merged back,
never flushed. Real nftables in a namespace the test creates."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

from sipwarden.daemon.bans import BanKeeper
from sipwarden.enforce.nftables import COMMENT_MAX, comment, from_comment
from sipwarden.policy.bans import BanBook
from sipwarden.store import BanStore
from sipwarden.values import Ban, Change

from .test_nftables import enforcer, ns, then_stop  # noqa: F401 (ns: a fixture)

NOW = 1_765_000_000.0


def test_a_comment_carries_the_ban_and_only_what_nft_can_quote() -> None:
    ban = Ban(
        "192.0.2.7", 'said "hi" \\ café\n' + "x" * 300, "auth.brute-force", NOW + 0.25, None, 3
    )
    text = comment(ban)
    assert len(text) <= COMMENT_MAX and text.isascii() and '"' not in text and "\\" not in text
    back = from_comment("192.0.2.7", text, 100.0, NOW + 50)
    assert (back.detector, back.created_at, back.offence) == ("auth.brute-force", NOW + 0.25, 3)
    assert back.reason.startswith("said ?hi? ? caf??")
    assert back.expires_at == NOW + 150
    # an element no sipwarden wrote (an older release, an operator's hand)
    unknown = from_comment("192.0.2.8", None, None, NOW)
    assert (unknown.detector, unknown.created_at, unknown.expires_at) == ("kernel", NOW, None)


def test_the_kernel_gives_back_the_bans_it_holds(ns) -> None:  # noqa: F811
    e = enforcer(ns)
    now = time.time()
    made = [
        Ban("192.0.2.7", "5 failed logins within 12 s", "auth.brute-force", now - 5, now + 600, 2),
        Ban("198.51.100.0/24", "added by the operator", "operator", now - 1, None),
        Ban("2001:db8::9", "scanner", "scanner.sipvicious", now, now + 60),
    ]

    async def scenario() -> list[Ban]:
        await e.start(made[:1], now)  # start() writes the record too
        await e.apply([Change("add", b) for b in made[1:]], now)
        return await e.bans(now)

    found = {b.target: b for b in asyncio.run(then_stop(e, scenario()))}
    assert found.keys() == {b.target for b in made}
    for ban in made:
        back = found[ban.target]
        assert (back.detector, back.reason, back.offence) == (ban.detector, ban.reason, ban.offence)
        assert math.isclose(back.created_at, ban.created_at, abs_tol=0.001)
        if ban.expires_at is None:
            assert back.expires_at is None
        else:
            assert back.expires_at is not None and abs(back.expires_at - ban.expires_at) < 2


def test_one_bad_change_does_not_spoil_its_batch(ns) -> None:  # noqa: F811
    """A NaN expiry once poisoned whole batches (540 of 2,988 bans never
    reached the kernel): now it is left out alone."""
    e = enforcer(ns)
    now = time.time()
    good = [Change("add", Ban(f"203.0.113.{n}", "r", "d", now, now + 600)) for n in range(1, 51)]
    bad = Change("add", Ban("192.0.2.99", "r", "d", now, math.nan))

    async def scenario() -> dict[str, float | None]:
        await e.start([], now)
        await e.apply([*good[:25], bad, *good[25:]], now)
        return await e.elements()

    found = asyncio.run(then_stop(e, scenario()))
    assert set(found) == {c.ban.target for c in good}


def test_bans_the_store_lacks_are_merged_from_the_kernel_at_start(ns, tmp_path: Path) -> None:  # noqa: F811
    """The store was deleted (or bans were made while the disk was full and
    the daemon was killed before they were written): the keeper writes the
    kernel's bans into the store with the time they have left; a ban the
    store lifted is not brought back; nothing leaves the kernel."""
    e = enforcer(ns)
    now = time.time()
    kept = Ban("192.0.2.7", "5 failed logins", "auth.brute-force", now - 10, now + 590, 2)
    lifted = Ban("192.0.2.8", "flood", "rate.requests", now - 20, now + 580)
    path = tmp_path / "sipwarden.db"
    store = BanStore(path)
    store.apply([Change("add", lifted)], now - 20)
    store.apply([Change("remove", lifted)], now - 5)  # lifted, but the kernel still had it
    store.close()

    async def scenario() -> tuple[list[Ban], dict[str, float | None]]:
        await e.start([kept, lifted], now)
        keeper = BanKeeper(BanBook(), path, e)
        await keeper.start()
        try:
            await keeper._settle()
            in_force = keeper.book.active(time.time())
        finally:
            await keeper.stop()
        return in_force, await e.elements()

    in_force, kernel = asyncio.run(then_stop(e, scenario()))
    assert [b.target for b in in_force] == ["192.0.2.7"]
    assert set(kernel) == {"192.0.2.7", "192.0.2.8"}  # the keeper lifts nothing at start
    store = BanStore(path)
    try:
        rows = store.in_force(time.time())
        history = store.history("192.0.2.7")
    finally:
        store.close()
    assert [(r["ip"], r["detector"], r["offence"]) for r in rows] == [
        ("192.0.2.7", "auth.brute-force", 2)
    ]
    assert history[0]["reason"] == "5 failed logins"
    assert abs(history[0]["expires_at"] - kept.expires_at) < 2
