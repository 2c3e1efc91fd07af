"""Digest authentication (RFC 2617, RFC 7616; RFC 3261 §22.4): MD5, qop auth.

The one place the digest is computed, for both sides: a UA answering a
challenge (``answer_challenge``, ``digest_authorization``) and a registrar
checking the credentials it was sent (``check_digest``). ``digest_ha1`` is
what a PBX stores instead of the password (Kamailio's subscriber ``ha1``).

Pure functions over strings: no I/O, no clock, no randomness (the caller
passes its cnonce). Nothing is raised on what ``parse`` returns, hostile
input included.

Bounds: the MD5 algorithm only (no MD5-sess, no SHA-256), and HA2 is always
MD5(method:uri), so qop ``auth-int`` (which adds a hash of the body) is not
supported; a credential with qop needs its nc and cnonce. The header value is
built in the one layout real phones send (no opaque, no userhash).
"""

from __future__ import annotations

import hashlib
import hmac

from .fields import Auth


def _md5(text: str) -> str:
    # digest authentication is defined on MD5; surrogateescape: parsed text
    # carries the bytes it could not decode that way
    return hashlib.md5(text.encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()


def digest_ha1(username: str, realm: str, password: str) -> str:
    """HA1 = MD5(username:realm:password), as a PBX stores it."""
    return _md5(f"{username}:{realm}:{password}")


def digest_response(
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str = "",
    nc: str = "",
    cnonce: str = "",
) -> str:
    """The ``response`` value, in lower-case hex: with ``qop`` (RFC 2617
    §3.2.2.1) it covers ``nc`` and ``cnonce``; without, it is RFC 2069's."""
    ha1 = digest_ha1(username, realm, password)
    ha2 = _md5(f"{method}:{uri}")
    if qop:
        return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _md5(f"{ha1}:{nonce}:{ha2}")


def digest_authorization(
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str = "",
    nc: str = "00000001",
    cnonce: str = "",
) -> str:
    """The Authorization (or Proxy-Authorization) header value carrying the
    response; ``nc`` and ``cnonce`` are written only with ``qop``."""
    response = digest_response(
        username=username,
        realm=realm,
        password=password,
        method=method,
        uri=uri,
        nonce=nonce,
        qop=qop,
        nc=nc,
        cnonce=cnonce,
    )
    value = (
        f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}",'
        f' algorithm=MD5, response="{response}"'
    )
    if qop:
        return f'{value}, qop={qop}, nc={nc}, cnonce="{cnonce}"'
    return value


def offers_auth(challenge: Auth) -> bool:
    """Whether a WWW-/Proxy-Authenticate challenge offers qop ``auth``."""
    return "auth" in [q.strip() for q in (challenge.qop or "").split(",")]


def answer_challenge(
    challenge: Auth,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    cnonce: str,
) -> str:
    """The Authorization value answering ``challenge`` as a phone does: its
    realm and nonce, qop auth (nc 00000001, ``cnonce``) when it is offered."""
    return digest_authorization(
        username=username,
        realm=challenge.realm or "",
        password=password,
        method=method,
        uri=uri,
        nonce=challenge.nonce or "",
        qop="auth" if offers_auth(challenge) else "",
        cnonce=cnonce,
    )


def check_digest(credentials: Auth, *, password: str, method: str) -> bool:
    """Whether ``credentials`` (a parsed Authorization) carry the right
    response for ``password`` and ``method``. The realm, the nonce's
    freshness and the user's existence are the caller's to check."""
    username, nonce, response = credentials.username, credentials.nonce, credentials.response
    if username is None or nonce is None or response is None or not response.isascii():
        return False
    qop, nc, cnonce = credentials.qop, credentials.nc, credentials.cnonce
    if qop and (nc is None or cnonce is None):
        return False
    expected = digest_response(
        username=username,
        realm=credentials.realm or "",
        password=password,
        method=method,
        uri=credentials.uri or "",
        nonce=nonce,
        qop=qop or "",
        nc=nc or "",
        cnonce=cnonce or "",
    )
    return hmac.compare_digest(expected, response.lower())
