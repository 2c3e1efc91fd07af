"""name-addr and addr-spec with header parameters (From, To, Contact, Route...).

The rule that trips parsers (RFC 3261 §20.10, RFC 4475 §3.3.12): without
angle brackets, everything after the first ``;`` is a *header* parameter, so
``Contact: sip:a@b;x`` has ``x`` on the address while ``<sip:a@b;x>`` has it
on the URI. An addr-spec may not contain ``,``, ``?`` or ``;`` of its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, NamedTuple

from .accel import SPEEDUPS
from .errors import BAD_NAME_ADDR, D_LWS_IN_ADDR_SPEC, SipError
from .text import LWS_RE, TOKEN_RE, param, parse_params, unquote
from .uri import SIMPLE_HOST, URI, Params, parse_uri, simple_params


class Address(NamedTuple):
    """One address. ``uri`` is None only for the Contact wildcard ``*``."""

    uri: URI | None
    display_name: str | None = None
    params: Params = ()
    raw: str = ""

    def __str__(self) -> str:
        return self.raw

    @property
    def wildcard(self) -> bool:
        return self.uri is None

    def param(self, name: str) -> str | None:
        return param(self.params, name)

    @property
    def tag(self) -> str | None:
        return self.param("tag")

    @property
    def expires(self) -> int | None:
        value = self.param("expires")
        return int(value) if value and value.isascii() and value.isdigit() else None

    @property
    def q(self) -> float | None:
        value = self.param("q")
        try:
            return float(value) if value else None
        except ValueError:
            return None


# The shapes nearly all real addresses have, matched in one go; anything else
# (escapes, quoted-pairs, spaces around ';' or '=', quoted parameter values)
# takes the general path below, which gives the same result for these shapes.
_TOKEN_CHARS = r"[A-Za-z0-9\-.!%*_+`'~]"
_HPARAMS = rf"((?:;{_TOKEN_CHARS}+(?:=(?:[A-Za-z0-9\-.!%*_+`'~:\[\]]*|\"[^\"\\;]*\"))?)*)"
_SIMPLE_NAME_ADDR: Final = re.compile(
    rf'(?:"([^"\\]*)"[ \t]*|({_TOKEN_CHARS}+(?:[ \t]+{_TOKEN_CHARS}+)*)[ \t]*)?'
    rf"<((sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$,]+)@)?({SIMPLE_HOST})(?::([0-9]{{1,5}}))?"
    rf"((?:;[A-Za-z0-9\-_.!~*'+]+(?:=[A-Za-z0-9\-_.!~*'()\[\]/:&+$]*)?)*))>" + _HPARAMS
)
_SIMPLE_ADDR_SPEC: Final = re.compile(
    rf"((sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$]+)@)?({SIMPLE_HOST})(?::([0-9]{{1,5}}))?())" + _HPARAMS
)


class AddrParts(NamedTuple):
    """A simple-shaped name-addr or addr-spec in parts, as the C scanner and
    its Python twin cut it (``tag`` as ``Address.tag`` gives it)."""

    display: str | None
    scheme: str
    user: str | None
    host: str
    port: int | None
    uri_params: str  # the URI's parameters' text
    header_params: str  # the header's parameters' text, after '>'
    uri_text: str
    tag: str | None


# AddrParts' fields as a plain tuple: what the C scanner returns, and what
# sip's own hot path keeps (typing each as a named tuple is a copy)
AddrTuple = tuple[str | None, str, str | None, str, int | None, str, str, str, str | None]


def name_addr_parts_py(text: str) -> AddrTuple | None:
    """The parts of a simple-shaped address, or None (pure-Python twin of
    ``_speedups.name_addr``). ``tag`` is as ``Address.tag`` gives it."""
    m = _SIMPLE_NAME_ADDR.fullmatch(text)
    if m is not None:
        quoted, tokens, uri_raw, scheme, user, host, port, uparams, hparams = m.groups()
        display = quoted if quoted is not None else (" ".join(tokens.split()) if tokens else None)
    else:
        m = _SIMPLE_ADDR_SPEC.fullmatch(text)
        if m is None:
            return None
        uri_raw, scheme, user, host, port, uparams, hparams = m.groups()
        display = None
    port_number = None if port is None else int(port)
    if port_number is not None and port_number > 65535:
        return None
    tag = param(simple_params(hparams), "tag")
    return (display, scheme, user, host, port_number, uparams, hparams, uri_raw, tag)


# sip's own fast path (peek) calls the scanner directly, for plain tuples
_addr_tuple: Callable[[str], AddrTuple | None] = (
    SPEEDUPS.name_addr if SPEEDUPS is not None else name_addr_parts_py
)
_as_tuple_of = tuple.__new__  # the scanner's tuple as its named tuple


def name_addr_parts(text: str) -> AddrParts | None:
    """The parts of a simple-shaped address (C when built), or None."""
    parts = _addr_tuple(text)
    return None if parts is None else _as_tuple_of(AddrParts, parts)


def address_from_parts(parts: AddrTuple, text: str) -> Address:
    display, scheme, user, host, port, uparams, hparams, uri_raw, _ = parts
    uri = URI(scheme, user, None, host, port, simple_params(uparams), (), None, uri_raw)
    return Address(uri, display, simple_params(hparams), text)


def _find_unquoted(text: str, ch: str) -> int:
    """Index of ``ch`` outside a quoted-string; -1 if absent; raises if a quote is open."""
    if '"' not in text:
        return text.find(ch)
    in_quotes = False
    i = 0
    while i < len(text):
        c = text[i]
        if in_quotes:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quotes = False
        elif c == '"':
            in_quotes = True
        elif c == ch:
            return i
        i += 1
    if in_quotes:
        raise SipError(BAD_NAME_ADDR, f"unterminated quoted string in {text[:80]!r}")
    return -1


def _display_name(text: str, whole: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    if text[0] == '"':
        if _closing_quote(text) != len(text) - 1:
            raise SipError(BAD_NAME_ADDR, f"bad quoted display name in {whole[:80]!r}")
        return unquote(text)
    words = LWS_RE.split(text)
    if not all(TOKEN_RE.fullmatch(w) for w in words):
        raise SipError(BAD_NAME_ADDR, f"display name must be quoted: {text[:80]!r}")
    return " ".join(words)


def _closing_quote(text: str) -> int:
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    return -1


def parse_address(text: str, defects: list[str] | None = None) -> Address:
    """Parse one name-addr / addr-spec with its parameters.

    Raises SipError(bad-name-addr), or SipError(bad-uri) for the URI inside.
    Spaces just inside ``< >`` are tolerated and recorded in ``defects``.
    """
    text = text.strip()
    parts = _addr_tuple(text)
    if parts is not None:
        return address_from_parts(parts, text)
    return general_address(text, defects)


def general_address(text: str, defects: list[str] | None = None) -> Address:
    """The general path of parse_address, for every shape (``text`` stripped)."""
    if text == "*":
        return Address(None, raw=text)
    lt = _find_unquoted(text, "<")
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise SipError(BAD_NAME_ADDR, f"unterminated '<' in {text[:80]!r}")
        display = _display_name(text[:lt], text)
        spec = text[lt + 1 : gt]
        if spec != spec.strip():
            spec = spec.strip()
            if defects is not None:
                defects.append(D_LWS_IN_ADDR_SPEC)
        uri = parse_uri(spec)
        rest = text[gt + 1 :].strip()
        if rest and rest[0] != ";":
            raise SipError(BAD_NAME_ADDR, f"junk after '>' in {text[:80]!r}")
    else:
        if _find_unquoted(text, '"') >= 0:
            raise SipError(BAD_NAME_ADDR, f"quoted display name without <URI> in {text[:80]!r}")
        spec, semi, rest = text.partition(";")
        spec = spec.strip()
        if any(c in spec for c in ",? \t"):
            raise SipError(
                BAD_NAME_ADDR, f"URI with ',', '?' or spaces must be in <>: {spec[:80]!r}"
            )
        display = None
        uri = parse_uri(spec)
        rest = semi + rest
    try:
        params = parse_params(rest)
    except SipError as exc:
        raise SipError(BAD_NAME_ADDR, exc.detail) from None
    return Address(uri, display, params, text)
