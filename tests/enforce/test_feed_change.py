"""The feed sets' difference (``NftablesEnforcer._feed_change``), without a
kernel: what it sends takes the kernel from the old content to the new, and
it gives up (load whole) exactly when the deletions exceed the budget."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from sipwarden.enforce import NftablesEnforcer
from sipwarden.enforce.nftables import FEED_DELETE_BUDGET, FEED_MOVED

NOW = 1_000_000.0
TARGETS = [f"198.51.100.{i}" for i in range(12)] + [f"2001:db8::{i:x}" for i in range(6)]
STATEMENT = re.compile(r"(add|delete) element inet sipwarden (feed4|feed6) \{ (.*) \}\Z")

expiry = st.one_of(st.none(), st.floats(NOW - 100, NOW + 10_000))
contents = st.dictionaries(st.sampled_from(TARGETS), expiry)


def kernel_after(before: dict[str, float | None], lines: list[str]) -> set[str]:
    """The elements a kernel holding ``before``'s live ones has after ``lines``
    (add of a present element: kept; delete of an absent one: nft would fail)."""
    held = {t for t, e in before.items() if e is None or e > NOW}
    for line in lines:
        m = STATEMENT.match(line)
        assert m, line
        verb, name, body = m.groups()
        for element in body.split(", "):
            target = element.split(" timeout ")[0]
            assert (name == "feed6") == (":" in target), line
            if verb == "add":
                held.add(target)
            else:
                assert target in held, f"delete of an absent element: {line}"
                held.discard(target)
    return held


@given(contents, contents)
def test_the_difference_takes_the_sets_to_the_new_content(before, after) -> None:
    live = {t: e for t, e in after.items() if e is None or e > NOW}
    change = NftablesEnforcer()._feed_change(before, live, NOW)
    held = {t: e for t, e in before.items() if e is None or e > NOW}
    deleted = [t for t in held if t not in live] + [
        t
        for t, e in live.items()
        if t in held
        and ((held[t] is None) != (e is None) or abs((held[t] or 0) - (e or 0)) > FEED_MOVED)
    ]
    if len(deleted) * len(held) > FEED_DELETE_BUDGET:
        assert change is None
        return
    assert change is not None
    lines, kept = change
    assert kernel_after(before, lines) == set(live) == set(kept)
    for target, expires in kept.items():  # what it remembers is within FEED_MOVED of the truth
        want = live[target]
        assert (expires is None) == (want is None)
        assert expires is None or want is None or abs(expires - want) <= FEED_MOVED
    assert (lines == []) == (not deleted and set(live) == set(held))


def test_past_the_budget_it_loads_whole() -> None:
    many = {f"10.{i >> 8}.{i & 255}.1": None for i in range(2000)}
    gone = dict(list(many.items())[:1000])  # 1,000 deletions x 2,000 elements
    assert FEED_DELETE_BUDGET < 1000 * 2000
    assert NftablesEnforcer()._feed_change(many, gone, NOW) is None
    lines, kept = NftablesEnforcer()._feed_change(gone, many, NOW) or ([], {})
    assert kept == many and all(line.startswith("add element") for line in lines)
