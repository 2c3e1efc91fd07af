"""The live event stream (``GET /api/v1/events/stream``): server-sent events.

Each client gets a bounded queue that the observe keeper's ``follow`` fills
(worker 0 reads every worker's new rows once and hands them to every
stream); a client too slow to keep up loses the oldest of its queue, is
told how many in a comment, and can catch up from the store by
reconnecting with ``Last-Event-ID`` (the id of the last event it saw).
A comment every ``KEEPALIVE`` seconds keeps proxies from closing an idle
stream.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

if TYPE_CHECKING:
    from ..daemon.observe import ObserveKeeper

KEEPALIVE: Final = 15.0  # seconds
MAX_QUEUED: Final = 10_000  # events waiting for one slow client
REPLAY: Final = 10_000  # events sent again after a reconnection, at most


class EventStream:
    def __init__(self, observe: ObserveKeeper) -> None:
        self.observe = observe
        self.queue: deque[dict[str, Any]] = deque(maxlen=MAX_QUEUED)
        self.lost = 0
        self.ready = asyncio.Event()

    def _take(self, rows: list[dict[str, Any]]) -> None:
        """A listener of the observe keeper (called on the loop, never blocks)."""
        self.lost += max(0, len(self.queue) + len(rows) - MAX_QUEUED)
        self.queue.extend(rows)
        self.ready.set()

    async def run(self, response: web.StreamResponse, last_id: str | None) -> None:
        self.observe.listeners.append(self._take)
        try:
            if last_id is not None and last_id.strip().isdigit():
                missed = await self.observe.events_after(int(last_id), limit=REPLAY)
                self._take(missed)
            await response.write(b": sipwarden events\n\n")
            seen = int(last_id) if last_id is not None and last_id.strip().isdigit() else 0
            while True:
                try:
                    await asyncio.wait_for(self.ready.wait(), KEEPALIVE)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                self.ready.clear()
                if self.lost:
                    await response.write(f": {self.lost} events lost (too slow)\n\n".encode())
                    self.lost = 0
                while self.queue:
                    row = self.queue.popleft()
                    if row["id"] <= seen:  # replayed and followed both
                        continue
                    seen = row["id"]
                    await response.write(_message(row))
        finally:
            self.observe.listeners.remove(self._take)


def _message(row: dict[str, Any]) -> bytes:
    return f"id: {row['id']}\nevent: {row['kind']}\ndata: {json.dumps(row)}\n\n".encode()
