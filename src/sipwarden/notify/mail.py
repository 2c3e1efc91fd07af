"""Mail: each alert is one plain-text message over SMTP.

smtplib (the standard library) on a thread of this sender's own: a server
that hangs holds that one thread, never the event loop, the default
executor's threads (the stores use their own) or another target. Every
socket operation has the target's timeout and the whole send is bounded by
it on the loop's side; a send given up on finishes (or times out) on its
thread, and the next waits behind it, so a dead server costs one thread.
Why not aiosmtplib: a new dependency for one message every few minutes,
where the stdlib client on a thread is bounded the same way.

TLS: ``tls`` speaks it from the first byte (SMTPS, port 465), ``starttls``
upgrades (port 587); either checks the server's certificate against the
system's CAs or ``ca_file``. ``user`` and ``password``: an AUTH login
after TLS. Errors name the server, never the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import ssl
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from ..observe.alerts import Alert
from .base import NotifyError


class MailSender:
    """Mails alerts from ``sender`` to ``to`` through ``host:port`` (see
    the module doc)."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        sender: str,
        to: Sequence[str],
        *,
        starttls: bool = False,
        tls: bool = False,
        user: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        timeout: float = 10.0,
        hostname: str = "",
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.sender = sender
        self.to = list(to)
        self.starttls = starttls
        self.tls = tls
        self.user = user
        self.ca_file = ca_file
        self.timeout = timeout
        self.hostname = hostname
        self._password = password
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"alerts-{name}")

    def describe(self) -> str:
        how = " (TLS)" if self.tls else " (STARTTLS)" if self.starttls else ""
        return f"smtp://{self.host}:{self.port}{how} to {', '.join(self.to)}"

    def message(self, alert: Alert) -> EmailMessage:
        subject, body = alert.mail(self.hostname)
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message["Date"] = formatdate(alert.last, localtime=True)
        # the domain given: make_msgid would otherwise ask DNS for ours
        message["Message-ID"] = make_msgid("sipwarden", domain=self.sender.rpartition("@")[2])
        message["X-Sipwarden-Kind"] = alert.kind
        message.set_content(body)
        return message

    def report(
        self, subject: str, text: str, html: str, attachments: Sequence[tuple[str, str, bytes]]
    ) -> EmailMessage:
        """A report (`[report]`): ``text`` with ``html`` as its alternative,
        and ``attachments`` as (file name, MIME type, bytes)."""
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid("sipwarden", domain=self.sender.rpartition("@")[2])
        message["X-Sipwarden-Kind"] = "report"
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        for name, mime, data in attachments:
            maintype, _, subtype = mime.partition("/")
            message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
        return message

    async def send(self, alert: Alert) -> None:
        await self.post(self.message(alert))

    async def post(self, message: EmailMessage) -> None:
        """Send ``message`` within the timeout, or raise NotifyError."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                await loop.run_in_executor(self._thread, self._deliver, message)
        except TimeoutError:
            raise NotifyError(
                f"{self.host}:{self.port}: no answer within {self.timeout:g} s"
            ) from None
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise NotifyError(f"{self.host}:{self.port}: {_reason(exc)}") from None

    def _deliver(self, message: EmailMessage) -> None:
        """On the sender's thread: one SMTP session, one message."""
        context = None
        if self.tls or self.starttls:
            context = ssl.create_default_context(
                cafile=None if self.ca_file is None else str(self.ca_file)
            )
        smtp: smtplib.SMTP
        if self.tls:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.starttls:
                smtp.starttls(context=context)
            if self.user is not None and self._password is not None:
                smtp.login(self.user, self._password)
            # refuses all recipients: SMTPRecipientsRefused; some: delivered to the others
            smtp.send_message(message)

    async def close(self) -> None:
        # a hung session's thread is not waited for: its socket timeout ends it
        with contextlib.suppress(RuntimeError):
            self._thread.shutdown(wait=False, cancel_futures=True)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
        return f"{type(exc).__name__}: {exc.smtp_code} {' '.join(text.split())}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return f"every recipient refused: {', '.join(exc.recipients)}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
