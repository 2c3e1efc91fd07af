"""Low-level lexical helpers shared by the typed views.

Each splitter is a single left-to-right scan, O(n) in the input, and treats
double-quoted strings (with backslash quoted-pairs) as opaque, so a comma or
semicolon inside a display name never splits a value.
"""

from __future__ import annotations

import re
from typing import Final

from .errors import BAD_HEADER, SipError

# RFC 3261 token characters: alphanum and -.!%*_+`'~
TOKEN_RE: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
LWS_RE: Final = re.compile(r"[ \t]+")
_PCT_B_RE: Final = re.compile(rb"%([0-9A-Fa-f]{2})")


def is_token(text: str) -> bool:
    return TOKEN_RE.fullmatch(text) is not None


# One list item: runs of plain characters, quoted strings (with quoted-pairs)
# and, where angles count, <...> spans. The match stops at a separator, or at
# a stray quote, which means an unterminated quoted string.
_ITEMS: Final = {
    (sep, angles): re.compile(
        rf'(?:[^"{sep}{"<" if angles else ""}]+|"(?:[^"\\]|\\.)*"'
        + (r"|<[^>]*>?" if angles else "")
        + ")*",
        re.S,
    )
    for sep in ",;"
    for angles in (False, True)
}


def split_outside_quotes(value: str, sep: str, *, angles: bool) -> list[str]:
    """Split ``value`` on ``sep`` (``,`` or ``;``) where it is not inside quotes
    (or ``<...>`` when ``angles``). Parts are stripped of surrounding whitespace.

    Raises SipError(bad-header) for an unterminated quoted string.
    """
    if sep not in value:
        return [value.strip()]
    if '"' not in value and not (angles and "<" in value):
        return [part.strip() for part in value.split(sep)]
    match = _ITEMS[sep, angles].match
    parts: list[str] = []
    pos = 0
    n = len(value)
    while True:
        m = match(value, pos)
        assert m is not None  # the pattern matches the empty string
        end = m.end()
        parts.append(value[pos:end].strip())
        if end == n:
            return parts
        if value[end] != sep:
            raise SipError(BAD_HEADER, "unterminated quoted string")
        pos = end + 1


def split_list(value: str) -> list[str]:
    """The comma-separated values of a list header (RFC 3261 §7.3.1)."""
    return split_outside_quotes(value, ",", angles=True)


def parse_params(text: str) -> tuple[tuple[str, str | None], ...]:
    """``;a=1;b;c="x;y"`` (leading ``;`` optional) as ``(("a","1"),("b",None),...)``.

    Names are lower-cased (parameter names are case-insensitive); values keep
    their case and quotes are kept, so the text can be re-emitted as it was.
    An empty parameter (``;;``) raises SipError(bad-header).
    """
    text = text.strip()
    if not text:
        return ()
    if text[0] == ";":
        text = text[1:]
    out: list[tuple[str, str | None]] = []
    for part in split_outside_quotes(text, ";", angles=False):
        if not part:
            raise SipError(BAD_HEADER, "empty parameter")
        name, eq, val = part.partition("=")
        name = name.strip().lower()
        if not name or not is_token(name):
            raise SipError(BAD_HEADER, f"bad parameter name {name!r}")
        out.append((name, val.strip() if eq else None))
    return tuple(out)


def format_params(params: tuple[tuple[str, str | None], ...]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def param(params: tuple[tuple[str, str | None], ...], name: str) -> str | None:
    """The value of the first parameter called ``name``; ``""`` for a flag; None if absent."""
    for k, v in params:
        if k == name:
            return "" if v is None else v
    return None


def unquote(text: str) -> str:
    """The content of a quoted-string with quoted-pairs resolved; other text as is."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if "\\" not in inner:
            return inner
        out: list[str] = []
        i = 0
        while i < len(inner):
            ch = inner[i]
            if ch == "\\" and i + 1 < len(inner):
                i += 1
                ch = inner[i]
            out.append(ch)
            i += 1
        return "".join(out)
    return text


def pct_decode(text: str) -> str:
    """Resolve %HH escapes; ``%`` not followed by two hex digits stays as it is.

    Escapes are decoded as octets and the result read as UTF-8
    (surrogateescape for invalid sequences), so ``%00`` becomes a real NUL and
    is never a string terminator, and nothing is lost.
    """
    if "%" not in text:
        return text
    data = _PCT_B_RE.sub(
        lambda m: bytes((int(m.group(1), 16),)), text.encode("utf-8", "surrogateescape")
    )
    return data.decode("utf-8", "surrogateescape")
