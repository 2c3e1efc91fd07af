"""APIBAN over HTTP: the httpx adapter around ``intel.apiban``'s sans-I/O sync.

``ApibanClient`` runs a sync to completion: it asks the core what to do
next, sleeps through its waits, sends its requests, hands it the answers,
and writes each page to the ``IntelStore`` on the store's thread as it
comes, so a restart resumes from the kept ID. The key never appears in an
error or a log line: every URL is redacted, httpx's own request log
included.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import httpx

from ..intel.apiban import (
    MAX_BODY,
    ApibanSettings,
    ApibanSync,
    Done,
    Progress,
    Request,
    SyncResult,
    Wait,
    check_request,
    parse_check,
)
from ..store.intel import IntelStore
from ..store.thread import StoreThread

log = logging.getLogger("sipwarden.intel")


class ApibanClient:
    """Runs syncs over HTTP (httpx), pages written to the store as they come.

    The store is used from a thread of its own (SQLite blocks); the state is
    loaded from it on the first ``sync``, so a new client on the same store
    resumes where the last one stopped."""

    def __init__(
        self,
        config: ApibanSettings,
        store: IntelStore,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.store = store
        self.http = http
        self.clock = clock
        self.sleep = sleep
        self.core: ApibanSync | None = None
        # writes in order, and a write once asked for is done even if the
        # sync is cancelled meanwhile
        self._store_thread = StoreThread("sipwarden-intel")

    def close(self) -> None:
        """Finish the pending writes (the store stays open: it is the caller's)."""
        self._store_thread.close()

    async def load(self) -> ApibanSync:
        if self.core is None:
            feed = self.config.feed
            state = await self._store_thread.run(self.store.state, feed)
            entries = await self._store_thread.run(self.store.entries, feed)
            self.core = ApibanSync(self.config, state, entries)
        return self.core

    async def expire(self, now: float | None = None) -> list[str]:
        """Drop (and delete from the store) the entries that ran out."""
        core = await self.load()
        gone = core.expire(self.clock() if now is None else now)
        await self._save(core)
        return gone

    async def sync(
        self,
        *,
        progress: Callable[[Progress], None] | None = None,
        max_seconds: float | None = None,
    ) -> SyncResult:
        """One run: from the kept ID to the end of the list (or a bound)."""
        core = await self.load()
        started = self.clock()
        core.begin(started)
        expired = len(core.expire(started))
        await self._save(core)
        redactor = _Redactor(self.config)
        loggers = [logging.getLogger(n) for n in ("httpx", "httpcore", "sipwarden.intel")]
        for logger in loggers:
            logger.addFilter(redactor)
        http = self.http or httpx.AsyncClient(
            timeout=self.config.timeout, verify=self.config.verify, follow_redirects=False
        )
        try:
            done = await self._run(core, http, started, progress, max_seconds)
        finally:
            if self.http is None:
                await http.aclose()
            for logger in loggers:
                logger.removeFilter(redactor)
            await self._save(core)
        result = SyncResult(
            done.ok,
            done.reason,
            done.error,
            core.run_requests,
            core.run_added,
            core.run_seen,
            expired,
            len(core.entries),
            core.last_id,
            self.clock() - started,
        )
        if done.ok:
            log.info(
                "apiban %s: %s, %d requests, %d new, %d entries",
                self.config.feed,
                done.reason,
                result.requests,
                result.added,
                result.total,
            )
        else:
            log.warning("apiban %s: %s", self.config.feed, done.error or done.reason)
        return result

    async def _run(
        self,
        core: ApibanSync,
        http: httpx.AsyncClient,
        started: float,
        progress: Callable[[Progress], None] | None,
        max_seconds: float | None,
    ) -> Done:
        # each turn sends a request or waits once; waits end in a request
        bound = 4 * self.config.requests_per_run + 8
        for _ in range(bound):
            now = self.clock()
            step = core.next_request(now)
            if isinstance(step, Done):
                if progress is not None:
                    progress(core.progress())
                return step
            if isinstance(step, Wait):
                if max_seconds is not None and now + step.seconds - started > max_seconds:
                    return core.stop("time bound")
                if progress is not None:
                    progress(core.progress(step.seconds, step.reason))
                await self.sleep(step.seconds)
                continue
            log.debug("apiban: %s %s id=%s", step.method, step.safe_url, step.id)
            try:
                status, body = await _fetch(http, step)
            except httpx.HTTPError as exc:
                core.failed(f"APIBAN unreachable: {type(exc).__name__}: {exc}", self.clock())
            else:
                core.take(status, body, self.clock())
            await self._save(core)
            if progress is not None:
                progress(core.progress())
        return core.stop("loop bound", ok=False)

    async def check(self, address: str) -> bool | None:
        """Whether APIBAN lists ``address`` (one request, outside the
        paging; it counts against the key's rate limit all the same)."""
        request = check_request(self.config, address)
        http = self.http or httpx.AsyncClient(
            timeout=self.config.timeout, verify=self.config.verify
        )
        redactor = _Redactor(self.config)
        logger = logging.getLogger("httpx")
        logger.addFilter(redactor)
        try:
            status, body = await _fetch(http, request)
        except httpx.HTTPError as exc:
            raise ApibanError(self.config.redact(f"APIBAN unreachable: {exc}")) from None
        finally:
            logger.removeFilter(redactor)
            if self.http is None:
                await http.aclose()
        if status == 403:
            raise ApibanError("APIBAN refused the key (HTTP 403)")
        return parse_check(status, body)

    async def _save(self, core: ApibanSync) -> None:
        seen, removed = core.drain()
        await self._store_thread.run(
            self.store.save, self.config.feed, core.state(), seen, removed, self.clock()
        )


class ApibanError(Exception):
    """A failure worth a message (the key never in it)."""


async def _fetch(http: httpx.AsyncClient, request: Request) -> tuple[int, bytes]:
    """Status and body (at most MAX_BODY + 1 bytes: more is malformed)."""
    chunks: list[bytes] = []
    size = 0
    async with http.stream(
        request.method, request.url, headers=dict(request.headers), json=request.json
    ) as response:
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY:
                break
        return response.status_code, b"".join(chunks)


class _Redactor(logging.Filter):
    """Blots the key out of log records (httpx logs every URL at INFO)."""

    def __init__(self, config: ApibanSettings) -> None:
        super().__init__()
        self.config = config

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record: logging reports it itself
            return True
        safe = self.config.redact(message)
        if safe != message:
            record.msg, record.args = safe, None
        return True
