"""Typed values of the structured headers: Via, CSeq, digest auth, integers.

Each ``parse_*`` takes one header value (already unfolded) and returns an
immutable value or raises SipError with the header's reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, NamedTuple

from .accel import SPEEDUPS
from .errors import (
    BAD_AUTH,
    BAD_CSEQ,
    BAD_VIA,
    D_BRANCH_COOKIE_ONLY,
    D_NO_BRANCH,
    SipError,
)
from .text import TOKEN_RE, format_params, param, parse_params, split_outside_quotes, unquote
from .uri import SIMPLE_HOST, Params, parse_hostport, simple_params

BRANCH_COOKIE: Final = "z9hG4bK"
MAX_CSEQ: Final = 2**32 - 1
MAX_DELTA_SECONDS: Final = 2**32 - 1

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_VIA_RE: Final = re.compile(
    rf"({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]+([^;\s]+)[ \t]*(;.*)?",
    re.S,
)
# SIP/2.0/UDP host:port;plain=params -- the shape nearly every Via has
_SIMPLE_VIA_RE: Final = re.compile(
    rf"SIP/2\.0/([A-Z]+) ({SIMPLE_HOST})(?::([0-9]{{1,5}}))?"
    r"((?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[A-Za-z0-9\-.!%*_+`'~:\[\]]*)?)*)"
)
_CSEQ_RE: Final = re.compile(rf"[ \t]*([0-9]+)[ \t]+({_TOKEN})[ \t]*")


class Via(NamedTuple):
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;rport``."""

    transport: str  # upper-case: UDP, TCP, TLS, SCTP, WS, ...
    host: str  # as written; IPv6 keeps its brackets
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP"
    version: str = "2.0"

    def param(self, name: str) -> str | None:
        return param(self.params, name)

    @property
    def branch(self) -> str | None:
        return self.param("branch")

    @property
    def received(self) -> str | None:
        return self.param("received")

    @property
    def rport(self) -> str | None:
        """``""`` for a bare ``;rport`` (RFC 3581 request), the number if filled, None if absent."""
        return self.param("rport")

    @property
    def maddr(self) -> str | None:
        return self.param("maddr")

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def render(self) -> str:
        return f"{self.protocol}/{self.version}/{self.transport} {self.sent_by}{format_params(self.params)}"

    def with_param(self, name: str, value: str | None) -> Via:
        """A copy with ``name`` set (replaced in place if present, else appended)."""
        name = name.lower()
        params = list(self.params)
        for i, (k, _) in enumerate(params):
            if k == name:
                params[i] = (name, value)
                break
        else:
            params.append((name, value))
        return Via(self.transport, self.host, self.port, tuple(params), self.protocol, self.version)


class ViaParts(NamedTuple):
    """A simple-shaped Via value in parts, as the C scanner and its Python
    twin cut it (branch, rport and received as the Via properties give them)."""

    transport: str
    host: str
    port: int | None
    params: str  # the parameters' text, from the first ';'
    branch: str | None
    rport: str | None
    received: str | None


# ViaParts' fields as a plain tuple: what the C scanner returns, and what
# sip's own hot path keeps (typing each as a named tuple is a copy)
ViaTuple = tuple[str, str, int | None, str, str | None, str | None, str | None]


def via_parts_py(text: str) -> ViaTuple | None:
    """The parts of a simple-shaped Via value, or None (pure-Python twin of
    ``_speedups.via``); branch, rport and received as the Via properties give them."""
    m = _SIMPLE_VIA_RE.fullmatch(text)
    if m is None:
        return None
    transport, host, port, params_text = m.groups()
    port_number = None if port is None else int(port)
    if port_number is not None and port_number > 65535:
        return None
    params = simple_params(params_text)
    return (
        transport,
        host,
        port_number,
        params_text,
        param(params, "branch"),
        param(params, "rport"),
        param(params, "received"),
    )


# sip's own fast path (peek) calls the scanner directly, for plain tuples
_via_tuple: Callable[[str], ViaTuple | None] = (
    SPEEDUPS.via if SPEEDUPS is not None else via_parts_py
)
_as_tuple_of = tuple.__new__  # the scanner's tuple as its named tuple


def via_parts(text: str) -> ViaParts | None:
    """The parts of a simple-shaped Via value (C when built), or None."""
    parts = _via_tuple(text)
    return None if parts is None else _as_tuple_of(ViaParts, parts)


def parse_via(text: str, defects: list[str] | None = None) -> Via:
    text = text.strip()
    parts = _via_tuple(text)
    if parts is not None:
        via = Via(parts[0], parts[1], parts[2], simple_params(parts[3]))
    else:
        via = _general_via(text)
    if defects is not None:
        branch = via.branch
        if not branch:
            defects.append(D_NO_BRANCH)
        elif branch == BRANCH_COOKIE:
            defects.append(D_BRANCH_COOKIE_ONLY)
    return via


def _general_via(text: str) -> Via:
    m = _VIA_RE.fullmatch(text)
    if m is None:
        raise SipError(BAD_VIA, f"malformed Via {text[:80]!r}")
    protocol, version, transport, sent_by, params_text = m.groups()
    if protocol.upper() != "SIP" or version != "2.0":
        raise SipError(BAD_VIA, f"unsupported protocol {protocol}/{version}")
    try:
        host, port = parse_hostport(sent_by.strip())
        params = parse_params(params_text or "")
    except SipError as exc:
        raise SipError(BAD_VIA, exc.detail) from None
    return Via(transport.upper(), host, port, params, protocol, version)


class CSeq(NamedTuple):
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(text: str) -> CSeq:
    m = _CSEQ_RE.fullmatch(text)
    if m is None:
        raise SipError(BAD_CSEQ, f"malformed CSeq {text[:80]!r}")
    digits = m.group(1).lstrip("0") or "0"  # leading zeros never make it large
    number = int(digits) if len(digits) <= 10 else MAX_CSEQ + 1
    if number > MAX_CSEQ:
        raise SipError(BAD_CSEQ, f"CSeq number over 2**32-1: {m.group(1)[:40]}")
    return CSeq(number, m.group(2))


class Auth(NamedTuple):
    """An Authorization / Proxy-Authorization credential or a
    WWW-Authenticate / Proxy-Authenticate challenge (same grammar).

    ``params`` keeps names lower-cased and values unquoted.
    """

    scheme: str
    params: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str | None:
        for k, v in self.params:
            if k == name:
                return v
        return None

    @property
    def is_digest(self) -> bool:
        return self.scheme.lower() == "digest"

    @property
    def username(self) -> str | None:
        return self.get("username")

    @property
    def realm(self) -> str | None:
        return self.get("realm")

    @property
    def nonce(self) -> str | None:
        return self.get("nonce")

    @property
    def uri(self) -> str | None:
        return self.get("uri")

    @property
    def response(self) -> str | None:
        return self.get("response")

    @property
    def algorithm(self) -> str | None:
        return self.get("algorithm")

    @property
    def qop(self) -> str | None:
        return self.get("qop")

    @property
    def nc(self) -> str | None:
        return self.get("nc")

    @property
    def cnonce(self) -> str | None:
        return self.get("cnonce")

    @property
    def opaque(self) -> str | None:
        return self.get("opaque")

    @property
    def stale(self) -> bool:
        return (self.get("stale") or "").lower() == "true"


# name=value or name="value" (no quoted-pairs), then a comma or the end:
# the shape of every digest parameter real UAs send
_AUTH_PARAM_RE: Final = re.compile(
    r"[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*=[ \t]*"
    r"(?:\"([^\"\\]*)\"|([A-Za-z0-9\-.!%*_+`'~:/@=]*))[ \t]*(,|\Z)"
)


def _simple_auth_params(rest: str) -> list[tuple[str, str]] | None:
    pairs: list[tuple[str, str]] = []
    match = _AUTH_PARAM_RE.match
    pos, n = 0, len(rest)
    while pos < n:
        m = match(rest, pos)
        if m is None:
            return None
        name, quoted, plain, sep = m.groups()
        pairs.append((name.lower(), quoted if quoted is not None else plain))
        pos = m.end()
        if not sep:
            return pairs
    return None  # a trailing comma: the general path tolerates it


def parse_auth(text: str) -> Auth:
    text = text.strip()
    scheme, _, rest = text.partition(" ")
    if not scheme or TOKEN_RE.fullmatch(scheme) is None:
        raise SipError(BAD_AUTH, f"bad auth scheme in {text[:80]!r}")
    rest = rest.strip()
    simple = _simple_auth_params(rest) if rest else None
    if simple is not None:
        return Auth(scheme, tuple(simple))
    pairs: list[tuple[str, str]] = []
    if rest:
        try:
            items = split_outside_quotes(rest, ",", angles=False)
        except SipError:
            raise SipError(BAD_AUTH, f"unterminated quote in {text[:80]!r}") from None
        for item in items:
            if not item:
                continue  # tolerate ",," as most UAs do
            name, eq, value = item.partition("=")
            name = name.strip().lower()
            if not eq or TOKEN_RE.fullmatch(name) is None:
                raise SipError(BAD_AUTH, f"bad auth parameter {item[:40]!r}")
            pairs.append((name, unquote(value.strip())))
    return Auth(scheme, tuple(pairs))


def parse_delta(text: str, reason: str) -> tuple[int, bool]:
    """A non-negative integer header (Max-Forwards, Expires, Content-Length).

    Returns (value, clamped): values above 2**32-1 are clamped, as RFC 3261
    §20.19 asks for delta-seconds. Raises SipError(reason) if not digits.
    """
    text = text.strip()
    if not text or not text.isascii() or not text.isdigit():
        raise SipError(reason, f"not a non-negative integer: {text[:40]!r}")
    if len(text) > 10:
        text = text.lstrip("0") or "0"  # leading zeros never make a value large
        if len(text) > 10:
            return MAX_DELTA_SECONDS, True
    value = int(text)
    if value > MAX_DELTA_SECONDS:
        return MAX_DELTA_SECONDS, True
    return value, False
