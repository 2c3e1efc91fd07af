"""Syslog: each alert is one message to a syslog server or the local socket.

Addresses (``config.syslog_address``): ``udp:HOST:PORT`` (one datagram per
message, RFC 5426), ``tcp:HOST:PORT`` (octet-counted framing, RFC 6587
§3.4.1: ``LEN SP MSG``, which rsyslog and syslog-ng read), or a Unix
socket's path (``/dev/log``: a datagram socket, or a stream one with a
newline after each message). The format is RFC 5424 by default, RFC 3164
on a Unix socket (as syslog(3) writes, which journald and rsyslog parse).

On the event loop, each send with its own socket and bounded by the
target's timeout. Why not ``logging.handlers.SysLogHandler``: it connects
(and blocks) in its constructor and swallows send errors in
``handleError``, so a dead server could neither be timed out nor counted.
UDP cannot tell whether anyone listened: a datagram sent is a success.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from datetime import datetime

from ..config import syslog_address
from ..observe.alerts import Alert, SyslogFormat
from .base import NotifyError


class SyslogSender:
    """Sends alerts to ``address`` (see the module doc)."""

    def __init__(
        self,
        name: str,
        address: str,
        *,
        facility: str = "daemon",
        format: SyslogFormat | None = None,
        timeout: float = 10.0,
        hostname: str = "",
    ) -> None:
        self.name = name
        self.address = address
        self.transport, self.where, self.port = syslog_address(address)
        self.facility = facility
        self.format: SyslogFormat = format or ("rfc3164" if self.transport == "unix" else "rfc5424")
        self.timeout = timeout
        self.hostname = hostname

    def describe(self) -> str:
        return f"{self.address} ({self.format}, {self.facility})"

    def line(self, alert: Alert) -> bytes:
        local = datetime.now().astimezone().tzinfo  # RFC 3164's times are local
        assert local is not None
        return alert.syslog_line(
            facility=self.facility,
            host=self.hostname,
            procid=os.getpid(),
            format=self.format,
            tz=local,
            network=self.transport != "unix",
        ).encode()

    async def send(self, alert: Alert) -> None:
        data = self.line(alert)
        try:
            async with asyncio.timeout(self.timeout):
                if self.transport == "udp":
                    await self._datagram(data)
                elif self.transport == "tcp":
                    await self._stream(b"%d " % len(data) + data)
                else:
                    await self._unix(data)
        except TimeoutError:
            raise NotifyError(f"{self.address}: no answer within {self.timeout:g} s") from None
        except OSError as exc:
            raise NotifyError(f"{self.address}: {exc.strerror or exc}") from None

    async def _datagram(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=(self.where, self.port)
        )
        try:
            transport.sendto(data)
        finally:
            transport.close()

    async def _stream(self, data: bytes) -> None:
        _, writer = await asyncio.open_connection(self.where, self.port)
        try:
            writer.write(data)
            await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()

    async def _unix(self, data: bytes) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(self.where)
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EPROTOTYPE:
                raise
            # a stream socket (syslog-ng's, some containers')
            _, writer = await asyncio.open_unix_connection(self.where)
            try:
                writer.write(data + b"\n")
                await writer.drain()
            finally:
                writer.close()
                await writer.wait_closed()
            return
        try:
            await asyncio.get_running_loop().sock_sendall(sock, data)
        finally:
            sock.close()

    async def close(self) -> None:
        """Nothing to release: each send has its own socket."""
