"""Plain-data views of parsed values, for JSON output (``sipwarden parse``)."""

from __future__ import annotations

import base64
from typing import Any

from .address import Address
from .errors import SipError
from .fields import Auth, Via
from .message import Message
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
