"""The bounded map of recently touched keys (policy/recent.py)."""

from __future__ import annotations

import gc

import pytest

from sipwarden.policy.recent import RecentMap


def test_it_keeps_at_most_its_limit_and_says_when_it_forgot() -> None:
    table: RecentMap[int] = RecentMap(4)
    forgot = [table.put(f"k{i}", i) for i in range(10)]
    assert len(table) == 4
    assert forgot == [False] * 4 + [True] * 6
    assert table.get("k9") == 9  # the newest is kept
    assert table.put("k9", 90) is False  # a key held: nothing forgotten
    assert table.peek("k9") == 90


def test_keys_touched_since_the_last_generation_outlive_the_others() -> None:
    table: RecentMap[int] = RecentMap(4)
    for key in "abcd":
        table.put(key, 1)
    table.put("e", 1)  # a new generation: a, b, c, d are old; one of them goes
    assert len(table) == 4 and "e" in table
    table.get("a")  # touched: young again
    if "b" in table and "c" in table:
        table.put("f", 1)
        table.put("g", 1)  # b and c went, never a (touched) nor the new
        assert set(table) == {"a", "e", "f", "g"}
    else:  # (d was kept in b's or c's place: which old key goes first is not kept)
        table.put("f", 1)
        assert "a" in table and "e" in table and "f" in table


def test_pop_and_clear_forget() -> None:
    table: RecentMap[str] = RecentMap(2)
    table.put("a", "x")
    table.put("b", "y")
    table.put("c", "z")  # "a" or "b" went to make room
    assert table.pop("c") == "z" and table.pop("c") is None
    table.clear()
    assert len(table) == 0 and table.get("a") is None


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        RecentMap(0)


def test_its_tables_are_never_tracked_by_the_collector() -> None:
    """Filled and churned with atomic values, neither generation is ever a
    container the cyclic collector walks (an OrderedDict always was)."""
    for value in (7, 1.5, "text", b"bytes", 1 << 70):
        table = RecentMap(1000)  # type: ignore[var-annotated]
        for i in range(5_000):
            table.put(f"198.18.{i >> 8}.{i & 255}", value)
            table.get(f"198.18.{(i * 7) >> 8 & 255}.{i * 7 & 255}")
        assert len(table) == 1000
        assert not gc.is_tracked(table.young) and not gc.is_tracked(table.old)


def test_a_lowered_limit_holds_from_the_next_new_key() -> None:
    """A reload may lower the bound under what the map holds: the next new
    key brings it back within the bound, not one key at a time."""
    recent: RecentMap[int] = RecentMap(10)
    for i in range(10):
        recent.put(f"k{i}", i)
    recent.limit = 3
    assert recent.put("new", 99) is True
    assert len(recent) == 3 and recent.get("new") == 99
