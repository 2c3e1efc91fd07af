"""The hot-path view: what the security pipeline reads per packet, and no more.

``peek(data)`` frames a datagram exactly as ``parse`` does and, in one pass
over the header lines, remembers the first line of the few headers the
pipeline needs (Via, From, To, Call-ID, CSeq, User-Agent, Contact...). Typed
values are parsed on first access by the same parsers the full Message uses,
so a Peek always agrees with ``parse(data)``; it just never builds the
header list. Messages with folded lines or odd spacing before a colon take
the full parser's header split, so the rare shapes stay exact too.

Cost model: one pass over the header bytes (in C when ``_speedups`` is
built), then nothing until a field is read. The scalar accessors
(``from_user``, ``from_tag``, ``via_branch``...) read the parts of simple
shapes without building the typed objects; the pipeline should prefer them.
Other packages read the view only through its public face: the accessors,
``raw(slot)`` for the headers in ``PEEKED_HEADERS``, ``missing_mandatory()``
and ``message()`` (the full parse, made once when a rule needs a header the
view does not index).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from . import errors as E
from .accel import SPEEDUPS
from .address import (
    Address,
    AddrParts,
    AddrTuple,
    _addr_tuple,
    address_from_parts,
    parse_address,
)
from .errors import SipError
from .fields import (
    Auth,
    CSeq,
    Via,
    ViaTuple,
    _via_tuple,
    parse_auth,
    parse_cseq,
    parse_delta,
    parse_via,
)
from .message import (
    CRLF,
    Message,
    _key_of,
    _parse_start_line,
    body_bounds,
    frame_datagram,
    parse,
    parse_request_uri,
    split_headers,
)
from .names import COMPACT, LIST_HEADERS
from .text import split_list
from .uri import URI, Params, simple_params

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
    "route",
    "record-route",
)
VIA, FROM, TO, CALL_ID, CSEQ, USER_AGENT, CONTACT, CONTENT_LENGTH, MAX_FORWARDS = range(9)
AUTHORIZATION, PROXY_AUTHORIZATION, SERVER, EXPIRES, ROUTE, RECORD_ROUTE = range(9, 15)
# The headers the view indexes, by key, in slot order: ``Peek.raw(slot)``
# reads the one at ``PEEKED_HEADERS.index(key)`` without a parse; any other
# header needs ``Peek.message()``.
PEEKED_HEADERS: Final = _KEYS
# Every request and response carries these (RFC 3261 §8.1.1, §20)
_MANDATORY: Final = (VIA, FROM, TO, CALL_ID, CSEQ)
_IGNORED: Final = -1
RURI: Final = len(_KEYS)  # the Request-URI's slot in addr_parts (the parts cache's extra entry)
_as_tuple_of = tuple.__new__  # a plain tuple as its named tuple
_UNSET: Final = object()
# the methods of RFC 3261 and its extensions: tokens the CSeq parser takes as they are
_METHODS: Final = frozenset(
    "INVITE ACK BYE CANCEL REGISTER OPTIONS PRACK SUBSCRIBE NOTIFY PUBLISH INFO REFER"
    " MESSAGE UPDATE".split()
)

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
        "_cache",
        "_cseq_method",
        "_parts",
        "_values",
        "_via_params",
        "body_at",
        "body_end",
        "data",
        "defects",
        "layout",
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
        self.body_at = self.body_end = len(data)
        # Byte offsets for in-place edits, from the C scanner only (None on
        # the Python path): (start-line end, repeated-slot bits, then value
        # start/end of the first Via, Max-Forwards, Server, User-Agent and
        # Contact, or -1).
        self.layout: tuple[int, ...] | None = None
        self._values: list[str | None] | tuple[str | None, ...] = [None] * len(_KEYS)
        self._cache: dict[object, object] = {}
        # parts of simple shapes per slot (+ the Request-URI), _UNSET until read
        self._parts: list[Any] = [_UNSET] * (len(_KEYS) + 1)
        # read more than once a message (the policy, the splice, the answer's reading)
        self._cseq_method: Any = _UNSET
        self._via_params: Any = _UNSET

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def raw(self, slot: int) -> str | None:
        """The first value of the header in ``slot``, as the full parse has it."""
        return self._values[slot]

    @property
    def raw_values(self) -> Sequence[str | None]:
        """``raw`` for every slot at once, indexed by slot (read-only): for
        code that tests several headers per packet (the splice fast path)."""
        return self._values

    def missing_mandatory(self) -> str | None:
        """The first of Via, From, To, Call-ID and CSeq the message lacks,
        by its key (``"via"``, ``"call-id"``...), or None when it has them
        all. The sanity stage asks it of every message: five tests in line
        (a third of the time of building a tuple to test)."""
        values = self._values
        if (
            values[VIA] is None
            or values[FROM] is None
            or values[TO] is None
            or values[CALL_ID] is None
            or values[CSEQ] is None
        ):
            for slot in _MANDATORY:
                if values[slot] is None:
                    return _KEYS[slot]
        return None

    def message(self) -> Message:
        """The full parse of the same bytes, made on the first call and kept
        (for what the view does not index: another header, every value of
        one). Raises SipError where ``parse`` does."""
        msg = self._cache.get("message")
        if msg is None:
            msg = self._cache["message"] = parse(self.data)
        return msg  # type: ignore[return-value]

    def _first_value(self, slot: int) -> str | None:
        value = self._values[slot]
        if value is not None and "," in value and _KEYS[slot] in LIST_HEADERS:
            return split_list(value)[0]
        return value

    # raw strings ----------------------------------------------------------
    @property
    def call_id(self) -> str | None:
        return self._values[CALL_ID]

    @property
    def user_agent(self) -> str | None:
        return self._values[USER_AGENT]

    @property
    def server(self) -> str | None:
        return self._values[SERVER]

    @property
    def has_credentials(self) -> bool:
        return (
            self._values[AUTHORIZATION] is not None or self._values[PROXY_AUTHORIZATION] is not None
        )

    @property
    def body(self) -> bytes:
        return self.data[self.body_at : self.body_end]

    # parts of simple shapes, for the scalar accessors ----------------------
    def addr_parts(self, slot: int) -> AddrParts | None:
        """The parts of the first value in ``slot`` (or the Request-URI,
        ``RURI``) when it has the simple shape the C scanner reads, else None."""
        parts = self._addr_parts(slot)
        return None if parts is None else _as_tuple_of(AddrParts, parts)

    def _addr_parts(self, slot: int) -> AddrTuple | None:
        if self._parts[slot] is _UNSET:
            value = self._first_value(slot) if slot != RURI else self.uri_text
            self._parts[slot] = None if value is None else _addr_tuple(value)
        parts: AddrTuple | None = self._parts[slot]
        return parts

    def _via_parts(self) -> ViaTuple | None:
        if self._parts[VIA] is _UNSET:
            value = self._first_value(VIA)
            self._parts[VIA] = None if value is None else _via_tuple(value)
        parts: ViaTuple | None = self._parts[VIA]
        return parts

    def _user(self, slot: int) -> str | None:
        parts = self._parts[slot]
        if parts is _UNSET:
            parts = self._addr_parts(slot)
        if parts is not None:
            user: str | None = parts[2]
            return user
        addr = self._address(slot)
        return None if addr is None or addr.uri is None else addr.uri.user

    def _tag(self, slot: int) -> str | None:
        parts = self._parts[slot]
        if parts is _UNSET:
            parts = self._addr_parts(slot)
        if parts is not None:
            tag: str | None = parts[8]
            return tag
        addr = self._address(slot)
        return None if addr is None else addr.tag

    @property
    def from_user(self) -> str | None:
        return self._user(FROM)

    @property
    def from_tag(self) -> str | None:
        return self._tag(FROM)

    @property
    def to_user(self) -> str | None:
        return self._user(TO)

    @property
    def to_tag(self) -> str | None:
        return self._tag(TO)

    @property
    def contact_user(self) -> str | None:
        return self._user(CONTACT)

    def _ruri_part(self, index: int) -> str | int | None:
        """A part of the Request-URI, read as an addr-spec when it has that
        simple shape (user, host and port are the same either way)."""
        parts = self._addr_parts(RURI) if self.uri_text is not None else None
        # only a bare addr-spec with no parameters reads the same as a URI
        if parts is not None and parts[6] == "" and parts[7] == self.uri_text:
            return parts[index]
        uri = self.uri
        return (uri.user, uri.host, uri.port)[index - 2]

    @property
    def ruri_user(self) -> str | None:
        return self._ruri_part(2)  # type: ignore[return-value]

    @property
    def ruri_host(self) -> str | None:
        return self._ruri_part(3)  # type: ignore[return-value]

    @property
    def ruri_port(self) -> int | None:
        return self._ruri_part(4)  # type: ignore[return-value]

    @property
    def cseq_method(self) -> str | None:
        known = self._cseq_method
        if known is not _UNSET:
            return known  # type: ignore[no-any-return]
        value = self._values[CSEQ]
        if value is None:
            method: str | None = None
        else:
            number, space, method = value.partition(" ")
            # the common shape (a request's own method, or in a response one
            # of the standard methods): anything else takes the full CSeq parser
            if not (
                space
                and (method == self.method or (self.method is None and method in _METHODS))
                and number.isascii()
                and number.isdigit()
                and len(number) <= 9
            ):
                cseq = self.cseq  # (raises for a broken CSeq: nothing kept, it raises again)
                method = None if cseq is None else cseq.method
        self._cseq_method = method
        return method

    def _via_field(self, index: int, name: str) -> str | int | None:
        parts = self._parts[VIA]
        if parts is _UNSET:
            parts = self._via_parts()
        if parts is not None:
            field: str | int | None = parts[index]
            return field
        via = self.via
        if via is None:
            return None
        value: str | int | None = getattr(via, name)
        return value

    @property
    def via_transport(self) -> str | None:
        return self._via_field(0, "transport")  # type: ignore[return-value]

    @property
    def via_host(self) -> str | None:
        return self._via_field(1, "host")  # type: ignore[return-value]

    @property
    def via_port(self) -> int | None:
        return self._via_field(2, "port")  # type: ignore[return-value]

    @property
    def via_branch(self) -> str | None:
        return self._via_field(4, "branch")  # type: ignore[return-value]

    @property
    def via_rport(self) -> str | None:
        return self._via_field(5, "rport")  # type: ignore[return-value]

    @property
    def via_received(self) -> str | None:
        return self._via_field(6, "received")  # type: ignore[return-value]

    def simple_via_params(self) -> Params | None:
        """The top Via's parameters as (name, value) pairs when the Via has
        the simple shape the C scanner reads (as every Via the edge writes
        does), else None: for reading back a Via of our own, cheaply."""
        params = self._via_params
        if params is _UNSET:
            parts = self._parts[VIA]
            if parts is _UNSET:
                parts = self._via_parts()
            params = self._via_params = None if parts is None else simple_params(parts[3])
        return params  # type: ignore[no-any-return]

    # typed values ---------------------------------------------------------
    @property
    def uri(self) -> URI:
        if self.uri_text is None:
            raise SipError(E.BAD_REQUEST_URI, "a response has no Request-URI")
        uri = self._cache.get("uri")
        if uri is None:
            uri = self._cache["uri"] = parse_request_uri(self.uri_text)
        return uri  # type: ignore[return-value]

    @property
    def via(self) -> Via | None:
        """The top Via."""
        if "via" not in self._cache:
            value = self._first_value(VIA)
            if value is not None and not value:
                raise SipError(E.BAD_VIA, "empty Via value")
            self._cache["via"] = None if value is None else parse_via(value)
        return self._cache["via"]  # type: ignore[return-value]

    def _address(self, slot: int) -> Address | None:
        if slot not in self._cache:
            parts = self._addr_parts(slot)
            if parts is not None:
                value = self._first_value(slot)
                assert value is not None
                address: Address | None = address_from_parts(parts, value)
            else:
                value = self._first_value(slot)
                address = None if value is None else parse_address(value)
            self._cache[slot] = address
        return self._cache[slot]  # type: ignore[return-value]

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
        if "cseq" not in self._cache:
            value = self._values[CSEQ]
            self._cache["cseq"] = None if value is None else parse_cseq(value)
        return self._cache["cseq"]  # type: ignore[return-value]

    @property
    def max_forwards(self) -> int | None:
        value = self._values[MAX_FORWARDS]
        return None if value is None else parse_delta(value, E.BAD_MAX_FORWARDS)[0]

    @property
    def expires(self) -> int | None:
        value = self._values[EXPIRES]
        return None if value is None else parse_delta(value, E.BAD_EXPIRES)[0]

    @property
    def content_length(self) -> int | None:
        value = self._values[CONTENT_LENGTH]
        return None if value is None else parse_delta(value, E.BAD_CONTENT_LENGTH)[0]

    @property
    def authorization(self) -> Auth | None:
        value = self._values[AUTHORIZATION]
        return None if value is None else parse_auth(value)

    @property
    def proxy_authorization(self) -> Auth | None:
        value = self._values[PROXY_AUTHORIZATION]
        return None if value is None else parse_auth(value)


_scan = SPEEDUPS.scan if SPEEDUPS is not None else None


def peek(data: bytes) -> Peek:
    """Frame a datagram and index its essential headers. Raises SipError
    wherever ``parse`` would (framing, start line, header lines,
    Content-Length); typed fields raise when read, as the Message views do."""
    found = _scan(data) if _scan is not None else None
    if found is None:
        return peek_python(data)
    view = Peek(data)
    (
        view.method,
        view.uri_text,
        view.status,
        view.reason,
        view.body_at,
        view.body_end,
        view._values,
        view.layout,
    ) = found
    return view


def peek_python(data: bytes) -> Peek:
    """The pure-Python peek (the twin of ``_speedups.scan``, and the path
    for every shape the C scanner leaves to Python)."""
    view = Peek(data)
    defects = view.defects
    start, end, view.body_at, sep = frame_datagram(data, defects)
    head = data[start:end].decode("utf-8", "surrogateescape")
    lines = head.split(sep)
    _parse_start_line(view, lines[0])
    values = view._values
    assert isinstance(values, list)
    if sep != CRLF:
        _index_slow(values, lines)
    else:
        get = _SLOT.get
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            i = get(name) if colon else None
            if i is None:
                if not colon or name[:1] in _WS or name[-1:] in _WS or not name:
                    # folded line, space before ':' or a broken line: the exact path
                    values[:] = [None] * len(values)
                    _index_slow(values, lines)
                    break
                # any other spelling: validated and keyed as the full parse does
                i = _SLOT.get(_key_of(name, line), _IGNORED)
            if i >= 0:
                if values[i] is None:
                    values[i] = value.strip(" \t")
                elif i == CONTENT_LENGTH:
                    raise SipError(E.DUPLICATE_CONTENT_LENGTH, "two Content-Length headers")
    view.body_end = body_bounds(view.content_length, data, view.body_at, defects, stream=False)
    return view


_WS: Final = (" ", "\t")


def _index_slow(values: list[str | None], lines: list[str]) -> None:
    """Index via the full header split (folded lines, spaces before ':')."""
    for h in split_headers(lines[1:]):
        i = _SLOT.get(h.key, _IGNORED)
        if i < 0:
            continue
        if values[i] is None:
            values[i] = h.value
        elif i == CONTENT_LENGTH:
            raise SipError(E.DUPLICATE_CONTENT_LENGTH, "two Content-Length headers")
