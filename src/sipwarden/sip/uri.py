"""SIP, SIPS and TEL URIs (RFC 3261 §19.1, RFC 3966), and opaque others.

``parse_uri`` never guesses: ``sip:2001:db8::10`` (an IPv6 address without
brackets) is an error, and ``[2001:db8::10:5070]`` is a host with no port
(RFC 5118 §4.3), exactly as the grammar says.
"""

from __future__ import annotations

import re
import string
from typing import Final, NamedTuple

from .errors import BAD_URI, SipError
from .text import format_params, param, parse_params, pct_decode

Params = tuple[tuple[str, str | None], ...]

_SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_HOSTNAME_RE: Final = re.compile(r"[A-Za-z0-9\-._]+")
_IPV6_RE: Final = re.compile(r"\[[0-9A-Fa-f:.]+\]")
# The shape nearly all real URIs have: no escapes, no password, no headers.
# A URI that fullmatches parses to exactly what the general path gives.
_PARAM_CHARS: Final = r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$]"
SIMPLE_HOST: Final = r"[A-Za-z0-9\-.]+|\[[0-9A-Fa-f:.]+\]"
SIMPLE_URI: Final = (
    rf"(sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$,]+)@)?({SIMPLE_HOST})(?::([0-9]{{1,5}}))?"
    rf"((?:;[A-Za-z0-9\-_.!~*'+]+(?:={_PARAM_CHARS}*)?)*)"
)
_SIMPLE_URI_RE: Final = re.compile(SIMPLE_URI)
_USER_SAFE: Final = frozenset(string.ascii_letters + string.digits + "-_.!~*'()&=+$,;?/")


class URI(NamedTuple):
    """A parsed URI. ``raw`` is the text as written; ``str(uri)`` gives it back.

    For sip/sips, ``user`` and ``password`` are %-decoded, ``host`` is as
    written (IPv6 references keep their brackets), params and headers are
    %-decoded with lower-case parameter names. For tel, ``user`` is the number.
    Other schemes keep everything after the colon in ``opaque``.
    """

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str | None = None
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    opaque: str | None = None
    raw: str = ""

    def __str__(self) -> str:
        return self.raw or self.render()

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    def param(self, name: str) -> str | None:
        return param(self.params, name)

    @property
    def transport(self) -> str | None:
        value = self.param("transport")
        return value.lower() if value else None

    @property
    def host_bare(self) -> str | None:
        """The host without IPv6 brackets, lower-cased, for comparisons."""
        if self.host is None:
            return None
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        return host.lower()

    def render(self) -> str:
        """Serialise from the fields (used after a change; escapes ``@ : ; ? %`` in user)."""
        if not self.is_sip:
            if self.scheme == "tel":
                return f"tel:{self.user}{format_params(self.params)}"
            return f"{self.scheme}:{self.opaque}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(_escape_user(self.user))
            if self.password is not None:
                out.append(":" + _escape_user(self.password))
            out.append("@")
        out.append(self.host or "")
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(format_params(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{k}={v}" for k, v in self.headers))
        return "".join(out)


def _escape_user(text: str) -> str:
    out: list[str] = []
    for ch in text:
        if ch in _USER_SAFE:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)


def parse_hostport(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; raises SipError(bad-uri)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipError(BAD_URI, f"unterminated IPv6 reference in {text!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if not _IPV6_RE.fullmatch(host):
            raise SipError(BAD_URI, f"bad IPv6 reference {host!r}")
        if not rest:
            return host, None
        if rest[0] != ":":
            raise SipError(BAD_URI, f"junk after IPv6 reference in {text!r}")
        return host, _port(rest[1:], text)
    host, colon, port = text.partition(":")
    if not host or not _HOSTNAME_RE.fullmatch(host):
        raise SipError(BAD_URI, f"bad host {host!r}")
    return host, (_port(port, text) if colon else None)


def _port(text: str, whole: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5 or int(text) > 65535:
        raise SipError(BAD_URI, f"bad port in {whole!r}")
    return int(text)


def simple_params(text: str) -> Params:
    """Parameters already known to be plain ``;name[=value]`` (no quotes, spaces or escapes)."""
    if not text:
        return ()
    out = []
    for item in text[1:].split(";"):
        name, eq, value = item.partition("=")
        out.append((name.lower(), value if eq else None))
    return tuple(out)


def uri_from_match(m: re.Match[str], start: int, raw: str) -> URI | None:
    """A URI from the SIMPLE_URI groups at ``start`` of ``m``; None if its port is out of range."""
    scheme, user, host, port, params = m.group(start, start + 1, start + 2, start + 3, start + 4)
    port_number = None
    if port is not None:
        port_number = int(port)
        if port_number > 65535:
            return None
    return URI(scheme, user, None, host, port_number, simple_params(params), (), None, raw)


def parse_uri(text: str) -> URI:
    """Parse one URI; raises SipError(bad-uri) with what is wrong."""
    m = _SIMPLE_URI_RE.fullmatch(text)
    if m is not None:
        uri = uri_from_match(m, 1, text)
        if uri is not None:
            return uri
    return general_uri(text)


def general_uri(text: str) -> URI:
    """The general path of parse_uri, for every shape."""
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise SipError(BAD_URI, f"no scheme in {text[:80]!r}")
    scheme = scheme.lower()
    if any(ch in text for ch in " \t\r\n<>"):
        raise SipError(BAD_URI, f"whitespace or angle bracket in {text[:80]!r}")
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if not number:
            raise SipError(BAD_URI, "empty tel number")
        return URI(scheme, user=pct_decode(number), params=_uri_params(params), raw=text)
    if scheme not in ("sip", "sips"):
        if not rest:
            raise SipError(BAD_URI, f"empty {scheme} URI")
        return URI(scheme, opaque=rest, raw=text)

    user = password = None
    at = rest.rfind("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        if not userinfo:
            raise SipError(BAD_URI, f"empty user in {text[:80]!r}")
        u, pcolon, p = userinfo.partition(":")
        user = pct_decode(u)
        password = pct_decode(p) if pcolon else None
    rest, qmark, hdrs = rest.partition("?")
    hostport, semi, params = rest.partition(";")
    host, port = parse_hostport(hostport)
    headers: tuple[tuple[str, str], ...] = ()
    if qmark:
        pairs = []
        for item in hdrs.split("&"):
            name, eq, value = item.partition("=")
            if not name or not eq:
                raise SipError(BAD_URI, f"bad URI header {item!r}")
            pairs.append((pct_decode(name), pct_decode(value)))
        headers = tuple(pairs)
    return URI(
        scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=_uri_params(params) if semi else (),
        headers=headers,
        raw=text,
    )


def _uri_params(text: str) -> Params:
    try:
        params = parse_params(text)
    except SipError as exc:
        raise SipError(BAD_URI, exc.detail) from None
    return tuple((pct_decode(k).lower(), None if v is None else pct_decode(v)) for k, v in params)
