"""The dashboard's login sessions: what the browser's cookie stands for.

An operator logs in with the API token (the login form) and gets a session:
a random id in a cookie (HttpOnly, SameSite=Strict, Secure over TLS), never
the token itself, so the token is typed once and never stored or shown by
the browser. The guard takes a live session where it takes the token.

Bounds: sessions live ``LIFETIME`` seconds from their login and at most
``MAX_SESSIONS`` are kept (a new login past that drops the oldest). They
are kept in memory only: a restart logs everyone out.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Final

COOKIE: Final = "sipwarden_session"
LIFETIME: Final = 12 * 3600  # seconds
MAX_SESSIONS: Final = 1000


class Sessions:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.expiry: OrderedDict[str, float] = OrderedDict()  # id -> when it ends

    def start(self) -> str:
        """A new session's id (the cookie's value)."""
        now = self.clock()
        while len(self.expiry) >= MAX_SESSIONS:
            self.expiry.popitem(last=False)
        session = secrets.token_urlsafe(32)
        self.expiry[session] = now + LIFETIME
        return session

    def end(self, session: str | None) -> None:
        if session is not None:
            self.expiry.pop(session, None)

    def live(self, session: str | None) -> bool:
        now = self.clock()
        while self.expiry and next(iter(self.expiry.values())) <= now:  # oldest first
            self.expiry.popitem(last=False)
        # a dict lookup: 256 random bits leave nothing to learn from its timing
        return bool(session) and session in self.expiry


def session_of(headers: Mapping[str, str]) -> str | None:
    """The session id a request's Cookie header carries, if any."""
    raw = headers.get("Cookie")
    if not raw:
        return None
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(raw)
    except CookieError:
        return None
    morsel = cookies.get(COOKIE)
    return morsel.value if morsel is not None else None
