"""The metrics model (issue 15, item 5), over plain stats dicts: the
contract's names from ``status``'s sections, Prometheus' conventions, the
histogram summed over workers, the sections other parts add, and no
address ever a label value. Rendered and parsed back with
prometheus_client's own parser, so what a scraper reads is checked too."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sipwarden.api.metrics import render
from sipwarden.daemon.stats import add_stats
from sipwarden.observe.metrics import Buckets, Family, Histogram, metric_families

NAME = re.compile(r"^sipwarden_[a-z0-9]+(?:_[a-z0-9]+)*$")


def by_name(families: list[Family]) -> dict[str, Family]:
    return {f.name: f for f in families}


def samples(family: Family) -> dict[tuple[str, ...], Any]:
    return {s.labels: s.value for s in family.samples}


def worker(
    verdicts: dict[str, int],
    latencies: list[float],
    made: dict[str, int],
    answered_at: float | None = None,
) -> dict:
    """A worker's stats as ``daemon/stats.py`` builds them (the sections the model reads)."""
    histogram = Histogram()
    for seconds in latencies:
        histogram.observe(seconds)
    return {
        "ok": True,
        "hits": {"scan.sipvicious-tag": verdicts.get("drop:scan.sipvicious-tag", 0)},
        "monitored": {"scan.sipvicious-tag": 0},
        "verdicts": verdicts,
        "edge": {"received": sum(verdicts.values()), "drop:backend-unreachable": 1},
        "decisions": {"refused": 2},
        "pbx-answered-at": answered_at,
        "bans-in-force": 3,
        "bans": {
            "changes": len(latencies),
            "store-unwritten": 0,
            **{f"made:{d}": n for d, n in made.items()},
            "nftables:batches": 1,
            "nftables:feed-elements": 10,
        },
        "enforcement": {},
        "ban-latency": histogram.as_stats(),
        "store-error": None,
        "tracked": {"rate-sources": 4, "failure-sources": 1},
        "intel": {
            "feeds": [
                {"feed": "apiban", "entries": 120, "in_force": 118, "last_success": 1.7e9},
                {"feed": "spamhaus", "entries": 0, "last_success": None},
            ],
            "countries": None,
            "listed_but_exempt": {"198.51.100.9": ["apiban"]},
        },
    }


def test_the_contracts_names_summed_over_workers():
    total = worker(
        {"forward:": 5, "drop:scan.sipvicious-tag": 3},
        [0.003, 0.02],
        {"operator": 1, "r.x": 1},
        answered_at=1.7e9,
    )
    add_stats(
        total,
        worker(
            {"drop:scan.sipvicious-tag": 4, "ban:limits.requests": 1},
            [0.5],
            {"r.x": 2},
            answered_at=1.7e9 + 5,
        ),
    )
    families = by_name(metric_families(total, "1.2.3"))
    assert samples(families["sipwarden_build_info"]) == {("1.2.3",): 1}

    verdicts = families["sipwarden_verdicts_total"]
    assert (verdicts.kind, verdicts.labels) == ("counter", ("verdict", "reason"))
    assert samples(verdicts) == {
        ("forward", ""): 5,
        ("drop", "scan.sipvicious-tag"): 7,
        ("ban", "limits.requests"): 1,
    }
    assert samples(families["sipwarden_bans_total"]) == {("operator",): 1, ("r.x",): 3}
    active = families["sipwarden_bans_active"]
    assert active.kind == "gauge" and samples(active) == {(): 3}  # worker 0's, not summed

    latency = samples(families["sipwarden_ban_latency_seconds"])[()]
    assert isinstance(latency, Buckets)
    assert latency.count == 3 and latency.sum == pytest.approx(0.523)
    counts = dict(latency.bounds)
    assert (counts[0.0025], counts[0.005], counts[0.025], counts[0.5], counts[float("inf")]) == (
        0,
        1,
        2,
        3,
        3,
    )
    assert [c for _, c in latency.bounds] == sorted(c for _, c in latency.bounds)  # cumulative

    assert samples(families["sipwarden_edge_received_total"]) == {(): 13}
    assert samples(families["sipwarden_edge_drops_total"]) == {("backend-unreachable",): 2}
    assert samples(families["sipwarden_rule_hits_total"]) == {("scan.sipvicious-tag",): 7}
    assert samples(families["sipwarden_ban_decisions_refused_total"]) == {(): 4}
    assert samples(families["sipwarden_enforcer_batches_total"]) == {("nftables",): 2}
    assert families["sipwarden_enforcer_feed_elements"].kind == "gauge"
    assert families["sipwarden_ban_keeper_store_unwritten"].kind == "gauge"
    assert samples(families["sipwarden_store_writable"]) == {(): 1}
    # the PBX's last answer: the latest of the workers'
    assert samples(families["sipwarden_pbx_last_answer_timestamp_seconds"]) == {(): 1.7e9 + 5}
    assert samples(families["sipwarden_tracked_sources"]) == {("rate",): 8, ("failure",): 2}
    # feeds: intel is worker 0's; a feed never fetched has no last success
    assert samples(families["sipwarden_feed_entries"]) == {("apiban",): 120, ("spamhaus",): 0}
    assert samples(families["sipwarden_feed_last_success_timestamp_seconds"]) == {
        ("apiban",): 1.7e9
    }
    assert "198.51.100.9" not in str(families)  # listed_but_exempt: addresses, not a metric


def test_names_follow_prometheus_conventions():
    stats = worker({"drop:x": 1}, [0.01], {"operator": 1})
    stats["observe"] = {"events-queued": 9, "flows-tracked": 4, "flows-minutes-lost": 0}
    for family in metric_families(stats, "0"):
        assert NAME.match(family.name), family.name
        assert family.help and family.help == family.help.strip()
        if family.kind == "counter":
            assert family.name.endswith("_total"), family.name
        else:
            assert not family.name.endswith("_total"), family.name
        assert "_ms" not in family.name and "millis" not in family.name  # base units
        for sample in family.samples:
            assert len(sample.labels) == len(family.labels)


def test_the_sections_other_parts_add():
    stats: dict[str, Any] = {
        "observe": {
            "events-queued": 10,
            "events-repeated": 40,
            "events-dropped": 2,
            "events-written": 8,
            "observe-write-errors": 0,
            "flows-tracked": 12,
            "flows-untracked": 3,
            "flows-minutes-lost": 0,
            "flows-written": 30,
        },
        "analysis": {"runs": 6, "findings": 3, "findings:slow-network": 2, "findings:campaign": 1},
        "alerts": {"ops-hook:sent": 4, "ops-hook:failed": 1, "mail:sent": 2},
        "kernel-drops": {
            "packets:ban": 1000,
            "packets:feed": 50,
            "bytes:ban": 512000,
            "sources": 7,
        },
        "lane": {
            "known-good": 3,
            "pending": 1,
            "known-good-reported": 3,
            "pushed": 3,
            "kernel-good": 90,
            "kernel-trusted": 5,
            "kernel-unknown-passed": 40,
            "kernel-prefix-dropped": 600,
            "kernel-total-dropped": 20,
        },
    }
    families = by_name(metric_families(stats, "0"))
    assert samples(families["sipwarden_events_dropped_total"]) == {(): 2}
    assert samples(families["sipwarden_observe_write_errors_total"]) == {(): 0}
    tracked = families["sipwarden_flows_tracked"]
    assert tracked.kind == "gauge" and samples(tracked) == {(): 12}
    assert samples(families["sipwarden_flows_minutes_lost_total"]) == {(): 0}
    assert samples(families["sipwarden_analysis_runs_total"]) == {(): 6}
    # the plain "findings" is their total: left out, so sum() counts each once
    assert samples(families["sipwarden_analysis_findings_total"]) == {
        ("slow-network",): 2,
        ("campaign",): 1,
    }
    assert families["sipwarden_analysis_findings_total"].labels == ("analyser",)
    assert samples(families["sipwarden_alerts_sent_total"]) == {("ops-hook",): 4, ("mail",): 2}
    assert samples(families["sipwarden_alerts_failed_total"]) == {("ops-hook",): 1}
    # the kernel's drops: the other helper's section and the lane's, one family
    assert samples(families["sipwarden_kernel_dropped_packets_total"]) == {
        ("lane-prefix",): 600,
        ("lane-total",): 20,
        ("ban",): 1000,
        ("feed",): 50,
    }
    assert samples(families["sipwarden_kernel_dropped_bytes_total"]) == {("ban",): 512000}
    assert families["sipwarden_kernel_drop_sources"].kind == "gauge"
    assert samples(families["sipwarden_kernel_lane_passed_packets_total"]) == {
        ("good",): 90,
        ("trusted",): 5,
        ("unknown",): 40,
    }
    assert families["sipwarden_lane_known_good_sources"].kind == "gauge"
    assert samples(families["sipwarden_lane_known_good_events_total"]) == {("reported",): 3}
    # absent sections give nothing but the contract's three (and build info)
    bare = by_name(metric_families({}, "0"))
    assert {"sipwarden_verdicts_total", "sipwarden_bans_total", "sipwarden_bans_active"} <= set(
        bare
    )
    assert "sipwarden_events_dropped_total" not in bare


def test_an_address_is_never_a_label_value():
    stats: dict[str, Any] = {
        "verdicts": {"drop:203.0.113.5": 1, "drop:2001:db8::1": 1, "drop:scan.x": 1},
        "edge": {"drop:[2001:db8::7]:5060": 1, "drop:198.51.100.1:5060": 1, "drop:ok": 1},
        "alerts": {"198.51.100.2:sent": 1, "::ffff:1.2.3.4:failed": 1},
        "kernel-drops": {"packets:203.0.113.0/24": 5},
        "analysis": {"findings:" + "x" * 300: 1},
    }
    families = metric_families(stats, "0")
    values = {v for f in families for s in f.samples for v in s.labels}
    assert values == {"0", "drop", "scan.x", "ok"}
    assert samples(by_name(families)["sipwarden_metrics_samples_refused"]) == {(): 8}


def test_rendered_and_parsed_back_by_prometheus_client():
    total = worker({"forward:": 2, "drop:scan.sipvicious-tag": 3}, [0.004], {"operator": 1})
    body, content_type = render(metric_families(total, "9.9"), None)
    assert content_type.startswith("text/plain")
    parsed = {f.name: f for f in text_string_to_metric_families(body.decode())}
    verdicts = {
        (s.labels["verdict"], s.labels["reason"]): s.value
        for s in parsed["sipwarden_verdicts"].samples
    }
    assert verdicts == {("forward", ""): 2, ("drop", "scan.sipvicious-tag"): 3}
    histogram = parsed["sipwarden_ban_latency_seconds"]
    assert histogram.type == "histogram"
    by_sample = {(s.name, s.labels.get("le")): s.value for s in histogram.samples}
    assert by_sample[("sipwarden_ban_latency_seconds_bucket", "0.0025")] == 0
    assert by_sample[("sipwarden_ban_latency_seconds_bucket", "0.005")] == 1
    assert by_sample[("sipwarden_ban_latency_seconds_count", None)] == 1
    assert by_sample[("sipwarden_ban_latency_seconds_sum", None)] == pytest.approx(0.004)
    for family in parsed.values():
        for sample in family.samples:
            for value in sample.labels.values():
                with pytest.raises(ValueError):
                    ipaddress.ip_address(value)
    # OpenMetrics when the scraper asks for it
    body, content_type = render(
        metric_families(total, "9.9"), "application/openmetrics-text; version=1.0.0"
    )
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
