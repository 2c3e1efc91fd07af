"""Peer tokens: where an answer goes, carried in the messages themselves.

A stateless proxy remembers nothing, so everything it needs to route a later
message back to a client travels inside the messages themselves: in a
parameter of our Via (for the responses) and in the user part of the Path
and Record-Route URIs we add (for requests the PBX sends to the client
later). That *flow token* names the client's transport, address, port and
connection. It is signed (HMAC-SHA256, truncated), so a forged Route or Via
cannot make the edge send anything to an address it never heard from: that
is what keeps the edge from being an open relay.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import struct
from typing import Final

from ..values import Peer

_TRANSPORT_CODE: Final = {"udp": 0, "tcp": 1, "tls": 2}
_CODE_TRANSPORT: Final = {v: k for k, v in _TRANSPORT_CODE.items()}
_MAC_BYTES: Final = 8
TOKEN_PREFIX: Final = "sw"


class FlowTokens:
    """Encode flows into signed tokens and back (see module doc)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the flow-token secret needs at least 16 bytes")
        self._secret = secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, flow: Peer) -> str:
        ip = ipaddress.ip_address(flow.host).packed
        payload = struct.pack("!BHI", _TRANSPORT_CODE[flow.transport], flow.port, flow.conn) + ip
        raw = payload + self._mac(payload)
        return TOKEN_PREFIX + base64.b32encode(raw).decode("ascii").rstrip("=").lower()

    def decode(self, token: str | None) -> Peer | None:
        """The flow in a token we issued; None for anything else (never raises)."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 80:
            return None
        text = token[len(TOKEN_PREFIX) :].upper()
        try:
            raw = base64.b32decode(text + "=" * (-len(text) % 8))
        except ValueError:
            return None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(payload) not in (7 + 4, 7 + 16) or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        code, port, conn = struct.unpack("!BHI", payload[:7])
        transport = _CODE_TRANSPORT.get(code)
        if transport is None:
            return None
        host = ipaddress.ip_address(payload[7:]).compressed
        return Peer(transport, host, port, conn)

    # -- sealed route sets (topology hiding) ---------------------------------

    def seal(self, entries: list[str]) -> str:
        """A signed, URI-parameter-safe packing of a list of route entries."""
        payload = "\n".join(entries).encode("utf-8", "surrogateescape")
        raw = payload + self._mac(b"route-set\x00" + payload)
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def unseal(self, blob: str | None) -> list[str] | None:
        """The entries of a seal we made; None for anything else (never raises)."""
        if not blob or len(blob) > 8192:
            return None
        try:
            raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
        except ValueError:
            return None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not payload or not hmac.compare_digest(mac, self._mac(b"route-set\x00" + payload)):
            return None
        return payload.decode("utf-8", "surrogateescape").split("\n")
