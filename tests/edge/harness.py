"""An edge and a built-in registrar running in a background event loop.

Tests drive them from the outside with real sockets and real tools, as a
phone would, all on loopback.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

from sipwarden.app import make_deceiver
from sipwarden.config import config_from_dict
from sipwarden.demo.registrar import Registrar, RegistrarServer
from sipwarden.edge import Edge
from sipwarden.policy import build_policy, rules_policy
from sipwarden.sip import answer_challenge, digest_authorization

REALM = "pbx.test"
USERS = {"100": "secret100", "200": "secret200"}


@dataclass
class Running:
    edge: Edge
    registrar: Registrar | None  # the built-in one, when no other backend was given
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
    backend_port: int | None = None,
    backend_host: str | None = None,
    backend_transport: str = "udp",
    policy: dict | None = None,
    extra_listen: tuple[str, ...] = (),
    armed: dict | None = None,
    reveal_unknown: bool = False,
    **edge_options,
) -> Iterator[Running]:
    """An edge on ephemeral ports in front of ``backend_port`` (UDP), or of a
    built-in registrar when none is given, with the policy the config
    ``policy`` (the [policy] table) gives: by default the real one (pack on,
    OPTIONS dropped). ``extra_listen`` adds listeners (full endpoints); their
    bound ports are in ``run.edge.bound``. With ``armed`` (config sections
    such as {"failures": {...}, "limits": {...}}, {} for the defaults) the
    policy gets its ban book and detectors, as the daemon's does."""
    loop = uvloop.new_event_loop()
    started = threading.Event()
    state: dict = {}

    async def main() -> None:
        registrar, server = None, None
        if backend_port is None:
            registrar = Registrar(REALM, USERS, reveal_unknown=reveal_unknown)
            server = RegistrarServer(registrar, host, 0)
            await server.start()
        port = backend_port if server is None else server.port
        bracket = f"[{host}]" if ":" in host else host
        pbx = backend_host or host
        pbx = f"[{pbx}]" if ":" in pbx else pbx
        cfg = config_from_dict(
            {
                "edge": {
                    "listen": [f"{t}:{bracket}:0" for t in listen] + list(extra_listen),
                    "backend": f"{backend_transport}:{pbx}:{port}",
                    "flow_key_file": str(tmp_path / "flow.key"),
                    **edge_options,
                },
                "policy": policy or {},
                **(armed or {}),
            }
        )
        built = rules_policy(cfg.policy) if armed is None else build_policy(cfg)
        # [deception] in `armed`: the daemon's deceiver, as app.serve makes it
        deceiver = make_deceiver(cfg, built) if cfg.deception.enabled else None
        edge = Edge(cfg.edge, b"k" * 32, policy=built, deceiver=deceiver)
        await edge.start()
        state["running"] = Running(
            edge, registrar, port, loop, {ep.transport: ep.port for ep in reversed(edge.bound)}
        )
        state["stop"] = asyncio.Event()
        started.set()
        await state["stop"].wait()
        await edge.stop()
        if server is not None:
            server.close()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # report a failed start to the test at once
            state["error"] = exc
            started.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10), "the edge did not start"
    if "error" in state:
        raise state["error"]
    try:
        yield state["running"]
    finally:
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(10)
        loop.close()


def wait_for(predicate, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` (counters are bumped by the edge's thread just after
    a send, so a test may see the message before the count)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# --------------------------------------------------------------- a tiny UA


def authorization(
    user: str, challenge, *, method: str = "REGISTER", uri: str = f"sip:{REALM}"
) -> str:
    """An Authorization value answering a WWW-Authenticate (an Auth, or a bare
    nonce string for a qop-less challenge), as a phone computes it."""
    if isinstance(challenge, str):
        return digest_authorization(
            username=user,
            realm=REALM,
            password=USERS[user],
            method=method,
            uri=uri,
            nonce=challenge,
        )
    return answer_challenge(
        challenge, username=user, password=USERS[user], method=method, uri=uri, cnonce="0a4f113b"
    )


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
    """A phone's REGISTER; its Contact is a private address (behind NAT)."""
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


class Callee:
    """A phone that registers through the edge, then answers calls: 180 and
    200 (copying Record-Route), absorbs ACK, answers BYE with 200. It runs in
    a thread and records the requests it saw."""

    def __init__(
        self,
        user: str,
        edge_port: int,
        transport: str = "udp",
        mode: str = "answer",
        *,
        nat: bool = False,
        host: str = "127.0.0.1",
        pbx: str = "127.0.0.1",
        contact_host: str = "192.168.1.50",
    ) -> None:
        """``mode``: "answer" the call, only "ring" (then take the CANCEL), or
        answer and "hangup" (send the BYE itself) after the ACK; ``host``:
        the loopback address it sends from (the edge is on 127.0.0.1);
        ``pbx``: where it registers instead (host mode's Kamailio, no edge
        between); ``contact_host``: the address its REGISTER's Via and
        Contact name (by default a private one: the edge's Path reaches it;
        with no edge, its own, for Kamailio to call it there)."""
        from sipwarden.sip import StreamFramer

        self.user, self.transport, self.mode, self.nat = user, transport, mode, nat
        self.host, self.contact_host = host, contact_host
        self.seen: list[str] = []
        self.received: list[bytes] = []  # every message as it arrived
        self.error: BaseException | None = None
        if transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((host, 0))
            self.sock.connect((pbx, edge_port))
        else:
            self.sock = socket.create_connection((pbx, edge_port), source_address=(host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.framer = StreamFramer()
        self.sent: list[str] = []
        self.registered = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Callee:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()

    def _recv(self, timeout: float = 5.0):
        from sipwarden.sip import parse

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            if self.transport == "udp":
                self.received.append(data)
                return parse(data)
            frames = [f for f in self.framer.feed(data) if f != b"\r\n\r\n"]
            if frames:
                self.received.append(frames[0])
                return parse(frames[0])
        return None

    def _run(self) -> None:
        from sipwarden.sip import make_response

        try:
            t = self.transport.upper()
            # behind NAT, the phone believes it is 192.168.1.50:5060
            said = 5060 if self.nat else self.port
            at = self.contact_host
            self.sock.send(register_request(self.user, port=said, transport=t, contact_host=at))
            challenge = self._recv()
            assert challenge is not None and challenge.status == 401, challenge
            auth = authorization(self.user, challenge.www_authenticate[0])
            self.sock.send(
                register_request(
                    self.user, port=said, transport=t, cseq=2, auth=auth, contact_host=at
                )
            )
            ok = self._recv()
            assert ok is not None and ok.status == 200, ok
            self.registered.set()
            contact = f"<sip:{self.user}@{self.host}:{self.port};transport={self.transport}>"
            while not self.stopping.is_set():
                msg = self._recv(timeout=0.5)
                if msg is None or not msg.is_request:
                    continue
                self.seen.append(msg.method or "")
                rr = [("Record-Route", v) for v in msg.get_all("record-route")]
                tag = f"callee{self.port}"
                if msg.method == "INVITE":
                    invite = msg
                    self.sock.send(
                        make_response(
                            msg, 180, to_tag=tag, headers=[*rr, ("Contact", contact)]
                        ).to_bytes()
                    )
                    if self.mode == "ring":
                        continue
                    sdp = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4002 RTP/AVP 0\r\n"
                    headers = [*rr, ("Contact", contact), ("Content-Type", "application/sdp")]
                    self.sock.send(
                        make_response(msg, 200, to_tag=tag, headers=headers, body=sdp).to_bytes()
                    )
                elif msg.method == "ACK" and self.mode == "hangup" and "BYE" not in self.sent:
                    time.sleep(0.2)
                    self.sock.send(self._bye(invite, tag))
                elif msg.method == "CANCEL":
                    self.sock.send(make_response(msg, 200, to_tag=tag).to_bytes())
                    self.sock.send(make_response(invite, 487, to_tag=tag).to_bytes())
                elif msg.method in ("BYE", "OPTIONS"):
                    self.sock.send(make_response(msg, 200).to_bytes())
        except BaseException as exc:  # reported to the test
            self.error = exc

    def _bye(self, invite, tag: str) -> bytes:
        """The callee's BYE: to the caller's Contact, along the recorded route."""
        from sipwarden.sip import make_request

        self.sent.append("BYE")
        routes = [("Route", v) for v in invite.get_all("record-route")]
        caller = invite.contacts[0].uri.raw
        return make_request(
            "BYE",
            caller,
            [
                (
                    "Via",
                    f"SIP/2.0/{self.transport.upper()} 127.0.0.1:{self.port};branch=z9hG4bK-bye{self.port};rport",
                ),
                ("Max-Forwards", "70"),
                ("From", f"{invite.get('to')};tag={tag}"),
                ("To", invite.get("from") or ""),
                ("Call-ID", invite.call_id or ""),
                ("CSeq", "1 BYE"),
                *routes,
            ],
        ).to_bytes()


@contextmanager
def registrar_thread(host: str = "127.0.0.1") -> Iterator[tuple[int, set[int]]]:
    """The built-in registrar on a UDP port of ``host``, served by a thread
    (for edges in another process): yields its port and the set of source
    ports it heard from (one per edge worker)."""
    from sipwarden.values import Peer

    backend = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    backend.bind((host, 0))
    backend.settimeout(0.2)
    registrar, seen, stop = Registrar(REALM, USERS), set(), threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = backend.recvfrom(65535)
            except TimeoutError:
                continue
            seen.add(addr[1])
            for answer in registrar.handle(data, Peer("udp", addr[0], addr[1])):
                backend.sendto(answer.data, (answer.flow.host, answer.flow.port))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield backend.getsockname()[1], seen
    finally:
        stop.set()
        thread.join(2)
        backend.close()


def drops(run: Running) -> dict[str, int]:
    """Everything the edge dropped, the proxy's drops and the policy's
    (``drop:``, ``ban:``, ``deceive:``, ``reject:`` verdicts) together."""
    out = {k: v for k, v in run.edge.counters.items() if k.startswith("drop:")}
    out.update(
        (f"policy-{k}", v)
        for k, v in run.edge.policy.counters.items()
        if not k.startswith(("forward:", "allow:"))
    )
    return out
