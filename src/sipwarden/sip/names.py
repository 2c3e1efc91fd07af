"""Header names: compact forms, canonical spellings and list semantics.

A header is identified everywhere by its *key*: the lower-case long name
(``"via"``, ``"call-id"``). Compact forms (RFC 3261 §7.3.3 and the IANA
registry) map to the same key, so ``v: ...`` and ``Via: ...`` are one header.
"""

from __future__ import annotations

from typing import Final

COMPACT: Final[dict[str, str]] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

# Spellings used when sipwarden writes a header whose key it knows.
_CANONICAL: Final[dict[str, str]] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
    "identity-info": "Identity-Info",
    "p-asserted-identity": "P-Asserted-Identity",
    "p-preferred-identity": "P-Preferred-Identity",
}

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1): several
# values may share one line. Everything else is single-valued and a comma in
# it is data (Date, User-Agent, Authorization's parameters, a display name).
LIST_HEADERS: Final[frozenset[str]] = frozenset(
    {
        "accept",
        "accept-contact",
        "accept-encoding",
        "accept-language",
        "alert-info",
        "allow",
        "allow-events",
        "call-info",
        "contact",
        "content-encoding",
        "content-language",
        "error-info",
        "history-info",
        "in-reply-to",
        "p-asserted-identity",
        "p-preferred-identity",
        "path",
        "proxy-require",
        "reason",
        "record-route",
        "reject-contact",
        "request-disposition",
        "require",
        "route",
        "security-client",
        "security-server",
        "security-verify",
        "service-route",
        "supported",
        "unsupported",
        "via",
        "warning",
    }
)

# Headers that may appear at most once in a valid message.
SINGLE_HEADERS: Final[frozenset[str]] = frozenset(
    {"call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type", "expires"}
)


_KEYS: dict[str, str] = {}


def header_key(name: str) -> str:
    """The key of a header name as written: ``"v"`` and ``"VIA"`` give ``"via"``."""
    key = _KEYS.get(name)
    if key is None:
        key = name.lower()
        key = COMPACT.get(key, key)
        if len(_KEYS) < 4096:  # bounded: hostile names cannot grow it
            _KEYS[name] = key
    return key


def canonical_name(key: str) -> str:
    """The conventional spelling of a key: ``"call-id"`` gives ``"Call-ID"``."""
    key = header_key(key)
    found = _CANONICAL.get(key)
    if found is not None:
        return found
    return "-".join(part[:1].upper() + part[1:] for part in key.split("-"))
