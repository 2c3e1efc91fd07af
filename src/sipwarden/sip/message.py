"""The SIP message: framing of one datagram, the header list, typed views, edits.

Parsing is two-level. ``parse`` does only what every message needs: it frames
the bytes (RFC 3261 §18.3), splits the start line and the header fields, and
checks Content-Length. Typed views (``msg.via``, ``msg.cseq``, ``msg.uri``...)
are parsed on first use and cached. ``msg.validate()`` forces all of them and
the cross-header rules, for callers that want a verdict on the whole message.

Editing keeps every untouched byte: each header remembers the text it was
parsed from, and only headers an edit names are re-rendered.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any, Final, Generic, Protocol, TypeVar, overload

from . import errors as E
from .accel import SPEEDUPS
from .address import Address, parse_address
from .errors import SipError
from .fields import Auth, CSeq, Via, parse_auth, parse_cseq, parse_delta, parse_via
from .names import LIST_HEADERS, canonical_name, header_key
from .text import TOKEN_RE, split_list
from .uri import URI, parse_uri

CRLF: Final = "\r\n"
SIP_VERSION: Final = "SIP/2.0"
_T = TypeVar("_T")
_FOLD_CHARS: Final = (" ", "\t")
Field = tuple[str, str, str, str]  # name as written, key, value, text


class Header:
    """One header field. ``text`` is the field exactly as parsed (name, colon,
    value and any folded continuation lines) or None once edited/created."""

    __slots__ = ("key", "name", "text", "value")

    def __init__(self, name: str, value: str, text: str | None = None, key: str | None = None):
        self.name = name
        self.key = key if key is not None else header_key(name)
        self.value = value
        self.text = text

    def render(self) -> str:
        return self.text if self.text is not None else f"{self.name}: {self.value}"

    def __repr__(self) -> str:
        return f"Header({self.name!r}, {self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Header) and (self.name, self.value) == (other.name, other.value)

    __hash__ = None  # type: ignore[assignment]


class _View(Generic[_T]):
    """A typed view of a Message: built by ``build(msg)`` on first read and
    kept in the message's cache, which every edit clears."""

    def __init__(self, build: Callable[[Message], _T], doc: str) -> None:
        self.build = build
        self.name = ""
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, msg: None, owner: type | None = None) -> _View[_T]: ...
    @overload
    def __get__(self, msg: Message, owner: type | None = None) -> _T: ...
    def __get__(self, msg: Message | None, owner: type | None = None) -> _T | _View[_T]:
        if msg is None:
            return self
        cache = msg._cache
        try:
            return cache[self.name]  # type: ignore[no-any-return]
        except KeyError:
            value = cache[self.name] = self.build(msg)
            return value


class Message:
    """A SIP request or response.

    Requests have ``method``, ``uri_text``; responses have ``status`` and
    ``reason``. ``headers`` is the ordered list of fields (read it; change
    it through the edit methods, which keep the caches right); ``body`` is bytes.
    ``defects`` lists what was tolerated (see ``errors.D_*``).
    """

    __slots__ = (
        "_cache",
        "_fields",
        "_headers",
        "_raw",
        "body",
        "defects",
        "method",
        "reason",
        "start_line",
        "status",
        "uri_text",
    )

    def __init__(
        self,
        start_line: str,
        headers: list[Header] | None,
        body: bytes = b"",
        *,
        fields: list[Field] | None = None,
        defects: list[str] | None = None,
        raw: bytes | None = None,
    ) -> None:
        # Header objects are built on first use of .headers; until then the
        # (name, key, value, text) tuples of a fast split stand in for them.
        self._headers = headers
        self._fields = fields if headers is None else None
        self.body = body
        self.defects = defects if defects is not None else []
        self._raw = raw
        self._cache: dict[str, Any] = {}
        self.method: str | None = None
        self.uri_text: str | None = None
        self.status: int | None = None
        self.reason: str | None = None
        self.start_line = start_line
        _parse_start_line(self, start_line)

    # ------------------------------------------------------------------ basics

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def __repr__(self) -> str:
        return f"<Message {self.start_line[:60]!r} {len(self.headers)} headers, {len(self.body)} body bytes>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.start_line, self.headers, self.body) == (
            other.start_line,
            other.headers,
            other.body,
        )

    __hash__ = None  # type: ignore[assignment]

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def to_bytes(self) -> bytes:
        """The wire form. Unedited messages give back exactly the bytes parsed."""
        if self._raw is not None:
            return self._raw
        head = CRLF.join([self.start_line, *(h.render() for h in self.headers)])
        return (head + CRLF + CRLF).encode("utf-8", "surrogateescape") + self.body

    # ------------------------------------------------------------ header access

    @property
    def headers(self) -> list[Header]:
        if self._headers is None:
            fields = self._fields or []
            self._headers = [Header(name, value, text, key) for name, key, value, text in fields]
            self._fields = None
        return self._headers

    @headers.setter
    def headers(self, headers: list[Header]) -> None:
        self._headers = headers
        self._fields = None

    def _index(self) -> dict[str, list[str]]:
        """Values by key, built on first use; edits drop it with the cache."""
        index: dict[str, list[str]] | None = self._cache.get("index")
        if index is None:
            index = {}
            get = index.get
            if self._headers is not None:
                for h in self._headers:
                    found = get(h.key)
                    if found is None:
                        index[h.key] = [h.value]
                    else:
                        found.append(h.value)
            else:
                for _, key, value, _ in self._fields or ():
                    found = get(key)
                    if found is None:
                        index[key] = [value]
                    else:
                        found.append(value)
            self._cache["index"] = index
        return index

    def fields(self, name: str) -> list[Header]:
        """Every field called ``name`` (long or compact form), in order."""
        key = header_key(name)
        return [h for h in self.headers if h.key == key]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of the first field called ``name`` (long or compact form)."""
        found = self._index().get(header_key(name))
        return found[0] if found else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``: list headers are split on their commas."""
        key = header_key(name)
        values = self._index().get(key, ())
        if key in LIST_HEADERS:
            return [v for value in values for v in split_list(value)]
        return list(values)

    def __contains__(self, name: str) -> bool:
        return header_key(name) in self._index()

    # ------------------------------------------------------------- typed views
    # Each view is parsed on first read and cached until an edit (see _View).

    def _first(self, key: str) -> str | None:
        found = self._index().get(key)
        return found[0] if found else None

    def _all(self, key: str) -> list[str]:
        """Every value of a list header, split on its commas."""
        return [v for value in self._index().get(key, ()) for v in split_list(value)]

    def _parse_request_uri(self) -> URI:
        if self.uri_text is None:
            raise SipError(E.BAD_REQUEST_URI, "a response has no Request-URI")
        return parse_request_uri(self.uri_text)

    def _parse_vias(self) -> list[Via]:
        out: list[Via] = []
        for value in self._all("via"):
            if not value:
                raise SipError(E.BAD_VIA, "empty Via value")
            out.append(parse_via(value, self.defects if not out else None))
        return out

    def _address(self, key: str) -> Address | None:
        value = self._first(key)
        return None if value is None else parse_address(value, self.defects)

    def _addresses(self, key: str) -> list[Address]:
        out = []
        for value in self._all(key):
            if not value:
                raise SipError(E.BAD_NAME_ADDR, f"empty {canonical_name(key)} value")
            out.append(parse_address(value, self.defects))
        return out

    def _cseq(self) -> CSeq | None:
        value = self._first("cseq")
        return None if value is None else parse_cseq(value)

    def _max_forwards(self) -> int | None:
        value = self._first("max-forwards")
        if value is None:
            return None
        number, clamped = parse_delta(value, E.BAD_MAX_FORWARDS)
        if clamped or number > 255:
            self.defects.append(E.D_MAX_FORWARDS_RANGE)
        return number

    def _expires(self) -> int | None:
        value = self._first("expires")
        if value is None:
            return None
        number, clamped = parse_delta(value, E.BAD_EXPIRES)
        if clamped:
            self.defects.append(E.D_EXPIRES_RANGE)
        return number

    def _auth(self, key: str) -> Auth | None:
        value = self._first(key)
        return None if value is None else parse_auth(value)

    uri = _View(
        _parse_request_uri, "The Request-URI (requests only); headers inside it are an error."
    )
    vias = _View(_parse_vias, "Every Via value, top first.")
    from_ = _View(lambda m: m._address("from"), "From (None if absent).")
    to = _View(lambda m: m._address("to"), "To (None if absent).")
    contacts = _View(lambda m: m._addresses("contact"), "Every Contact value.")
    routes = _View(lambda m: m._addresses("route"), "Every Route value.")
    record_routes = _View(lambda m: m._addresses("record-route"), "Every Record-Route value.")
    paths = _View(lambda m: m._addresses("path"), "Every Path value.")
    cseq = _View(_cseq, "CSeq (None if absent).")
    max_forwards = _View(_max_forwards, "Max-Forwards (None if absent).")
    expires = _View(_expires, "Expires (None if absent); clamped at 2**32-1.")
    authorization = _View(lambda m: m._auth("authorization"), "Authorization credentials.")
    proxy_authorization = _View(lambda m: m._auth("proxy-authorization"), "Proxy-Authorization.")
    www_authenticate = _View(
        lambda m: [parse_auth(v) for v in m._index().get("www-authenticate", ())],
        "Every WWW-Authenticate challenge.",
    )
    proxy_authenticate = _View(
        lambda m: [parse_auth(v) for v in m._index().get("proxy-authenticate", ())],
        "Every Proxy-Authenticate challenge.",
    )

    @property
    def via(self) -> Via | None:
        """The top Via (None if the message has none)."""
        vias = self.vias
        return vias[0] if vias else None

    @property
    def call_id(self) -> str | None:
        return self._first("call-id")

    @property
    def content_length(self) -> int | None:
        value = self._first("content-length")
        return None if value is None else parse_delta(value, E.BAD_CONTENT_LENGTH)[0]

    @property
    def user_agent(self) -> str | None:
        return self._first("user-agent")

    @property
    def server(self) -> str | None:
        return self._first("server")

    # --------------------------------------------------------------- validate

    def validate(self, *, skip: Collection[str] = ()) -> Message:
        """Parse every typed view and check the rules across headers.

        Raises the first SipError found; returns self so calls chain. Checks:
        mandatory headers (RFC 3261 §8.1.1), at most one of each single-valued
        header, CSeq method equal to the request method, well-formed Request-URI,
        Vias, addresses, CSeq, Max-Forwards and Expires. ``skip``: header keys
        (``"contact"``) whose values are not parsed, the rest checked as ever
        (``sipwarden parse`` shows a message whose only fault is one value).
        """
        counts = {key: len(values) for key, values in self._index().items()}
        for key in ("call-id", "from", "to", "cseq", "max-forwards"):
            if counts.get(key, 0) > 1:
                raise SipError(f"duplicate-{key}", f"more than one {canonical_name(key)}")
        for key in ("via", "from", "to", "call-id", "cseq"):
            if key not in counts:
                raise SipError(E.MISSING_HEADER, f"no {canonical_name(key)}")
        if self.is_request:
            _ = self.uri
            if "max-forwards" not in counts:
                self.defects.append(E.D_NO_MAX_FORWARDS)
        if skip:
            return self._validate_views(skip)
        _ = self.vias
        from_, _ = self.from_, self.to
        assert from_ is not None
        if self.is_request and from_.tag is None:
            self.defects.append(E.D_NO_FROM_TAG)
        _ = self.contacts, self.routes, self.record_routes, self.paths
        cseq = self.cseq
        assert cseq is not None
        if self.method is not None and cseq.method != self.method:
            raise SipError(E.CSEQ_METHOD_MISMATCH, f"CSeq method {cseq.method} in a {self.method}")
        _ = self.max_forwards, self.expires, self.authorization, self.proxy_authorization
        return self

    def _validate_views(self, skip: Collection[str]) -> Message:
        """``validate``'s typed views in its order, but those in ``skip`` (the
        rare path: ``sipwarden parse`` showing a message anyway)."""
        for key in ("via", "from", "to"):
            if key not in skip:
                TYPED_VIEWS[key](self)
        from_ = self.from_ if "from" not in skip else None
        if self.is_request and from_ is not None and from_.tag is None:
            self.defects.append(E.D_NO_FROM_TAG)
        for key in ("contact", "route", "record-route", "path", "cseq"):
            if key not in skip:
                TYPED_VIEWS[key](self)
        cseq = self.cseq if "cseq" not in skip else None
        if cseq is not None and self.method is not None and cseq.method != self.method:
            raise SipError(E.CSEQ_METHOD_MISMATCH, f"CSeq method {cseq.method} in a {self.method}")
        for key in ("max-forwards", "expires", "authorization", "proxy-authorization"):
            if key not in skip:
                TYPED_VIEWS[key](self)
        return self

    # ------------------------------------------------------------------- edits

    def _touch(self) -> None:
        self._raw = None
        self._cache.clear()

    def add_header(self, name: str, value: str, *, first: bool = False) -> None:
        """Append (or with ``first``, prepend) a field."""
        header = Header(name, value)
        if first:
            self.headers.insert(0, header)
        else:
            self.headers.append(header)
        self._touch()

    def remove_header(self, name: str) -> int:
        """Remove every field called ``name``; returns how many were removed."""
        key = header_key(name)
        before = len(self.headers)
        self.headers = [h for h in self.headers if h.key != key]
        removed = before - len(self.headers)
        if removed:
            self._touch()
        return removed

    def replace_header(self, name: str, value: str) -> None:
        """Set ``name`` to one field with ``value``, where the first one stood
        (appended if absent). The field keeps the name as it was written."""
        key = header_key(name)
        for i, h in enumerate(self.headers):
            if h.key == key:
                self.headers[i] = Header(h.name, value, key=key)
                self.headers[i + 1 :] = [x for x in self.headers[i + 1 :] if x.key != key]
                break
        else:
            self.headers.append(Header(canonical_name(key), value, key=key))
        self._touch()

    def prepend_value(self, name: str, value: str) -> None:
        """Put ``value`` first in the list header ``name``: a new field just
        above the first field of that name (at the top if there is none)."""
        key = header_key(name)
        header = Header(canonical_name(key), value, key=key)
        for i, h in enumerate(self.headers):
            if h.key == key:
                self.headers.insert(i, header)
                break
        else:
            self.headers.insert(0, header)
        self._touch()

    def pop_value(self, name: str) -> str | None:
        """Remove the first value of the list header ``name`` and return it
        (None if absent); other values on its line stay, re-rendered."""
        key = header_key(name)
        for i, h in enumerate(self.headers):
            if h.key == key:
                values = split_list(h.value)
                if len(values) == 1:
                    del self.headers[i]
                else:
                    self.headers[i] = Header(h.name, ", ".join(values[1:]), key=key)
                self._touch()
                return values[0]
        return None

    def prepend_via(self, value: str | Via) -> None:
        """Put a new top Via just above the current first one (RFC 3261 §16.6)."""
        self.prepend_value("via", value.render() if isinstance(value, Via) else value)

    def pop_via(self) -> Via:
        """Remove the top Via value and return it; other values on its line stay."""
        value = self.pop_value("via")
        if value is None:
            raise SipError(E.MISSING_HEADER, "no Via to pop")
        return parse_via(value)

    def set_via_param(self, name: str, value: str | None, index: int = 0) -> None:
        """Set a parameter of the Via value at ``index`` (0 = top); ``None`` for a flag."""
        seen = 0
        for i, h in enumerate(self.headers):
            if h.key != "via":
                continue
            values = split_list(h.value)
            if index < seen + len(values):
                values[index - seen] = (
                    parse_via(values[index - seen]).with_param(name, value).render()
                )
                self.headers[i] = Header(h.name, ", ".join(values), key="via")
                self._touch()
                return
            seen += len(values)
        raise SipError(E.MISSING_HEADER, f"no Via at index {index}")

    def set_request_uri(self, uri: str) -> None:
        """Replace the Request-URI (requests only); the rest of the start line stays."""
        if self.method is None:
            raise SipError(E.BAD_REQUEST_URI, "a response has no Request-URI")
        self.uri_text = uri
        self.start_line = f"{self.method} {uri} {SIP_VERSION}"
        self._touch()

    def set_max_forwards(self, value: int) -> None:
        self.replace_header("max-forwards", str(value))

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        """Replace the body; Content-Length (and Content-Type if given) follow."""
        self.body = body
        self.replace_header("content-length", str(len(body)))
        if content_type is not None:
            self.replace_header("content-type", content_type)
        self._touch()


# ---------------------------------------------------------------- start line


def parse_request_uri(text: str) -> URI:
    """A Request-URI: any URI but one with headers (RFC 3261 §19.1.5)."""
    try:
        uri = parse_uri(text)
    except SipError as exc:
        raise SipError(E.BAD_REQUEST_URI, exc.detail) from None
    if uri.headers:
        raise SipError(E.BAD_REQUEST_URI, "headers are not allowed in a Request-URI")
    return uri


class _StartLineTarget(Protocol):
    method: str | None
    uri_text: str | None
    status: int | None
    reason: str | None
    defects: list[str]


def _parse_start_line(msg: _StartLineTarget, line: str) -> None:
    if "\n" in line or "\r" in line:
        raise SipError(E.BAD_START_LINE, f"line break inside the start line {line[:80]!r}")
    if line[:4].upper() == "SIP/":
        _parse_status_line(msg, line)
        return
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        parts = line.split()
        if len(parts) != 3:
            raise SipError(E.BAD_REQUEST_LINE, f"expected 'METHOD URI SIP/2.0', got {line[:80]!r}")
        msg.defects.append(E.D_START_LINE_WHITESPACE)
    method, uri, version = parts
    if TOKEN_RE.fullmatch(method) is None:
        raise SipError(E.BAD_REQUEST_LINE, f"bad method {method[:40]!r}")
    if not version.isascii() or version.upper() != SIP_VERSION:
        raise SipError(E.BAD_VERSION, f"unsupported version {version[:20]!r}")
    msg.method = method
    msg.uri_text = uri


def _parse_status_line(msg: _StartLineTarget, line: str) -> None:
    version, _, rest = line.partition(" ")
    code, sp2, reason = rest.partition(" ")
    if not version.isascii() or version.upper() != SIP_VERSION:
        raise SipError(E.BAD_VERSION, f"unsupported version {version[:20]!r}")
    if len(code) != 3 or not code.isascii() or not code.isdigit() or not "100" <= code <= "699":
        raise SipError(E.BAD_STATUS_LINE, f"bad status code {code[:20]!r}")
    if not sp2:
        msg.defects.append(E.D_NO_REASON_SEPARATOR)
    msg.status = int(code)
    msg.reason = reason


# ------------------------------------------------------------------ framing


# Header names seen so far -> key, so the token check and lower-casing run
# once per spelling. Bounded: random names from a flood cannot grow it.
_KEYS_SEEN: dict[str, str] = {}
_KEYS_SEEN_MAX: Final = 4096


def _key_of(name: str, line: str) -> str:
    key = _KEYS_SEEN.get(name)
    if key is None:
        if not name or TOKEN_RE.fullmatch(name) is None:
            raise SipError(E.BAD_HEADER, f"malformed header line {line[:60]!r}")
        key = header_key(name)
        if len(_KEYS_SEEN) < _KEYS_SEEN_MAX:
            _KEYS_SEEN[name] = key
    return key


def split_headers(lines: Iterable[str]) -> list[Header]:
    """Header fields from header lines (without the start line), folding
    continuation lines into the field above. Raises SipError(bad-header)."""
    headers: list[Header] = []
    append = headers.append
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or name[:1] in _FOLD_CHARS:
            if line[:1] in _FOLD_CHARS and headers:
                last = headers[-1]
                assert last.text is not None
                last.text += CRLF + line
                last.value = (last.value + " " + line.strip()).strip()
                continue
            raise SipError(E.BAD_HEADER, f"malformed header line {line[:60]!r}")
        name = name.rstrip(" \t")
        append(Header(name, value.strip(" \t"), line, _key_of(name, line)))
    return headers


def _content_length(headers: list[Header]) -> int | None:
    found: str | None = None
    for h in headers:
        if h.key == "content-length":
            if found is not None:
                raise SipError(E.DUPLICATE_CONTENT_LENGTH, f"Content-Length {found} and {h.value}")
            found = h.value
    if found is None:
        return None
    return parse_delta(found, E.BAD_CONTENT_LENGTH)[0]


def frame_datagram(data: bytes, defects: list[str]) -> tuple[int, int, int, str]:
    """Locate a datagram's message: returns (start, head_end, body_at, line
    separator). Tolerated quirks go to ``defects``. Raises SipError."""
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    if start:
        defects.append(E.D_LEADING_CRLF)
    n = len(data)
    if start >= n or not data[start:].strip():
        raise SipError(E.EMPTY, "no message")
    end = data.find(b"\r\n\r\n", start)
    # bare-LF framing wins when its blank line comes first and no CRLF precedes it
    lf_end = data.find(b"\n\n", start, end if end >= 0 else n)
    if lf_end >= 0 and b"\r\n" not in data[start:lf_end]:
        defects.append(E.D_BARE_LF)
        return start, lf_end, lf_end + 2, "\n"
    if end >= 0:
        return start, end, end + 4, CRLF
    if data.endswith(b"\r\n"):
        defects.append(E.D_NO_HEADER_TERMINATOR)
        return start, n - 2, n, CRLF
    raise SipError(E.INCOMPLETE_HEADERS, "no empty line after the headers")


def parse(data: bytes) -> Message:
    """Parse one datagram (RFC 3261 §18.3): Content-Length bounds the body and
    bytes after it are ignored (a defect); without Content-Length the body
    runs to the end of the datagram. Raises SipError."""
    found = _split(data) if _split is not None else None
    if found is None:
        return parse_python(data)
    start_line, fields, index, body_at, body_end = found
    msg = Message(start_line, None, data[body_at:body_end], fields=fields, raw=data[:body_end])
    msg._cache["index"] = index
    return msg


_split = SPEEDUPS.split if SPEEDUPS is not None else None


def parse_python(data: bytes) -> Message:
    """The pure-Python parse (the twin of ``_speedups.split``, and the path
    for every shape the C splitter leaves to Python)."""
    defects: list[str] = []
    start, end, body_at, sep = frame_datagram(data, defects)
    lines = data[start:end].decode("utf-8", "surrogateescape").split(sep)
    return _assemble(lines, data, start, body_at, defects, stream=False)


def body_bounds(
    length: int | None, data: bytes, body_at: int, defects: list[str], *, stream: bool
) -> int:
    """Where the body ends, from Content-Length (None if absent). Raises SipError."""
    available = len(data) - body_at
    if length is None:
        if stream:
            raise SipError(E.MISSING_CONTENT_LENGTH, "Content-Length is mandatory on streams")
        defects.append(E.D_NO_CONTENT_LENGTH)
        return len(data)
    if length > available:
        raise SipError(
            E.CONTENT_LENGTH_MISMATCH, f"Content-Length {length} but {available} body bytes"
        )
    if length < available:
        defects.append(E.D_TRAILING_BYTES)
    return body_at + length


# The typed views validate() parses, by header key, in its order.
TYPED_VIEWS: Final[dict[str, Callable[[Message], object]]] = {
    "via": lambda m: m.vias,
    "from": lambda m: m.from_,
    "to": lambda m: m.to,
    "contact": lambda m: m.contacts,
    "route": lambda m: m.routes,
    "record-route": lambda m: m.record_routes,
    "path": lambda m: m.paths,
    "cseq": lambda m: m.cseq,
    "max-forwards": lambda m: m.max_forwards,
    "expires": lambda m: m.expires,
    "authorization": lambda m: m.authorization,
    "proxy-authorization": lambda m: m.proxy_authorization,
}


def _assemble(
    lines: list[str], data: bytes, start: int, body_at: int, defects: list[str], *, stream: bool
) -> Message:
    # the start line first, then the fields, then the body: the order peek
    # checks in too, so both name the same reason for the same bytes
    msg = Message(lines[0], [], defects=defects)
    headers = split_headers(lines[1:])
    end = body_bounds(_content_length(headers), data, body_at, defects, stream=stream)
    msg.headers = headers
    msg.body = data[body_at:end]
    msg._raw = data[start:end]
    return msg
