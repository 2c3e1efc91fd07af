"""``BanBook.receive`` and ``lift_received``: bans from other fleet nodes."""

from __future__ import annotations

import ipaddress

from sipwarden.policy.bans import BanBook
from sipwarden.values import Ban

NOW = 1_000_000.0


def fleet_ban(target: str = "203.0.113.7", *, created: float = NOW - 5, left: float = 600) -> Ban:
    return Ban(target, "5 failed logins", "auth.brute-force", created, NOW + left, 2, ("x",), "b")


def test_a_received_ban_is_made_once_with_its_origin_and_counts_as_an_offence() -> None:
    book = BanBook()
    made = book.receive(fleet_ban(), NOW)
    assert made is not None and made.origin == "b" and made.offence == 2
    assert [c.op for c in book.drain()] == ["add"]
    assert book.receive(fleet_ban(), NOW) is None  # the same entry twice: nothing
    assert book.drain() == [] and book.offences("203.0.113.7", NOW) == 1
    # the next local ban of the source is its second: progressive lengths count the fleet's
    book.lift("203.0.113.7")
    local = book.decide("203.0.113.7", reason="r", detector="d", now=NOW + 1)
    assert local is not None and local.offence == 2 and local.origin == ""


def test_a_longer_ban_in_force_outlasts_a_received_one() -> None:
    book = BanBook()
    book.decide("203.0.113.7", reason="r", detector="d", now=NOW, duration=3600)
    book.drain()
    assert book.receive(fleet_ban(left=60), NOW) is None and book.drain() == []


def test_the_allow_list_and_protected_networks_win_over_the_fleet() -> None:
    book = BanBook(allow=[ipaddress.ip_network("203.0.113.0/24")])
    book.protect([(ipaddress.ip_network("198.51.100.1/32"), "this machine")])
    assert book.receive(fleet_ban(), NOW) is None
    assert book.receive(fleet_ban("198.51.100.1"), NOW) is None
    assert book.receive(fleet_ban("10.0.0.0/4"), NOW) is None  # wider than allowed
    assert book.drain() == [] and book.offences("203.0.113.7", NOW) == 0


def test_an_unban_received_lifts_that_ban_or_an_older_one_never_a_newer() -> None:
    book = BanBook()
    book.receive(fleet_ban(created=NOW - 5), NOW)
    assert book.lift_received("203.0.113.7", NOW - 10) is None  # a newer ban stays
    assert book.lift_received("203.0.113.7", NOW - 5) is not None
    assert book.lift_received("203.0.113.7", NOW - 5) is None  # not banned: nothing
    assert book.banned("203.0.113.7", NOW) is None
