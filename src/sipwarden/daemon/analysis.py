"""The analysis runner: every ``[analysis] interval``, the analysers
(``observe.analysis``) over the recent events and flows, and their findings
acted on (worker 0 alone: it reads every worker's data from the store).

One run: every worker writes what it queued, the window (``[analysis]
window`` seconds of events and flows: the store's, and the minute of flows
still under way in each worker) is read, the analysers run on a thread (a
heavy window costs about a second of CPU, which the packets must not
wait for), then, back on the loop, each finding is an event (``finding``:
the alerts hear of it) and each ``Decision`` it carries goes to the ban
book, which alone bans. ``sipwarden analysis run`` asks for one run now and
prints the findings; it acts only when asked to (``act``).

What the analysers compare against is kept here: the hour-of-week profile
of failed logins (rebuilt from the store's events at start, then fed with
each window's new ones) and the countries seen before (learned from each
window: the first run only learns).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..observe import FINDING, LOGIN_FAILED, Event, aggregate
from ..observe.analysis import Analysis, Finding, HourOfWeekProfile, Window, build_analysis
from ..observe.analysis.rise import source_countries
from ..store import StoreError
from .observe import as_event

if TYPE_CHECKING:
    from .core import Daemon

log = logging.getLogger("sipwarden.analysis")
PROFILE_WEEKS = 4
MAX_EVENTS = 500_000  # events one window reads at most (sampled floods are few rows)
MAX_FLOWS = 200_000


async def written_everywhere(daemon: Daemon, *, kernel: bool = False) -> list[dict[str, Any]]:
    """Every worker's queued events and ended minutes written now (and the
    kernel's drops read, if ``kernel``); the flows of the minute under way in each worker
    (not written yet)."""
    live: list[dict[str, Any]] = []
    if daemon.observe is not None:
        if kernel:  # worker 0: the kernel's drops too (nft lists its sets: seconds, if full)
            await daemon.observe.read_kernel()
        await daemon.observe.write()
        live = daemon.observe.flows.current()
    for answer in await daemon.ask_others({"cmd": "observe-write"}):
        live.extend(answer.get("live") or ())
    return live


class AnalysisKeeper:
    def __init__(self, daemon: Daemon, *, clock: Callable[[], float] = time.time) -> None:
        self.daemon = daemon
        self.clock = clock
        self.analysis: Analysis = build_analysis(daemon.config.analysis, daemon.config.bans)
        self.profile: HourOfWeekProfile | None = None
        self.known_countries: set[str] | None = None  # None: the first run learns
        self._profiled = 0.0  # the newest failed login the profile has
        self.runs = 0
        self.last_error: str | None = None
        self._lock = asyncio.Lock()  # one run at a time (the timer, a CLI ask)

    def configure(self) -> None:
        """After a reload: the analysers as the new ``[analysis]`` says."""
        self.analysis = build_analysis(self.daemon.config.analysis, self.daemon.config.bans)

    async def loop(self) -> None:
        """Run every ``[analysis] interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.daemon.config.analysis.interval)
            if not self.analysis.analysers:
                continue
            try:
                await self.run(act=True)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("the analysis failed")

    async def run(self, *, act: bool) -> list[Finding]:
        """One run now (see the module doc); its findings."""
        async with self._lock:
            observe = self.daemon.observe
            if observe is None:
                return []
            now = self.clock()
            span = self.daemon.config.analysis.window
            live = await written_everywhere(self.daemon, kernel=True)
            try:
                rows = await observe.events_since(now - span, limit=MAX_EVENTS)
                stored = await observe.flows_since(now - span, limit=MAX_FLOWS)
                if self.profile is None:
                    self.profile = await self._profile(now)
            except StoreError as exc:
                self.last_error = str(exc)
                log.error("the analysis cannot read the store: %s", exc)
                return []
            events = [as_event(row) for row in rows]
            flows = aggregate([*stored, *(r for r in live if r["last_seen"] >= now - span)])
            self._learn(events)
            policy = self.daemon.policy
            intel, schedule = policy.intel, self.daemon.schedule
            window = Window(
                now=now,
                events=events,
                flows=flows,
                span=span,
                quiet=schedule is not None and schedule.quiet(now),
                hour_of_week=None if schedule is None else schedule.hour_of_week(now),
                profile=self.profile,
                country=None if intel is None or intel.countries is None else intel.country,
                known_countries=None
                if self.known_countries is None
                else frozenset(self.known_countries),
            )
            findings = await asyncio.to_thread(self.analysis.run, window)
            if window.country is not None:
                seen = set(source_countries(window))
                self.known_countries = (self.known_countries or set()) | seen
            self.runs += 1
            self.last_error = None
            if act:
                self._act(findings, now)
            return findings

    def _act(self, findings: list[Finding], now: float) -> None:
        """Each finding told as an event; each decision to the ban book."""
        observe, policy = self.daemon.observe, self.daemon.policy
        for finding in findings:
            banned = finding.decision is not None and policy.ban(finding.decision, now)
            log.warning(
                "analysis %s: %s%s", finding.analyser, finding.summary, "; banned" if banned else ""
            )
            if observe is not None:
                fields: tuple[tuple[str, str | int | float | None], ...] = (
                    ("summary", finding.summary),
                    ("severity", finding.severity),
                    ("quiet", int(finding.quiet)),
                    ("banned", int(banned)),
                )
                observe.events.push(Event(now, FINDING, finding.target, finding.analyser, fields))

    async def _profile(self, now: float) -> HourOfWeekProfile:
        """The failed logins of the last weeks, per hour of the week."""
        assert self.daemon.observe is not None
        since = now - PROFILE_WEEKS * 7 * 86400
        rows = await self.daemon.observe.events_since(
            since, kinds=(LOGIN_FAILED,), limit=MAX_EVENTS
        )
        # counted since the store began (a new install has no usual level yet)
        oldest = await self.daemon.observe.oldest_event()
        schedule = self.daemon.schedule
        rows_ = [(row["time"], float(row.get("repeated", 1))) for row in rows]
        begun = max(since, now if oldest is None else oldest)
        if schedule is None:
            profile = HourOfWeekProfile.from_rows(rows_, since=begun, weeks=PROFILE_WEEKS)
        else:
            profile = HourOfWeekProfile.from_rows(
                rows_, since=begun, weeks=PROFILE_WEEKS, hour_of_week=schedule.hour_of_week
            )
        self._profiled = max((row["time"] for row in rows), default=now)
        return profile

    def _learn(self, events: list[Event]) -> None:
        """The window's failed logins the profile has not seen yet."""
        profile, newest = self.profile, self._profiled
        if profile is None:
            return
        for event in events:
            if event.kind == LOGIN_FAILED and event.time > self._profiled:
                profile.add(event.time, event.weight)
                newest = max(newest, event.time)
        self._profiled = newest

    def stats(self) -> dict[str, int]:
        """The "analysis" section of ``status`` (worker 0's)."""
        counts = self.analysis.counters
        return {
            "runs": self.runs,
            **{f"findings:{name}": n for name, n in counts.items() if not name.endswith("-errors")},
            **{name: n for name, n in counts.items() if name.endswith("-errors")},
        }
