"""Generic feeds: the parser (edge cases, properties) and the fetch from a
file and from a local HTTP server (200, 304, errors, timeouts, limits)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from sipwarden.fetch.lists import Feed
from sipwarden.intel.feeds import FeedTooLarge, parse_feed, parse_line
from sipwarden.intel.index import AddressIndex

TEXT = """\ufeff# a feed
; another comment style
192.0.2.7
198.51.100.0/24   # inline comment
203.0.113.9/24;inline too
\t2001:DB8:0::1\t
2001:db8::/32 ; SBL123

192.0.2.7
10.0.0.1\t17 reports
not-an-address
300.1.1.1
192.0.2.1/33
fe80::1%eth0
"""


def test_parse_edge_cases() -> None:
    parsed = parse_feed(TEXT.replace("\n", "\r\n"))
    assert parsed.entries == (
        "192.0.2.7",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "2001:db8::1",
        "2001:db8::/32",
        "10.0.0.1",
    )
    assert parsed.bad == 4
    assert parsed.duplicates == 1
    assert parsed.lines == 14
    assert parsed.examples[0] == "line 11: 'not-an-address'"
    assert len(parsed.examples) == 4


def test_parse_keeps_a_few_bad_examples() -> None:
    parsed = parse_feed("\n".join(f"bad{i} " + "x" * 200 for i in range(100)))
    assert parsed.bad == 100 and parsed.entries == ()
    assert len(parsed.examples) == 5
    assert all(len(e) < 100 for e in parsed.examples)


def test_parse_limits_entries() -> None:
    text = "\n".join(f"10.0.{i >> 8}.{i & 255}" for i in range(1001))
    assert len(parse_feed(text, max_entries=1001).entries) == 1001
    with pytest.raises(FeedTooLarge):
        parse_feed(text, max_entries=1000)


def test_parse_line() -> None:
    assert parse_line("   ") is None
    assert parse_line("# 192.0.2.1") is None
    assert parse_line("192.0.2.1#x") == "192.0.2.1"
    with pytest.raises(ValueError):
        parse_line("192.0.2.")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_random_text_never_crashes(text: str) -> None:
    parsed = parse_feed(text)
    assert parsed.bad + len(parsed.entries) + parsed.duplicates <= max(parsed.lines, 0) + 1
    ix = AddressIndex()
    ix.replace("f", parsed.entries)  # whatever parses is accepted by the index


_v4 = st.ip_addresses(v=4).map(str)
_v6 = st.ip_addresses(v=6).map(lambda ip: ip.exploded.upper())
_nets = st.tuples(st.ip_addresses(), st.integers(0, 128)).map(
    lambda t: f"{t[0]}/{min(t[1], t[0].max_prefixlen)}"
)
_comment = st.sampled_from(["", " # seen 3 times", " ;SBL", "\t# x", "  "])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_v4 | _v6 | _nets, _comment), max_size=30))
def test_valid_lines_round_trip(lines: list[tuple[str, str]]) -> None:
    text = "\n".join(f"  {target}{comment}" for target, comment in lines)
    parsed = parse_feed(text)
    assert parsed.bad == 0
    expected = list(dict.fromkeys(ipaddress.ip_network(t, strict=False) for t, _ in lines))
    assert [ipaddress.ip_network(e) for e in parsed.entries] == expected
    assert parse_feed("\n".join(parsed.entries)).entries == parsed.entries  # canonical is stable


# ------------------------------------------------------------------ files


def test_file_feed(tmp_path: Path) -> None:
    path = tmp_path / "feed.txt"
    path.write_text("192.0.2.1\n198.51.100.0/24\nbad line\n")
    clock = iter(range(100, 200))
    feed = Feed("local", str(path), clock=lambda: float(next(clock)))

    async def scenario() -> None:
        assert await feed.refresh()
        assert feed.entries == ("192.0.2.1", "198.51.100.0/24")
        assert feed.status.bad_lines == 1 and feed.status.bad_examples
        assert feed.status.size == path.stat().st_size
        assert not await feed.refresh()  # unchanged: not read again
        assert feed.status.not_modified == 1
        path.write_text("192.0.2.2\n")
        os.utime(path, ns=(1, 1))
        assert await feed.refresh()
        assert feed.entries == ("192.0.2.2",)
        path.unlink()
        assert not await feed.refresh()
        assert feed.entries == ("192.0.2.2",)  # the last good list
        assert feed.status.last_error and "FileNotFoundError" in feed.status.last_error
        assert feed.status.failures == 1
        path.write_text("192.0.2.3\n")
        assert await feed.refresh()
        assert feed.status.last_error is None and feed.entries == ("192.0.2.3",)

    asyncio.run(scenario())


def test_file_feed_limits(tmp_path: Path) -> None:
    path = tmp_path / "feed.txt"
    path.write_text("192.0.2.1\n")
    feed = Feed("local", f"file://{path}", max_bytes=100, max_entries=3)

    async def scenario() -> None:
        assert await feed.refresh()
        path.write_text("\n".join(f"10.0.0.{i}" for i in range(50)))
        assert not await feed.refresh()
        assert feed.status.last_error == "over 100 bytes"
        path.write_text("\n".join(f"10.0.0.{i}" for i in range(4)))
        assert not await feed.refresh()
        assert feed.status.last_error == "over 3 entries"
        assert feed.entries == ("192.0.2.1",)
        assert not await feed.refresh()  # still refused: the bad file is read again
        assert feed.status.failures == 3

    asyncio.run(scenario())


def test_a_body_that_is_mostly_not_addresses_keeps_the_last_good_list(tmp_path: Path) -> None:
    path = tmp_path / "feed.txt"
    path.write_text("192.0.2.1\n198.51.100.0/24\nbad line\n")  # one bad line of three: fine
    feed = Feed("local", str(path))

    async def scenario() -> None:
        assert await feed.refresh()
        path.write_text("<html>\n<body>Service Unavailable</body>\n192.0.2.9\n</html>\n")
        assert not await feed.refresh()
        assert feed.entries == ("192.0.2.1", "198.51.100.0/24")
        assert (
            feed.status.last_error
            == "3 of 4 lines are not addresses (line 1: '<html>'): not a feed"
        )
        path.write_text("# nothing listed today\n")  # empty is a list, not an error
        assert await feed.refresh()
        assert feed.entries == () and feed.status.last_error is None

    asyncio.run(scenario())


# ------------------------------------------------------------------- HTTP

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/feed", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/feed"
    finally:
        await runner.cleanup()


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False, timeout=1.0)  # loopback only, no proxy


def test_http_feed_conditional_requests_and_errors() -> None:
    state: dict[str, Any] = {"body": "192.0.2.1\n2001:db8::/32\n", "etag": '"v1"', "status": 200}
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        if state["status"] != 200:
            return web.Response(status=state["status"], text="oops")
        if request.headers.get("If-None-Match") == state["etag"]:
            return web.Response(status=304)
        return web.Response(
            text=state["body"],
            headers={"ETag": state["etag"], "Last-Modified": "Mon, 02 Jan 2026 10:00:00 GMT"},
        )

    async def scenario() -> None:
        async with serve(handler) as url, client() as http:
            feed = Feed("generic", url, client=http, timeout=2.0)
            assert await feed.refresh()
            assert feed.entries == ("192.0.2.1", "2001:db8::/32")
            assert "If-None-Match" not in seen[0]
            assert not await feed.refresh()  # 304
            assert seen[1]["If-None-Match"] == '"v1"'
            assert seen[1]["If-Modified-Since"] == "Mon, 02 Jan 2026 10:00:00 GMT"
            assert feed.status.not_modified == 1 and feed.status.last_error is None
            state["status"] = 500
            assert not await feed.refresh()
            assert feed.status.last_error == "HTTP 500 Internal Server Error"
            assert feed.entries == ("192.0.2.1", "2001:db8::/32")
            state.update(status=200, body="198.51.100.7\n", etag='"v2"')
            assert await feed.refresh()
            assert feed.entries == ("198.51.100.7",) and feed.status.last_error is None
            assert feed.status.fetches == 4 and feed.status.failures == 1

    asyncio.run(scenario())


def test_http_feed_timeout_and_size_keep_the_last_list() -> None:
    state: dict[str, Any] = {"mode": "ok"}

    async def handler(request: web.Request) -> web.StreamResponse:
        if state["mode"] == "slow":
            await asyncio.sleep(2)
        if state["mode"] == "drip":  # headers at once, then a body that never ends
            response = web.StreamResponse()
            await response.prepare(request)
            for _ in range(40):
                await response.write(b"# still here\n")
                await asyncio.sleep(0.05)
            return response
        if state["mode"] == "big":
            return web.Response(text="\n".join(f"10.0.{i >> 8}.{i & 255}" for i in range(5000)))
        if state["mode"] == "many":
            response = web.StreamResponse()  # chunked: no Content-Length to refuse early
            await response.prepare(request)
            await response.write("\n".join(f"10.1.0.{i}" for i in range(20)).encode())
            return response
        return web.Response(text="192.0.2.1\n")

    async def scenario() -> None:
        async with serve(handler) as url, client() as http:
            feed = Feed("generic", url, client=http, timeout=0.3, max_bytes=4096, max_entries=10)
            assert await feed.refresh()
            for mode, error in [
                ("slow", "timed out after 0.3 s"),
                ("drip", "timed out after 0.3 s"),
                ("big", "over 4096 bytes (Content-Length"),
                ("many", "over 10 entries"),
            ]:
                state["mode"] = mode
                assert not await feed.refresh(), mode
                assert feed.status.last_error and feed.status.last_error.startswith(error), mode
                assert feed.entries == ("192.0.2.1",)
            assert feed.status.failures == 4

    asyncio.run(scenario())


def test_http_feed_unreachable() -> None:
    async def scenario() -> None:
        async with client() as http:
            feed = Feed("generic", "http://127.0.0.1:9/feed", client=http, timeout=1.0)
            assert not await feed.refresh()
            assert feed.status.last_error and "ConnectError" in feed.status.last_error
            assert feed.entries == () and feed.status.last_success is None

    asyncio.run(scenario())
