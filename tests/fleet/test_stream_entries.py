"""The ban stream's entries as another node sends them: what this node
takes, and what it refuses (never half-applied): a damaged, foreign or
hostile entry, a NaN or an infinite time, a length past ten years."""

from __future__ import annotations

from sipwarden.fleet.bans import decode, encode
from sipwarden.values import MAX_DURATION, Ban, Change


def entry(**changed: str) -> dict[str, str]:
    ban = Ban("203.0.113.9", "5 failed logins", "auth.brute-force", 1000.0, 1600.0, 2, ("x",))
    fields = encode(Change("add", ban), "node-a", now=1100.0, fleet_now=1100.5)
    assert fields is not None
    return {**fields, **changed}


def test_an_entry_comes_back_as_sent() -> None:
    got = decode({k.encode(): v.encode() for k, v in entry().items()}, "5-0")
    assert got is not None and got.op == "ban" and got.id == "5-0"
    assert got.ban.target == "203.0.113.9" and got.ban.origin == "node-a"
    assert got.ban.offence == 2 and got.remaining == 500.0 and got.published_at == 1100.5
    # the time left, counted on the receiver's clock less the transit
    assert got.expires_at(now=50.0, fleet_now=1101.5) == 50.0 + 500.0 - 1.0


def test_hostile_or_broken_entries_are_refused() -> None:
    for bad in (
        {"created_at": "nan"},
        {"published_at": "inf"},
        {"remaining": "nan"},
        {"remaining": "-5"},
        {"remaining": repr(MAX_DURATION * 2)},
        {"offence": "many"},
        {"evidence": "{}"},
        {"op": "allow"},  # nothing received can allow a source
    ):
        assert decode(entry(**bad)) is None, bad
    missing = entry()
    del missing["target"]
    assert decode(missing) is None
    permanent = decode(entry(remaining=""))
    assert permanent is not None and permanent.remaining is None
