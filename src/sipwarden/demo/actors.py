"""The sending side of the demo: the phone's SIP (digest, REGISTER), a UDP
actor on its own loopback address, and a one-shot TCP probe.

Each actor is a real socket on an address of 127.0.0.0/8, so the edge sees
each one as a different source. ``DemoError`` says the demo could not run
(the loopback addresses or the edge's port were not usable), not that the
edge misbehaved.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time

from ..sip import Auth, Message, SipError, answer_challenge, parse
from .cast import PHONE_UA, REALM


class DemoError(Exception):
    """The demo could not run (not: the edge misbehaved)."""


# ------------------------------------------------------------ a phone's SIP


def digest(
    user: str, password: str, challenge: Auth, *, method: str = "REGISTER", uri: str = ""
) -> str:
    """The Authorization value answering ``challenge``, as a phone computes it."""
    return answer_challenge(
        challenge,
        username=user,
        password=password,
        method=method,
        uri=uri or f"sip:{REALM}",
        cnonce=secrets.token_hex(8),
    )


def register_request(
    user: str,
    *,
    host: str,
    port: int,
    call_id: str,
    cseq: int,
    tag: str,
    auth: str = "",
    ua: str = PHONE_UA,
) -> bytes:
    """A well-formed REGISTER, as a desk phone sends it."""
    lines = [
        f"REGISTER sip:{REALM} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{secrets.token_hex(8)};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{REALM}>;tag={tag}",
        f"To: <sip:{user}@{REALM}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@{host}:{port}>",
        "Expires: 600",
        f"User-Agent: {ua}",
        *([f"Authorization: {auth}"] if auth else []),
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -------------------------------------------------------------- the sockets


class UdpActor:
    """A UDP client on its own loopback address; what comes back is queued.
    (A plain socket: asyncio's datagram transport will not send an empty
    datagram, and nmap's port scan is one.)"""

    def __init__(self, host: str) -> None:
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, 0))
        except OSError as exc:
            self.sock.close()
            raise DemoError(
                f"cannot use the loopback address {host} ({exc.strerror}): the demo needs"
                " all of 127.0.0.0/8 on the loopback interface, as Linux has it"
            ) from None
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.received = 0  # every datagram that came back, late ones too
        self._answers: asyncio.Queue[bytes] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error reported on the socket
                return
            self.received += 1
            self._answers.put_nowait(data)

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, ("127.0.0.1", port))

    async def answer(self, timeout: float) -> bytes | None:
        try:
            return await asyncio.wait_for(self._answers.get(), timeout)
        except TimeoutError:
            return None

    def flush(self) -> None:
        while not self._answers.empty():
            self._answers.get_nowait()

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


def _parsed(data: bytes | None) -> Message | None:
    if data is None:
        return None
    try:
        return parse(data)
    except SipError:
        return None


async def final_answer(actor: UdpActor, cseq: int, timeout: float) -> Message | None:
    """The final answer to the request with CSeq ``cseq`` (others are skipped)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        msg = _parsed(await actor.answer(left))
        if msg is None:
            return None
        cs = msg.cseq
        if msg.status is not None and msg.status >= 200 and cs is not None and cs.number == cseq:
            return msg
    return None


async def tcp_probe(host: str, port: int, data: bytes, wait: float) -> int:
    """Send ``data`` on a new connection from ``host``; the bytes that came back."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))
    except OSError as exc:
        raise DemoError(f"cannot connect from {host} to the edge's TCP port: {exc}") from None
    got = b""
    try:
        writer.write(data)
        await writer.drain()
        with contextlib.suppress(TimeoutError, OSError):
            got = await asyncio.wait_for(reader.read(65535), wait)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return len(got)
