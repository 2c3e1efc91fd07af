"""Events and flows in SQLite: a window's flows merged in SQL (every
worker's rows added up), busiest first; events by time, source and kind;
the IPFIX-like form; `--since` as a duration or a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipwarden.config import parse_since
from sipwarden.observe import Event, FlowKey, FlowTable, ipfix
from sipwarden.store import ObserveStore

T0 = 1_800_000_000.0  # a minute's start
SCANNER = FlowKey("203.0.113.7", 5070, "10.0.0.1", 5060, "udp")
PHONE = FlowKey("198.51.100.20", 5060, "10.0.0.1", 5060, "udp")


def test_a_windows_flows_are_one_record_each_with_every_workers_rows_added(
    tmp_path: Path,
) -> None:
    worker0, worker1 = FlowTable(), FlowTable()
    for i in range(3):  # the scanner's minutes, on both workers (a TCP flow moves, a port reused)
        worker0.record(SCANNER, T0 + 60 * i + 1, 100, method="OPTIONS", verdict="scan.x")
        worker1.record(SCANNER, T0 + 60 * i + 2, 100, method="OPTIONS", verdict="scan.x")
    worker1.record(PHONE, T0 + 5, 500, method="REGISTER")
    worker1.answer(PHONE, T0 + 5.1, 200)
    store = ObserveStore(tmp_path / "s.db")
    store.write_flows(worker0.drain(T0 + 240) + worker1.drain(T0 + 240))
    scanner, phone = store.flows(since=T0)
    assert scanner == {
        **SCANNER._asdict(),
        "first_seen": T0 + 1,
        "last_seen": T0 + 122,
        "packets": 6,
        "bytes": 600,
        "peak_pps": 1,
        "methods": {"OPTIONS": 6},
        "answers": {},
        "verdicts": {"scan.x": 6},
    }
    assert phone["answers"] == {"200": 1} and phone["packets"] == 1
    assert store.flows(since=T0 + 100) == [
        {
            **scanner,
            "packets": 2,
            "bytes": 200,
            "methods": {"OPTIONS": 2},
            "verdicts": {"scan.x": 2},
            "first_seen": T0 + 121,
        }
    ]
    assert [f["source"] for f in store.flows(since=T0, source=PHONE.source)] == [PHONE.source]
    assert len(store.flows(since=T0, limit=1)) == 1
    store.close()


def test_events_by_time_source_and_kind_oldest_first(tmp_path: Path) -> None:
    store = ObserveStore(tmp_path / "s.db")
    store.write_events(
        [
            Event(T0, "verdict", "203.0.113.7", "scan.x", (("verdict", "drop"), ("repeated", 40))),
            Event(T0 + 1, "login-failed", "203.0.113.8", "auth.failed", (("account", "100"),)),
            Event(T0 + 2, "ban", "203.0.113.8", "auth.brute-force"),
        ]
    )
    found = store.events(since=T0 + 1)
    assert [(e["kind"], e["source"]) for e in found] == [
        ("login-failed", "203.0.113.8"),
        ("ban", "203.0.113.8"),
    ]
    assert found[0]["account"] == "100" and isinstance(found[0]["id"], int)
    (first,) = store.events(source="203.0.113.7")
    assert first["repeated"] == 40 and first["verdict"] == "drop"
    assert [e["kind"] for e in store.events(kinds=("ban",))] == ["ban"]
    assert [e["kind"] for e in store.events(limit=1)] == ["ban"]  # the newest
    assert store.oldest_event() == T0
    store.close()


def test_ipfix_names_a_record_as_rfc_7012_does() -> None:
    table = FlowTable()
    table.record(SCANNER, T0 + 1.5, 400, method="OPTIONS")
    (record,) = table.drain(T0 + 60)
    element = ipfix(record)
    assert element["sourceIPv4Address"] == "203.0.113.7"
    assert element["sourceTransportPort"] == 5070 and element["destinationTransportPort"] == 5060
    assert element["protocolIdentifier"] == 17
    assert element["packetDeltaCount"] == 1 and element["octetDeltaCount"] == 400
    assert element["flowStartMilliseconds"] == round((T0 + 1.5) * 1000)
    v6 = ipfix({**record, "source": "2001:db8::7", "destination": "2001:db8::1"})
    assert v6["sourceIPv6Address"] == "2001:db8::7" and "sourceIPv4Address" not in v6


def test_since_takes_a_duration_back_or_a_time() -> None:
    assert parse_since("1h", T0) == T0 - 3600
    assert parse_since("90", T0) == T0 - 90
    assert parse_since("2027-01-15T08:00:00Z", 0) == 1_800_000_000.0  # that moment
    assert parse_since("2027-01-15T08:00:00", 0) == parse_since("2027-01-15T08:00:00+00:00", 0)
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since("yesterday", T0)


def test_what_deception_gave_a_source_counts_each_sampled_row_by_its_repeats(
    tmp_path: Path,
) -> None:
    store = ObserveStore(tmp_path / "s.db")
    attacker, other = "203.0.113.7", "203.0.113.8"
    store.write_events(
        [
            Event(T0, "deception", attacker, "register-ok", (("bytes", 222),)),
            Event(T0 + 1, "deception", attacker, "register-ok", (("repeated", 40),)),
            Event(T0 + 2, "deception", attacker, "180", (("bytes", 300),)),
            Event(T0 + 3, "verdict", attacker, "scan.x", (("repeated", 9),)),  # not an answer
            Event(T0 + 4, "deception", other, "svcrash"),
        ]
    )
    assert store.deceived(attacker) == {
        "180": {"count": 1, "first": T0 + 2, "last": T0 + 2},
        "register-ok": {"count": 41, "first": T0, "last": T0 + 1},
    }
    assert store.deceived("198.51.100.1") == {}
    store.close()


def test_the_busiest_sources_sum_their_flows_and_reasons(tmp_path: Path) -> None:
    table = FlowTable()
    other_port = FlowKey("203.0.113.7", 5071, "10.0.0.1", 5060, "udp")
    for i in range(3):  # the scanner: two ports, three minutes
        table.record(SCANNER, T0 + 60 * i + 1, 100, method="OPTIONS", verdict="scan.x")
        table.record(other_port, T0 + 60 * i + 2, 100, method="OPTIONS", verdict="rate")
    table.record(PHONE, T0 + 5, 500, method="REGISTER")
    table.record(PHONE, T0 + 6, 500, method="REGISTER")
    store = ObserveStore(tmp_path / "s.db")
    store.write_flows(table.drain(T0 + 240))
    busiest = store.sources(since=T0, limit=15)
    assert [(s["source"], s["packets"], s["bytes"], s["flows"]) for s in busiest] == [
        ("203.0.113.7", 6, 600, 6),
        ("198.51.100.20", 2, 1000, 1),
    ]
    assert busiest[0]["verdicts"] == {"scan.x": 3, "rate": 3}
    assert busiest[0]["first_seen"] == T0 + 1 and busiest[0]["last_seen"] == T0 + 122
    assert busiest[1]["verdicts"] == {}
    assert [s["source"] for s in store.sources(since=T0, limit=1)] == ["203.0.113.7"]
    assert [s["source"] for s in store.sources(since=T0 + 100, limit=15)] == ["203.0.113.7"]
    store.close()
