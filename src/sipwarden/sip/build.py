"""Building messages: responses to requests (RFC 3261 §8.2.6) and requests."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from http import HTTPStatus
from typing import Final

from .message import SIP_VERSION, Header, Message

REASONS: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

# Copied from the request into every response, in this order (§8.2.6.2).
_COPIED: Final = ("via", "from", "to", "call-id", "cseq")


def reason_phrase(status: int) -> str:
    if status in REASONS:
        return REASONS[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def new_tag() -> str:
    return secrets.token_hex(6)


def make_response(
    request: Message,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Message:
    """A response to ``request``: Via (all of them, in order), From, To,
    Call-ID and CSeq are copied byte for byte; To gets a tag (``to_tag`` or a
    random one) if it has none and the status is above 100; then ``headers``
    and Content-Length."""
    if not request.is_request:
        raise ValueError("make_response needs a request")
    fields: list[Header] = []
    for key in _COPIED:
        for h in request.headers:
            if h.key != key:
                continue
            if key == "to" and status > 100 and request.to is not None and request.to.tag is None:
                h = Header(h.name, f"{h.value};tag={to_tag or new_tag()}", key="to")
            fields.append(Header(h.name, h.value, h.text, key=h.key))
    fields.extend(Header(name, value) for name, value in headers)
    fields.append(Header("Content-Length", str(len(body)), key="content-length"))
    start = f"{SIP_VERSION} {status} {reason if reason is not None else reason_phrase(status)}"
    return Message(start, fields, body)


def make_request(
    method: str,
    uri: str,
    headers: Iterable[tuple[str, str]],
    body: bytes = b"",
) -> Message:
    """A request from parts; Content-Length is added from ``body``."""
    fields = [Header(name, value) for name, value in headers]
    fields.append(Header("Content-Length", str(len(body)), key="content-length"))
    return Message(f"{method} {uri} {SIP_VERSION}", fields, body)


__all__ = ["REASONS", "make_request", "make_response", "new_tag", "reason_phrase"]
