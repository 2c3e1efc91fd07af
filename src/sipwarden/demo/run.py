"""Running the demo: the registrar as the PBX, one edge worker in front of
it (store, control socket and flow key in a temporary directory; no
firewall), the scenario against it, then the summary; ``run_demo`` is the
door ``sipwarden demo`` opens.

A SIGINT or SIGTERM (which the edge's ``serve`` turns into ``stop``) ends
the scenario early; the edge and the registrar are always shut down, and
nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.markup import escape

from ..config import Config, config_from_dict
from .actors import DemoError, UdpActor
from .cast import ENUMERATOR, GUESSER, PHONE, REALM, SETTLE, SILENCE, USERS
from .registrar import Registrar, RegistrarServer
from .render import Renderer
from .scenario import Scenario
from .summary import summarise

if TYPE_CHECKING:
    from ..api import ApiServer
    from ..daemon.core import Daemon


def demo_config(tmp: Path, backend_port: int) -> Config:
    return config_from_dict(
        {
            "edge": {
                "listen": ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"],
                "backend": f"udp:127.0.0.1:{backend_port}",
                "flow_key_file": str(tmp / "flow.key"),
            },
            "storage": {"path": str(tmp / "bans.db")},
            "control": {"socket": str(tmp / "control.sock")},
            "firewall": {"enforcer": "none"},
            "api": {"listen": "127.0.0.1:0"},
        }
    )


async def _api_bans(url: str) -> list[dict[str, Any]] | str:
    """GET /api/v1/bans as a user's curl would: the list, or what went wrong."""
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(f"{url}/api/v1/bans") as response,
        ):
            if response.status != 200:
                return f"HTTP {response.status}"
            body = await response.json()
            return body if isinstance(body, list) else "not a JSON list"
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return str(exc) or type(exc).__name__


async def _bans_stored(daemon: Daemon, hosts: set[str]) -> list[dict[str, Any]]:
    """The bans in force from the keeper's store, once ``hosts`` are in it
    (or SETTLE seconds have passed: then they are missing, and that shows)."""
    deadline = time.monotonic() + SETTLE
    while True:
        rows = await daemon.keeper.list()
        if hosts <= {row["ip"] for row in rows} or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


async def _run(hold: float, render: Renderer) -> dict[str, Any]:
    from ..app import serve
    from ..edge import flow_key
    from ..policy import build_policy

    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="sipwarden-demo-") as tmp:
        registrar = Registrar(REALM, USERS, reveal_unknown=True)
        pbx = RegistrarServer(registrar, "127.0.0.1", 0)
        await pbx.start()
        try:
            config = demo_config(Path(tmp), pbx.port)
            policy = build_policy(config, countries=None)
            stop = asyncio.Event()
            ready: asyncio.Future[tuple[Daemon, ApiServer | None]] = loop.create_future()

            def on_ready(daemon: Daemon, api: ApiServer | None) -> None:
                if not ready.done():
                    ready.set_result((daemon, api))

            key = flow_key(config.edge.flow_key_file)
            serving = asyncio.create_task(
                serve(config, key, policy, stop=stop, on_ready=on_ready, announce=False)
            )
            started: set[asyncio.Future[Any]] = {serving, ready}
            await asyncio.wait(started, return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                serving.result()  # its error, if it failed
                raise DemoError("the edge stopped before it served")
            daemon, api = ready.result()
            try:
                summary = await _drive(daemon, api, pbx.port, stop, render)
                render.finish(summary, hold)
                if hold > 0 and not stop.is_set():
                    render.holding(hold, api)
                    with contextlib.suppress(TimeoutError):  # math.inf: until a signal
                        await asyncio.wait_for(stop.wait(), None if math.isinf(hold) else hold)
                return summary
            finally:
                stop.set()
                await serving
        finally:
            pbx.close()


async def _drive(
    daemon: Daemon, api: ApiServer | None, pbx_port: int, stop: asyncio.Event, render: Renderer
) -> dict[str, Any]:
    """Run the scenario; a SIGINT or SIGTERM (which set ``stop``) ends it early."""
    scenario = Scenario(daemon)
    render.intro(daemon, api, pbx_port)
    play = asyncio.create_task(_play(scenario, render))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({play, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not play.done():
        play.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await play
        raise DemoError("interrupted")
    stopped.cancel()
    play.result()
    rows = await _bans_stored(daemon, {ENUMERATOR, GUESSER})
    from_api = await _api_bans(api.url) if api is not None else "the API did not start"
    return summarise(scenario, daemon, api, pbx_port, rows, from_api)


async def _play(scenario: Scenario, render: Renderer) -> None:
    scenario.phone = UdpActor(PHONE)
    scanner_sockets: list[UdpActor] = []
    try:
        await scenario.register_phone()
        render.phone_first(scenario.results.phone[0])
        done = asyncio.Event()
        phone = asyncio.create_task(scenario.keep_registering(done))
        try:
            render.section_scanners()
            scanner_sockets = await scenario.scanners()
            await asyncio.sleep(SILENCE)  # a late answer to the last probe would show
            for record in scenario.results.scanners:
                actor = record.pop("actor", None)
                if actor is not None:
                    record["answers"] = actor.received
                else:
                    record["answers"] = 1 if record.pop("answer_bytes") else 0
            render.scanners(scenario.results.scanners)
            render.section_enumeration()
            await scenario.enumerate_users()
            render.enumeration(scenario.results.enumeration)
            render.section_guessing()
            await scenario.guess_passwords()
            render.guessing(scenario.results.guessing)
        finally:
            done.set()
            await phone
    finally:
        scenario.phone.close()
        for actor in scanner_sockets:
            actor.close()


def run_demo(
    *, hold: float = 0.0, as_json: bool = False, verbose: bool = False, out: TextIO | None = None
) -> int:
    """Run the demo; 0 when the edge behaved as it should, 1 otherwise."""
    import uvloop

    out = out if out is not None else sys.stdout
    tty = out.isatty()
    # piped: long lines stay whole (soft wrap), tables get room
    console = Console(file=out, highlight=False, width=None if tty else 120, soft_wrap=not tty)
    render = Renderer(console, as_json=as_json)
    log = logging.getLogger("sipwarden")
    handler: logging.Handler = logging.NullHandler()
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        log.setLevel(logging.INFO)
    # without a handler, the edge's warnings (each ban) would go to stderr
    log.addHandler(handler)
    try:
        summary = uvloop.run(_run(hold, render))
    except DemoError as exc:
        Console(file=sys.stderr, highlight=False).print(
            f"[red]sipwarden demo: {escape(str(exc))}[/]"
        )
        return 1
    finally:
        log.removeHandler(handler)
    return 0 if summary["ok"] else 1
