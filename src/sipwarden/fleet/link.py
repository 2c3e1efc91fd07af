"""One node's connection to the fleet's Redis.

What it does: opens the ``redis.asyncio`` client ``[fleet]`` describes (the
URL, the ACL user and password, TLS with ``rediss://``), names every key
(``key``: ``prefix:part:part``), and keeps the one fact the rest of the
fleet needs about the connection: whether Redis answers now (``up``), and
if not, why (``last_error``) and since when.

Rules:

- Credentials Redis refuses stop the start (``FleetAuthError``, naming the
  user and the URL without its password): a node that is set up wrong must
  not pass for one that works alone.
- Redis unreachable at start, or lost later, is not an error of the node:
  it works alone (``up`` is False; ``status`` and the metrics say the fleet
  is degraded) and the users of the link try again (``probe`` every
  ``RETRY`` seconds) and catch up when it answers.
- Every call is bounded by ``[fleet] timeout`` (the client's socket
  timeouts), so a Redis that hangs costs a timeout, never a stuck task.

The link holds no fleet state: bans, counters and intel are each kept by
their own module, which marks the link ``down`` when a call fails and
``up`` when one succeeds.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..config import FLEET_PASSWORD_ENV, FleetConfig

log = logging.getLogger("sipwarden.fleet")

NOT_YET: Final = "not connected yet"
RETRY: Final = 1.0  # seconds between attempts while Redis does not answer
# what a Redis that cannot be reached raises (the node works alone meanwhile)
UNREACHABLE: Final = (RedisConnectionError, RedisTimeoutError, OSError)


class FleetAuthError(Exception):
    """Redis refused this node's credentials: the node does not start."""


def node_name(config: FleetConfig) -> str:
    """This node's name: ``[fleet] node``, else the host name."""
    return config.node or socket.gethostname().split(".")[0][:63] or "node"


def shown_url(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***@" if parts.username else ":***@"
    host = parts.hostname or ""
    netloc = user + (f"[{host}]" if ":" in host else host)
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def fleet_password(config: FleetConfig) -> str | None:
    """The password: ``password``, else ``password_file``'s first line, else
    ``SIPWARDEN_FLEET_PASSWORD`` (None: the URL's, or none). A file that
    cannot be read is an error naming the key (the node does not start)."""
    if config.password:
        return config.password
    if config.password_file is not None:
        try:
            text = config.password_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise FleetAuthError(
                f"fleet.password_file = {str(config.password_file)!r}: cannot read: {exc.strerror}"
            ) from None
        return text.strip() or None
    return os.environ.get(FLEET_PASSWORD_ENV) or None


def make_client(config: FleetConfig) -> aioredis.Redis:
    """The client ``[fleet]`` describes (it connects at its first call)."""
    options: dict[str, Any] = {
        "socket_timeout": config.timeout,
        "socket_connect_timeout": config.timeout,
        "health_check_interval": 0,
        "decode_responses": False,
    }
    if config.username is not None:
        options["username"] = config.username
    password = fleet_password(config)
    if password is not None:
        options["password"] = password
    if config.redis.startswith("rediss://"):
        options["ssl_cert_reqs"] = "required"
        if config.tls_ca_file is not None:
            options["ssl_ca_certs"] = str(config.tls_ca_file)
        if config.tls_cert_file is not None:
            options["ssl_certfile"] = str(config.tls_cert_file)
        if config.tls_key_file is not None:
            options["ssl_keyfile"] = str(config.tls_key_file)
    return aioredis.Redis.from_url(config.redis, **options)


class FleetLink:
    """The connection and whether it works (see the module doc)."""

    def __init__(
        self,
        config: FleetConfig,
        *,
        client: aioredis.Redis | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.node = node_name(config)
        self.client = client if client is not None else make_client(config)
        self.clock = clock
        self.up = False
        self.last_error: str | None = NOT_YET
        self.down_since: float | None = clock()
        self.outages = 0  # times Redis went away after answering

    def key(self, *parts: str) -> str:
        """A key of this fleet: ``prefix:part:part``."""
        return ":".join((self.config.prefix, *parts))

    async def connect(self) -> bool:
        """The first contact, at start: True when Redis answers; False when it
        cannot be reached (the node starts alone); ``FleetAuthError`` when it
        refuses the credentials."""
        return await self.probe()

    async def probe(self) -> bool:
        """Ask Redis whether it answers (PING); the link's state follows."""
        try:
            await self.client.ping()
        except AuthenticationError as exc:
            raise FleetAuthError(self._refused(exc)) from None
        except ResponseError as exc:
            if "WRONGPASS" in str(exc) or "NOAUTH" in str(exc) or "NOPERM" in str(exc):
                raise FleetAuthError(self._refused(exc)) from None
            raise
        except UNREACHABLE as exc:
            self.mark_down(exc)
            return False
        self.mark_up()
        return True

    def mark_up(self) -> None:
        if self.up:
            return
        if self.last_error != NOT_YET:  # it was away: say it is back
            log.warning(
                "fleet: Redis at %s answers again (away %.0f s)",
                shown_url(self.config.redis),
                self.clock() - (self.down_since or self.clock()),
            )
        self.up, self.last_error, self.down_since = True, None, None

    def mark_down(self, error: BaseException | str) -> None:
        why = error if isinstance(error, str) else (str(error) or type(error).__name__)
        if self.up or self.last_error == NOT_YET:  # it went away (or never came): said once
            if self.up:
                self.outages += 1
            self.down_since = self.clock()
            log.warning(
                "fleet: Redis at %s does not answer (%s): this node works alone and catches"
                " up when it returns",
                shown_url(self.config.redis),
                why,
            )
        self.up, self.last_error = False, why

    def _refused(self, exc: Exception) -> str:
        user = self.config.username or urlsplit(self.config.redis).username or "default"
        return (
            f"Redis at {shown_url(self.config.redis)} refused user {user!r}: {exc}"
            f" (check [fleet] username and password, or {FLEET_PASSWORD_ENV})"
        )

    async def close(self) -> None:
        await self.client.aclose()

    def status(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "redis": shown_url(self.config.redis),
            "up": self.up,
            "last-error": self.last_error,
            "down-since": self.down_since,
            "outages": self.outages,
        }
