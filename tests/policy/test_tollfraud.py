"""The toll-fraud detectors: a prefix walk seen at its second prefix, international
calls from sources that never logged in, the quiet-time rule, and the bounds."""

from __future__ import annotations

import pytest

from sipwarden.intel.numbers import Dialplan
from sipwarden.policy.tollfraud import (
    INTERNATIONAL,
    PREFIX_WALK,
    TollFraud,
    quiet_action,
)

GB = Dialplan("GB", ["00"], ["9"])
SRC = "203.0.113.9"
T0 = 1_800_000_000.0


def test_a_walk_is_detected_at_the_second_prefix() -> None:
    tf = TollFraud()
    assert tf.invite(SRC, GB.classify("00972597562518"), T0) is None
    decision = tf.invite(SRC, GB.classify("011972597562518"), T0 + 30)
    assert decision is not None
    assert decision.target == SRC and decision.detector == PREFIX_WALK
    assert decision.duration == "progressive"
    assert "+972597562518" in decision.reason and "2 prefixes" in decision.reason
    # the evidence lists the dial strings, one a line
    assert decision.evidence[0].endswith(
        "INVITE to 00972597562518 (international, IL +972597562518, prefix 00)"
    )
    assert decision.evidence[1].endswith("(international, IL +972597562518, prefix 011)")
    assert [e.split(" INVITE to ")[1].split()[0] for e in decision.evidence] == [
        "00972597562518",
        "011972597562518",
    ]
    assert len(tf) == 0  # decided: the source starts afresh


@pytest.mark.parametrize(
    "walk",
    [
        ["011448708752617", "9011448708752617", "448708752617", "00448708752617"],
        ["900442037690000", "+442037690000"],
        ["0075346850780296", "90075346850780296"],  # no plan places it: its digits
        ["02037690000", "902037690000"],  # a national number, with and without the trunk
    ],
)
def test_research_walks_are_walks(walk) -> None:
    tf = TollFraud()
    decisions = [tf.invite(SRC, GB.classify(d), T0 + i) for i, d in enumerate(walk)]
    assert decisions[0] is None and decisions[1] is not None
    assert decisions[1].detector == PREFIX_WALK


def test_one_number_redialled_is_no_walk() -> None:
    tf = TollFraud(international=1000)
    for i in range(200):
        assert tf.invite(SRC, GB.classify("00972597562518"), T0 + i) is None
    # different numbers behind one prefix are no walk either
    for n in range(10):
        assert tf.invite(SRC, GB.classify(f"0044203769000{n}"), T0 + 300) is None


def test_a_walk_slower_than_the_window_is_not_seen() -> None:
    tf = TollFraud(window=600)
    assert tf.invite(SRC, GB.classify("00972597562518"), T0) is None
    assert tf.invite(SRC, GB.classify("011972597562518"), T0 + 601) is None
    assert tf.invite(SRC, GB.classify("+972597562518"), T0 + 700) is not None


def test_a_longer_walk_threshold_counts_distinct_prefixes() -> None:
    tf = TollFraud(walk_prefixes=3)
    for i, dialled in enumerate(["00972597562518", "00972597562518", "011972597562518"]):
        assert tf.invite(SRC, GB.classify(dialled), T0 + i) is None
    decision = tf.invite(SRC, GB.classify("9011972597562518"), T0 + 5)
    assert decision is not None and "3 prefixes" in decision.reason
    assert len(decision.evidence) == 3


def test_known_good_sources_are_spared_unless_asked() -> None:
    tf = TollFraud(international=1)
    for dialled in ("00972597562518", "011972597562518", "+972597562518"):
        assert tf.invite(SRC, GB.classify(dialled), T0, known_good=True) is None
    assert len(tf) == 0  # nothing kept for a source that logged in
    strict = TollFraud(walk_known_good=True, international=1000)
    assert strict.invite(SRC, GB.classify("00972597562518"), T0, known_good=True) is None
    decision = strict.invite(SRC, GB.classify("011972597562518"), T0, known_good=True)
    assert decision is not None and decision.detector == PREFIX_WALK


def test_international_calls_from_a_source_that_never_logged_in() -> None:
    tf = TollFraud(international=3, window=600, bantime=3600.0)
    numbers = ["00972597562518", "0046123456789", "00972597562519"]
    assert tf.invite(SRC, GB.classify(numbers[0]), T0) is None
    assert tf.invite(SRC, GB.classify(numbers[1]), T0 + 1) is None
    # national numbers and extensions do not count
    assert tf.invite(SRC, GB.classify("02037690000"), T0 + 2) is None
    assert tf.invite(SRC, GB.classify("100"), T0 + 2) is None
    decision = tf.invite(SRC, GB.classify(numbers[2]), T0 + 3)
    assert decision is not None and decision.detector == INTERNATIONAL
    assert decision.duration == 3600.0 and "3 INVITEs" in decision.reason
    assert any("00972597562519 (international, IL" in e for e in decision.evidence)
    # old calls fall out of the window
    slow = TollFraud(international=3, window=600)
    for i, dialled in enumerate(numbers):
        assert slow.invite(SRC, GB.classify(dialled), T0 + i * 400) is None


def test_bounds() -> None:
    tf = TollFraud(max_sources=100, max_tails=4, international=1000)
    for i in range(1000):
        tf.invite(f"198.51.100.{i % 250}", GB.classify(f"0044203769{i:04d}"), T0 + i)
    assert len(tf) == 100
    # per source: the last max_tails destinations, no more
    one = TollFraud(max_tails=4, international=1000)
    for i in range(50):
        assert one.invite(SRC, GB.classify(f"0044203769{i:04d}"), T0 + i) is None
    # a forgotten destination dialled behind another prefix: no walk
    assert one.invite(SRC, GB.classify("900442037690000"), T0 + 60) is None
    assert one.invite(SRC, GB.classify("+442037690049"), T0 + 61) is not None  # a kept one
    one.invite(SRC, GB.classify("00972597562518"), T0 + 62)
    assert len(one) == 1
    one.forget(SRC)
    assert len(one) == 0


@pytest.mark.parametrize(
    ("dialled", "quiet", "vouched", "action", "expected"),
    [
        ("00972597562518", True, False, "drop", "drop"),
        ("00972597562518", True, False, "alert", "alert"),
        ("00972597562518", True, False, "allow", None),
        ("00972597562518", False, False, "drop", None),  # by day
        ("00972597562518", True, True, "drop", None),  # a phone or a trunk
        ("02037690000", True, False, "drop", None),  # national
        ("100", True, False, "drop", None),  # an extension
        ("*97", True, False, "drop", None),
    ],
)
def test_the_quiet_time_rule(dialled, quiet, vouched, action, expected) -> None:
    number = GB.classify(dialled)
    assert quiet_action(number, quiet=quiet, vouched=vouched, action=action) == expected
