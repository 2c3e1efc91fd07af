"""A local APIBAN that answers as ``tests/data/apiban/API.md`` says.

aiohttp on 127.0.0.1 (an ephemeral port). v1 (``GET /api/{KEY}/banned[/{ID}]``,
``GET /api/{KEY}/check/{IP}``) and v2 (``POST /api/get``, ``POST /api/check``,
``Authorization: Bearer KEY``). Pages of ``batch`` entries, oldest first, the
ID the Unix time of the next entry; every end-of-list variant selectable; a
403 for a wrong key; a 429 when more than ``rate_requests`` arrive within
``rate_window`` seconds (every request counts, as the real one). Canned
answers can be queued (``script``) for the next requests.

Counters for the tests: ``requests`` (arrival time, route, ID asked, status, the Host asked),
``max_in_window`` (the most requests seen in any window), ``rate_limited``.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

EndVariant = Literal["400-list", "400-string", "200-id-only", "200-empty-list"]
END_BODIES: dict[str, tuple[int, dict[str, Any]]] = {
    "400-list": (400, {"ipaddress": ["no new bans"], "ID": "none"}),
    "400-string": (400, {"ipaddress": "no new bans", "ID": "none"}),
    "200-id-only": (200, {"ID": "none"}),
    "200-empty-list": (200, {"ipaddress": [], "ID": "none"}),
}
REFUSED = (403, {"ipaddress": "none", "ID": "unauthorized"})
LIMITED = (429, {"ipaddress": "rate limit exceeded", "ID": "unauthorized"})


@dataclass(frozen=True)
class Seen:
    at: float  # monotonic arrival time
    route: str  # "v1-banned", "v2-get", "v1-check", "v2-check"
    id: str | None  # the ID asked for (None: none given)
    status: int
    host: str = ""  # the Host the client asked (nodes of a fleet each name the mock their way)


class MockApiban:
    def __init__(
        self,
        *,
        key: str = "s3cr3t-k3y-0123456789",
        batch: int = 250,
        rate_requests: int = 11,
        rate_window: float = 120.0,
        end: EndVariant = "400-list",
        last_page_id: Literal["next", "none"] = "next",
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host  # where it listens ("0.0.0.0" only inside a test's own namespace)
        self.key = key
        self.batch = batch
        self.rate_requests = rate_requests
        self.rate_window = rate_window
        self.end: EndVariant = end
        # the last page's ID: the time after its last entry ("next", the
        # next call then gets the end of the list), or "none" at once
        self.last_page_id = last_page_id
        self.entries: list[tuple[int, str, str]] = []  # (listed at, address, set), by time
        self.requests: list[Seen] = []
        self.max_in_window = 0
        self.rate_limited = 0
        self.script: deque[tuple[int, bytes]] = deque()  # canned answers, next first
        self._window: deque[float] = deque()
        self._runner: web.AppRunner | None = None
        self._asked_host = ""  # the request being answered's Host (one at a time: one loop)
        self.port = 0
        self.base = ""

    # ---------------------------------------------------------------- data

    def add(self, address: str, listed_at: int, set_: str = "sip") -> None:
        """List ``address`` (again: a re-listing moves it to ``listed_at``)."""
        self.entries = [e for e in self.entries if not (e[1] == address and e[2] == set_)]
        self.entries.append((listed_at, address, set_))
        self.entries.sort()

    def remove(self, address: str) -> None:
        self.entries = [e for e in self.entries if e[1] != address]

    def addresses(self, set_: str = "sip") -> set[str]:
        return {a for _, a, s in self.entries if set_ in ("all", s)}

    def ids_asked(self) -> list[str | None]:
        return [r.id for r in self.requests if r.route in ("v1-banned", "v2-get")]

    # ---------------------------------------------------------------- life

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/api/{key}/banned", self._v1_banned)
        app.router.add_get("/api/{key}/banned/{id}", self._v1_banned)
        app.router.add_get("/api/{key}/check/{ip}", self._v1_check)
        app.router.add_post("/api/get", self._v2_get)
        app.router.add_post("/api/check", self._v2_check)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://{'127.0.0.1' if self.host == '0.0.0.0' else self.host}:{port}/api/"
        self.port = port
        return self.base

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> MockApiban:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # -------------------------------------------------------------- routes

    async def _v1_banned(self, request: web.Request) -> web.Response:
        self._asked_host = request.host
        return self._answer("v1-banned", request.match_info["key"], request.match_info.get("id"))

    async def _v2_get(self, request: web.Request) -> web.Response:
        body = await _body(request)
        id_ = body.get("id") if isinstance(body, dict) else None
        set_ = body.get("set", "sip") if isinstance(body, dict) else "sip"
        self._asked_host = request.host
        return self._answer("v2-get", _bearer(request), None if id_ is None else str(id_), set_)

    async def _v1_check(self, request: web.Request) -> web.Response:
        self._asked_host = request.host
        return self._check("v1-check", request.match_info["key"], request.match_info["ip"])

    async def _v2_check(self, request: web.Request) -> web.Response:
        body = await _body(request)
        ip = body.get("ipaddress") if isinstance(body, dict) else None
        set_ = body.get("set", "sip") if isinstance(body, dict) else "sip"
        self._asked_host = request.host
        return self._check("v2-check", _bearer(request), str(ip), set_)

    # -------------------------------------------------------------- inside

    def _gate(self, route: str, key: str | None, id_: str | None) -> web.Response | None:
        """Count the request; a canned, 429 or 403 answer if one is due."""
        now = time.monotonic()
        self._window.append(now)
        while self._window and self._window[0] <= now - self.rate_window:
            self._window.popleft()
        self.max_in_window = max(self.max_in_window, len(self._window))
        answer: web.Response | None = None
        if self.script:
            status, raw = self.script.popleft()
            answer = web.Response(status=status, body=raw, content_type="application/json")
        elif len(self._window) > self.rate_requests:
            self.rate_limited += 1
            answer = _reply(*LIMITED)
        elif key != self.key:
            answer = _reply(*REFUSED)
        if answer is not None:
            self.requests.append(Seen(now, route, id_, answer.status, self._asked_host))
        return answer

    def _answer(
        self, route: str, key: str | None, id_: str | None, set_: str = "sip"
    ) -> web.Response:
        gated = self._gate(route, key, id_)
        if gated is not None:
            return gated
        since = int(id_) if id_ is not None and id_.isdigit() else 100
        rows = [e for e in self.entries if e[0] >= since and set_ in ("all", e[2])]
        if not rows or set_ not in ("sip", "http", "all"):
            status, body = END_BODIES[self.end]
        else:
            page, rest = rows[: self.batch], rows[self.batch :]
            if rest:
                next_id = str(rest[0][0])
            elif self.last_page_id == "none":
                next_id = "none"
            else:
                next_id = str(page[-1][0] + 1)
            status, body = 200, {"ipaddress": [a for _, a, _ in page], "ID": next_id}
        self.requests.append(Seen(time.monotonic(), route, id_, status, self._asked_host))
        return _reply(status, body)

    def _check(self, route: str, key: str | None, ip: str, set_: str = "sip") -> web.Response:
        gated = self._gate(route, key, None)
        if gated is not None:
            return gated
        found = [e for e in self.entries if e[1] == ip and set_ in ("all", e[2])]
        if not ip or not any(c.isdigit() for c in ip) or " " in ip:
            status, body = 400, {}
        elif found:
            status, body = 200, {"ipaddress": [ip], "ID": str(found[-1][0])}
        else:
            status, body = 400, {"ipaddress": ["not blocked"], "ID": "none"}
        self.requests.append(Seen(time.monotonic(), route, None, status, self._asked_host))
        return _reply(status, body)


def _reply(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    return auth[7:] if auth.startswith("Bearer ") else None


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except ValueError:
        return None


CLONE_NEWNET = 0x40000000  # setns(2)


@contextmanager
def mock_thread(*, netns: str | None = None, **options: Any) -> Iterator[MockApiban]:
    """A mock served by a thread of its own (its own event loop), for tests
    whose client is another process: ``sipwarden run`` or the CLI. With
    ``netns``, the thread joins that network namespace first, so the mock
    listens on that namespace's loopback. Add entries from the test's
    thread only while no request is under way (between the test's steps)."""
    mock = MockApiban(**options)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            if netns is not None:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:  # this thread only
                        raise OSError(ctypes.get_errno(), f"setns {netns}")
                finally:
                    os.close(fd)
            asyncio.set_event_loop(loop)
            loop.run_until_complete(mock.start())
        except BaseException as exc:
            failed.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(mock.stop())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10), "the APIBAN mock did not start"
    if failed:
        raise failed[0]
    try:
        yield mock
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
