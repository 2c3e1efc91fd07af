"""Uniform answers: the backend must not tell a scanner which users exist.

A PBX that answers REGISTER for a user it does not know with 404, and for
one it knows with a 401 challenge, hands enumerators (SIPVicious's svwar)
its list of extensions. As Asterisk's ``alwaysauthreject`` does, the edge
turns that 404 (and a 404 to an INVITE sent without credentials) into the
challenge a real user gets.

Operations: ``learn(data, view)`` on every challenge the backend sends (the
last one of each kind is the template: same realm, algorithm, qop and
header placement); ``rewrite(data, view, credentials)`` gives the uniform
answer, or None to leave it alone. The nonce is fresh and looks like the
backend's (same length, same kind of character at each place). Sans-I/O.
"""

from __future__ import annotations

import re
import secrets
import string
from typing import Final

from ..sip import Peek, SipError

_NONCE = re.compile(r'(nonce\s*=\s*")([^"]*)(")', re.IGNORECASE)
_LOWER_HEX: Final = "0123456789abcdef"
_UPPER_HEX: Final = "0123456789ABCDEF"
# (code, reason, header) of the challenge, per method, when none was seen yet
_DEFAULT: Final = (401, "Unauthorized", "WWW-Authenticate")
RELEARN: Final = 10.0  # seconds between two readings of the PBX's challenge


class UniformAnswers:
    def __init__(self) -> None:
        # method -> (code, reason, header name, header value) of the last real challenge
        self._templates: dict[str, tuple[int, str, str, str]] = {}
        self._learned: dict[str, float] = {}  # method -> when its template was read
        self.rewritten = 0

    def learn(self, data: bytes, view: Peek, now: float = 0.0) -> None:
        status = view.status
        if status not in (401, 407):
            return
        try:
            method = view.cseq_method
        except SipError:
            return
        if method not in ("REGISTER", "INVITE"):
            return
        if now - self._learned.get(method, -RELEARN) < RELEARN:
            return  # read recently: a login's challenge need not be read every time
        self._learned[method] = now
        name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        value = _header(data, name)
        if value is not None:
            reason = "Unauthorized" if status == 401 else "Proxy Authentication Required"
            self._templates[method] = (status, reason, name, value)

    def rewrite(self, data: bytes, view: Peek, credentials: bool) -> bytes | None:
        if view.status != 404:
            return None
        try:
            method = view.cseq_method
        except SipError:
            return None
        if method != "REGISTER" and (method != "INVITE" or credentials):
            return None
        template = self._templates.get(method) or self._templates.get("REGISTER")
        if template is None:
            code, reason, name = _DEFAULT
            realm = _to_host(view) or "sip"  # no real challenge seen yet: the domain
            value = f'Digest realm="{realm}", nonce="{secrets.token_hex(16)}", algorithm=MD5'
        else:
            code, reason, name, value = template
            value = _NONCE.sub(lambda m: m.group(1) + _fresh(m.group(2)) + m.group(3), value)
        head_end = data.find(b"\r\n\r\n")
        line_end = data.find(b"\r\n")
        if head_end < 0 or line_end < 0:
            return None
        version = data[:line_end].split(b" ", 1)[0]
        self.rewritten += 1
        return b"".join(
            (
                version,
                f" {code} {reason}".encode(),
                data[line_end:head_end],
                f"\r\n{name}: {value}".encode("utf-8", "surrogateescape"),
                data[head_end:],
            )
        )


def _to_host(view: Peek) -> str:
    try:
        to = view.to
    except SipError:
        return ""
    uri = to.uri if to is not None else None
    return (uri.host_bare or "") if uri is not None else ""


def _header(data: bytes, name: str) -> str | None:
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "surrogateescape")
    wanted = name.lower()
    for line in head.split("\r\n")[1:]:
        key, colon, value = line.partition(":")
        if colon and key.strip().lower() == wanted:
            return value.strip()
    return None


def _fresh(nonce: str) -> str:
    """A new nonce shaped like ``nonce``: each hex digit, letter or digit
    replaced by a random one of its kind, punctuation kept (a backend's
    ``stamp.mac`` or base64 padding looks the same)."""
    if len(nonce) < 16:
        return secrets.token_hex(16)
    out = []
    for ch in nonce:
        if ch in _LOWER_HEX:
            out.append(secrets.choice(_LOWER_HEX))
        elif ch in _UPPER_HEX:
            out.append(secrets.choice(_UPPER_HEX))
        elif ch.isascii() and ch.isalpha():
            out.append(secrets.choice(string.ascii_letters))
        else:
            out.append(ch)
    return "".join(out)
