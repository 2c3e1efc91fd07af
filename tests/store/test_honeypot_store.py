"""The honeypot's call records in SQLite, and their export formats."""

from __future__ import annotations

import json

from sipwarden.deception.records import as_jsonl, numbers, sources
from sipwarden.store import HoneypotStore


def record(source: str, number: str, at: float, count: int = 1, **details: object) -> dict:
    return {
        "source": source,
        "number": number,
        "count": count,
        "first_seen": at,
        "last_seen": at,
        "source_port": 5060,
        "transport": "udp",
        "user_agent": "friendly-scanner",
        "normalised": "+972597562518",
        "prefix": "00",
        "country": "PS",
        **details,
    }


def test_batches_add_up_keeping_first_and_last_and_the_latest_details(tmp_path):
    store = HoneypotStore(tmp_path / "s.db")
    store.add([record("203.0.113.9", "00972597562518", 100.0, 3, media_address="10.0.0.1")])
    store.add([record("203.0.113.9", "00972597562518", 200.0, 2, user_agent="sipcli/v1.8")])
    # a batch from an earlier moment (another worker's, written late): counted, details kept
    store.add([record("203.0.113.9", "00972597562518", 50.0, 1, user_agent="old")])
    (row,) = store.calls()
    assert (row["count"], row["first_seen"], row["last_seen"]) == (6, 50.0, 200.0)
    assert (row["user_agent"], row["media_address"]) == ("sipcli/v1.8", None)
    assert (row["normalised"], row["prefix"], row["country"]) == ("+972597562518", "00", "PS")
    store.close()


def test_reading_filters_by_time_and_source_most_recent_first(tmp_path):
    store = HoneypotStore(tmp_path / "s.db")
    store.add(
        [
            record("203.0.113.9", "00972597562518", 100.0),
            record("203.0.113.9", "011972597562518", 300.0),
            record("198.51.100.4", "900442037690000", 200.0),
        ]
    )
    assert [r["number"] for r in store.calls()] == [
        "011972597562518",
        "900442037690000",
        "00972597562518",
    ]
    assert [r["number"] for r in store.calls(since=150.0, source="203.0.113.9")] == [
        "011972597562518"
    ]
    assert len(store.calls(limit=1)) == 1
    store.close()


def test_prune_by_retention_then_row_cap(tmp_path):
    store = HoneypotStore(tmp_path / "s.db")
    store.add([record("203.0.113.9", str(n), float(n)) for n in range(10)])
    assert store.prune(10.0, retention=7.5, max_rows=5) == 2 + 3  # 0..2 too old; then 3..4
    assert [r["number"] for r in store.calls()] == ["9", "8", "7", "6", "5"]
    store.close()


def test_a_file_of_the_previous_version_gets_the_table(tmp_path):
    import shutil
    import sqlite3

    from tests.conftest import DATA

    path = tmp_path / "old.db"
    shutil.copy(DATA / "store" / "release-2026-12.db", path)
    store = HoneypotStore(path)
    store.add([record("203.0.113.9", "1", 1.0)])
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM honeypot_calls").fetchone() == (1,)


def test_exports():
    rows = [
        record("203.0.113.9", "00972597562518", 1_800_000_000.0, 5),
        record("198.51.100.4", "011972597562518", 1_800_000_100.0, 2),
        record("198.51.100.4", "900442037690000", 1_800_000_200.0, 1, normalised="+442037690000"),
    ]
    lines = [json.loads(line) for line in as_jsonl(rows).splitlines()]
    assert len(lines) == 3
    assert lines[0]["source_ip"] == "203.0.113.9" and lines[0]["called_number"] == "00972597562518"
    assert lines[0]["event_timestamp"] == "2027-01-15T08:00:00Z"
    assert (lines[0]["transport_type"], lines[0]["sip_method"]) == ("UDP", "INVITE")
    assert lines[0]["sip_user_agent"] == "friendly-scanner" and lines[0]["count"] == 5
    assert numbers(rows) == "+972597562518\n+442037690000\n"
    assert sources(rows) == "203.0.113.9\n198.51.100.4\n"
