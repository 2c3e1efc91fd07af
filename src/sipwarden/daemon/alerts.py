"""The alert keeper: events to the ``[[alerts]]`` targets, off the packet path.

The daemon hands it each batch it drains from the event queue (``offer``:
synchronous, O(events x targets), never blocks, never raises). Each target
has its own ``observe.alerts.AlertTarget`` (what is due, the rate limit, the
backoff) and its own task that sleeps until an alert is due, sends it with
the target's ``notify`` sender within the target's timeout, and reports the
outcome. A target that fails or hangs holds only its own task: the packets,
the event writer and the other targets go on; its events keep folding into
counts meanwhile, its waiting line is bounded, and ``status`` says what
happened (per target: sent, failed, waiting, folded, last error, next
attempt). Secrets (the webhook's HMAC key, the SMTP password) are read once,
at construction, and appear nowhere in ``status`` or the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ..config import MIN_TOKEN, AlertConfig, Config, ConfigError
from ..notify import MailSender, NotifyError, Sender, SyslogSender, WebhookSender
from ..observe.alerts import AlertTarget, Route
from ..observe.events import Event

log = logging.getLogger("sipwarden.alerts")

RETRY_FIRST: Final = 5.0  # seconds before the first retry of a failed send
RETRY_CAP: Final = 600.0  # the longest wait between two attempts
MAX_WAITING: Final = 100  # alerts waiting per target
GRACE: Final = 2.0  # seconds past a sender's own timeout before the keeper gives up on it
IDLE_SPIN: Final = 0.05  # seconds a task waits when a due time is already past (never a busy loop)


def _secret(key: str, value: str | None, path: Path | None, env: str | None) -> str | None:
    """A secret from the config, its file (the first line, stripped) or an
    environment variable; errors name the key, never the secret."""
    if value is not None:
        return value
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise ConfigError(f"{key}_file: cannot read {path}: {reason}") from None
        if not text:
            raise ConfigError(f"{key}_file: {path} is empty: put the {key} in it")
        return text
    if env is not None:
        text = os.environ.get(env, "").strip()
        if not text:
            raise ConfigError(f"{key}_env: the environment variable {env} is not set or empty")
        return text
    return None


def check_alerts(config: Config) -> None:
    """Raise ConfigError when a target's secret file or variable cannot be
    read (for the start-up checks: no sender is made, nothing to close)."""
    for i, target in enumerate(config.alerts):
        if target.type == "webhook":
            _hmac_key(target, i)
        _secret(f"alerts[{i}].password", target.password, target.password_file, None)


def _hmac_key(target: AlertConfig, index: int) -> bytes:
    key = f"alerts[{index}]"
    secret = _secret(f"{key}.secret", target.secret, target.secret_file, target.secret_env)
    assert secret is not None  # the config requires one
    if len(secret) < MIN_TOKEN:
        where = "secret_file" if target.secret_file else "secret_env"
        raise ConfigError(
            f"{key}.{where}: an HMAC key of {len(secret)} characters is guessable:"
            f" use at least {MIN_TOKEN}, e.g. the output of `openssl rand -hex 32`"
        )
    return secret.encode()


def sender_for(target: AlertConfig, index: int, hostname: str) -> Sender:
    """The sender ``[[alerts]]`` entry ``index`` asks for; ConfigError when
    its secret cannot be read."""
    key = f"alerts[{index}]"
    name = target.name or f"{target.type}-{index}"
    if target.type == "webhook":
        assert target.url is not None
        return WebhookSender(
            name, target.url, _hmac_key(target, index), timeout=target.timeout, host=hostname
        )
    if target.type == "email":
        assert target.host is not None and target.sender is not None
        password = _secret(f"{key}.password", target.password, target.password_file, None)
        return MailSender(
            name,
            target.host,
            target.smtp_port,
            target.sender,
            target.to,
            starttls=target.starttls,
            tls=target.tls,
            user=target.user,
            password=password,
            ca_file=target.ca_file,
            timeout=target.timeout,
            hostname=hostname,
        )
    assert target.address is not None
    return SyslogSender(
        name,
        target.address,
        facility=target.facility,
        format=target.format,
        timeout=target.timeout,
        hostname=hostname,
    )


@dataclass
class _Target:
    state: AlertTarget
    sender: Sender
    type: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class AlertKeeper:
    """Sends what the targets want, when it is due (see the module doc).
    ``targets``: (route, sender, type) per target; ``from_config`` builds
    them from ``[[alerts]]``."""

    def __init__(
        self,
        targets: Sequence[tuple[Route, Sender, str]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self._targets = [
            _Target(AlertTarget(route), sender, kind) for route, sender, kind in targets
        ]
        # "offered" (events offered), "errors" (offer's own failures: a bug, logged)
        self.counters: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []
        # whether a time is quiet ([schedule]; the daemon sets it): the
        # targets' quiet_kinds are wanted only then
        self.quiet: Callable[[float], bool] | None = None

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        retry_first: float = RETRY_FIRST,
        retry_cap: float = RETRY_CAP,
        max_waiting: int = MAX_WAITING,
    ) -> AlertKeeper:
        """The keeper for ``config.alerts`` (none: a keeper with no targets,
        whose ``offer`` costs nothing), in the process that runs it (its
        HTTP client must not cross a fork). Raises ConfigError when a
        secret cannot be read: ``check_alerts`` says so before the start."""
        hostname = socket.gethostname()
        targets = []
        for i, target in enumerate(config.alerts):
            route = Route(
                target.name or f"{target.type}-{i}",
                frozenset(target.kinds),
                min_interval=target.min_interval,
                quiet_kinds=frozenset(target.quiet_kinds),
                max_waiting=max_waiting,
                retry_first=retry_first,
                retry_cap=max(retry_cap, retry_first),
            )
            targets.append((route, sender_for(target, i, hostname), target.type))
        return cls(targets, clock=clock)

    def __bool__(self) -> bool:
        return bool(self._targets)

    def offer(self, events: Sequence[Event]) -> None:
        """Hand the targets a batch of events (see the module doc)."""
        if not self._targets or not events:
            return
        try:
            now = self.clock()
            self.counters["offered"] += len(events)
            for target in self._targets:
                before = target.state.next_time()
                if (
                    target.state.offer(events, now, self.quiet)
                    or target.state.next_time() != before
                ):
                    target.wake.set()
        except Exception:  # a bug here must not reach the caller's drain loop
            self.counters["errors"] += 1
            if self.counters["errors"] == 1 or self.counters["errors"] % 1000 == 0:
                log.exception("offering events to the alert targets failed")

    async def start(self) -> None:
        for target in self._targets:
            task = asyncio.create_task(self._run(target), name=f"alerts-{target.sender.name}")
            self._tasks.append(task)

    async def stop(self) -> None:
        """Stop sending (what waits is not sent) and release the senders."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for target in self._targets:
            with contextlib.suppress(Exception):
                await target.sender.close()

    async def _run(self, target: _Target) -> None:
        state, sender = target.state, target.sender
        while True:
            target.wake.clear()
            now = self.clock()
            alert = state.take(now)
            if alert is None:
                when = state.next_time()
                delay = None if when is None else max(when - now, IDLE_SPIN)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await target.wake.wait()
                continue
            try:
                async with asyncio.timeout(sender.timeout + GRACE):
                    await sender.send(alert)
            except NotifyError as exc:
                error = str(exc)
            except TimeoutError:
                error = f"{sender.describe()}: no answer within {sender.timeout:g} s"
            except Exception as exc:  # a sender's bug: counted as a failure, logged whole
                log.exception("alert target %s: sending failed", sender.name)
                error = f"{type(exc).__name__}: {exc}"
            else:
                state.sent(self.clock())
                continue
            state.failed(self.clock(), error)
            log.warning(
                "alert target %s failed (%d in a row): %s; next attempt in %.3g s",
                sender.name,
                state.failures,
                error,
                max(0.0, state.retry_at - self.clock()),
            )

    def status(self) -> dict[str, Any]:
        """For ``status`` (under "alerts"): per target its type, where it
        sends (no secret), the kinds it wants, and ``AlertTarget.status``
        (sent, failed, waiting, folded, last-error, next-attempt, ...)."""
        return {
            "targets": {
                t.sender.name: {
                    "type": t.type,
                    "to": t.sender.describe(),
                    "kinds": sorted(t.state.route.kinds),
                    **t.state.status(),
                }
                for t in self._targets
            },
            **self.counters,
        }
