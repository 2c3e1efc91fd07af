"""Logwatch's counters in /metrics: per source, the source a label."""

from __future__ import annotations

from sipwarden.observe.metrics import metric_families


def test_per_source_families() -> None:
    stats = {
        "logwatch": {
            "read:/var/log/asterisk/messages": 10,
            "matched:/var/log/asterisk/messages": 7,
            "unmatched:/var/log/asterisk/messages": 3,
            "read:journal:freeswitch.service": 4,
            "bans": 1,
        }
    }
    families = {f.name: f for f in metric_families(stats, "0")}
    read = families["sipwarden_logwatch_lines_read_total"]
    assert read.labels == ("source",)
    assert {s.labels: s.value for s in read.samples} == {
        ("/var/log/asterisk/messages",): 10,
        ("journal:freeswitch.service",): 4,
    }
    assert families["sipwarden_logwatch_lines_unmatched_total"].samples[0].value == 3
    assert families["sipwarden_logwatch_bans_total"].samples[0].value == 1
