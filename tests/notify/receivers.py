"""Real receivers on 127.0.0.1 for the alert tests: a webhook (aiohttp) that
checks the HMAC signature as the docs tell a receiver to, an SMTP server
(aiosmtpd), syslog over UDP, TCP and a Unix socket, and a server that
accepts and never answers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from ..conftest import free_udp_port, need


@dataclass
class Webhook:
    """Accepts POSTs whose signature verifies with ``secret`` and whose
    timestamp is within 300 s; anything else gets 401 and is counted."""

    secret: bytes
    bodies: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        stamp = request.headers.get("X-Sipwarden-Timestamp", "")
        given = request.headers.get("X-Sipwarden-Signature", "")
        mac = hmac.new(self.secret, stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) <= 300
        if not (fresh and hmac.compare_digest(given, f"sha256={mac}")):
            self.refused += 1
            return web.Response(status=401)
        self.bodies.append(json.loads(raw))
        return web.Response(status=204)

    async def start(self) -> Webhook:
        app = web.Application()
        app.router.add_post("/hooks/secret-path", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hooks/secret-path"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Mailbox:
    """aiosmtpd's handler: the messages it was given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


def smtp_server(
    mailbox: Mailbox, *, tls: ssl.SSLContext | None = None, login: tuple[str, str] | None = None
) -> Controller:
    """A real SMTP server on 127.0.0.1 (started); with ``tls``, STARTTLS is
    required, and with ``login``, that user and password."""

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = (
            login is not None
            and isinstance(data, LoginPassword)
            and (data.login.decode(), data.password.decode()) == login
        )
        return AuthResult(success=ok, handled=False)  # False: aiosmtpd answers 535

    kwargs: dict[str, Any] = {}
    if tls is not None:
        kwargs.update(tls_context=tls, require_starttls=True)
    if login is not None:
        kwargs.update(authenticator=authenticator, auth_required=True)
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_tcp_port(), **kwargs)
    controller.start()
    return controller


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its IP in subjectAltName, so
    a client that checks the name accepts it)."""
    need(shutil.which("openssl") is not None, "openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


class UdpSyslog:
    """A UDP socket on 127.0.0.1: ``lines`` waits for datagrams."""

    def __init__(self) -> None:
        self.port = free_udp_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.setblocking(False)

    async def line(self, timeout: float = 15.0) -> str:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            data = await loop.sock_recv(self.sock, 65_535)
        return data.decode()

    def close(self) -> None:
        self.sock.close()


class SilentServer:
    """Accepts connections and never says a word (a hung target)."""

    def __init__(self) -> None:
        self.held: list[asyncio.StreamWriter] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: list[asyncio.Task[None]] = []

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.held.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.append(task)
        await reader.read()  # until the client gives up, or close()

    async def start(self) -> SilentServer:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        for writer in self.held:
            writer.close()
        if self._handlers:  # let them see their end before the loop does
            await asyncio.wait(self._handlers, timeout=5)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
