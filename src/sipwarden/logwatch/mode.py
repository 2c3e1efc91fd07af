"""Logwatch mode: the PBX's logs followed, their failures handed to the policy.

What it does: every ``[[logwatch.sources]]`` (a file, ``follow``; or a
unit's journal, ``journal``) is read as it grows; each line goes through
its format (``patterns``) and what it says goes to ``Policy.report``: the
same failure tracker, ban book and kernel enforcement as the edge's
answers, the same ``login-failed`` events (with ``origin`` = ``log:<source>``);
a success line makes its source known-good. Trusted peers and the allow
list are never banned (the policy and the ban book see to it).

A line's own time is used (``timestamps``): the tracker's windows count in
it, and a line older than ``max_age`` (a backlog read at first start) is
counted, not reported. Files are looked at every ``poll`` seconds, read and
matched on a thread (the edge's loop never waits on a disk), the reports
made on the loop. Positions go to the store (``store.LogPositions``) at
most once a second and at stop, so a restart reads no line twice and
loses none (a crash may read again the last second's lines: the count
starts afresh after a restart in any case).

Coverage (``coverage``): per source, lines read, matched, unmatched, the
kinds, in ``counters`` (``status`` and ``/metrics``: ``read:<source>``...);
a warning when a source has read nothing for ``silent_after`` (a wrong path
is the commonest mistake) and, at most every ``SAMPLE_EVERY`` seconds, one
with a sample of the unmatched lines that look like failures.

Runs in worker 0 only: the workers share one ban book through the store,
and one reader per log counts each line once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import zoneinfo
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ..config import ConfigError, LogSourceConfig, LogwatchConfig
from ..fetch.calendar import timezone_named
from ..policy import LOGGED_IN, LOGIN_FAILED, NOT_FOUND
from ..store import LogPositions, Position, StoreError
from ..store.thread import StoreThread
from .coverage import Coverage
from .follow import FileFollower
from .journal import JournalReader
from .patterns import CHALLENGE, Format, LogRecord, PatternError, load

if TYPE_CHECKING:
    from ..policy import Policy

log = logging.getLogger("sipwarden.logwatch")

SAVE_EVERY: Final = 1.0  # seconds between two writes of the positions
SAMPLE_EVERY: Final = 600.0  # seconds between two "lines look like failures" warnings
EVIDENCE_CHARS: Final = 240
_COUNTED: Final = {
    LOGIN_FAILED: "failed",
    NOT_FOUND: "not-found",
    LOGGED_IN: "logins",
    CHALLENGE: "challenges",
}


def local_zone() -> dt.tzinfo:
    """The machine's timezone, with its rules (DST), from /etc/localtime."""
    try:
        with open("/etc/localtime", "rb") as f:
            return zoneinfo.ZoneInfo.from_file(f)
    except (OSError, ValueError):
        return dt.UTC


def match_lines(
    fmt: Format, tz: dt.tzinfo, lines: Iterable[str], now: float
) -> list[tuple[str, LogRecord | None]]:
    """Each line with what it says (None: no rule matches)."""
    reference = dt.datetime.fromtimestamp(now, dt.UTC)
    return [(line, fmt.match(line, tz, reference)) for line in lines]


@dataclass
class Source:
    """One configured log, its reader and its coverage."""

    config: LogSourceConfig
    format: Format
    tz: dt.tzinfo
    coverage: Coverage
    follower: FileFollower | None = None
    journal: JournalReader | None = None
    sampled_at: float = 0.0  # the last "lines look like failures" warning
    suspicious_told: int = 0
    rotations: Counter[str] = field(default_factory=Counter)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def position(self) -> Position:
        if self.follower is not None:
            return self.follower.position
        assert self.journal is not None
        return Position(cursor=self.journal.cursor)


class LogWatch:
    name = "logwatch"

    def __init__(
        self,
        config: LogwatchConfig,
        storage: Path,
        *,
        policy: Policy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.storage = storage
        self.policy = policy
        self.counters: Counter[str] = Counter()
        self.pbx_answered_at: float | None = None  # a log tells of failures, not of answers
        self.clock = clock
        self.sources: list[Source] = []
        self._store: LogPositions | None = None
        self._thread: StoreThread | None = None
        self._tasks: list[asyncio.Task[None]] = []  # the journals'
        self._poller: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._dirty = False
        self._saved_at = 0.0

    # ------------------------------------------------------------ the Mode

    async def start(self) -> None:
        """Load the formats (a bad pattern file stops the start, naming it),
        the positions, and follow every source."""
        now = self.clock()
        default_tz = local_zone()
        for i, src in enumerate(self.config.sources):
            key = f"logwatch.sources[{i}]"
            try:
                fmt = load(src.format, src.patterns)
            except PatternError as exc:
                raise ConfigError(f"{key}: {exc}") from None
            tz = timezone_named(src.timezone, f"{key}.timezone") if src.timezone else default_tz
            self.sources.append(Source(src, fmt, tz, Coverage(started=now)))
        self._thread = StoreThread("sipwarden-logwatch")
        self._store = await self._thread.run(LogPositions, self.storage)
        positions = await self._thread.run(self._store.load)
        for source in self.sources:
            pos = positions.get(source.name)
            if source.config.path is not None:
                source.follower = FileFollower(source.config.path, pos)
            else:
                assert source.config.journal is not None
                source.journal = JournalReader(
                    source.config.journal,
                    files=source.config.journal_files,
                    cursor=pos.cursor if pos is not None else None,
                    since=now - self.config.max_age,
                )
                self._tasks.append(asyncio.create_task(self._follow_journal(source)))
        self._poller = asyncio.create_task(self._poll_files())

    async def stop(self) -> None:
        # the file poller ends between two rounds: lines read are always reported
        self._stopping.set()
        if self._poller is not None:
            await self._poller
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for source in self.sources:
            if source.journal is not None:
                await source.journal.close()
        await self._save(force=True)
        for source in self.sources:
            if source.follower is not None:
                source.follower.close()
        if self._thread is not None:
            if self._store is not None:
                await self._thread.run(self._store.close)
            self._thread.close()

    def describe(self) -> str:
        return "logwatch on " + ", ".join(
            f"{source.name} ({source.config.format})" for source in self.sources
        )

    def coverage(self) -> dict[str, dict[str, Any]]:
        """Per source: its format, whether its file is there, and its coverage."""
        return {
            source.name: {
                "format": source.config.format,
                **(
                    {"exists": source.follower.exists}
                    if source.follower is not None
                    else {"journal": source.config.journal}
                ),
                **source.coverage.as_dict(),
            }
            for source in self.sources
        }

    # --------------------------------------------------------- following

    async def _poll_files(self) -> None:
        files = [s for s in self.sources if s.follower is not None]
        while not self._stopping.is_set():
            now = self.clock()
            if files:
                try:
                    batches = await asyncio.to_thread(self._read_files, files, now)
                except OSError as exc:  # a disk error: said, and tried again next round
                    log.warning("logwatch: reading the logs failed: %s", exc)
                    batches = []
                for source, matched in batches:
                    self._take(source, matched, self.clock())
            self._watch(self.clock())
            await self._save()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.config.poll)

    def _read_files(
        self, files: list[Source], now: float
    ) -> list[tuple[Source, list[tuple[str, LogRecord | None]]]]:
        """On a thread: each file's new lines, matched."""
        out = []
        for source in files:
            assert source.follower is not None
            raw = source.follower.read()
            if raw:
                lines = [line.decode("utf-8", "replace") for line in raw]
                out.append((source, match_lines(source.format, source.tz, lines, now)))
        return out

    async def _follow_journal(self, source: Source) -> None:
        assert source.journal is not None
        async for message, when in source.journal.entries():
            now = self.clock()
            record = source.format.match(message, source.tz, dt.datetime.fromtimestamp(now, dt.UTC))
            if record is not None and when is not None:
                record = record._replace(when=when)  # the journal's time is exact, in UTC
            self._take(source, [(message, record)], now)

    # ----------------------------------------------------------- reporting

    def _take(
        self, source: Source, matched: list[tuple[str, LogRecord | None]], now: float
    ) -> None:
        name, counters, coverage = source.name, self.counters, source.coverage
        for line, record in matched:
            coverage.saw(now, line, record is not None)
            counters[f"read:{name}"] += 1
            if record is None:
                counters[f"unmatched:{name}"] += 1
                continue
            counters[f"matched:{name}"] += 1
            counters[f"{_COUNTED[record.kind]}:{name}"] += 1
            if record.kind == CHALLENGE:
                continue
            at = now if record.when is None else record.when.timestamp()
            if now - at > self.config.max_age:
                counters[f"too-old:{name}"] += 1
                continue
            evidence = f"{name}: {line.strip()[:EVIDENCE_CHARS]}"
            if self.policy.report(
                record.host, record.kind, record.account, now, evidence, at=at, origin=f"log:{name}"
            ):
                counters["bans"] += 1
        self._dirty = True

    def _watch(self, now: float) -> None:
        """The warnings: a silent source, unmatched lines that look like failures."""
        for source in self.sources:
            cov = source.coverage
            if cov.silent(now, self.config.silent_after):
                if source.follower is not None and not source.follower.exists:
                    why = "the file does not exist: check the path"
                else:
                    why = "is the PBX logging there, at a level that shows failures?"
                log.warning(
                    "logwatch: %s has given no line for %.0f s (%s)",
                    source.name,
                    now - (cov.last_line or cov.started),
                    why,
                )
            if cov.suspicious > source.suspicious_told and now - source.sampled_at >= SAMPLE_EVERY:
                log.warning(
                    "logwatch: %s: %d lines look like failures but no %s pattern matches them,"
                    " e.g. %r (`sipwarden logwatch test` shows what each line gives)",
                    source.name,
                    cov.suspicious - source.suspicious_told,
                    source.config.format,
                    cov.samples[-1],
                )
                source.suspicious_told, source.sampled_at = cov.suspicious, now
            if source.follower is not None:
                for event, count in source.follower.events.items():
                    if event in ("renamed", "truncated", "caught-up"):
                        self.counters[f"rotations:{source.name}"] += count - source.rotations[event]
                        source.rotations[event] = count

    async def _save(self, *, force: bool = False) -> None:
        now = self.clock()
        if self._store is None or self._thread is None or not self._dirty:
            return
        if not force and now - self._saved_at < SAVE_EVERY:
            return
        self._dirty, self._saved_at = False, now
        positions = [(source.name, source.position) for source in self.sources]
        try:
            await self._thread.run(self._store.save, positions, now)
        except StoreError as exc:
            self._dirty = True
            log.warning("logwatch: the positions were not saved (%s); kept to try again", exc)
