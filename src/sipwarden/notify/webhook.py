"""The webhook: each alert is one POST of a JSON body, signed.

The body is ``Alert.as_dict`` as compact UTF-8 JSON (``title``, ``text``,
``host``, ``target``, ``kind``, ``reason``, ``count``, ``first``, ``last``,
``sources``, ``source_count``, ``sources_capped``, ``examples``,
``dropped``). Two headers let the receiver trust it and refuse replays:

    X-Sipwarden-Timestamp: 1796000000
    X-Sipwarden-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

To verify: take the raw body bytes as received (before any JSON parsing),
compute ``hmac.new(secret, timestamp.encode() + b"." + body,
hashlib.sha256).hexdigest()``, compare it with the header's hex after
``sha256=`` using ``hmac.compare_digest``, and refuse a timestamp more than
a few minutes from your clock (300 s is usual); to refuse a replay within
that window too, remember the signatures seen in it. The timestamp is
covered by the signature, so it cannot be changed without the secret.

A send is bounded by the target's timeout (connecting included); any answer
but 2xx is a failure (redirects are not followed). Errors and httpx's own
request log name the URL by its origin only: a webhook's path is often its
secret (Slack, Teams).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from .. import __version__
from ..observe.alerts import Alert
from .base import NotifyError

SIGNATURE_HEADER = "X-Sipwarden-Signature"
TIMESTAMP_HEADER = "X-Sipwarden-Timestamp"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def origin(url: str) -> str:
    """``https://hooks.example.com/services/T0/B0/xyz`` -> ``https://hooks.example.com/...``"""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/..."


class _UrlFilter(logging.Filter):
    """Puts the origin in place of the URL in httpx's log records."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url, self.safe = url, origin(url)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record: logging reports it itself
            return True
        if self.url in message:
            record.msg, record.args = message.replace(self.url, self.safe), None
        return True


class WebhookSender:
    """POSTs alerts to ``url``, signed with ``secret`` (see the module doc)."""

    def __init__(
        self,
        name: str,
        url: str,
        secret: bytes,
        *,
        timeout: float = 10.0,
        host: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.url = url
        self.timeout = timeout
        self.host = host
        self.clock = clock
        self._secret = secret
        self._http = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": f"sipwarden/{__version__}"},
        )
        self._filter = _UrlFilter(url)
        logging.getLogger("httpx").addFilter(self._filter)

    def describe(self) -> str:
        return origin(self.url)

    async def send(self, alert: Alert) -> None:
        body = alert.json_body(self.host)
        timestamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._http.post(self.url, content=body, headers=headers)
        except TimeoutError:
            raise NotifyError(f"{self.describe()}: no answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise NotifyError(f"{self.describe()}: {self._reason(exc)}") from None
        if not 200 <= response.status_code < 300:
            raise NotifyError(f"{self.describe()}: HTTP {response.status_code}")

    def _reason(self, exc: BaseException) -> str:
        """httpx's error, with the OS's reason beneath it ("All connection
        attempts failed" hides "Connection refused"); the URL by its origin."""
        reason = str(exc) or type(exc).__name__
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, OSError) and cause.errno:
                reason = f"{reason} ({os.strerror(cause.errno)})"
                break
            cause = cause.__cause__ or cause.__context__
        return reason.replace(self.url, self.describe())

    async def close(self) -> None:
        await self._http.aclose()
        logging.getLogger("httpx").removeFilter(self._filter)
