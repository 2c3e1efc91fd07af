"""Joining the workers' answers: each worker sees only the packets the
kernel gave it, so what worker 0 reports must add theirs in."""

from sipwarden.daemon.stats import add_intel, add_stats


def test_counters_add_up_key_by_key() -> None:
    total = {"verdicts": {"drop:intel.apiban-sip": 2, "forward:": 1}, "edge": {"received": 3}}
    add_stats(total, {"verdicts": {"drop:intel.apiban-sip": 4}, "edge": {"received": 5}})
    assert total["verdicts"] == {"drop:intel.apiban-sip": 6, "forward:": 1}
    assert total["edge"] == {"received": 8}


def test_the_pbx_last_answer_is_the_latest_of_the_workers() -> None:
    total = {"edge": {"from-backend": 2}, "pbx-answered-at": 100.0}
    add_stats(total, {"edge": {"from-backend": 1}, "pbx-answered-at": 130.0})
    add_stats(total, {"edge": {}, "pbx-answered-at": None})  # a worker that saw none
    add_stats(total, {"edge": {"from-backend": 1}, "pbx-answered-at": 120.0})
    assert total["pbx-answered-at"] == 130.0 and total["edge"] == {"from-backend": 4}
    nothing: dict[str, object] = {"pbx-answered-at": None}
    add_stats(nothing, {"pbx-answered-at": None})
    assert nothing["pbx-answered-at"] is None


def test_a_listed_trusted_source_seen_by_another_worker_is_reported() -> None:
    # the trunk's OPTIONS reached worker 1: worker 0 never saw it
    total = {"intel": {"feeds": [{"feed": "blocklist"}], "listed_but_exempt": {}}}
    part = {"intel": {"feeds": [{"feed": "blocklist"}], "listed_but_exempt": {"192.0.2.7": ["b"]}}}
    add_stats(total, part)
    assert total["intel"]["listed_but_exempt"] == {"192.0.2.7": ["b"]}
    assert total["intel"]["feeds"] == [{"feed": "blocklist"}]  # the same store: not doubled


def test_feeds_of_one_source_seen_by_two_workers_are_joined() -> None:
    total = {"listed_but_exempt": {"192.0.2.7": ["a", "c"]}}
    add_intel(total, {"listed_but_exempt": {"192.0.2.7": ["b", "c"], "2001:db8::1": ["a"]}})
    assert total["listed_but_exempt"] == {"192.0.2.7": ["a", "b", "c"], "2001:db8::1": ["a"]}


def test_no_screen_no_report() -> None:
    total: dict[str, object] = {"feeds": []}  # a worker without a screen reports no such key
    add_intel(total, {"listed_but_exempt": {"192.0.2.7": ["a"]}})
    assert "listed_but_exempt" not in total
