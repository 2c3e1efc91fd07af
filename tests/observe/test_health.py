"""sipwarden's own health as events: one when a condition begins, one when it ends."""

from __future__ import annotations

from typing import Any

from sipwarden.observe.health import HealthWatch

T0 = 1_800_000_000.0


def stats(to_backend: int = 0, from_backend: int = 0, **more: Any) -> dict[str, Any]:
    return {"edge": {"to-backend": to_backend, "from-backend": from_backend}, **more}


def states(events: list[Any]) -> list[tuple[str, str]]:
    return [(e.reason, dict(e.fields)["state"]) for e in events]


def test_a_pbx_that_stops_answering_is_one_event_and_its_return_another() -> None:
    watch = HealthWatch(silence=60, started=T0)
    assert watch.check(stats(10, 10), T0 + 10) == []
    now, sent = T0 + 10, 10
    events = []
    for _ in range(8):  # requests go on for 80 s, no answer comes
        now += 10
        sent += 5
        events += watch.check(stats(sent, 10), now)
    assert states(events) == [("pbx-silent", "failing")]  # once, not once a check
    assert events[0].time == T0 + 80 and events[0].kind == "health"  # 60 s after the first
    assert states(watch.check(stats(sent + 1, 11), now + 10)) == [("pbx-silent", "recovered")]


def test_an_idle_pbx_is_not_silent() -> None:
    watch = HealthWatch(silence=60, started=T0)
    for i in range(20):  # nothing sent, nothing answered
        assert watch.check(stats(5, 5), T0 + 10 * i) == []


def test_kernel_errors_the_store_dropped_events_and_a_stale_feed() -> None:
    watch = HealthWatch(stale=3, started=T0)
    feed = {"feed": "apiban", "refresh": 300, "last_success": T0, "last_error": "HTTP 503"}
    quiet = stats(bans={"nftables:errors": 0}, intel={"feeds": [feed]}, observe={})
    assert watch.check(quiet, T0 + 60) == []
    bad = stats(
        bans={"nftables:errors": 2},
        intel={"feeds": [feed]},
        observe={"events-dropped": 7},  # (0 before)
        **{"store-error": "storage.path 'x.db': the disk is full"},
    )
    events = watch.check(bad, T0 + 1000)
    assert sorted(states(events)) == [
        ("events-dropped", "failing"),
        ("feed-stale", "failing"),
        ("kernel-failing", "failing"),
        ("store-failing", "failing"),
    ]
    stale = next(e for e in events if e.reason == "feed-stale")
    assert dict(stale.fields)["feed"] == "apiban" and "HTTP 503" in dict(stale.fields)["seen"]
    # the same counters again: the kernel and the queue are fine now, the
    # store and the feed still fail (no news of those)
    assert sorted(states(watch.check(bad, T0 + 1010))) == [
        ("events-dropped", "recovered"),
        ("kernel-failing", "recovered"),
    ]
