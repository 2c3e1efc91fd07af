"""The edge's sockets: thin asyncio adapters around the sans-I/O proxy.

Public listeners (UDP, TCP, TLS; IPv4 and IPv6) take client traffic; one
internal UDP socket talks to the backend. UDP is read in batches
(``batchio``: ``recvmmsg``, at most ``BATCH`` datagrams a wake-up of the loop)
and the UDP sends a batch causes go out together at its end (``sendmmsg``);
timers and TCP send at once. Every inbound message is framed,
peeked, judged by the policy pipeline and, if it passes, handed to the
StatelessProxy, whose actions are carried out here. A dropped message gets
no answer at all (in monitor mode, ``[policy] mode = "monitor"``, every
message is judged and recorded as ever, then forwarded as if allowed: no
drop, reject or deception); a hostile source's message judged ``deceive`` goes to
the deceiver (``deception/``, with ``[deception]`` on) and its answers and
timers are carried out here; every answer to a UDP client passes the reflection budget
(``policy.reflection``: a source not yet verified gets back at most a small
multiple of what it sent). Nothing a peer sends can raise out of these
callbacks: malformed input is counted and dropped, a misbehaving connection
is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any, cast

from ..config import EdgeConfig, Endpoint
from ..deception.deceiver import Deceiver
from ..deception.honeypot import Send as DeceiverSend
from ..deception.honeypot import Wake
from ..observe import DECEPTION, VERDICT, Event, EventQueue, FlowKey, FlowTable
from ..observe.events import Field
from ..policy import Policy, ReflectionBudget
from ..proxy import Drop, FlowTokens, Local, ProxySettings, Send, StatelessProxy
from ..proxy.base import AUTH_FLAG, BRANCH_PREFIX, TOKEN_PARAM
from ..sip import PING, Peek, SipError, StreamFramer, make_response, parse, peek
from ..values import Peer, Verdict
from . import batchio

log = logging.getLogger("sipwarden.edge")

UDP_BUFFER = 4 * 1024 * 1024  # deep socket queues: loss starts late under bursts
SWEEP_INTERVAL = 1.0
EXEMPT_CACHE = 65_536  # sources whose exemption from the reflection budget is remembered
ANSWERED = frozenset({"reject", "deceive"})  # verdicts (besides passing) that may get an answer
UNEVENTFUL = frozenset({"forward", "allow"})  # verdicts that make no event (the flows count them)


def _ip(addr: Any) -> str:
    """A peer's address as flows name it: IPv6 compressed, without a %scope."""
    if ":" not in addr:
        return str(addr)
    addr = addr.split("%", 1)[0]
    return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, addr))


ERRORS_LOGGED = 20  # bugs logged with their traceback; after that, only counted


def _bug(edge: Edge, what: str, peer: Any) -> None:
    """Count an unexpected error; log the first few only, so that a packet
    that triggers one cannot flood the log (call from an except block)."""
    edge.counters["internal-error"] += 1
    if edge.counters["internal-error"] <= ERRORS_LOGGED:
        log.exception("error handling %s from %s", what, peer)
        if edge.counters["internal-error"] == ERRORS_LOGGED:
            log.error("further internal errors are only counted (counter internal-error)")


def local_address_towards(host: str, port: int) -> str:
    """The local IP the kernel would use to reach host:port (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        return str(s.getsockname()[0])


class Edge:
    """The running edge (a ``daemon.modes.Mode``). ``counters`` holds what
    metrics will export."""

    name = "edge"  # its counters' section in `status`

    def __init__(
        self,
        config: EdgeConfig,
        flow_key: bytes,
        *,
        policy: Policy | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
        events: EventQueue | None = None,
        flows: FlowTable | None = None,
        deceiver: Deceiver | None = None,
    ) -> None:
        self.config = config
        # what a hostile source gets instead of silence ([deception]; None: silence)
        self.deceiver = deceiver
        self.policy = policy if policy is not None else Policy()  # swapped whole on reload
        self.clock = clock  # for timeouts
        self.now = now  # wall clock, for the policy (bans are dated)
        self.tokens = FlowTokens(flow_key)
        self.counters: Counter[str] = Counter()
        self.pbx_answered_at: float | None = None  # when the PBX last answered (wall clock)
        # what observe keeps (None: not kept): an event for every verdict
        # that is not a pass, every message in its traffic flow
        self.events = events
        self.flows = flows
        self.proxy: StatelessProxy | None = None
        self.public: dict[tuple[str, bool], Local] = {}
        self.bound: list[Endpoint] = []  # the listeners as bound (ports filled in)
        self._local_of: dict[Endpoint, Local] = {}  # listener (as configured) -> what we advertise
        self._bound_of: dict[Endpoint, tuple[str, int]] = {}  # listener -> its address as bound
        # (transport, IPv6?) -> the first such listener as bound: the flow an
        # answer to a client is counted in (its Via names no listener)
        self._answers_to: dict[tuple[str, bool], tuple[str, int]] = {}
        # UDP sockets we send on directly (a plain sendto is several times cheaper
        # than the transport's): the public ones per family (IPv6?), the internal one
        self._udp: dict[bool, socket.socket] = {}
        self._internal: socket.socket | None = None
        self._readers: list[_UdpReader] = []
        # while a batch of datagrams is handled, the UDP sends it makes wait
        # here, per socket, and go out together at its end (None: not in a batch)
        self._outbox: dict[socket.socket, list[batchio.Datagram]] | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._conns: dict[int, _StreamConnection] = {}
        self._per_source: Counter[str] = Counter()
        self._next_conn = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._link: _BackendLink | None = None  # the connection to a TCP/TLS backend
        self._backend = Peer(config.backend.transport, config.backend.host, config.backend.port)
        budget = config.reflection
        self.reflection: ReflectionBudget | None = None
        if budget.enabled:
            self.reflection = ReflectionBudget(
                ratio=budget.ratio,
                total=budget.total,
                verified_for=budget.verified_for,
                max_sources=budget.max_sources,
                max_verified=budget.max_verified,
                exempt=self._exempt,
                counters=self.counters,
            )
        self._exempt_cache: dict[str, bool] = {}
        self._exempt_policy: Policy | None = None  # the policy the cache was filled from

    # ----------------------------------------------------------------- life

    def describe(self) -> str:
        return f"listening on {', '.join(map(str, self.bound))}; backend {self.config.backend}"

    async def start(self) -> None:
        """Bind everything, build the proxy, and only then start reading: a
        packet that arrives meanwhile waits in the kernel, never meets a half
        built edge (other workers may already be sending traffic our way)."""
        loop = asyncio.get_running_loop()
        cfg = self.config
        ssl_ctx = self._server_tls() if any(ep.transport == "tls" for ep in cfg.listen) else None
        udp_pending: list[_UdpReader] = []
        for hint in _ipv6_only_hints(cfg.listen):
            log.warning("%s", hint)  # a dual-stack setup of old would lose its IPv4 phones
        for ep in cfg.listen:
            if ep.transport == "udp":
                sock = _udp_socket(ep.host, ep.port, shared=cfg.workers > 1)
                udp_pending.append(_UdpReader(self, sock, ep))
                port = sock.getsockname()[1]
                self._udp.setdefault(ep.family_v6, sock)
            else:
                server = await loop.create_server(
                    functools.partial(_StreamConnection, self, ep),
                    ep.host,
                    ep.port,
                    ssl=ssl_ctx if ep.transport == "tls" else None,
                    ssl_handshake_timeout=cfg.tls_handshake_timeout
                    if ep.transport == "tls"
                    else None,
                    reuse_address=True,
                    reuse_port=cfg.workers > 1,
                    start_serving=False,
                )
                self._servers.append(server)
                port = server.sockets[0].getsockname()[1]
            self.bound.append(Endpoint(ep.transport, ep.host, port))
            self._bound_of[ep] = (ep.host, port)
            self._answers_to.setdefault((ep.transport, ep.family_v6), (ep.host, port))
            advertised = cfg.advertise or (
                ep.host if ep.host not in ("0.0.0.0", "::") else self._guess_public(ep)
            )
            local = Local(ep.transport, advertised, port)
            # our Via and Record-Route name the listener a message came in on;
            # the PBX's own requests go out through the first of their kind
            self.public.setdefault((ep.transport, ep.family_v6), local)
            self._local_of[ep] = local

        backend = cfg.backend
        inside_host = local_address_towards(backend.host, backend.port)
        tls = backend.transport == "tls"
        if backend.transport == "udp":
            sock = _udp_socket(inside_host, 0)
            udp_pending.append(_UdpReader(self, sock, None))
            self._internal = sock
            inside = Local("udp", inside_host, sock.getsockname()[1])
        else:
            # the PBX answers on our connection; its own requests (to a Path or
            # Record-Route of ours) may come on a connection it opens to this listener
            server = await loop.create_server(
                functools.partial(
                    _StreamConnection,
                    self,
                    Endpoint(backend.transport, inside_host, 0),
                    inside=True,
                ),
                inside_host,
                0,
                ssl=self._server_tls() if tls else None,
                ssl_handshake_timeout=cfg.tls_handshake_timeout if tls else None,
                start_serving=False,
            )
            self._servers.append(server)
            inside = Local(backend.transport, inside_host, server.sockets[0].getsockname()[1])
        self.proxy = StatelessProxy(
            ProxySettings(
                backend=self._backend,
                internal={backend.transport: inside},
                public=self.public,
                server_header=cfg.server_header,
                default_max_forwards=cfg.max_forwards,
                domains=frozenset(d.strip("[]").lower() for d in cfg.domains),
                listeners=tuple(self._local_of.values()),
            ),
            self.tokens,
        )
        # now read
        for reader in udp_pending:
            loop.add_reader(reader.sock.fileno(), reader.ready)
            self._readers.append(reader)
        for listening in self._servers:
            await listening.start_serving()
        if backend.transport != "udp":
            self._link = _BackendLink(self, self._client_tls() if tls else None)
            await self._link.connect()
        self._sweeper = asyncio.create_task(self._sweep())
        log.info(
            "edge listening on %s, backend %s via %s",
            ", ".join(map(str, self.bound)),
            backend,
            inside,
        )

    def _guess_public(self, ep: Endpoint) -> str:
        return local_address_towards(self.config.backend.host, self.config.backend.port)

    def _client_tls(self) -> ssl.SSLContext:
        """TLS towards the PBX: verified against edge.backend_ca_file (or the
        system's CAs); the PBX is named by IP, so the name is not checked."""
        ctx = ssl.create_default_context(cafile=self.config.backend_ca_file)
        ctx.check_hostname = False
        return ctx

    def _server_tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        assert self.config.tls_certificate is not None and self.config.tls_key is not None
        ctx.load_cert_chain(self.config.tls_certificate, self.config.tls_key)
        return ctx

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._link is not None:
            self._link.close()
        for server in self._servers:
            server.close()
        for conn in list(self._conns.values()):
            conn.close("shutdown")
        loop = asyncio.get_running_loop()
        for reader in self._readers:
            loop.remove_reader(reader.sock.fileno())
            reader.sock.close()
        self._readers.clear()
        for server in self._servers:
            await server.wait_closed()

    async def _sweep(self) -> None:
        """Close idle connections and ones that started a message but never
        finished it (slowloris), once a second rather than a timer per message."""
        cfg = self.config
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            hostile = self.policy.hostile
            if hostile is not None:  # deception ended: the bans its sources earned meanwhile
                wall = self.now()
                for decision in hostile.ended(wall):
                    self.policy.ban(decision, wall)
            now = self.clock()
            for conn in list(self._conns.values()):
                if now - conn.last_activity > cfg.idle_timeout:
                    conn.close("idle")
                elif (
                    conn.partial_since is not None
                    and now - conn.partial_since > cfg.message_timeout
                ):
                    conn.close("slow-message")

    # -------------------------------------------------------------- inbound

    def from_client(self, data: bytes, source: Peer, listener: Endpoint) -> bool:
        """Judge and, if it passes, proxy one message; whether it passed."""
        self.counters["received"] += 1  # (a Counter: the metrics layer reads it as it is)
        # (the policy counts every verdict: self.policy.counters)
        local = self._local_of[listener]
        now = self.now()
        verdict, view = self.policy.judge_bytes(data, source, local.port, now)
        if self.flows is not None:
            self._observe(data, source, listener, verdict, view, now)
        if view is None:
            if not self.policy.monitor:
                return False
            view = _peek_or_none(data)  # monitor: refused on its source, forwarded all the same
            if view is None:
                return False  # not SIP: nothing to forward
        passes, reflection = verdict.passes, self.reflection
        if (
            reflection is not None
            and source.transport == "udp"
            and (passes or verdict.kind in ANSWERED or self.policy.monitor)
        ):
            # what it sent earns answers; what it sends may prove it receives
            reflection.received(source.host, len(data), view, self.clock())
        if passes:
            assert self.proxy is not None
            self._execute(self.proxy.from_client(data, source, local, view))
            return True
        if self.policy.monitor:  # judged, counted and recorded; carried out as if allowed
            self.counters["monitor:forwarded"] += 1
            assert self.proxy is not None
            self._execute(self.proxy.from_client(data, source, local, view))
            return True
        # drop and ban are silent (the ban book acts on them); deceive is
        # the deceiver's, when deception is on (else silent too)
        if verdict.kind == "deceive" and self.deceiver is not None:
            self._deceive(data, source, view, verdict, now)
            return False
        if verdict.kind == "reject" and view.is_request and view.method != "ACK":
            self._reject(data, source, verdict.code)
        return False

    def _observe(
        self,
        data: bytes,
        source: Peer,
        listener: Endpoint,
        verdict: Verdict,
        view: Peek | None,
        now: float,
    ) -> None:
        """Count the message in its flow; a verdict that is not a pass is an event."""
        host, port = self._bound_of[listener]
        method = None
        if view is not None:
            method = view.method or (str(view.status) if view.status is not None else None)
        kind = verdict.kind
        passed = kind in UNEVENTFUL
        assert self.flows is not None
        self.flows.record(
            FlowKey(source.host, source.port, host, port, source.transport),
            now,
            len(data),
            method=method,
            verdict=None if passed else verdict.reason,
        )
        events = self.events
        if events is not None and not passed and verdict.reason != "keepalive":
            fields: tuple[Field, ...] = (
                ("verdict", kind),
                ("transport", source.transport),
                ("port", source.port),
                ("user_agent", view.user_agent if view is not None else None),
            )
            if self.policy.monitor:  # judged, not carried out
                fields += (("enforced", "no"),)
            events.push(Event(now, VERDICT, source.host, verdict.reason, fields))

    def _deceive(self, data: bytes, source: Peer, view: Peek, verdict: Verdict, now: float) -> None:
        """Hand a hostile source's message to the deceiver and carry out its actions."""
        assert self.deceiver is not None
        hostile = self.policy.hostile
        why = hostile.why(source.host) if hostile is not None else None
        self._carry(
            self.deceiver.message(data, view, source, now, (verdict.reason, why or "")), now
        )

    def _carry(self, actions: list[DeceiverSend | Wake], now: float) -> None:
        """The deceiver's actions: answers (through the reflection budget, at
        most what the source sent until it proved it receives: ratio 1.0),
        and the honeypot's timers."""
        hostile = self.policy.hostile
        for action in actions:
            if isinstance(action, Wake):
                asyncio.get_running_loop().call_later(
                    max(0.0, action.at - now), self._wake, action.token
                )
                continue
            if not self.send(action.peer, action.data, ratio=1.0):
                self.counters["deceive-withheld"] += 1  # (the budget or a send failed)
                continue
            self.counters[f"deceive:{action.what}"] += 1
            if self.events is not None:  # (sampled per source and answer, as every event)
                fields = (("bytes", len(action.data)), ("transport", action.peer.transport))
                self.events.push(Event(now, DECEPTION, action.peer.host, action.what, fields))
            if hostile is not None:  # its ban (if it earned one) waits for the deception's end
                hostile.engage(action.peer.host, len(action.data), now)

    def _wake(self, token: Hashable) -> None:
        try:
            if self.deceiver is not None:
                now = self.now()
                self._carry(self.deceiver.wake(token, now), now)
        except Exception:
            _bug(self, "a honeypot timer", token)

    def _reject(self, data: bytes, source: Peer, code: int) -> None:
        """Answer with ``code`` (a rule's reject: meant for legitimate-looking traffic)."""
        try:
            request = parse(data)
            request.validate()
        except SipError:
            return  # nothing sane to answer
        self.counters["rejected"] += 1
        self.send(source, bytes(make_response(request, code)))

    def from_backend(self, data: bytes, source: Peer) -> None:
        if source.host != self._backend.host:
            self.counters["backend-socket-stranger"] += 1
            return
        self.counters["from-backend"] += 1  # the PBX is alive (health: pbx-silent)
        self.pbx_answered_at = self.now()
        try:
            view = peek(data)
        except SipError as exc:
            self.counters[f"backend-malformed:{exc.reason}"] += 1
            return
        status = view.status
        if status is not None and self.policy.reads_answer(status):
            data, view = self._read_answer(data, view)
        assert self.proxy is not None
        # (the answer's view goes along: the reflection budget reads its To tag)
        self._execute(self.proxy.from_backend(data, source, view), view)

    def _read_answer(self, data: bytes, view: Peek) -> tuple[bytes, Peek]:
        """Let the policy read a final answer (failed logins, enumeration):
        the client it goes to and whether its request carried credentials
        are in our Via, on top. Returns the answer to relay."""
        params = view.simple_via_params()
        if params is None or not (view.via_branch or "").startswith(BRANCH_PREFIX):
            return data, view
        token, credentials = None, False
        for name, value in params:
            if name == TOKEN_PARAM:
                token = value
            elif name == AUTH_FLAG:
                credentials = True
        assert self.proxy is not None
        client = self.proxy.flow_of(token)
        if client is None:
            return data, view
        uniform = self.policy.answer(data, view, client.host, credentials, self.now())
        if uniform is None:
            return data, view
        self.counters["answers-made-uniform"] += 1
        return uniform, peek(uniform)

    # ------------------------------------------------------------- outbound

    def _execute(self, actions: list[Send | Drop], answered: Peek | None = None) -> None:
        """Carry out the proxy's actions; ``answered``: the backend's answer
        they relay, as peeked."""
        for action in actions:
            if isinstance(action, Drop):
                self.counters[f"drop:{action.reason}"] += 1
                continue
            self.send(action.flow, action.data, view=answered)

    def send(
        self, flow: Peer, data: bytes, *, ratio: float | None = None, view: Peek | None = None
    ) -> bool:
        """Send ``data`` to ``flow``; an answer to a UDP client only if the
        reflection budget permits (``ratio``: a stricter multiple for this
        one, as deception's answers need; ``view``: the answer as peeked,
        if the caller has it). Whether it went (withheld and failed sends
        are counted)."""
        if flow == self._backend:
            if self._link is not None:
                if self._link.send(data):
                    self.counters["to-backend"] += 1
                    return True
                self.counters["drop:backend-unreachable"] += 1
                return False
            assert self._internal is not None
            if self._sendto(self._internal, data, flow):
                self.counters["to-backend"] += 1
                return True
            self.counters["drop:backend-send-failed"] += 1
            return False
        if flow.transport == "udp":
            reflection = self.reflection
            if (
                reflection is not None
                # an answer ("SIP/2.0 ..."); the PBX's own requests go to the
                # bindings and dialogs its users made, and pass
                and data[:4].upper() == b"SIP/"
                and not reflection.permit(
                    flow.host,
                    data,
                    self.clock(),
                    ratio,
                    view if view is not None and view.status is not None else None,
                )
            ):
                return False  # withheld (the budget counts it)
            sock = self._udp.get(":" in flow.host)
            if sock is None:
                self.counters["drop:no-udp-listener"] += 1
                return False
            if not self._sendto(sock, data, flow):
                self.counters["drop:send-failed"] += 1
                return False
        else:
            conn = self._conns.get(flow.conn)
            if conn is None or conn.peer != (flow.host, flow.port):
                self.counters["drop:connection-gone"] += 1
                return False
            conn.write(data)
        self.counters["to-client"] += 1
        flows = self.flows
        if flows is not None and data[:8] == b"SIP/2.0 " and data[8:11].isdigit():
            to = self._answers_to.get((flow.transport, ":" in flow.host))
            if to is not None:
                key = FlowKey(flow.host, flow.port, to[0], to[1], flow.transport)
                flows.answer(key, self.now(), int(data[8:11]))
        return True

    def _sendto(self, sock: socket.socket, data: bytes, flow: Peer) -> bool:
        """Send one datagram on ``sock``. Within a batch it waits in the
        outbox for the batch's end (True; a refusal then is counted by
        ``_flush``); else it goes now: False when the kernel refuses it
        (full queue, no route)."""
        outbox = self._outbox
        if outbox is not None:
            queued = outbox.get(sock)
            if queued is None:
                queued = outbox[sock] = []
            queued.append((data, flow.host, flow.port))
            return True
        try:
            sock.sendto(data, (flow.host, flow.port))
        except OSError:
            return False
        return True

    def _flush(self) -> None:
        """Send what the batch queued, in order, one ``sendmmsg`` per socket
        (the outbox closes: sends go out at once again). A datagram the
        kernel refuses moves from the sent counter to the failed one."""
        outbox, self._outbox = self._outbox, None
        if not outbox:
            return
        counters = self.counters
        for sock, datagrams in outbox.items():
            try:
                failures = batchio.send(sock, datagrams)
            except Exception:
                _bug(self, "a batch of sends", f"{len(datagrams)} datagrams queued")
                continue
            if failures:
                if sock is self._internal:
                    sent, failed = "to-backend", "drop:backend-send-failed"
                else:
                    sent, failed = "to-client", "drop:send-failed"
                counters[sent] -= len(failures)
                counters[failed] += len(failures)

    # ---------------------------------------------------------- connections

    def admit(self, conn: _StreamConnection) -> bool:
        cfg = self.config
        host = conn.peer[0]
        # a source its address alone refuses (banned, listed by a feed, a
        # refused country) gets its connection closed now, not held open
        # and ignored until the idle timeout (with nftables its SYN never came)
        now = self.now()
        refused = self.policy.screen(host, now)
        if refused is not None and not refused.passes:
            self.counters[f"refused:{refused.reason}"] += 1
            monitor = self.policy.monitor  # monitor mode: told, and let in all the same
            if self.events is not None:  # a connection, not a message: no flow
                fields: tuple[tuple[str, str], ...] = (
                    ("verdict", refused.kind),
                    ("transport", conn.listener.transport),
                )
                if monitor:
                    fields += (("enforced", "no"),)
                self.events.push(Event(now, VERDICT, host, refused.reason, fields))
            if not monitor:
                return False
        if len(self._conns) >= cfg.max_connections:
            self.counters["refused:max-connections"] += 1
            return False
        if self._per_source[host] >= cfg.max_connections_per_source:
            self.counters["refused:max-connections-per-source"] += 1
            return False
        self._next_conn += 1
        conn.conn_id = self._next_conn
        self._conns[conn.conn_id] = conn
        self._per_source[host] += 1
        if self.reflection is not None:  # a completed handshake: it receives at its address
            self.reflection.verify(host, self.clock(), "tcp")
        return True

    def _exempt(self, host: str) -> bool:
        """Trusted peers and the allow list: never limited by the reflection
        budget. Remembered per source until the policy is swapped (a reload
        may change both lists) or the cache fills."""
        policy, cache = self.policy, self._exempt_cache
        if policy is not self._exempt_policy or len(cache) >= EXEMPT_CACHE:
            cache.clear()
            self._exempt_policy = policy
        exempt = cache.get(host)
        if exempt is None:
            bans = policy.bans
            exempt = cache[host] = host in policy.trusted or (
                bans is not None and bans.allowed(host)
            )
        return exempt

    def forget(self, conn: _StreamConnection) -> None:
        if self._conns.pop(conn.conn_id, None) is not None:
            host = conn.peer[0]
            self._per_source[host] -= 1
            if self._per_source[host] <= 0:
                del self._per_source[host]


def _ipv6_only_hints(listen: Sequence[Endpoint]) -> list[str]:
    """What to say of an IPv6 wildcard listener with no IPv4 one beside it
    (it does not take IPv4: see ``_udp_socket``)."""
    v4 = {(ep.transport, ep.port) for ep in listen if ep.host == "0.0.0.0"}
    return [
        f"{ep.transport}:[::]:{ep.port} takes IPv6 only; "
        f"add {ep.transport}:0.0.0.0:{ep.port} to serve IPv4 too"
        for ep in listen
        if ep.host == "::" and (ep.transport, ep.port) not in v4
    ]


def _udp_socket(host: str, port: int, *, shared: bool = False) -> socket.socket:
    """A bound, non-blocking UDP socket with deep queues (``shared``: the
    port is bound by every worker, SO_REUSEPORT)."""
    v6 = ":" in host
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if v6:
            # IPv6 only, as asyncio makes the TCP listeners: on a dual-stack
            # socket IPv4 sources arrive as ::ffff:a.b.c.d, which the ban
            # book, the limiter's bans and the kernel's IPv4 sets would not
            # recognise as the address they ban
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):  # the kernel may cap it; best effort
                sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _unreachable(backend: Endpoint, exc: BaseException, timeout: float) -> str:
    """One line for a TCP or TLS backend that cannot be reached: the edge
    still starts and serves (a PBX that starts after it stays hidden), and
    tries again with the next message; the counter backend-connect-failed
    counts every failure."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = (
            f"its TLS certificate is not trusted ({exc.verify_message}): set"
            " edge.backend_ca_file to the CA that signed it"
        )
    elif isinstance(exc, ssl.SSLError):  # its errno is OpenSSL's, not the system's
        why = f"the TLS handshake failed ({exc.reason or exc}): check the PBX's TLS settings"
    elif isinstance(exc, TimeoutError):
        why = f"no answer within edge.tls_handshake_timeout ({timeout:g} s): check the PBX"
    else:
        reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)
        why = f"cannot connect ({reason}): check that the PBX is up and listens there"
    return (
        f"edge.backend = {str(backend)!r}: {why}; the edge serves meanwhile"
        " and tries again with the next message"
    )


def _peek_or_none(data: bytes) -> Peek | None:
    """The message peeked, or None when it is not SIP."""
    try:
        return peek(data)
    except SipError:
        return None


class _UdpReader:
    """One UDP socket read in batches (``batchio``) each time the loop finds
    it readable: a public listener's, or the backend's (``listener`` None).
    At most ``batchio.BATCH`` datagrams a wake-up, so the TCP listeners and
    the timers still get their turn under a flood; the UDP sends they cause
    wait in the edge's outbox and go out together at the batch's end."""

    def __init__(self, edge: Edge, sock: socket.socket, listener: Endpoint | None) -> None:
        self.edge = edge
        self.sock = sock
        self.listener = listener
        self.error = "udp-error" if listener is not None else "backend-udp-error"

    def ready(self) -> None:
        edge = self.edge
        try:
            datagrams, truncated, error = batchio.receive(
                self.sock, batchio.BATCH, batchio.DATAGRAM
            )
        except Exception:  # (a sender's address of a family the edge never binds)
            _bug(edge, "a read", self.sock.fileno())
            return
        if truncated:  # (none can be: a slot holds any UDP datagram)
            edge.counters["udp-truncated"] += truncated
        if error:  # an ICMP error or the like, as uvloop's error_received had it
            edge.counters[self.error] += 1
        if not datagrams:
            return
        listener = self.listener
        edge._outbox = {}
        try:
            for data, host, port in datagrams:
                source = Peer("udp", host, port)
                try:
                    if listener is None:
                        edge.from_backend(data, source)
                    else:
                        edge.from_client(data, source, listener)
                except Exception:  # a bug must not stop the listener: count it, keep serving
                    what = "a datagram" if listener is not None else "a datagram from the backend"
                    _bug(edge, what, (host, port))
        finally:
            edge._flush()


class _StreamConnection(asyncio.Protocol):
    """One TCP or TLS client connection, framed by StreamFramer."""

    def __init__(self, edge: Edge, listener: Endpoint, *, inside: bool = False) -> None:
        self.edge = edge
        self.listener = listener
        self.inside = inside  # a connection with the PBX: its frames are the backend's
        self.framer = StreamFramer(edge.config.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.conn_id = 0
        self.peer: tuple[str, int] = ("", 0)
        self.last_activity = edge.clock()
        self.partial_since: float | None = None
        self.closed = False
        self.vouched = False  # a message from it passed the policy: keep-alive pings get pongs

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio subclasses
        peer = transport.get_extra_info("peername")
        if peer is None:  # reset before we saw it (a port scanner's SYN, RST)
            self.edge.counters["closed:gone-at-accept"] += 1
            self.closed = True
            self.transport.abort()
            return
        self.peer = (_ip(peer[0]), peer[1])
        if self.inside and self.peer[0] != self.edge.config.backend.host:
            self.edge.counters["refused:not-the-backend"] += 1
            self.closed = True
            self.transport.abort()
            return
        if not self.edge.admit(self):
            self.closed = True
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        edge = self.edge
        now = edge.clock()
        self.last_activity = now
        try:
            frames = self.framer.feed(data)
        except SipError as exc:
            edge.counters[f"stream-closed:{exc.reason}"] += 1
            self.close(exc.reason)
            return
        source = Peer(self.listener.transport, self.peer[0], self.peer[1], self.conn_id)
        for frame in frames:
            if frame == PING:
                # RFC 5626 pong, but only on a connection that has sent a
                # message the policy passed: to a scanner's bare CRLFs
                # (nmap's GenericLines probe) the port stays mute
                if self.vouched or self.inside:
                    self.write(b"\r\n")
                else:
                    edge.counters["ping-unanswered"] += 1
                continue
            try:
                if self.inside:
                    edge.from_backend(frame, source)
                elif edge.from_client(frame, source, self.listener):
                    self.vouched = True
            except Exception:
                _bug(edge, "a message", source)
        if self.framer.error is not None:
            edge.counters[f"stream-closed:{self.framer.error.reason}"] += 1
            self.close(self.framer.error.reason)
            return
        self.partial_since = (self.partial_since or now) if self.framer.buffered else None

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.edge.counters[f"closed:{reason}"] += 1
            if self.transport is not None:
                self.transport.abort()
        self.edge.forget(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.edge.forget(self)


class _BackendLink:
    """The edge's own connection to a TCP or TLS backend, re-opened on demand.

    Requests to the PBX go out on it and its answers come back on it
    (RFC 3261 §18.2.2). While it is (re)connecting, a bounded number of
    messages wait; beyond that they are dropped and counted.
    """

    MAX_WAITING = 256

    def __init__(self, edge: Edge, tls: ssl.SSLContext | None) -> None:
        self.edge = edge
        self.tls = tls
        self.conn: _StreamConnection | None = None
        self.waiting: list[bytes] = []
        self.connecting: asyncio.Task[None] | None = None
        self.closed = False
        self.failing = False  # the last attempt failed (and said so)

    async def connect(self) -> None:
        edge, backend = self.edge, self.edge.config.backend
        loop = asyncio.get_running_loop()
        listener = Endpoint(backend.transport, backend.host, backend.port)
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    functools.partial(_StreamConnection, edge, listener, inside=True),
                    backend.host,
                    backend.port,
                    ssl=self.tls,
                ),
                timeout=edge.config.tls_handshake_timeout,
            )
        except (OSError, TimeoutError) as exc:
            edge.counters["backend-connect-failed"] += 1
            if not self.failing:  # once until it connects again, not once a message
                log.warning("%s", _unreachable(backend, exc, edge.config.tls_handshake_timeout))
            self.failing = True
            self.waiting.clear()
            return
        if self.failing:
            log.info("edge.backend = %r: connected", str(backend))
        self.failing = False
        self.conn = conn
        for data in self.waiting:
            conn.write(data)
        self.waiting.clear()

    def send(self, data: bytes) -> bool:
        conn = self.conn
        if conn is not None and not conn.closed:
            conn.write(data)
            return True
        if self.closed or len(self.waiting) >= self.MAX_WAITING:
            return False
        self.waiting.append(data)
        if self.connecting is None or self.connecting.done():
            self.connecting = asyncio.get_running_loop().create_task(self.connect())
        return True

    def close(self) -> None:
        self.closed = True
        if self.connecting is not None:
            self.connecting.cancel()
        if self.conn is not None:
            self.conn.close("shutdown")
