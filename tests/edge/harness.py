"""An edge and a built-in registrar running in a background event loop.

Tests drive them from the outside with real sockets and real tools, as a
phone would, all on loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

from sipwarden.config import config_from_dict
from sipwarden.edge import Edge
from sipwarden.registrar import Registrar, RegistrarServer

REALM = "pbx.test"
USERS = {"100": "secret100", "200": "secret200"}


@dataclass
class Running:
    edge: Edge
    registrar: Registrar
    registrar_port: int
    loop: asyncio.AbstractEventLoop
    ports: dict[str, int] = field(default_factory=dict)

    def call(self, fn, *args):
        """Run fn(*args) on the edge's loop and return its result."""
        done = threading.Event()
        box: list = []
        self.loop.call_soon_threadsafe(lambda: (box.append(fn(*args)), done.set()))
        assert done.wait(5)
        return box[0]


@contextmanager
def running_edge(
    tmp_path: Path,
    *,
    listen: tuple[str, ...] = ("udp", "tcp"),
    host: str = "127.0.0.1",
    **edge_options,
) -> Iterator[Running]:
    loop = uvloop.new_event_loop()
    started = threading.Event()
    state: dict = {}

    async def main() -> None:
        registrar = Registrar(REALM, USERS)
        server = RegistrarServer(registrar, host, 0)
        await server.start()
        bracket = f"[{host}]" if ":" in host else host
        cfg = config_from_dict(
            {
                "edge": {
                    "listen": [f"{t}:{bracket}:0" for t in listen],
                    "backend": f"udp:{bracket}:{server.port}",
                    "flow_key_file": str(tmp_path / "flow.key"),
                    **edge_options,
                }
            }
        )
        edge = Edge(cfg.edge, b"k" * 32)
        await edge.start()
        state["running"] = Running(
            edge, registrar, server.port, loop, {ep.transport: ep.port for ep in edge.bound}
        )
        state["stop"] = asyncio.Event()
        started.set()
        await state["stop"].wait()
        await edge.stop()
        server.close()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert started.wait(10), "the edge did not start"
    try:
        yield state["running"]
    finally:
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(10)
        loop.close()


# --------------------------------------------------------------- a tiny UA


def digest(user: str, password: str, method: str, uri: str, nonce: str) -> str:
    ha1 = hashlib.md5(f"{user}:{REALM}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    return hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()


def register_request(
    user: str,
    *,
    port: int,
    transport: str = "UDP",
    cseq: int = 1,
    auth: str = "",
    contact_host: str = "192.168.1.50",
    ua: str = "Yealink SIP-T46S",
) -> bytes:
    lines = [
        f"REGISTER sip:{REALM} SIP/2.0",
        f"Via: SIP/2.0/{transport} {contact_host}:{port};branch=z9hG4bK-reg{cseq}{user};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{REALM}>;tag=t{user}",
        f"To: <sip:{user}@{REALM}>",
        f"Call-ID: reg-{user}@test",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@{contact_host}:{port};transport={transport.lower()}>",
        "Expires: 600",
        f"User-Agent: {ua}",
        *([f"Authorization: {auth}"] if auth else []),
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def authorization(user: str, challenge_nonce: str) -> str:
    response = digest(user, USERS[user], "REGISTER", f"sip:{REALM}", challenge_nonce)
    return f'Digest username="{user}", realm="{REALM}", nonce="{challenge_nonce}", uri="sip:{REALM}", response="{response}", algorithm=MD5'


class UdpPhone:
    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(3)
        self.port = self.sock.getsockname()[1]

    def send(self, data: bytes, port: int, host: str = "127.0.0.1") -> None:
        self.sock.sendto(data, (host, port))

    def recv(self, timeout: float = 3) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65535)
        except TimeoutError:
            return None

    def close(self) -> None:
        self.sock.close()
