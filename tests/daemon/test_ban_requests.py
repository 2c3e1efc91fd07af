"""Ban requests as the control socket and REST hand them to the ban keeper:
what cannot be banned is refused with the reason, and nothing changes."""

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

import pytest

from sipwarden.daemon.bans import BanKeeper, add_request, remove_request
from sipwarden.enforce import NullEnforcer
from sipwarden.policy.bans import BanBook

DURATION_ERROR = "duration: seconds (at least 1, at most ten years), or null for permanent"


def ask(keeper: BanKeeper, request: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(add_request(keeper, request))


@pytest.mark.parametrize(
    "duration", [float("nan"), float("inf"), -5, 0, 0.5, 8e-91, True, "1h", 1e308, 4e8, [600]]
)
def test_a_ban_request_with_a_bad_duration_is_refused(tmp_path: Path, duration: object) -> None:
    """The control socket takes JSON, and Python's json reads NaN and Infinity:
    a ban dated NaN would never end nor be enforced; 1e308 s is a typo or an
    attack. Refused before the book."""
    keeper = BanKeeper(BanBook(), tmp_path / "bans.db", NullEnforcer())
    answer = ask(keeper, {"target": "192.0.2.7", "duration": duration})
    assert answer == {"ok": False, "error": DURATION_ERROR}
    assert keeper.book.changes == []


def protected_book() -> BanBook:
    return BanBook(
        allow=[ipaddress.ip_network("198.51.100.7/32")],  # a trusted trunk
        protected=[
            (ipaddress.ip_network("192.0.2.10/32"), "this machine's address"),
            (ipaddress.ip_network("192.0.2.20/32"), "the PBX (edge.backend)"),
        ],
    )


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("0.0.0.0/0", "wider than /8 (bans.widest_v4)"),
        ("::/0", "wider than /32 (bans.widest_v6)"),
        ("10.0.0.0/7", "wider than /8"),
        ("0.0.0.0", "the unspecified address"),
        ("::", "the unspecified address"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("192.0.2.10", "this machine's address"),
        ("192.0.2.0/24", "this machine's address"),
        ("192.0.2.20", "the PBX"),
        ("198.51.100.7", "allow list (or a trusted peer)"),
        # the trunk's address in IPv6 clothing is the trunk
        ("::ffff:198.51.100.7", "allow list (or a trusted peer)"),
        ("::ffff:0:0/96", "wider than /8"),
    ],
)
def test_a_ban_that_would_cut_off_what_must_stay_reachable_is_refused(
    tmp_path: Path, target: str, why: str
) -> None:
    keeper = BanKeeper(protected_book(), tmp_path / "bans.db", NullEnforcer())
    answer = ask(keeper, {"target": target, "duration": 600})
    assert answer["ok"] is False
    assert why in answer["error"], answer
    assert keeper.book.changes == []
    assert keeper.book.active(0.0) == []


def test_a_detector_cannot_ban_what_is_protected_either() -> None:
    """Every way a ban is made goes through the book: a rule or detector
    decision on the PBX's address is refused like an operator's."""
    book = protected_book()
    assert book.decide("192.0.2.20", reason="r", detector="rule.x", now=1.0) is None
    assert book.decide("0.0.0.0/0", reason="r", detector="rule.x", now=1.0) is None
    assert book.decide("203.0.113.9", reason="r", detector="rule.x", now=1.0) is not None


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"target": "fe80::1%eth0"}, "scoped IPv6 address"),
        ({"target": ["192.0.2.7"]}, "is not an IP address or a CIDR"),
        ({"target": None}, "is not an IP address or a CIDR"),
        ({}, "is not an IP address or a CIDR"),
        ({"target": "192.0.2.7", "reason": {"x": 1}}, "reason: a string"),
    ],
)
def test_a_malformed_ban_request_is_refused(
    tmp_path: Path, request_: dict[str, Any], error: str
) -> None:
    keeper = BanKeeper(BanBook(), tmp_path / "bans.db", NullEnforcer())
    answer = ask(keeper, request_)
    assert answer["ok"] is False and error in answer["error"], answer
    assert keeper.book.changes == []


def test_a_remove_request_without_a_string_target_is_refused(tmp_path: Path) -> None:
    keeper = BanKeeper(BanBook(), tmp_path / "bans.db", NullEnforcer())
    answer = asyncio.run(remove_request(keeper, {"target": 7}))
    assert answer == {"ok": False, "error": "target: '7' is not an IP address or a CIDR"}


def test_a_long_reason_is_cut_and_a_good_ban_is_made(tmp_path: Path) -> None:
    async def main() -> dict[str, Any]:
        keeper = BanKeeper(BanBook(), tmp_path / "bans.db", NullEnforcer())
        await keeper.start()
        try:
            return await add_request(
                keeper, {"target": "::ffff:203.0.113.9", "duration": 60, "reason": "x" * 10_000}
            )
        finally:
            await keeper.stop()

    answer = asyncio.run(main())
    assert answer["ok"] is True
    assert answer["ban"]["ip"] == "203.0.113.9"  # the address the kernel sees
    assert len(answer["ban"]["reason"]) == 500
