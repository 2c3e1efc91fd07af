"""List feeds over HTTP or from a file: the fetching side of ``intel.feeds``.

``Feed.refresh()`` fetches one list (conditional requests: a 304, or a file
whose mtime and size did not change, keeps the list), has ``intel.feeds``
parse it, and keeps the last good list whatever fails (network, HTTP
status, timeout, size limits, an error page served with 200). It never
raises for a failed fetch: the error is recorded for ``status``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..intel.feeds import (
    MAX_BYTES,
    MAX_ENTRIES,
    TIMEOUT,
    FeedError,
    FeedStatus,
    FeedTooLarge,
    NotAFeed,
    parse_feed,
)

# what says a source is unchanged: ETag, Last-Modified, a file's (mtime, size);
# kept only once its body was accepted
_Validators = tuple[str | None, str | None, tuple[int, int] | None]


@dataclass
class Feed:
    """One generic feed and its last good list.

    ``source`` is an ``http://`` or ``https://`` URL, or a file path (or
    ``file://`` URL). ``refresh()`` never raises for a failed fetch: it
    records the error and keeps the list. Pass ``client`` to share an
    ``httpx.AsyncClient`` (and its connections) between feeds."""

    name: str
    source: str
    max_entries: int = MAX_ENTRIES
    max_bytes: int = MAX_BYTES
    timeout: float = TIMEOUT
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # an API key, a token
    client: httpx.AsyncClient | None = None
    clock: Callable[[], float] = time.time
    status: FeedStatus = field(init=False)

    def __post_init__(self) -> None:
        self.status = FeedStatus(self.name, self.source)
        self._etag: str | None = None
        self._last_modified: str | None = None
        self._file_stamp: tuple[int, int] | None = None

    @property
    def entries(self) -> tuple[str, ...]:
        return self.status.entries

    @property
    def validators(self) -> dict[str, str]:
        """What makes the next request conditional (ETag, Last-Modified)."""
        found = {"etag": self._etag, "last_modified": self._last_modified}
        return {k: v for k, v in found.items() if v}

    def remember(self, etag: str | None, last_modified: str | None) -> None:
        """Validators of a list fetched before (a restart): the first request
        is conditional too. The caller holds that list (the store)."""
        self._etag, self._last_modified = etag or None, last_modified or None

    @property
    def is_url(self) -> bool:
        return self.source.startswith(("http://", "https://"))

    async def refresh(self) -> bool:
        """Fetch the feed; True when its list changed (hand ``entries`` to the
        index then). A failure keeps the last good list."""
        status = self.status
        status.fetches += 1
        try:
            async with asyncio.timeout(self.timeout):
                fetched = await (self._fetch_url() if self.is_url else self._fetch_file())
            if fetched is None:
                status.not_modified += 1
                changed = False
            else:
                body, validators = fetched
                changed = self.accept(body)
                self._etag, self._last_modified, self._file_stamp = validators
        except (FeedError, httpx.HTTPError, OSError, TimeoutError, UnicodeError) as exc:
            status.failures += 1
            status.last_error = _describe(exc, self.timeout)
            status.last_error_at = self.clock()
            return False
        status.last_success = self.clock()
        status.last_error = None
        return changed

    def accept(self, body: bytes) -> bool:
        """Sans-I/O: take a fetched body as the new list (raises FeedError when
        it is over a limit, keeping the old one). True when the list changed."""
        if len(body) > self.max_bytes:
            raise FeedTooLarge(f"over {self.max_bytes} bytes")
        parsed = parse_feed(body.decode("utf-8", errors="replace"), max_entries=self.max_entries)
        if parsed.bad > len(parsed.entries):
            # more garbage than addresses: an error page served as 200, a
            # truncated or wrong file; not a list to replace a good one with
            raise NotAFeed(
                f"{parsed.bad} of {parsed.lines} lines are not addresses"
                f" ({parsed.examples[0]}): not a feed"
            )
        status = self.status
        changed = parsed.entries != status.entries or status.last_change is None
        status.entries = parsed.entries
        status.size = len(body)
        status.bad_lines = parsed.bad
        status.bad_examples = parsed.examples
        if changed:
            status.last_change = self.clock()
        return changed

    # --------------------------------------------------------------- inside

    async def _fetch_url(self) -> tuple[bytes, _Validators] | None:
        headers = dict(self.headers)
        if self._etag:
            headers["If-None-Match"] = self._etag
        if self._last_modified:
            headers["If-Modified-Since"] = self._last_modified
        client = self.client or httpx.AsyncClient(timeout=self.timeout, follow_redirects=True)
        try:
            async with client.stream("GET", self.source, headers=headers) as response:
                if response.status_code == 304:
                    return None
                if response.status_code != 200:
                    raise FeedError(f"HTTP {response.status_code} {response.reason_phrase}".strip())
                length = response.headers.get("content-length", "")
                if length.isdigit() and int(length) > self.max_bytes:
                    raise FeedTooLarge(f"over {self.max_bytes} bytes (Content-Length {length})")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise FeedTooLarge(f"over {self.max_bytes} bytes")
                    chunks.append(chunk)
                validators = (
                    response.headers.get("etag"),
                    response.headers.get("last-modified"),
                    None,
                )
                return b"".join(chunks), validators
        finally:
            if self.client is None:
                await client.aclose()

    async def _fetch_file(self) -> tuple[bytes, _Validators] | None:
        path = Path(self.source.removeprefix("file://"))
        stat = await asyncio.to_thread(path.stat)
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._file_stamp and self.status.last_success is not None:
            return None
        if stat.st_size > self.max_bytes:
            raise FeedTooLarge(f"over {self.max_bytes} bytes")
        body = await asyncio.to_thread(_read, path, self.max_bytes + 1)
        return body, (None, None, stamp)


def _read(path: Path, limit: int) -> bytes:
    with path.open("rb") as f:
        return f.read(limit)


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"timed out after {timeout:g} s"
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, FeedError) else f"{type(exc).__name__}: {text}"
