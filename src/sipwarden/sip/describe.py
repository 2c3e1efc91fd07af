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
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from . import errors as E
from .address import Address
from .errors import SipError
from .fields import Auth, Via
from .framing import parse_frame
from .message import Message, parse
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


# The typed header views validate() parses, in its order: the header, the
# key of message_dict's view of it (None: shown in "headers" only), the read.
_TYPED_HEADERS: Final[tuple[tuple[str, str | None, Callable[[Message], object]], ...]] = (
    ("Via", "via", lambda m: m.vias),
    ("From", "from", lambda m: m.from_),
    ("To", "to", lambda m: m.to),
    ("Contact", "contact", lambda m: m.contacts),
    ("Route", None, lambda m: m.routes),
    ("Record-Route", None, lambda m: m.record_routes),
    ("Path", None, lambda m: m.paths),
    ("CSeq", "cseq", lambda m: m.cseq),
    ("Max-Forwards", "max_forwards", lambda m: m.max_forwards),
    ("Expires", "expires", lambda m: m.expires),
    ("Authorization", "authorization", lambda m: m.authorization),
    ("Proxy-Authorization", "authorization", lambda m: m.proxy_authorization),
)
_VIEW_KEYS: Final = {name: key for name, key, _ in _TYPED_HEADERS}


def parse_view(data: bytes, *, stream: bool = False, validate: bool = True) -> dict[str, Any]:
    """What ``sipwarden parse`` prints of one message (after ``"valid": true``;
    see the module doc). ``stream``: frame as TCP/TLS (Content-Length
    required); ``validate`` false: only frame and split the headers. Raises
    SipError for what refuses the message."""
    msg = parse_frame(data) if stream else parse(data)
    fault = header_fault(msg) if validate else None
    out = message_dict(msg)
    if fault is not None:
        key = _VIEW_KEYS[fault.header]
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
    for name, _, read in _TYPED_HEADERS:
        try:
            read(msg)
        except SipError as exc:
            faults.append(HeaderFault(name, exc.reason, exc.detail))
    if len(faults) != 1:
        raise refusal  # no header at fault (validate's own check), or more than one
    _check_across(msg, faults[0].header)
    return faults[0]


def _check_across(msg: Message, broken: str) -> None:
    """The checks of validate() besides parsing each header (it stopped at
    the ``broken`` one): the same errors, the same defects."""
    for key in ("call-id", "from", "to", "cseq", "max-forwards"):
        if len(msg.fields(key)) > 1:
            raise SipError(f"duplicate-{key}", f"more than one {canonical_name(key)}")
    for key in ("via", "from", "to", "call-id", "cseq"):
        if key not in msg:
            raise SipError(E.MISSING_HEADER, f"no {canonical_name(key)}")
    defects = msg.defects
    if msg.is_request:
        _ = msg.uri  # the start line's: a bad one refuses
        if "max-forwards" not in msg and E.D_NO_MAX_FORWARDS not in defects:
            defects.append(E.D_NO_MAX_FORWARDS)
        from_ = msg.from_ if broken != "From" else None
        if from_ is not None and from_.tag is None and E.D_NO_FROM_TAG not in defects:
            defects.append(E.D_NO_FROM_TAG)
    cseq = msg.cseq if broken != "CSeq" else None
    if cseq is not None and msg.method is not None and cseq.method != msg.method:
        raise SipError(E.CSEQ_METHOD_MISMATCH, f"CSeq method {cseq.method} in a {msg.method}")
