"""Alert senders: the I/O behind ``observe/alerts.py``.

One module per kind of target, each a ``Sender`` (``base.py``): the webhook
(``webhook.py``: a JSON POST signed with HMAC-SHA256, over httpx), mail
(``mail.py``: SMTP with smtplib on a thread of its own) and syslog
(``syslog.py``: RFC 5424 or 3164 over UDP, TCP or a Unix socket, on the
event loop). Each send is bounded by the target's timeout and fails with a
``NotifyError`` whose text holds no secret; retries, rate limits and
backoff are the caller's (``daemon/alerts.py``).
"""

from .base import NotifyError, Sender
from .mail import MailSender
from .syslog import SyslogSender
from .webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSender, sign

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "MailSender",
    "NotifyError",
    "Sender",
    "SyslogSender",
    "WebhookSender",
    "sign",
]
