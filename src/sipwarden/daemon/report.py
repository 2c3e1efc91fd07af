"""The report keeper: `[report]`'s weekly mail, in worker 0.

It sleeps until the next ``weekday`` at ``time`` in ``[schedule] timezone``
(``observe.report.next_due``), makes the report over the last ``since``
on a thread (``reports.make``: the store's reads, the country lookups and
matplotlib block), and mails it through the ``[[alerts]]`` email target
named ``target``: the summary as text, the HTML as its alternative, the
JSON attached. A send that fails is tried again after ``RETRY_FIRST``
seconds, doubling, at most ``RETRIES`` times; then the keeper waits for
the next week (the error is in the log and ``status``). Bounds: one task,
one report at a time, the mail sender's own thread and timeout; nothing on
the packet path (matplotlib is imported when the first report is made, not
at the daemon's start). A restart past the due time does not send the missed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, Final

from ..config import WEEKDAY_NAMES, Config
from ..fetch.calendar import timezone_named
from ..notify import MailSender, NotifyError
from ..observe.report import next_due
from .alerts import GRACE, sender_for

log = logging.getLogger("sipwarden.report")

RETRY_FIRST: Final = 60.0
RETRIES: Final = 4


def summary_text(report: dict[str, Any], host: str) -> str:
    """The mail's plain-text part: the window and the summary's numbers."""
    from ..reports.html import when

    window, summary = report["window"], report["summary"]
    lines = [
        f"sipwarden report for {host}: {when(window['since'])} to {when(window['until'])}",
        "",
        f"attack events:            {summary['attacks']}",
        f"packets in flows:         {summary['packets']}",
        f"dropped by the kernel:    {summary['kernel_packets']}",
        f"sources:                  {summary['sources']}",
        f"bans made:                {summary['bans_made']}",
        f"bans in force now:        {summary['bans_in_force']}",
        f"honeypot calls:           {summary['honeypot_calls']}",
        "",
        *report.get("notes", []),
        "The whole report, with its plots, is the HTML part; report.json has it as JSON.",
    ]
    return "\n".join(lines) + "\n"


class ReportKeeper:
    """Mails the report weekly (see the module doc)."""

    def __init__(
        self,
        config: Config,
        sender: MailSender,
        *,
        clock: Callable[[], float] = time.time,
        hostname: str = "",
        retry_first: float = RETRY_FIRST,
    ) -> None:
        self.config = config
        self.sender = sender
        self.clock = clock
        self.hostname = hostname or socket.gethostname()
        self.retry_first = retry_first
        self.timezone = timezone_named(config.schedule.timezone)
        self.sent = 0
        self.failed = 0
        self.last_error: str | None = None
        self.next: float | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any) -> ReportKeeper | None:
        """The keeper ``[report]`` asks for (None when it is off); the
        config's check made sure ``target`` names an email target."""
        report = config.report
        if not report.enabled:
            return None
        hostname = socket.gethostname()
        for index, target in enumerate(config.alerts):
            if target.type == "email" and target.name == report.target:
                sender = sender_for(target, index, hostname)
                assert isinstance(sender, MailSender)
                return cls(config, sender, hostname=hostname, **kwargs)
        raise AssertionError("unreachable: Config checks report.target")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="report")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self.sender.close()

    def due(self, now: float) -> float:
        report = self.config.report
        return next_due(now, WEEKDAY_NAMES.index(report.weekday), report.minute, self.timezone)

    async def send_now(self) -> None:
        """Make the report over the last ``since`` and mail it; raises
        NotifyError (or StoreError) when it cannot."""
        from ..reports import make, render_json  # matplotlib: imported when a report is due

        settings = self.config.report
        now = self.clock()
        report, html = await asyncio.to_thread(
            make, self.config, now - settings.since, now, top=settings.top, host=self.hostname
        )
        days = settings.since / 86400
        message = self.sender.report(
            f"sipwarden report for {self.hostname}: the last {days:g} day(s)",
            summary_text(report, self.hostname),
            html,
            [("report.json", "application/json", render_json(report).encode())],
        )
        try:
            async with asyncio.timeout(self.sender.timeout + GRACE):
                await self.sender.post(message)
        except TimeoutError:
            raise NotifyError(f"{self.sender.describe()}: no answer") from None

    async def _run(self) -> None:
        while True:
            self.next = self.due(self.clock())
            await asyncio.sleep(max(0.0, self.next - self.clock()))
            wait = self.retry_first
            for attempt in range(1 + RETRIES):
                try:
                    await self.send_now()
                except Exception as exc:  # a store or a server down: logged, tried again
                    self.failed += 1
                    self.last_error = str(exc) or type(exc).__name__
                    log.warning("the weekly report was not sent (%d): %s", attempt + 1, exc)
                    if attempt < RETRIES:
                        await asyncio.sleep(wait)
                        wait *= 2
                else:
                    self.sent += 1
                    self.last_error = None
                    break
            await asyncio.sleep(1.0)  # past the due second before asking the next

    def status(self) -> dict[str, Any]:
        return {
            "to": self.sender.describe(),
            "next": self.next,
            "sent": self.sent,
            "failed": self.failed,
            "last-error": self.last_error,
        }


__all__ = ["ReportKeeper", "summary_text"]
