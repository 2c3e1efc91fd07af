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
- So does a TLS peer this node cannot trust, or that will not trust it: a
  server certificate ``tls_ca_file`` did not sign (or made for another
  name), a client certificate Redis rejects or asked for and did not get,
  a ``tls_*_file`` that cannot be read. Waiting does not mend any of them
  (someone must change a file), and a node that took them for an outage
  would work alone for good while its operator believes it is in the
  fleet; an untrusted server may also be an impostor, which must not be
  given the password. Only the network failing (refused, reset, timed
  out) is "unreachable".
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

import asyncio
import contextlib
import logging
import os
import socket
import ssl
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
    """Redis refused this node's credentials, or TLS trust failed either way
    (see the module doc): the node does not start."""


# TLS alerts a server sends when it rejects this node's certificate (or its lack of one)
_CLIENT_CERT_REFUSED: Final = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "TLSV1_ALERT_ACCESS_DENIED",
        "PEER_DID_NOT_RETURN_A_CERTIFICATE",
    }
)


def tls_refusal(exc: BaseException) -> str | None:
    """Why TLS trust failed, if that is what ``exc`` (a connection error
    and the errors it was raised from) says; None: something else."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ssl.SSLCertVerificationError):
            return (
                f"its certificate is not trusted ({error.verify_message or error.reason}):"
                " check [fleet] tls_ca_file is the CA that signed it and the URL's host is"
                " the name it was made for"
            )
        if isinstance(error, ssl.SSLError) and error.reason in _CLIENT_CERT_REFUSED:
            return (
                f"it refused this node's client certificate ({error.reason}): check [fleet]"
                " tls_cert_file and tls_key_file (Redis's tls-ca-cert-file must have signed it)"
            )
        if isinstance(error, ssl.SSLError) and error.library == "PEM":
            return f"a [fleet] tls_*_file cannot be read as PEM ({error.reason})"
        error = error.__cause__ or error.__context__
    return None


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


async def tls_diagnosis(config: FleetConfig) -> str | None:
    """Why TLS trust fails with this Redis, if it does (None: it does not, or
    Redis cannot be reached at all). At start only, after a failed first
    contact: with TLS 1.3 a server that rejects the client's certificate
    says so after the handshake, and a client that has sent its first
    command meanwhile often sees the connection reset instead of the
    server's alert. This handshake sends nothing and reads, so the alert
    arrives."""
    parts = urlsplit(config.redis)
    host, port = parts.hostname or "localhost", parts.port or 6379
    try:
        context = ssl.create_default_context(
            cafile=None if config.tls_ca_file is None else str(config.tls_ca_file)
        )
        if config.tls_cert_file is not None:
            context.load_cert_chain(
                str(config.tls_cert_file),
                None if config.tls_key_file is None else str(config.tls_key_file),
            )
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host),
            config.timeout,
        )
    except (OSError, TimeoutError) as exc:
        return tls_refusal(exc)
    try:
        await asyncio.wait_for(reader.read(1), min(config.timeout, 1.0))
    except (OSError, TimeoutError) as exc:  # a healthy server waits for a command: a timeout
        return tls_refusal(exc)
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    return None


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
        refuses the credentials, TLS trust fails or a TLS file cannot be read."""
        for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
            path = getattr(self.config, key)
            if path is None:
                continue
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise FleetAuthError(f"{key} {str(path)!r}: {exc.strerror or exc}") from None
        return await self.probe(diagnose=True)

    async def probe(self, *, diagnose: bool = False) -> bool:
        """Ask Redis whether it answers (PING); the link's state follows.
        ``diagnose``: a failed ``rediss://`` contact is looked into with a
        handshake of its own (``tls_diagnosis``: a TLS 1.3 refusal of this
        node's certificate often arrives as a mere reset)."""
        try:
            await self._ping()
        except UNREACHABLE as exc:
            why = tls_refusal(exc)
            if why is None and diagnose and self.config.redis.startswith("rediss://"):
                why = await tls_diagnosis(self.config)
            if why is not None:
                raise FleetAuthError(f"Redis at {shown_url(self.config.redis)}: {why}") from None
            self.mark_down(exc)
            return False
        self.mark_up()
        return True

    async def _ping(self) -> None:
        """PING; refused credentials raise ``FleetAuthError``."""
        try:
            await self.client.ping()
        except AuthenticationError as exc:
            raise FleetAuthError(self._refused(exc)) from None
        except ResponseError as exc:
            if "WRONGPASS" in str(exc) or "NOAUTH" in str(exc) or "NOPERM" in str(exc):
                raise FleetAuthError(self._refused(exc)) from None
            raise

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
