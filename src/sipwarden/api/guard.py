"""Who may do what through the API: the Host and Origin checks and the token.

Every request must name this API in its Host header: the address the
connection arrived on with the port it listens on, ``localhost`` with that
port, or a name in ``[api] hosts`` (with any port: a reverse proxy's). So a
page a browser loaded from another name cannot reach the API by pointing
that name at 127.0.0.1 (DNS rebinding): its requests carry its own name.

A request that may change state (any method but GET and HEAD) needs the
token, on loopback too: a local user without it (its file is 0600) cannot
add or lift a ban. When such a request carries an Origin header (browsers
send one with every such request), it must be this API's own origin (the
same authorities as the Host check), so a cross-site form post or fetch is
refused whatever it carries. Reads need the token when the listener is
off loopback, or when the operator set the token (``[api] token`` or the
environment: it guarded every request before there was a made one); on
loopback with the made token they are open.

A refusal is a 400, 403 or 401 (with ``WWW-Authenticate: Bearer``) and
``{"error": ...}`` saying why. ``Guard.refusal`` is the one check, over
plain values; ``guard_middleware`` runs it before every handler, found or
not. The dashboard's login session (``session``: a cookie) is as good as
the token, but a change made with it must carry this API's own Origin
(browsers send one with every such request: a request without one did not
come from the dashboard's page). The login form, its stylesheet and
icon (``OPEN``) need no token: they are how one gives it. A page (not the API)
refused for want of the token is a redirection to the login form.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..config import ApiConfig, api_address
from .session import Sessions, session_of
from .token import ApiToken

READS = frozenset({"GET", "HEAD"})  # every other method may change state
LOCAL_NAMES = frozenset({"localhost"})
_AUTHORITY = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9.-]+))(?::(?P<port>\d{1,5}))?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# how one gives the token (the login form, its stylesheet and icon): no token needed
OPEN = frozenset({"/login", "/static/style.css", "/static/icon.svg"})
LOGIN = "/login"


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str


@dataclass(frozen=True)
class Guard:
    token: str
    reads_open: bool  # GET and HEAD need no token
    names: frozenset[str] = frozenset()  # [api] hosts, as _normal() gives them
    sessions: Sessions = field(default_factory=Sessions, compare=False)  # the dashboard's logins

    @classmethod
    def for_api(cls, config: ApiConfig, token: ApiToken) -> Guard:
        loopback = ipaddress.ip_address(api_address(config.listen)[0]).is_loopback
        return cls(
            token.value,
            reads_open=loopback and token.file is not None,
            names=frozenset(_normal(host) for host in config.hosts),
        )

    def refusal(
        self,
        method: str,
        headers: Mapping[str, str],
        local: tuple[str, int] | None,
        path: str = "/api/v1",
    ) -> Refusal | None:
        """Why this request may not go on (None: it may). ``local`` is the
        (address, port) the connection arrived on, ``path`` the one asked."""
        host = headers.get("Host")
        if not host:
            return Refusal(400, "a request must carry a Host header naming this API")
        if not self.ours(host, 80, local):
            return Refusal(403, f"Host {_shown(host)} is not this API: {self._hint(local)}")
        changes = method.upper() not in READS
        origin = headers.get("Origin")
        if changes and origin is not None and not self.our_origin(origin, local):
            return Refusal(
                403,
                f"Origin {_shown(origin)} is not this API's own: a page of another site"
                " may not change anything here",
            )
        if path in OPEN:
            return None
        if (not changes and self.reads_open) or self.authenticated(headers):
            return None
        if self.logged_in(headers):
            if changes and origin is None:
                return Refusal(
                    403,
                    "a change made with the dashboard's session must carry this API's Origin"
                    " (the dashboard's page sends it; other clients use the token)",
                )
            return None
        what = "a request that changes state" if changes else "this request"
        return Refusal(
            401,
            f"{what} needs the API token (Authorization: Bearer <token>; the token is"
            " [api] token, SIPWARDEN_API_TOKEN, or the content of [api] token_file)",
        )

    def authenticated(self, headers: Mapping[str, str]) -> bool:
        scheme, _, given = headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(
            given.strip().encode("utf-8", "surrogatepass"), self.token.encode()
        )

    def logged_in(self, headers: Mapping[str, str]) -> bool:
        """Whether the request carries a live dashboard session."""
        return self.sessions.live(session_of(headers))

    def ours(self, authority: str, default_port: int, local: tuple[str, int] | None) -> bool:
        """Whether ``authority`` (a Host header, an origin's host[:port])
        names this API."""
        found = _AUTHORITY.fullmatch(authority)
        if found is None:
            return False
        host = _normal(found["v6"] or found["name"])
        if host in self.names:
            return True
        if local is None:
            return False
        port = int(found["port"]) if found["port"] else default_port
        return port == local[1] and (host in LOCAL_NAMES or host == _normal(local[0]))

    def our_origin(self, origin: str, local: tuple[str, int] | None) -> bool:
        scheme, sep, authority = origin.partition("://")
        default = _DEFAULT_PORTS.get(scheme.lower())
        return bool(sep) and default is not None and self.ours(authority, default, local)

    def _hint(self, local: tuple[str, int] | None) -> str:
        ways = ([_authority(local), f"localhost:{local[1]}"] if local else []) + sorted(self.names)
        return (f"use {' or '.join(ways)}, or " if ways else "") + "add the name to [api] hosts"


def guard_middleware(guard: Guard) -> Any:
    """``guard.refusal`` before every handler of an aiohttp application."""

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        refused = guard.refusal(request.method, request.headers, _local(request), request.path)
        if refused is not None:
            if refused.status == 401 and request.method in READS and _a_page(request.path):
                raise web.HTTPSeeOther(LOGIN)  # a person: the login form, not JSON
            return refusal_response(refused)
        response: web.StreamResponse = await handler(request)
        return response

    return check


def refusal_response(refused: Refusal) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="sipwarden"'} if refused.status == 401 else {}
    return web.Response(
        text=json.dumps({"error": refused.reason}, indent=1),
        status=refused.status,
        content_type="application/json",
        headers=headers,
    )


def _a_page(path: str) -> bool:
    """The dashboard's pages and files (not the API's JSON, not /metrics)."""
    return not (path.startswith("/api/") or path == "/metrics")


def _local(request: web.Request) -> tuple[str, int] | None:
    sockname = None if request.transport is None else request.transport.get_extra_info("sockname")
    return (str(sockname[0]), int(sockname[1])) if isinstance(sockname, tuple) else None


def _normal(host: str) -> str:
    """A host as compared: lower case, no final dot, an address in its
    one spelling (an IPv4-mapped IPv6 address as IPv4)."""
    host = host.lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def _authority(local: tuple[str, int]) -> str:
    host = _normal(local[0])
    return f"[{host}]:{local[1]}" if ":" in host else f"{host}:{local[1]}"


def _shown(value: str) -> str:
    return repr(value if len(value) <= 100 else value[:100] + "...")
