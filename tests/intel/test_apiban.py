"""APIBAN: the sans-I/O core on every body in API.md, and the client against
a faithful local mock (loopback only) with the rate limit scaled down to
11 requests per second so a cold start of 5,000 addresses takes seconds."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipwarden.fetch.apiban import ApibanClient
from sipwarden.intel.apiban import (
    ApibanSettings,
    ApibanSync,
    Done,
    Progress,
    Request,
    Wait,
    check_request,
    parse_check,
)
from sipwarden.store.intel import IntelStore
from sipwarden.values import FeedState

from .mock_apiban import END_BODIES, LIMITED, REFUSED, MockApiban

KEY = "s3cr3t-k3y-0123456789"
WINDOW = 1.0  # the scaled-down rate window: 11 requests per second
DAY = 86400.0
T = TypeVar("T")


def run(coro: Awaitable[T], limit: float = 25.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, limit)

    return asyncio.run(bounded())


def config(base: str = "http://127.0.0.1:9/api/", **kw: Any) -> ApibanSettings:
    settings_: dict[str, Any] = {
        "key": KEY,
        "base": base,
        "rate_requests": 11,
        "rate_window": WINDOW,
        "rate_slack": 0.3,  # transit on a loaded machine (2 xdist workers): 0.1 s was too little
        "error_backoff": 0.05,
        "timeout": 5.0,
    }
    settings_.update(kw)
    return ApibanSettings(**settings_)


def fill(mock: MockApiban, count: int, start: int, v6_every: int = 5, first: int = 0) -> set[str]:
    """``count`` entries listed one a second from ``start`` (addresses number
    ``first`` on); every ``v6_every``-th one IPv6, spelled un-canonically.
    Returns the canonical set."""
    canon = set()
    for n in range(count):
        i = first + n
        if i % v6_every == 0:
            spelled = f"2A01:04F8:{i:X}:0::{i + 1:X}"
        else:
            spelled = f"45.{(i >> 8) & 255}.{i & 255}.{(i >> 16) + 9}"
        mock.add(spelled, start + n)
        canon.add(str(ipaddress.ip_address(spelled)))
    return canon


def page(addresses: Any, id_: Any) -> bytes:
    return json.dumps({"ipaddress": addresses, "ID": id_}).encode()


def pump(core: ApibanSync, answer: Callable[[Request], tuple[int, bytes]], now: float) -> Done:
    """Drive the core with a fake clock (waits are skipped over) until Done."""
    for _ in range(10_000):
        step = core.next_request(now)
        if isinstance(step, Done):
            return step
        if isinstance(step, Wait):
            now += step.seconds
            continue
        core.take(*answer(step), now)
    raise AssertionError("the core never finished")


# ------------------------------------------------------------ against the mock


@pytest.mark.parametrize("version", [2, 1])
def test_cold_start_of_5000_paced_and_complete(tmp_path: Path, version: int) -> None:
    async def scenario() -> None:
        async with MockApiban(key=KEY, rate_requests=11, rate_window=WINDOW) as mock:
            expected = fill(mock, 5000, int(time.time()) - 6 * int(DAY))
            store = IntelStore(tmp_path / "sipwarden.db")
            client = ApibanClient(config(mock.base, version=version), store)
            seen: list[Progress] = []
            result = await client.sync(progress=seen.append)
            assert result.ok and result.reason == "up to date", result
            assert result.requests == 21 == len(mock.requests)  # 20 pages and the end
            assert mock.max_in_window <= 11 and mock.rate_limited == 0
            assert result.added == 5000 and result.total == 5000
            assert client.core is not None and set(client.core.entries) == expected
            assert set(store.entries("apiban:sip")) == expected
            assert any(p.waiting > 0 for p in seen)  # it paced itself
            assert seen[-1].fraction == 1.0 and seen[-1].status == "up to date"
            routes = {r.route for r in mock.requests}
            assert routes == ({"v2-get"} if version == 2 else {"v1-banned"})
            assert mock.ids_asked()[0] == ("100" if version == 2 else None)
            state = store.state("apiban:sip")
            assert state is not None and state.last_success is not None and not state.last_error
            store.close()

    run(scenario())


def test_restart_midway_resumes_from_the_kept_id(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with MockApiban(key=KEY, rate_requests=11, rate_window=WINDOW) as mock:
            expected = fill(mock, 5000, int(time.time()) - 6 * int(DAY))
            path = tmp_path / "sipwarden.db"
            # first life: stopped by its request bound after 8 pages
            store = IntelStore(path)
            first = await ApibanClient(config(mock.base, requests_per_run=8), store).sync()
            assert first.ok and first.reason == "request bound" and first.requests == 8
            store.close()
            # second life: killed in the middle of a run
            store = IntelStore(path)
            task = asyncio.create_task(ApibanClient(config(mock.base), store).sync())
            for _ in range(400):
                if len(mock.requests) >= 12:
                    break
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            store.close()
            asked_before = len(mock.requests)
            state = IntelStore(path).state("apiban:sip")
            assert state is not None and state.last_id != "100"
            kept = int(state.last_id)
            # third life: a new client on the same store finishes the list
            store = IntelStore(path)
            result = await ApibanClient(config(mock.base), store).sync()
            assert result.ok and result.reason == "up to date"
            later = [int(i) for i in mock.ids_asked()[asked_before:] if i is not None]
            assert later[0] == kept and min(later) >= kept  # nothing earlier asked again
            assert set(store.entries("apiban:sip")) == expected
            # pacing held across the restarts: the request times are kept too
            assert mock.max_in_window <= 11 and mock.rate_limited == 0
            store.close()

    run(scenario())


def test_refresh_fetches_only_new_and_renews_relisted(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with MockApiban(key=KEY, rate_requests=11, rate_window=WINDOW) as mock:
            now = int(time.time())
            expected = fill(mock, 600, now - 5 * int(DAY))
            store = IntelStore(tmp_path / "sipwarden.db")
            client = ApibanClient(config(mock.base), store)
            assert (await client.sync()).ok
            assert client.core is not None
            old_last = client.core.last_id
            relisted = "45.0.1.9"
            before = client.core.entries[relisted]
            mock.add(relisted, now - 100)  # listed again, an hour and a half ago
            expected |= fill(mock, 260, now - 3600, first=600)  # 260 new
            asked = len(mock.requests)
            result = await client.sync()
            assert result.ok and result.reason == "up to date"
            ids = mock.ids_asked()[asked:]
            assert ids[0] == old_last and len(ids) == 3  # 261 listed: two pages and the end
            assert all(i is not None and int(i) >= int(old_last) for i in ids)
            assert result.added == 260 and result.seen == 261
            assert set(store.entries("apiban:sip")) == expected
            assert client.core.entries[relisted] > before
            store.close()

    run(scenario())


def test_a_run_stops_at_its_time_bound_and_the_next_goes_on(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with MockApiban(key=KEY, rate_requests=11, rate_window=WINDOW) as mock:
            expected = fill(mock, 5000, int(time.time()) - 6 * int(DAY))
            store = IntelStore(tmp_path / "sipwarden.db")
            client = ApibanClient(config(mock.base), store)
            result = await client.sync(max_seconds=0.5)  # the 12th request is 1 s away
            assert result.ok and not result.complete and result.reason == "time bound"
            assert result.requests == 11 and result.total == 11 * 250
            result = await client.sync()
            assert result.complete and set(store.entries("apiban:sip")) == expected
            assert mock.max_in_window <= 11 and mock.rate_limited == 0
            client.close()
            store.close()

    run(scenario())


def test_refused_key_stops_at_once_and_tries_again_next_run(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with MockApiban(key="another-key") as mock:
            fill(mock, 10, int(time.time()) - 100)
            store = IntelStore(tmp_path / "sipwarden.db")
            client = ApibanClient(config(mock.base), store)
            result = await client.sync()
            assert not result.ok and result.reason == "refused"
            assert result.error == "APIBAN refused the key (HTTP 403)"
            assert len(mock.requests) == 1  # no retry storm
            state = store.state("apiban:sip")
            assert state is not None and state.last_error == result.error
            await client.sync()  # the next scheduled run tries again, once
            assert len(mock.requests) == 2
            store.close()

    run(scenario())


def test_429_backs_off_and_retries_the_same_id(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with MockApiban(key=KEY, batch=5) as mock:
            expected = fill(mock, 12, int(time.time()) - 100)
            mock.script.append((LIMITED[0], json.dumps(LIMITED[1]).encode()))
            store = IntelStore(tmp_path / "sipwarden.db")
            result = await ApibanClient(config(mock.base, backoff_429=0.3), store).sync()
            assert result.ok and result.reason == "up to date"
            first, second = mock.requests[0], mock.requests[1]
            assert first.status == 429 and second.id == first.id == "100"
            assert second.at - first.at >= 0.3
            assert set(store.entries("apiban:sip")) == expected
            # a 429 that does not go away ends the run after a few tries
            for _ in range(3):
                mock.script.append((LIMITED[0], json.dumps(LIMITED[1]).encode()))
            asked = len(mock.requests)
            client = ApibanClient(config(mock.base, backoff_429=0.05, max_rate_limited=3), store)
            result = await client.sync()
            assert not result.ok and result.reason == "rate limited"
            assert result.error == "APIBAN rate limit exceeded (HTTP 429)"
            assert len(mock.requests) - asked == 3
            assert set(store.entries("apiban:sip")) == expected  # the list kept
            store.close()

    run(scenario())


def test_server_errors_and_garbage_retried_a_few_times_list_kept(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with MockApiban(key=KEY, batch=5) as mock:
            expected = fill(mock, 12, int(time.time()) - 100)
            store = IntelStore(tmp_path / "sipwarden.db")
            client = ApibanClient(config(mock.base), store)
            assert (await client.sync()).ok
            mock.script.extend([(500, b"<html>oops"), (200, b"{not json")])
            mock.add("45.200.0.1", int(time.time()))
            result = await client.sync()  # two failures, then the page
            assert result.ok and result.added == 1
            mock.script.extend([(502, b"")] * 3)
            result = await client.sync()
            assert not result.ok and result.reason == "errors"
            assert result.error == "APIBAN answered HTTP 502 with an error"
            assert set(store.entries("apiban:sip")) == expected | {"45.200.0.1"}
            assert client.core is not None and client.core.counters["malformed"] == 5
            store.close()

    run(scenario())


@pytest.mark.parametrize("end", sorted(END_BODIES))
@pytest.mark.parametrize("last_page_id", ["next", "none"])
def test_every_end_of_list_variant_over_http(tmp_path: Path, end: Any, last_page_id: Any) -> None:
    async def scenario() -> None:
        async with MockApiban(key=KEY, batch=4, end=end, last_page_id=last_page_id) as mock:
            expected = fill(mock, 10, int(time.time()) - 100)
            store = IntelStore(tmp_path / "sipwarden.db")
            client = ApibanClient(config(mock.base), store)
            result = await client.sync()
            assert result.ok and result.reason == "up to date"
            assert set(store.entries("apiban:sip")) == expected
            pages = 3 if last_page_id == "none" else 4
            assert len(mock.requests) == pages
            # and from the top: the empty list
            empty = ApibanClient(config(mock.base), IntelStore(tmp_path / "other.db"))
            mock.entries.clear()
            result = await empty.sync()
            assert result.ok and result.reason == "up to date" and result.total == 0
            store.close()

    run(scenario())


def test_unreachable_is_an_error_not_a_crash(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = IntelStore(tmp_path / "sipwarden.db")
    client = ApibanClient(config(f"http://127.0.0.1:{port}/api/", version=1), store)
    result = run(client.sync())
    assert not result.ok and result.reason == "errors" and result.requests == 3
    assert result.error is not None and result.error.startswith("APIBAN unreachable: ConnectError")
    store.close()


@pytest.mark.parametrize("version", [1, 2])
def test_the_key_never_appears_in_logs_or_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, version: int
) -> None:
    caplog.set_level(logging.DEBUG)

    async def scenario() -> list[str]:
        texts = []
        async with MockApiban(key=KEY, batch=5) as mock:
            fill(mock, 12, int(time.time()) - 100)
            store = IntelStore(tmp_path / "sipwarden.db")
            client = ApibanClient(config(mock.base, version=version), store)
            texts.append(repr(await client.sync()))
            mock.script.extend([(500, b"no")] * 3)
            texts.append(repr(await client.sync()))
            texts.append(repr(client.config))
            assert client.core is not None
            texts.append(repr(client.core.next_request(time.time() + 999)))
            texts.append(repr(client.core.state()))
            wrong = ApibanClient(config(mock.base, version=version, key="wrong-key-xyz"), store)
            result = await wrong.sync()
            assert result.error == "APIBAN refused the key (HTTP 403)"
            texts.append(repr(result))
            store.close()
        return texts

    texts = run(scenario())
    assert "HTTP Request" in caplog.text  # httpx did log its requests ...
    everything = "\n".join([caplog.text, *texts, *(r.getMessage() for r in caplog.records)])
    for secret in (KEY, "wrong-key-xyz"):
        assert secret not in everything  # ... with the key blotted out
    if version == 1:
        assert "/api/<key>/banned" in caplog.text


@pytest.mark.parametrize("version", [1, 2])
def test_check_one_address(tmp_path: Path, version: int) -> None:
    async def scenario() -> None:
        async with MockApiban(key=KEY) as mock:
            mock.add("45.1.2.3", int(time.time()) - 10)
            client = ApibanClient(config(mock.base, version=version), IntelStore(tmp_path / "d"))
            assert await client.check("45.1.2.3") is True
            assert await client.check("45.9.9.9") is False
            assert await client.check("not-an-ip") is None
            routes = {r.route for r in mock.requests}
            assert routes == {f"v{version}-check"}

    run(scenario())


# -------------------------------------------------------------- the core alone


NOW = 1_700_000_000.0


def core(**kw: Any) -> ApibanSync:
    sync = ApibanSync(config(**kw))
    sync.begin(NOW)
    return sync


BATCH = page(["45.1.1.1", "45.1.1.2"], str(int(NOW) - 60))
CASES: list[tuple[str, int, bytes, dict[str, Any]]] = [
    ("a batch", 200, BATCH, {"entries": {"45.1.1.1", "45.1.1.2"}, "done": None}),
    (
        "a batch, ipaddress a string",
        200,
        page("45.1.1.3", str(int(NOW) - 60)),
        {"entries": {"45.1.1.3"}, "done": None},
    ),
    *(
        (f"end {name}", status, json.dumps(body).encode(), {"entries": set(), "done": "up to date"})
        for name, (status, body) in sorted(END_BODIES.items())
    ),
    (
        "end: 'no new bans' with a numeric ID",
        400,
        page(["no new bans"], "1671198826"),
        {"entries": set(), "done": "up to date"},
    ),
    (
        "the last page with ID none",
        200,
        page(["45.1.1.4"], "none"),
        {"entries": {"45.1.1.4"}, "done": "up to date"},
    ),
    ("refused", *(REFUSED[0], json.dumps(REFUSED[1]).encode()), {"done": "refused"}),
    ("rate limited", *(LIMITED[0], json.dumps(LIMITED[1]).encode()), {"wait": "rate limited"}),
    ("check: malformed IP (400 {})", 400, b"{}", {"wait": "error", "malformed": 1}),
    ("not JSON", 200, b"<html>", {"wait": "error", "malformed": 1}),
    ("a JSON list", 200, b"[1, 2]", {"wait": "error", "malformed": 1}),
    ("no usable ID", 200, page(["45.1.1.1"], 17), {"wait": "error", "malformed": 1}),
    (
        "IPv6 and odd spellings",
        200,
        page(
            ["2A01:4F8::0001", "2a01:4f8::2/128", "45.1.1.5/32", "::ffff:45.1.1.6", " 45.1.1.7 "],
            str(int(NOW) - 60),
        ),
        {"entries": {"2a01:4f8::1", "2a01:4f8::2", "45.1.1.5", "45.1.1.6", "45.1.1.7"}},
    ),
    (
        "bad addresses counted and skipped",
        200,
        page(
            ["45.1.1.8", "300.1.1.1", "45.1.1.0/24", "127.0.0.1", "10.0.0.1", "fe80::1%eth0", 7],
            str(int(NOW) - 60),
        ),
        {"entries": {"45.1.1.8"}, "bad": 6},
    ),
]


@pytest.mark.parametrize(
    ("status", "body", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_every_body_variant(status: int, body: bytes, want: dict[str, Any]) -> None:
    sync = core()
    request = sync.next_request(NOW)
    assert isinstance(request, Request)
    sync.take(status, body, NOW)
    if "entries" in want:
        assert set(sync.entries) == want["entries"]
    if "done" in want:
        done = sync.done
        assert (done.reason if done else None) == want["done"]
    if "wait" in want:
        step = sync.next_request(NOW)
        assert isinstance(step, Wait) and step.reason == want["wait"]
    assert sync.counters["malformed"] == want.get("malformed", 0)
    assert sync.counters["bad-addresses"] == want.get("bad", 0)


def test_check_bodies() -> None:
    assert parse_check(200, page(["1.2.3.251"], "987654321")) is True
    assert parse_check(400, page(["not blocked"], "none")) is False
    assert parse_check(404, page(["not blocked"], "none")) is False
    assert parse_check(400, b"{}") is None
    assert parse_check(403, json.dumps(REFUSED[1]).encode()) is None
    v2 = check_request(config(), "45.1.2.3")
    assert v2.method == "POST" and v2.json == {"set": "sip", "ipaddress": "45.1.2.3"}
    v1 = check_request(config(version=1), "45.1.2.3")
    assert v1.url.endswith(f"/{KEY}/check/45.1.2.3") and KEY not in repr(v1)


def test_requests_v1_and_v2() -> None:
    v2 = core(set="all")
    request = v2.next_request(NOW)
    assert isinstance(request, Request)
    assert (request.method, request.url, request.json) == (
        "POST",
        "http://127.0.0.1:9/api/get",
        {"set": "all", "id": "100"},
    )
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    v2.take(200, BATCH, NOW)
    request = v2.next_request(NOW)
    assert isinstance(request, Request) and request.json == {"set": "all", "id": str(int(NOW) - 60)}
    v1 = core(version=1)
    first = v1.next_request(NOW)
    assert isinstance(first, Request) and first.url == f"http://127.0.0.1:9/api/{KEY}/banned"
    assert "Authorization" not in first.headers and first.safe_url.endswith("/<key>/banned")
    v1.take(200, BATCH, NOW)
    second = v1.next_request(NOW)
    assert isinstance(second, Request) and second.url.endswith(f"/banned/{int(NOW) - 60}")
    with pytest.raises(ValueError, match="sip"):
        config(version=1, set="http")
    with pytest.raises(ValueError, match="key"):
        config(key=" ")


def test_pacing_never_exceeds_the_window_with_a_fake_clock() -> None:
    sync = ApibanSync(config(rate_window=120.0, rate_slack=0.0, requests_per_run=99))
    sync.begin(NOW)
    sent: list[float] = []
    moment = NOW

    def answer(request: Request) -> tuple[int, bytes]:
        sent.append(moment)
        return 200, page([f"45.2.{len(sent)}.1"], str(int(NOW) + len(sent)))

    for _ in range(1000):
        step = sync.next_request(moment)
        if isinstance(step, Done):
            break
        if isinstance(step, Wait):
            assert step.reason == "pacing" and step.seconds > 0
            moment += step.seconds
            continue
        sync.take(*answer(step), moment)
    assert sync.done is not None and sync.done.reason == "request bound"
    assert len(sent) == 99
    for i, t in enumerate(sent):
        assert sum(1 for u in sent[i:] if u < t + 120.0) <= 11
    assert sent[-1] - sent[0] >= 8 * 120.0  # 99 requests need 8 full windows
    # the pacing survives a restart (the times are in the state)
    again = ApibanSync(config(rate_window=120.0, rate_slack=0.0), sync.state())
    again.begin(moment)
    assert isinstance(again.next_request(moment), Wait)


def test_bounds_stuck_id_and_in_flight_misuse() -> None:
    sync = core()
    request = sync.next_request(NOW)
    assert isinstance(request, Request)
    with pytest.raises(RuntimeError):
        sync.next_request(NOW)
    sync.take(200, page(["45.1.1.1"], "100"), NOW)  # the ID did not move
    assert sync.done is not None and sync.done.reason == "stuck"
    assert set(sync.entries) == {"45.1.1.1"}
    with pytest.raises(RuntimeError):
        sync.take(200, BATCH, NOW)
    # a run ends at its request bound even if the list never does
    sync = core(requests_per_run=5)
    count = iter(range(1, 100))
    done = pump(sync, lambda r: (200, page([], str(int(NOW) - 1000 + next(count)))), NOW)
    assert done.reason == "request bound" and sync.run_requests == 5


def test_entries_expire_seven_days_after_last_listed(tmp_path: Path) -> None:
    sync = core()
    listed = int(NOW) - 3600
    pump(
        sync,
        lambda r: (
            (200, page(["45.3.3.1", "45.3.3.2"], str(listed)))
            if r.id == "100"
            else (400, page(["no new bans"], "none"))
        ),
        NOW,
    )
    # last seen: the page's ID (the time of the next entry), not the fetch time
    assert sync.entries == {"45.3.3.1": listed, "45.3.3.2": listed}
    store = IntelStore(tmp_path / "sipwarden.db")
    store.save(sync.config.feed, sync.state(), *sync.drain(), NOW)
    # five days on, one of them is listed again
    later = NOW + 5 * DAY
    sync.begin(later)
    pump(
        sync,
        lambda r: (
            (200, page(["45.3.3.2"], str(int(later) - 10)))
            if r.id == str(listed)
            else (400, page("no new bans", "none"))
        ),
        later,
    )
    assert sync.expire(NOW + 7 * DAY - 3601) == []
    assert sync.expire(NOW + 7 * DAY) == ["45.3.3.1"]
    store.save(sync.config.feed, sync.state(), *sync.drain(), NOW + 7 * DAY)
    assert set(store.entries("apiban:sip")) == {"45.3.3.2"}
    detail = store.details("apiban:sip")[0]
    assert detail.first_seen == listed and detail.last_seen == int(later) - 10
    assert sync.expire(later + 7 * DAY) == ["45.3.3.2"]
    store.close()


def test_full_repull_every_seven_days() -> None:
    sync = ApibanSync(config(), FeedState(last_id="1699999000", last_full=NOW - 6 * DAY))
    sync.begin(NOW)
    request = sync.next_request(NOW)
    assert isinstance(request, Request) and request.id == "1699999000"
    sync = ApibanSync(config(), FeedState(last_id="1699999000", last_full=NOW - 7 * DAY))
    sync.begin(NOW)
    request = sync.next_request(NOW)
    assert isinstance(request, Request) and request.id == "100"
    assert sync.state().last_full == NOW
    never = ApibanSync(
        config(full_pull_every=None), FeedState(last_id="1699999000", last_full=NOW - 99 * DAY)
    )
    never.begin(NOW)
    request = never.next_request(NOW)
    assert isinstance(request, Request) and request.id == "1699999000"


# ---------------------------------------------------------------- property


JSONS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "ipaddress": st.one_of(
            st.text(max_size=20),
            st.sampled_from(["no new bans", "rate limit exceeded", "none", "45.9.9.9"]),
            st.lists(
                st.one_of(st.text(max_size=40), st.sampled_from(["45.9.9.9", "2a01::9"]), JSONS),
                max_size=6,
            ),
            JSONS,
        ),
        "ID": st.one_of(
            st.sampled_from(["none", "unauthorized", "100", "0", "-5", "1e9", " 17 "]),
            st.integers(min_value=0, max_value=10**12).map(str),
            JSONS,
        ),
    },
)
BODIES = st.one_of(
    st.binary(max_size=64),
    JSONS.map(lambda v: json.dumps(v).encode()),
    FIELDS.map(lambda v: json.dumps(v).encode()),
)
STATUSES = st.sampled_from([200, 200, 200, 400, 403, 404, 429, 500, 503])


@pytest.mark.fuzz
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(STATUSES, BODIES), min_size=1, max_size=12))
def test_garbage_never_crashes_and_never_loses_the_list(answers: list[tuple[int, bytes]]) -> None:
    good = {"45.7.7.1": NOW - 10, "2a01:4f8::7": NOW - 20}
    sync = ApibanSync(
        config(requests_per_run=8), FeedState(last_id="1699990000", last_full=NOW), good
    )
    sync.begin(NOW)
    moment = NOW
    for status, body in answers:
        step = sync.next_request(moment)
        if isinstance(step, Done):
            break
        if isinstance(step, Wait):
            assert 0 < step.seconds <= 3600
            moment += step.seconds
            step = sync.next_request(moment)
            if isinstance(step, Done):
                break
        assert isinstance(step, Request)
        sync.take(status, body, moment)
        assert set(good) <= set(sync.entries)
        assert all(ipaddress.ip_address(a).is_global for a in sync.entries)
        assert int(sync.last_id) >= 1699990000
        assert sync.run_requests <= 8
    state = sync.state()
    assert state.last_error is None or KEY not in state.last_error
