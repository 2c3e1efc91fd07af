"""The hot-path view: what the security pipeline reads per packet, and no more.

``peek(data)`` frames a datagram exactly as ``parse`` does and, in one pass
over the header lines, remembers the first line of the few headers the
pipeline needs (Via, From, To, Call-ID, CSeq, User-Agent, Contact...). Typed
values are parsed on first access by the same parsers the full Message uses,
so a Peek always agrees with ``parse(data)``; it just never builds the
header list. Messages with folded lines or odd spacing before a colon take
the full parser's header split, so the rare shapes stay exact too.

Cost model: one ``find``, one decode and one ``split``, then a dict lookup
per header line; nothing else until a field is read.
"""

from __future__ import annotations

from typing import Final

from . import errors as E
from .address import Address, parse_address
from .errors import SipError
from .fields import Auth, CSeq, Via, parse_auth, parse_cseq, parse_delta, parse_via
from .message import (
    CRLF,
    _parse_start_line,
    body_bounds,
    frame_datagram,
    parse_request_uri,
    split_headers,
)
from .names import COMPACT, LIST_HEADERS, header_key
from .text import split_list
from .uri import URI

_KEYS: Final = (
    "via",
    "from",
    "to",
    "call-id",
    "cseq",
    "user-agent",
    "contact",
    "content-length",
    "max-forwards",
    "authorization",
    "proxy-authorization",
    "server",
    "expires",
)
VIA, FROM, TO, CALL_ID, CSEQ, USER_AGENT, CONTACT, CONTENT_LENGTH, MAX_FORWARDS = range(9)
AUTHORIZATION, PROXY_AUTHORIZATION, SERVER, EXPIRES = range(9, 13)
_IGNORED: Final = -1

# Name as written -> slot (or _IGNORED). Spellings not found here are lower-cased
# and looked up again, so odd-case names cost one extra lookup, never a miss.
_SLOT: dict[str, int] = {}
for _i, _key in enumerate(_KEYS):
    for _spelling in (_key, _key.upper(), "-".join(p.capitalize() for p in _key.split("-"))):
        _SLOT[_spelling] = _i
for _c, _key in COMPACT.items():
    _SLOT[_c] = _SLOT[_c.upper()] = _KEYS.index(_key) if _key in _KEYS else _IGNORED
_SLOT.update({"Call-ID": CALL_ID, "CSeq": CSEQ, "WWW-Authenticate": _IGNORED})
for _name in (
    "Accept Accept-Encoding Accept-Language Alert-Info Allow Allow-Events Call-Info "
    "Content-Type Content-Disposition Date Diversion Event Min-SE Organization "
    "P-Asserted-Identity P-Preferred-Identity Privacy Record-Route Remote-Party-ID Require "
    "Route Path Session-Expires Subject Supported Timestamp Unsupported Warning "
    "X-Serialnumber Refer-To Referred-By Replaces RSeq RAck Reason Priority "
    "Proxy-Require Proxy-Authenticate Authentication-Info Retry-After Content-Encoding"
).split():
    _SLOT.setdefault(_name, _IGNORED)
    _SLOT.setdefault(_name.lower(), _IGNORED)


class Peek:
    """A lazily decoded view of one datagram's essentials (see module doc)."""

    __slots__ = (
        "_lines",
        "_typed",
        "body_end",
        "data",
        "defects",
        "method",
        "reason",
        "status",
        "uri_text",
    )

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.method: str | None = None
        self.uri_text: str | None = None
        self.status: int | None = None
        self.reason: str | None = None
        self.defects: list[str] = []
        self.body_end = len(data)
        self._lines: list[str | None] = [None] * len(_KEYS)
        self._typed: dict[int, object] = {}

    @property
    def is_request(self) -> bool:
        return self.method is not None

    @property
    def start_line(self) -> str:
        if self.method is not None:
            return f"{self.method} {self.uri_text} SIP/2.0"
        return f"SIP/2.0 {self.status} {self.reason}"

    def raw(self, slot: int) -> str | None:
        """The first value of the header in ``slot`` as the full parse sees it."""
        line = self._lines[slot]
        if line is None:
            return None
        return line[line.find(":") + 1 :].strip(" \t")

    def _first_value(self, slot: int) -> str | None:
        value = self.raw(slot)
        if value is not None and _KEYS[slot] in LIST_HEADERS and ("," in value):
            return split_list(value)[0]
        return value

    # raw strings -----------------------------------------------------------
    @property
    def call_id(self) -> str | None:
        return self.raw(CALL_ID)

    @property
    def user_agent(self) -> str | None:
        return self.raw(USER_AGENT)

    @property
    def server(self) -> str | None:
        return self.raw(SERVER)

    @property
    def has_credentials(self) -> bool:
        return (
            self._lines[AUTHORIZATION] is not None or self._lines[PROXY_AUTHORIZATION] is not None
        )

    # typed values ------------------------------------------------------------
    @property
    def uri(self) -> URI:
        if self.uri_text is None:
            raise SipError(E.BAD_REQUEST_URI, "a response has no Request-URI")
        uri = self._typed.get(-1)
        if uri is None:
            uri = self._typed[-1] = parse_request_uri(self.uri_text)
        return uri  # type: ignore[return-value]

    @property
    def via(self) -> Via | None:
        """The top Via."""
        if VIA not in self._typed:
            value = self._first_value(VIA)
            if value is not None and not value:
                raise SipError(E.BAD_VIA, "empty Via value")
            self._typed[VIA] = None if value is None else parse_via(value)
        return self._typed[VIA]  # type: ignore[return-value]

    def _address(self, slot: int) -> Address | None:
        if slot not in self._typed:
            value = self._first_value(slot)
            self._typed[slot] = None if value is None else parse_address(value)
        return self._typed[slot]  # type: ignore[return-value]

    @property
    def from_(self) -> Address | None:
        return self._address(FROM)

    @property
    def to(self) -> Address | None:
        return self._address(TO)

    @property
    def contact(self) -> Address | None:
        """The first Contact value."""
        return self._address(CONTACT)

    @property
    def cseq(self) -> CSeq | None:
        if CSEQ not in self._typed:
            value = self.raw(CSEQ)
            self._typed[CSEQ] = None if value is None else parse_cseq(value)
        return self._typed[CSEQ]  # type: ignore[return-value]

    @property
    def max_forwards(self) -> int | None:
        value = self.raw(MAX_FORWARDS)
        return None if value is None else parse_delta(value, E.BAD_MAX_FORWARDS)[0]

    @property
    def expires(self) -> int | None:
        value = self.raw(EXPIRES)
        return None if value is None else parse_delta(value, E.BAD_EXPIRES)[0]

    @property
    def content_length(self) -> int | None:
        value = self.raw(CONTENT_LENGTH)
        return None if value is None else parse_delta(value, E.BAD_CONTENT_LENGTH)[0]

    @property
    def authorization(self) -> Auth | None:
        value = self.raw(AUTHORIZATION)
        return None if value is None else parse_auth(value)

    @property
    def proxy_authorization(self) -> Auth | None:
        value = self.raw(PROXY_AUTHORIZATION)
        return None if value is None else parse_auth(value)

    @property
    def body(self) -> bytes:
        head_end = self.data.find(b"\r\n\r\n")
        return self.data[head_end + 4 : self.body_end] if head_end >= 0 else b""


def peek(data: bytes) -> Peek:
    """Frame a datagram and index its essential headers. Raises SipError
    wherever ``parse`` would for framing, the start line and Content-Length."""
    view = Peek(data)
    defects = view.defects
    start, end, body_at, sep = frame_datagram(data, defects)
    head = data[start:end].decode("utf-8", "surrogateescape")
    lines = head.split(sep)
    _parse_start_line(view, lines[0])
    slots = view._lines
    if sep != CRLF:
        _index_slow(slots, lines)
    else:
        get = _SLOT.get
        for line in lines[1:]:
            name, colon, _ = line.partition(":")
            i = get(name)
            if i is None:
                if not colon or name[:1] in _WS or name[-1:] in _WS or not name:
                    # folded line, space before ':' or a broken line: the exact path
                    slots[:] = [None] * len(slots)
                    _index_slow(slots, lines)
                    break
                lower = name.lower()
                i = _SLOT.get(header_key(lower), _IGNORED) if lower in _LOWER_KEYS else _IGNORED
            if i >= 0:
                if slots[i] is None:
                    slots[i] = line
                elif i == CONTENT_LENGTH:
                    raise SipError(E.DUPLICATE_CONTENT_LENGTH, "two Content-Length headers")
    length = view.content_length
    view.body_end = body_bounds(length, data, body_at, defects, stream=False)
    return view


_WS: Final = (" ", "\t")
_LOWER_KEYS: Final = frozenset(_KEYS) | frozenset(c for c, k in COMPACT.items() if k in _KEYS)


def _index_slow(slots: list[str | None], lines: list[str]) -> None:
    """Index via the full header split (folded lines, spaces before ':')."""
    for h in split_headers(lines[1:]):
        i = _SLOT.get(h.key, _IGNORED)
        if i < 0:
            continue
        if slots[i] is None:
            # a synthetic one-line field whose value is the unfolded value
            slots[i] = f"{h.key}:{h.value}"
        elif i == CONTENT_LENGTH:
            raise SipError(E.DUPLICATE_CONTENT_LENGTH, "two Content-Length headers")
