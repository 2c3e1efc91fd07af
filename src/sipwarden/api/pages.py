"""The dashboard at ``/``: its pages, its files and the login form.

The pages are plain HTML, CSS and JavaScript shipped in the package
(``api/dashboard/``); the page's script reads the REST API under /api/v1
and follows the live event stream, so the dashboard needs nothing from the
internet and shows nothing the API does not. Routes: ``/`` (now, who,
when, what they want, the feeds), ``/source/{ip}`` (one source's story),
``/login`` (GET the form; POST the token: a session cookie), ``/logout``
(POST), ``/static/{name}``, and ``GET /api/v1/session`` (whether this
browser may ban and unban: read-only, no secret in it).

Every answer carries a Content-Security-Policy that allows this origin's
own files only (no inline script, no framing), so an injected string
cannot run. The guard (``guard``) has checked Host, Origin and the token
or session before any of these handlers runs.
"""

from __future__ import annotations

import asyncio
import hmac
from importlib.resources import files
from typing import Final
from urllib.parse import quote

from aiohttp import web

from .guard import Guard
from .session import COOKIE, LIFETIME, session_of

GUARD: web.AppKey[Guard] = web.AppKey("guard")
FILES: Final = files(__package__) / "dashboard"
SHIPPED: Final = {  # name -> content type: the only files served
    "style.css": "text/css",
    "app.js": "text/javascript",
    "common.js": "text/javascript",
    "source.js": "text/javascript",
    "icon.svg": "image/svg+xml",
}
HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make form posts say Origin: null
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
WRONG_TOKEN_PAUSE: Final = 1.0  # seconds: a guesser's pace through the form


def _page(name: str, status: int = 200, message: str = "") -> web.Response:
    html = (FILES / name).read_text(encoding="utf-8")
    html = html.replace("<!--message-->", message)  # a fixed text of ours, never the input
    return web.Response(text=html, status=status, content_type="text/html", headers=HEADERS)


async def index(request: web.Request) -> web.Response:
    return _page("index.html")


async def source(request: web.Request) -> web.Response:
    return _page("source.html")  # the script reads the address from the path


async def shipped(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    kind = SHIPPED.get(name)
    if kind is None:
        raise web.HTTPNotFound()
    body = (FILES / name).read_bytes()
    return web.Response(body=body, content_type=kind, headers=HEADERS)


async def login_form(request: web.Request) -> web.Response:
    return _page("login.html")


async def login(request: web.Request) -> web.Response:
    """The token from the form: a session cookie and the dashboard, or the
    form again, after a pause, saying the token was wrong."""
    guard = request.app[GUARD]
    form = await request.post()
    given = form.get("token")
    if not isinstance(given, str) or not hmac.compare_digest(
        given.strip().encode("utf-8", "surrogatepass"), guard.token.encode()
    ):
        await asyncio.sleep(WRONG_TOKEN_PAUSE)
        return _page("login.html", 401, '<p class="error" role="alert">That is not the token.</p>')
    response = web.HTTPSeeOther(_next(form.get("next")), headers=HEADERS)
    response.set_cookie(
        COOKIE,
        guard.sessions.start(),
        max_age=LIFETIME,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_over_tls(request),
    )
    return response


async def logout(request: web.Request) -> web.Response:
    request.app[GUARD].sessions.end(session_of(request.headers))
    response = web.HTTPSeeOther("/login", headers=HEADERS)
    response.del_cookie(COOKIE, path="/")
    return response


async def session(request: web.Request) -> web.Response:
    """What this browser may do: ``{"acts": bool, "reads_open": bool}``."""
    guard = request.app[GUARD]
    acts = guard.authenticated(request.headers) or guard.logged_in(request.headers)
    return web.json_response({"acts": acts, "reads_open": guard.reads_open})


def _over_tls(request: web.Request) -> bool:
    """Whether the browser reached us over TLS: our own, or a reverse proxy's
    (the form's Origin, which the guard found to be ours, says https)."""
    return request.secure or request.headers.get("Origin", "").lower().startswith("https://")


def _next(value: object) -> str:
    """Where to go after logging in: a path of ours, never another site."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//"):
        return quote(value, safe="/?=&.:%-_")
    return "/"


def add_pages(app: web.Application, guard: Guard) -> None:
    app[GUARD] = guard
    app.router.add_get("/", index)
    app.router.add_get("/source/{ip:.+}", source)
    app.router.add_get("/static/{name}", shipped)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/api/v1/session", session)
