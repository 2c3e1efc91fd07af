"""What every alert sender is: a ``Sender`` sends one ``Alert`` within its
``timeout`` or raises ``NotifyError`` with a one-line reason that holds no
secret (no password, no HMAC key, no webhook path)."""

from __future__ import annotations

from typing import Protocol

from ..observe.alerts import Alert


class NotifyError(Exception):
    """A send that failed; the message is fit for ``status`` and the log."""


class Sender(Protocol):
    name: str
    timeout: float  # seconds one send may take, connecting included

    async def send(self, alert: Alert) -> None:
        """Deliver ``alert`` or raise ``NotifyError`` (never hangs past ``timeout``)."""

    async def close(self) -> None:
        """Release connections and threads."""

    def describe(self) -> str:
        """Where it sends, without secrets (for ``status``)."""
