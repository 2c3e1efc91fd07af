"""The API's routes and its listener (see the package doc)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..config import Config, api_address, parse_duration, parse_since
from ..daemon.commands import run_command
from .guard import Guard, guard_middleware
from .metrics import metrics
from .pages import add_pages
from .stream import EventStream
from .token import api_token

if TYPE_CHECKING:
    from ..daemon.core import Daemon

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")
STREAMS: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("streams")  # the live streams open
# the last answers of /api/v1/sources, by query: every open dashboard asks the same
RECENT: web.AppKey[dict[str, tuple[float, asyncio.Future[dict[str, Any]]]]] = web.AppKey("recent")
RECENT_FOR = 5.0  # seconds an answer of /api/v1/sources is given again


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, indent=1))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


async def _run(request: web.Request, command: str, **args: Any) -> dict[str, Any]:
    """A daemon command, as the control socket runs it (``daemon.commands``)."""
    return await run_command(request.app[DAEMON], {"cmd": command, **args})


async def list_bans(request: web.Request) -> web.Response:
    return _json((await _run(request, "bans-list"))["bans"])


async def add_ban(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return _error(400, 'the body must be JSON: {"ip": ..., "for": "1h"}')
    if not isinstance(body, dict) or not isinstance(body.get("ip"), str):
        return _error(400, "ip: an IP address or a CIDR is required")
    duration: Any = "progressive"
    permanent = body.get("permanent", False)
    if not isinstance(permanent, bool):
        return _error(400, "permanent: true or false")
    if permanent:
        duration = None
    elif body.get("for") is not None:
        try:
            duration = parse_duration(body["for"])
        except ValueError as exc:
            return _error(400, f"for: {exc}")
    answer = await _run(
        request, "bans-add", target=body["ip"], duration=duration, reason=body.get("reason")
    )
    if not answer["ok"]:  # refused by the ban book (409), or a bad request (400)
        return _error(409 if answer.get("refused") else 400, answer["error"])
    return _json(answer["ban"], 201)


async def show_ban(request: web.Request) -> web.Response:
    shown = await _run(request, "bans-show", target=request.match_info["ip"])
    if not shown.pop("ok"):
        return _error(400, shown["error"])
    return _json(shown)


async def remove_ban(request: web.Request) -> web.Response:
    answer = await _run(request, "bans-remove", target=request.match_info["ip"])
    if not answer["ok"]:
        return _error(400 if "not an IP" in answer["error"] else 404, answer["error"])
    return _json(answer["ban"])


async def status(request: web.Request) -> web.Response:
    return _json(await _run(request, "stats"))


async def intel_status(request: web.Request) -> web.Response:
    status = await _run(request, "intel-status")
    del status["ok"]
    return _json(status)


async def intel_lookup(request: web.Request) -> web.Response:
    found = await _run(request, "intel-lookup", target=request.match_info["ip"])
    if not found.pop("ok"):
        return _error(400, found["error"])
    return _json(found)


async def _bans_in_force(request: web.Request) -> tuple[list[dict[str, Any]], float]:
    answer = await _run(request, "bans-list")
    return answer["bans"], answer["now"]


async def export_text(request: web.Request) -> web.Response:
    from ..enforce.export import as_text

    return web.Response(text=as_text(*await _bans_in_force(request)), content_type="text/plain")


async def export_json(request: web.Request) -> web.Response:
    from ..enforce.export import as_json

    bans, _ = await _bans_in_force(request)
    return web.Response(text=as_json(bans), content_type="application/json")


async def export_nft(request: web.Request) -> web.Response:
    from ..enforce.export import DEFAULT_SET, DEFAULT_TABLE, as_nft

    bans, now = await _bans_in_force(request)
    try:
        script = as_nft(
            bans,
            now,
            table=request.query.get("table", DEFAULT_TABLE),
            set_prefix=request.query.get("set", DEFAULT_SET),
        )
    except ValueError as exc:
        return _error(400, str(exc))
    return web.Response(text=script, content_type="text/plain")


def _window(request: web.Request) -> dict[str, Any] | str:
    """``?since=1h`` (a duration back from now, or epoch seconds),
    ``&source=IP`` and ``&limit=N`` as a command's arguments, or what is wrong."""
    query = request.query
    window: dict[str, Any] = {}
    if "since" in query:
        try:
            window["since"] = parse_since(query["since"], time.time())
        except ValueError as exc:
            return f"since: {exc}"
    if "source" in query:
        window["source"] = query["source"]
    if "limit" in query:
        try:
            window["limit"] = int(query["limit"])
        except ValueError:
            return "limit: a whole number from 1 to 100000"
    return window


async def _listed(request: web.Request, what: str) -> web.Response:
    """``events`` or ``flows`` over the window the query asks for."""
    window = _window(request)
    if isinstance(window, str):
        return _error(400, window)
    answer = await _run(request, what, **window)
    return _json(answer[what]) if answer["ok"] else _error(400, answer["error"])


async def list_events(request: web.Request) -> web.Response:
    return await _listed(request, "events")


async def list_flows(request: web.Request) -> web.Response:
    return await _listed(request, "flows")


async def list_sources(request: web.Request) -> web.Response:
    """The busiest sources (``sources``): ``?since=1h&limit=15``. Every open
    dashboard asks the same every few seconds: one reading (in flight or
    done less than ``RECENT_FOR`` seconds ago) answers them all."""
    window = _window(request)
    if isinstance(window, str):
        return _error(400, window)
    recent, now, key = request.app[RECENT], time.monotonic(), request.query_string
    if key not in recent or now - recent[key][0] >= RECENT_FOR:
        if len(recent) > 100:  # bounded: distinct queries are few
            recent.clear()
        recent[key] = (now, asyncio.ensure_future(_run(request, "sources", **window)))
    answer = await asyncio.shield(recent[key][1])
    return _json(answer["sources"]) if answer["ok"] else _error(400, answer["error"])


async def list_honeypot_calls(request: web.Request) -> web.Response:
    """The honeypot's call records; ``?since=``, ``&source=``, ``&limit=`` as for events."""
    window = _window(request)
    if isinstance(window, str):
        return _error(400, window)
    answer = await _run(request, "honeypot-calls", **window)
    return _json(answer["calls"]) if answer["ok"] else _error(400, answer["error"])


async def profile(request: web.Request) -> web.Response:
    answer = await _run(request, "profile")
    if not answer.pop("ok"):
        return _error(404, answer["error"])
    return _json(answer)


async def stream_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: every event as the store has it (``id`` is its
    row, ``event`` its kind, ``data`` the JSON ``events`` gives), from now,
    or from after ``Last-Event-ID`` when a client reconnects."""
    observe = request.app[DAEMON].observe
    if observe is None:
        return _error(404, "events are not kept")
    stream = EventStream(observe)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    streams, task = request.app[STREAMS], asyncio.current_task()
    assert task is not None
    streams.add(task)  # ended at the API's cleanup: a stream never ends on its own
    try:
        with contextlib.suppress(ConnectionResetError):  # the client went away
            await stream.run(response, request.headers.get("Last-Event-ID"))
    finally:
        streams.discard(task)
    return response


async def prometheus(request: web.Request) -> web.Response:
    body, content_type = await metrics(request.app[DAEMON], request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


def make_app(daemon: Daemon, guard: Guard) -> web.Application:
    app = web.Application(middlewares=[guard_middleware(guard)])
    app[DAEMON] = daemon
    app[STREAMS] = set()
    app[RECENT] = {}
    app.router.add_get("/api/v1/bans", list_bans)
    app.router.add_post("/api/v1/bans", add_ban)
    app.router.add_get("/api/v1/bans/{ip:.+}", show_ban)
    app.router.add_delete("/api/v1/bans/{ip:.+}", remove_ban)
    app.router.add_get("/api/v1/status", status)
    app.router.add_get("/api/v1/intel", intel_status)
    app.router.add_get("/api/v1/intel/lookup/{ip}", intel_lookup)
    app.router.add_get("/api/v1/export/bans.txt", export_text)
    app.router.add_get("/api/v1/export/bans.json", export_json)
    app.router.add_get("/api/v1/export/bans.nft", export_nft)
    app.router.add_get("/api/v1/events", list_events)
    app.router.add_get("/api/v1/events/stream", stream_events)
    app.router.add_get("/api/v1/flows", list_flows)
    app.router.add_get("/api/v1/sources", list_sources)
    app.router.add_get("/api/v1/profile", profile)
    app.router.add_get("/api/v1/honeypot/calls", list_honeypot_calls)
    app.router.add_get("/metrics", prometheus)
    add_pages(app, guard)  # the dashboard at /
    return app


@dataclass
class ApiServer:
    runner: web.AppRunner
    url: str  # http://127.0.0.1:8080
    token_file: Path | None  # where the made token is; None when configured

    async def cleanup(self) -> None:
        streams: set[asyncio.Task[Any]] = self.runner.app[STREAMS]
        for task in list(streams):  # the live streams: they never end alone
            task.cancel()
        await self.runner.cleanup()


async def serve_api(config: Config, daemon: Daemon) -> ApiServer:
    """Listen on ``[api] listen``; a token file that cannot be made or used
    is a ``TokenError``, a port that cannot be bound an ``OSError``."""
    host, port = api_address(config.api.listen)
    token = api_token(config)
    guard = Guard.for_api(config.api, token)
    runner = web.AppRunner(make_app(daemon, guard), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]  # (host, port[, ...]) of the one site: the port as bound
    shown = f"[{host}]" if ":" in host else host
    return ApiServer(runner, f"http://{shown}:{bound}", token.file)
