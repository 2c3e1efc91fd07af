"""Plain-data views of parsed values, for JSON output (``sipwarden parse``).

``parse_view(data)`` is what ``sipwarden parse`` shows: the message parsed
and validated, except that a message whose only fault is one header value
that does not parse (a Contact that is not a URI, as some scanners send) is
not refused: that header's view shows its error and raw value, and
``defects`` lists ``"<Header>: <reason>"``. What still refuses a message:
framing (Content-Length), the start line (the Request-URI included), a
malformed header line, a mandatory header missing or repeated, a CSeq method
unlike the request's, more than one header value that does not parse.
``Message.validate()`` is unchanged (the policy and the edge never come
here): ``header_fault`` runs it first and looks further only when it fails.
"""

from __future__ import annotations

import base64
from typing import Any, Final, NamedTuple

from .address import Address
from .errors import SipError
from .fields import Auth, Via
from .framing import parse_frame
from .message import TYPED_VIEWS, Message, parse
from .names import canonical_name
from .uri import URI


def uri_dict(uri: URI) -> dict[str, Any]:
    if not uri.is_sip and uri.scheme != "tel":
        return {"scheme": uri.scheme, "opaque": uri.opaque}
    return {
        "scheme": uri.scheme,
        "user": uri.user,
        "password": uri.password,
        "host": uri.host,
        "port": uri.port,
        "params": dict(uri.params),
        "headers": dict(uri.headers),
    }


def address_dict(addr: Address) -> dict[str, Any]:
    if addr.uri is None:
        return {"wildcard": True}
    return {
        "display_name": addr.display_name,
        "uri": uri_dict(addr.uri),
        "params": dict(addr.params),
    }


def via_dict(via: Via) -> dict[str, Any]:
    return {
        "transport": via.transport,
        "host": via.host,
        "port": via.port,
        "branch": via.branch,
        "params": dict(via.params),
    }


def auth_dict(auth: Auth) -> dict[str, Any]:
    return {"scheme": auth.scheme, "params": dict(auth.params)}


def _try(fn: Any) -> Any:
    """Render one typed view; a broken header shows its error, not a crash."""
    try:
        return fn()
    except SipError as exc:
        return {"error": exc.reason, "detail": exc.detail}


def message_dict(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if msg.is_request:
        out["type"] = "request"
        out["method"] = msg.method
        out["request_uri"] = _try(lambda: uri_dict(msg.uri))
    else:
        out["type"] = "response"
        out["status"] = msg.status
        out["reason"] = msg.reason

    def opt(value: Any, render: Any) -> Any:
        return None if value is None else render(value)

    out["via"] = _try(lambda: [via_dict(v) for v in msg.vias])
    out["from"] = _try(lambda: opt(msg.from_, address_dict))
    out["to"] = _try(lambda: opt(msg.to, address_dict))
    out["call_id"] = msg.call_id
    out["cseq"] = _try(lambda: opt(msg.cseq, lambda c: {"number": c.number, "method": c.method}))
    out["contact"] = _try(lambda: [address_dict(a) for a in msg.contacts])
    out["max_forwards"] = _try(lambda: msg.max_forwards)
    out["expires"] = _try(lambda: msg.expires)
    out["content_length"] = _try(lambda: msg.content_length)
    out["user_agent"] = msg.user_agent
    out["authorization"] = _try(
        lambda: opt(msg.authorization or msg.proxy_authorization, auth_dict)
    )
    out["headers"] = [{"name": h.name, "value": h.value} for h in msg.headers]
    out["body"] = body_dict(msg.body)
    out["defects"] = list(dict.fromkeys(msg.defects))
    return out


def body_dict(body: bytes) -> dict[str, Any]:
    try:
        return {"length": len(body), "text": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"length": len(body), "base64": base64.b64encode(body).decode("ascii")}


# ------------------------------------------------------------ parse's view


class HeaderFault(NamedTuple):
    """A header whose value does not parse, in a message shown anyway."""

    header: str  # its canonical name
    reason: str  # the SipError's
    detail: str


# Where message_dict shows each typed header (None: in "headers" only).
_VIEW_KEYS: Final[dict[str, str | None]] = {
    "via": "via",
    "from": "from",
    "to": "to",
    "contact": "contact",
    "route": None,
    "record-route": None,
    "path": None,
    "cseq": "cseq",
    "max-forwards": "max_forwards",
    "expires": "expires",
    "authorization": "authorization",
    "proxy-authorization": "authorization",
}


def parse_view(data: bytes, *, stream: bool = False, validate: bool = True) -> dict[str, Any]:
    """What ``sipwarden parse`` prints of one message (after ``"valid": true``;
    see the module doc). ``stream``: frame as TCP/TLS (Content-Length
    required); ``validate`` false: only frame and split the headers. Raises
    SipError for what refuses the message."""
    msg = parse_frame(data) if stream else parse(data)
    fault = header_fault(msg) if validate else None
    out = message_dict(msg)
    if fault is not None:
        key = _VIEW_KEYS[fault.header.lower()]
        shown = out.get(key) if key is not None else None
        if isinstance(shown, dict) and "error" in shown:
            shown["raw"] = [h.value for h in msg.fields(fault.header)]
        out["defects"].append(f"{fault.header}: {fault.reason}")
    return out


def header_fault(msg: Message) -> HeaderFault | None:
    """``msg.validate()``, except that when the message's only fault is one
    header value that does not parse, that fault is returned rather than
    raised. None for a valid message; raises SipError otherwise (see the
    module doc)."""
    try:
        msg.validate()
        return None
    except SipError as exc:
        refusal = exc
    faults: list[HeaderFault] = []
    for key, read in TYPED_VIEWS.items():
        try:
            read(msg)
        except SipError as exc:
            faults.append(HeaderFault(canonical_name(key), exc.reason, exc.detail))
    if len(faults) != 1:
        raise refusal  # no header at fault (validate's own check), or more than one
    msg.validate(skip=(faults[0].header.lower(),))  # everything else, as ever
    return faults[0]
