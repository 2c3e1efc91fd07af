"""Ban requests as the control socket and REST hand them to the ban keeper."""

import asyncio
from pathlib import Path

import pytest


@pytest.mark.parametrize("duration", [float("nan"), float("inf"), -5, 0, True, "1h"])
def test_a_ban_request_with_a_bad_duration_is_refused(tmp_path: Path, duration: object) -> None:
    """The control socket takes JSON, and Python's json reads NaN and Infinity:
    a ban dated NaN would never end nor be enforced. Refused before the book."""
    from sipwarden.daemon.bans import BanKeeper, add_request
    from sipwarden.enforce import NullEnforcer
    from sipwarden.policy.bans import BanBook

    keeper = BanKeeper(BanBook(), tmp_path / "bans.db", NullEnforcer())
    answer = asyncio.run(add_request(keeper, {"target": "192.0.2.7", "duration": duration}))
    assert answer == {
        "ok": False,
        "error": "duration: seconds (more than 0), or null for permanent",
    }
    assert keeper.book.changes == []
