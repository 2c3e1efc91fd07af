"""The registrar on a UDP socket (asyncio)."""

from __future__ import annotations

import asyncio
from typing import cast

from ...values import Peer
from .core import Registrar


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, registrar: Registrar) -> None:
        self.registrar = registrar
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's UDP transport is not a subclass of asyncio's)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(
        self, data: bytes, addr: tuple[str, int] | tuple[str, int, int, int]
    ) -> None:
        assert self.transport is not None
        for answer in self.registrar.handle(data, Peer("udp", addr[0], addr[1])):
            self.transport.sendto(answer.data, (answer.flow.host, answer.flow.port))


class RegistrarServer:
    """Serve a Registrar on ``udp:host:port`` until ``close()``."""

    def __init__(self, registrar: Registrar, host: str = "127.0.0.1", port: int = 0) -> None:
        self.registrar = registrar
        self.host = host
        self.port = port
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self.registrar), local_addr=(self.host, self.port)
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.registrar.address = f"{host}:{self.port}"

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
