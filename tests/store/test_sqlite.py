"""The SQLite ban store: what the ban book decided survives a restart."""

from __future__ import annotations

from sipwarden.policy.bans import BanBook
from sipwarden.store import BanStore


def test_bans_history_and_expiry_survive_a_restart(tmp_path):
    db = tmp_path / "sipwarden.db"
    book, store = BanBook(), BanStore(db)
    book.decide(
        "192.0.2.66",
        reason="5 failed logins",
        detector="auth-failures",
        now=0.0,
        evidence=["REGISTER sip:pbx SIP/2.0 ..."],
    )
    book.decide("198.51.100.0/24", reason="flood", detector="rate", now=10.0, duration=None)
    book.decide("203.0.113.5", reason="scanner", detector="scan.sipsak", now=20.0)
    store.apply(book.drain(), now=20.0)
    book.lift("203.0.113.5")
    book.expire(700.0)  # the first ban (600 s) ends
    store.apply(book.drain(), now=700.0)
    store.close()

    store = BanStore(db)  # "restart"
    listed = store.in_force(800.0)
    assert [(b["ip"], b["expires_at"]) for b in listed] == [("198.51.100.0/24", None)]
    history = store.history("192.0.2.66")
    assert history[0]["ended_at"] == 600.0 and history[0]["evidence"] == [
        "REGISTER sip:pbx SIP/2.0 ..."
    ]
    assert store.history("203.0.113.5")[0]["ended_at"] == 620.0  # expired before the lift

    fresh = BanBook()
    fresh.restore(store.load(), now=800.0)
    assert fresh.banned("198.51.100.9", 800.0).detector == "rate"
    assert fresh.banned("192.0.2.66", 800.0) is None
    # the 192.0.2.66 history counts: its next ban is the second step (1 h)
    again = fresh.decide("192.0.2.66", reason="again", detector="auth-failures", now=900.0)
    assert again.offence == 2 and again.expires_at == 900.0 + 3600.0
    store.apply(fresh.drain(), now=900.0)
    assert [b["ip"] for b in store.in_force(901.0)] == ["198.51.100.0/24", "192.0.2.66"]


def test_a_new_ban_on_a_target_ends_the_one_in_force(tmp_path):
    book, store = BanBook(), BanStore(tmp_path / "s.db")
    book.decide("192.0.2.1", reason="a", detector="d", now=0.0, duration=60)
    book.decide("192.0.2.1", reason="b", detector="d", now=30.0, duration=None)
    store.apply(book.drain(), now=30.0)
    rows = store.history("192.0.2.1")
    assert [(r["reason"], r["ended_at"]) for r in rows] == [("a", 30.0), ("b", None)]
    book.lift("192.0.2.1")
    store.apply(book.drain(), now=50.0)
    assert store.history("192.0.2.1")[1]["ended_at"] == 50.0  # lifted by the operator
    assert store.in_force(51.0) == []


def test_another_workers_bans_are_found_and_adopted(tmp_path):
    """Workers share the store: each adopts the bans the others wrote, and
    `bans remove` finds a ban this worker never made."""
    db = tmp_path / "sipwarden.db"
    mine, theirs = BanStore(db), BanStore(db)
    seen = mine.last_id()
    other = BanBook()
    other.decide("192.0.2.7", reason="flood", detector="rate.register", now=100.0)
    other.decide("192.0.2.8", reason="old", detector="rate.register", now=0.0, duration=10)
    theirs.apply(other.drain(), now=100.0)
    last, bans = mine.newer(seen, now=100.0)
    assert last == mine.last_id() > seen
    assert [b.target for b in bans] == ["192.0.2.7"]  # the ended one is not adopted
    assert mine.newer(last, now=100.0) == (last, [])
    book = BanBook()
    book.adopt(bans[0], now=100.0)
    assert book.banned("192.0.2.7", 100.0) is not None
    assert book.drain() == []  # written by the other worker already: nothing to write
    assert mine.open_ban("192.0.2.7") == bans[0]
    assert mine.open_ban("192.0.2.99") is None
