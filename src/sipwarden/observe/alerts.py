"""Alerts: which events reach which person, and when; a flood is one alert
with a count.

A target (a webhook, a mailbox, a syslog server) wants some event kinds
(``Route.kinds``). ``AlertTarget`` is one target's state, sans-I/O: the
daemon's keeper offers it every batch of events, takes the alerts that are
due, sends them, and says how the send went; the clock is the caller's.

- Rate limit: at most one alert per ``min_interval`` per (kind, reason).
  A burst's first event goes out at once; what follows within the interval
  is folded into the next alert as a count (an event weighs its
  ``("repeated", n)`` field if it has one, else 1), a few examples and the
  first sources. Ten thousand failed logins are two alerts, not ten thousand.
- Backoff: a failed send is retried after ``retry_first`` seconds, doubling
  per failure up to ``retry_cap``; success resets the delay. New alerts are
  cut from the folded events only when none waits, so while a target is
  down its events keep folding: one alert per (kind, reason) with the
  whole count when it is back, not one per interval of the outage.
- Bounds: at most ``max_waiting`` alerts wait to be sent (past it the
  oldest is dropped, counted, and the next alert says how many were lost);
  at most ``max_keys`` (kind, reason) are tracked (past it an event of a
  new one is dropped, counted); an alert names at most ``EXAMPLES`` events
  and ``SOURCES`` sources, and counts distinct sources up to
  ``COUNTED_SOURCES``.

``Alert`` renders itself for each kind of target: the webhook's JSON body,
a mail subject and body, a syslog line (RFC 5424 or RFC 3164). The host
name, the time zone and the process id are the caller's.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Any, Final, Literal

from .events import FINDING, HEALTH, KINDS, Event

EXAMPLES: Final = 3  # events shown whole in one alert
SOURCES: Final = 10  # sources named in one alert
COUNTED_SOURCES: Final = 256  # distinct sources counted per alert; past it "256+"
PURGE_EVERY: Final = 1.0  # seconds between two searches for idle (kind, reason) when full

# RFC 5424 §6.2.1 facility codes (as syslog(3) and logging.handlers name them)
FACILITIES: Final = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}
WARNING: Final = 4  # severities: sipwarden's health and findings
NOTICE: Final = 5  # everything else
SyslogFormat = Literal["rfc5424", "rfc3164"]


def weight(event: Event) -> int:
    """How many events ``event`` stands for: its ``repeated`` field (the
    event queue's summary of a flood), else 1."""
    for name, value in event.fields:
        if name == "repeated" and isinstance(value, int) and value > 0:
            return value
    return 1


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _one_line(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True, slots=True)
class Alert:
    """What one alert tells: ``count`` events of one (kind, reason) between
    ``first`` and ``last`` (epoch seconds), from ``source_count`` distinct
    sources (``sources``: the first few; ``sources_capped``: more than
    ``COUNTED_SOURCES``), with a few ``examples``; ``dropped``: alerts of
    this target lost before this one (too many waited)."""

    target: str
    kind: str
    reason: str
    count: int
    first: float
    last: float
    sources: tuple[str, ...]
    source_count: int
    examples: tuple[Event, ...]
    sources_capped: bool = False
    dropped: int = 0

    @property
    def title(self) -> str:
        what = f"{self.kind} {self.reason}" if self.reason else self.kind
        if self.kind == HEALTH:
            title = f"sipwarden health: {self.reason or 'problem'}"
            return title if self.count == 1 else f"{title} ({self.count} times)"
        if self.count == 1:
            return f"sipwarden: {what}" + (f" from {self.sources[0]}" if self.sources else "")
        plus = "+" if self.sources_capped else ""
        among = f" from {self.source_count}{plus} sources" if self.source_count > 1 else ""
        if self.source_count == 1:
            among = f" from {self.sources[0]}"
        return f"sipwarden: {self.count} x {what}{among}"

    @property
    def text(self) -> str:
        span = (
            _iso(self.first)
            if self.first == self.last
            else f"{_iso(self.first)} to {_iso(self.last)}"
        )
        lines = [f"{self.title}", f"{self.count} event(s), {span}"]
        if self.sources:
            more = self.source_count - len(self.sources)
            tail = f" and {more}{'+' if self.sources_capped else ''} more" if more > 0 else ""
            lines.append(f"sources: {', '.join(self.sources)}{tail}")
        if self.examples:
            lines.append("examples:")
            for event in self.examples:
                facts = " ".join(f"{k}={v}" for k, v in event.fields)
                lines.append(
                    _one_line(f"  {_iso(event.time)} {event.source or '-'} {event.reason} {facts}")
                )
        if self.dropped:
            lines.append(
                f"{self.dropped} earlier alert(s) were dropped: too many waited to be sent"
            )
        return "\n".join(lines)

    def as_dict(self, host: str = "") -> dict[str, Any]:
        """The webhook's JSON object (``host``: the machine that sends it)."""
        return {
            "title": self.title,
            "text": self.text,
            "host": host,
            "target": self.target,
            "kind": self.kind,
            "reason": self.reason,
            "count": self.count,
            "first": self.first,
            "last": self.last,
            "sources": list(self.sources),
            "source_count": self.source_count,
            "sources_capped": self.sources_capped,
            "examples": [event.as_dict() for event in self.examples],
            "dropped": self.dropped,
        }

    def json_body(self, host: str = "") -> bytes:
        """The webhook's body, the exact bytes its signature covers."""
        return json.dumps(self.as_dict(host), separators=(",", ":"), ensure_ascii=False).encode()

    def mail(self, host: str = "") -> tuple[str, str]:
        """A mail's subject (one line) and plain-text body."""
        subject = _one_line(self.title + (f" on {host}" if host else ""))
        return subject, self.text + "\n"

    @property
    def severity(self) -> int:
        return WARNING if self.kind in (HEALTH, FINDING) else NOTICE

    def syslog_line(
        self,
        *,
        facility: str = "daemon",
        host: str = "-",
        app: str = "sipwarden",
        procid: int | None = None,
        format: SyslogFormat = "rfc5424",
        tz: tzinfo = UTC,
        network: bool = True,
    ) -> str:
        """One syslog message (no trailing newline): RFC 5424 (``<PRI>1
        TIMESTAMP HOST APP PROCID MSGID - MSG``), or RFC 3164 (``<PRI>Mmm dd
        hh:mm:ss HOST TAG[PID]: MSG``, the time in ``tz``; without HOST when
        not ``network``, as syslog(3) writes to /dev/log)."""
        pri = FACILITIES[facility] * 8 + self.severity
        msg = _one_line(
            f"{self.title}; count={self.count} first={_iso(self.first)} last={_iso(self.last)}"
            + (f" sources={','.join(self.sources)}" if self.sources else "")
        )
        host = host or "-"
        if format == "rfc5424":
            pid = "-" if procid is None else str(procid)
            stamp = datetime.fromtimestamp(self.last, UTC).isoformat(timespec="milliseconds")
            stamp = stamp.replace("+00:00", "Z")
            return f"<{pri}>1 {stamp} {host} {app} {pid} {self.kind} - {msg}"
        local = datetime.fromtimestamp(self.last, tz)
        stamp = f"{local:%b} {local.day:2d} {local:%H:%M:%S}"
        tag = app if procid is None else f"{app}[{procid}]"
        return f"<{pri}>{stamp} {host + ' ' if network else ''}{tag}: {msg}"


@dataclass(frozen=True)
class Route:
    """One target's wishes and bounds (see the module doc)."""

    name: str
    kinds: frozenset[str]
    min_interval: float = 300.0
    # kinds wanted only in quiet time (noise by day: failed logins at night)
    quiet_kinds: frozenset[str] = frozenset()  # seconds between two alerts of one (kind, reason)
    max_waiting: int = 100  # alerts waiting to be sent
    max_keys: int = (
        512  # (kind, reason) tracked: with COUNTED_SOURCES, 12 MB at worst (bench/alerts.py)
    )
    retry_first: float = 5.0  # seconds after the first failure
    retry_cap: float = 600.0  # the longest wait between two attempts

    def __post_init__(self) -> None:
        unknown = (self.kinds | self.quiet_kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown event kinds {sorted(unknown)}: known are {sorted(KINDS)}")
        if self.min_interval < 0 or self.retry_first <= 0 or self.retry_cap < self.retry_first:
            raise ValueError("min_interval >= 0 and 0 < retry_first <= retry_cap")
        if self.max_waiting < 1 or self.max_keys < 1:
            raise ValueError("max_waiting and max_keys: at least 1")


@dataclass(slots=True)
class _Fold:
    """One (kind, reason): when its next alert may go, and what it will say."""

    next_allowed: float = -math.inf
    due: float = math.inf  # when the folded events go; inf: nothing folded
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    examples: list[Event] = field(default_factory=list)
    sources: dict[str, None] = field(default_factory=dict)  # ordered, at most COUNTED_SOURCES
    capped: bool = False


class AlertTarget:
    """One target's alerts (see the module doc). The caller: ``offer`` each
    batch of events; ``take`` an alert when ``next_time`` has come, send it,
    then report ``sent`` or ``failed``. One alert is in flight at a time."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.counters: dict[str, int] = dict.fromkeys(
            ("events", "sent", "failed", "folded", "dropped", "dropped-events"), 0
        )
        self.failures = 0  # consecutive failed sends
        self.retry_at = -math.inf  # no attempt before this
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_sent_at: float | None = None
        self._folds: dict[tuple[str, str], _Fold] = {}
        self._waiting: deque[Alert] = deque()
        self._in_flight: Alert | None = None
        self._unannounced = 0  # alerts dropped since the last one that went out
        self._purge_after = -math.inf

    def offer(
        self, events: Iterable[Event], now: float, quiet: Callable[[float], bool] | None = None
    ) -> bool:
        """Fold the events this target wants (its ``quiet_kinds`` only those
        that came in quiet time, as ``quiet`` says); True when one of them
        may go out now (a burst's first event)."""
        kinds, quiet_kinds = self.route.kinds, self.route.quiet_kinds
        ready = False
        for event in events:
            if event.kind not in kinds and not (
                event.kind in quiet_kinds and quiet is not None and quiet(event.time)
            ):
                continue
            n = weight(event)
            self.counters["events"] += n
            key = (event.kind, event.reason)
            fold = self._folds.get(key)
            if fold is None:
                if len(self._folds) >= self.route.max_keys and not self._purge(now):
                    self.counters["dropped-events"] += n
                    continue
                fold = self._folds[key] = _Fold()
            if fold.count == 0:
                fold.first = fold.last = event.time
                fold.due = max(now, fold.next_allowed)
                ready = ready or fold.due <= now
            fold.count += n
            # a drain puts its summaries last, with their last event's time
            fold.first = min(fold.first, event.time)
            fold.last = max(fold.last, event.time)
            if len(fold.examples) < EXAMPLES:
                fold.examples.append(event)
            if event.source and event.source not in fold.sources:
                if len(fold.sources) < COUNTED_SOURCES:
                    fold.sources[event.source] = None
                else:
                    fold.capped = True
        return ready and now >= self.retry_at

    def _purge(self, now: float) -> bool:
        """Forget the (kind, reason) with nothing folded whose interval has
        passed; True when that made room. Searches at most once a second."""
        if now < self._purge_after:
            return False
        self._purge_after = now + PURGE_EVERY
        idle = [k for k, f in self._folds.items() if f.count == 0 and f.next_allowed <= now]
        for key in idle:
            del self._folds[key]
        return len(self._folds) < self.route.max_keys

    def next_time(self) -> float | None:
        """When ``take`` may next give an alert (possibly already past);
        None: not before more events come (or while one is in flight)."""
        if self._in_flight is not None:
            return None
        if self._waiting:
            return self.retry_at
        due = min((f.due for f in self._folds.values()), default=math.inf)
        return None if due == math.inf else max(due, self.retry_at)

    def take(self, now: float) -> Alert | None:
        """The next alert to send now, or None (nothing due, backing off,
        or one in flight). It is in flight until ``sent`` or ``failed``."""
        if self._in_flight is not None or now < self.retry_at:
            return None
        if not self._waiting:  # cut only when the line is empty: an outage folds
            self._cut(now)
        if not self._waiting:
            return None
        alert = self._waiting.popleft()
        if self._unannounced:
            alert = replace(alert, dropped=self._unannounced)
            self._unannounced = 0
        self._in_flight = alert
        return alert

    def _cut(self, now: float) -> None:
        due = [(f.first, key) for key, f in self._folds.items() if f.due <= now]
        for _, key in sorted(due):
            fold = self._folds[key]
            self._queue(
                Alert(
                    target=self.route.name,
                    kind=key[0],
                    reason=key[1],
                    count=fold.count,
                    first=fold.first,
                    last=fold.last,
                    sources=tuple(list(fold.sources)[:SOURCES]),
                    source_count=len(fold.sources),
                    examples=tuple(fold.examples),
                    sources_capped=fold.capped,
                )
            )
            self.counters["folded"] += fold.count - 1
            self._folds[key] = _Fold(next_allowed=now + self.route.min_interval)

    def _queue(self, alert: Alert, *, front: bool = False) -> None:
        if front:
            self._waiting.appendleft(alert)
        else:
            self._waiting.append(alert)
        while len(self._waiting) > self.route.max_waiting:
            lost = self._waiting.popleft()  # the oldest
            self.counters["dropped"] += 1
            self.counters["dropped-events"] += lost.count
            self._unannounced += 1 + lost.dropped

    def sent(self, now: float) -> None:
        """The alert in flight was delivered."""
        if self._in_flight is None:
            return
        self._in_flight = None
        self.counters["sent"] += 1
        self.failures = 0
        self.retry_at = -math.inf
        self.last_sent_at = now

    def failed(self, now: float, error: str) -> None:
        """The alert in flight was not delivered: it waits first in line,
        and the target backs off."""
        alert, self._in_flight = self._in_flight, None
        self.counters["failed"] += 1
        self.failures += 1
        delay = min(self.route.retry_cap, self.route.retry_first * 2 ** (self.failures - 1))
        self.retry_at = now + delay
        self.last_error = error
        self.last_error_at = now
        if alert is not None:
            if alert.dropped:  # announced again with the next one that goes out
                self._unannounced += alert.dropped
                alert = replace(alert, dropped=0)
            self._queue(alert, front=True)

    def status(self) -> dict[str, Any]:
        """Counters and state for ``status`` (no secrets: there are none here)."""
        return {
            **self.counters,
            "waiting": len(self._waiting) + (self._in_flight is not None),
            "folding": sum(1 for f in self._folds.values() if f.count),
            "failures": self.failures,
            "last-error": self.last_error,
            "last-error-at": self.last_error_at,
            "last-sent-at": self.last_sent_at,
            "next-attempt": None if self.retry_at == -math.inf else self.retry_at,
        }
