"""Host mode: a verdict for each of the PBX's SIP packets, from NFQUEUE.

sipwarden runs on the PBX's machine, the PBX unchanged. The kernel sends
its inbound SIP (``[host] ports``, UDP and TCP; ``tls_ports``) to queue
``queue`` after the bans', feeds' and lane's drops (``enforce/queue.py``),
and what the PBX sends from those ports to ``queue + 1``. Inbound, each
message gets the edge's pipeline (``Policy.judge_bytes``); outbound, the
PBX's final answers feed the failure tracker, the known-good record and the
uniform answers (``Policy.answer``: the client is the packet's destination;
whether its request carried credentials is remembered per transaction, by
Call-ID and the top Via's branch), and every answer is counted in its
client's flow (``answers``), as the edge counts what it sends back.

Verdicts: forward and allow accept the packet; drop, ban, deceive and reject
drop it (host mode sends nothing of its own: no reject, no deception); in
monitor mode every packet is accepted, its verdict counted and recorded. A
keep-alive (CRLFs) is accepted. The PBX's 404 to a REGISTER is rewritten
to the uniform challenge over UDP (over TCP it is read only: a new length
would break the stream's sequence numbers).

TCP: segments go through the replay's reassembly (``packet.TcpReassembler``);
a segment that completes messages gets their verdicts (any drop: the
connection is reset), one that completes none (a partial message) is
judged by its source; a segment without data is accepted (the kernel's
handshake: host mode cannot hide an open TCP port). A keep-alive ping
(CRLFCRLF, RFC 5626) is let through only on a connection that has sent a
message the policy passed, as the edge pongs only those: elsewhere it is
a scanner's probe (nmap's GenericLines), and the PBX's pong would show a
SIP stack, so the connection is reset. TLS ports: judged by
source only (``Policy.screen``). A dropped TCP segment is handed back to
the kernel marked (``RESET_MARK``, verdict ``repeat``), which refuses it
with a TCP reset, so a hostile connection ends rather than stalls.

Bounds: ``MAX_TRANSACTIONS`` requests with credentials remembered (the
oldest forgotten first); ``MAX_VOUCHED`` TCP connections whose pings pass
(the least recently vouched forgotten first); the reassemblers' own bounds; at most
``BATCH`` packets per readable event, their verdicts sent in one write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Final

from ..config import HostConfig
from ..enforce.queue import RESET_MARK, Kernel, QueueRules, QueueSettings
from ..observe import VERDICT, Event, EventQueue, FlowKey, FlowTable
from ..packet import PacketCounts, TcpReassembler, TcpSegment
from ..policy import Policy
from ..sip import Peek, SipError, peek
from ..values import Peer, Verdict
from . import nfqueue
from .packets import TCP, TH_FIN, TH_RST, TH_SYN, Decoded, decode, with_udp_payload

log = logging.getLogger("sipwarden.host")

MAX_TRANSACTIONS: Final = 65_536  # requests with credentials awaiting their answer
MAX_VOUCHED: Final = 65_536  # TCP connections that sent a passed message: their pings pass
BATCH: Final = 256  # packets read per readable event
UNEVENTFUL: Final = frozenset({"forward", "allow"})  # verdicts that make no event
# (netfilter verdict, mark, new payload)
Action = tuple[int, int | None, bytes | None]
ACCEPT: Final[Action] = (nfqueue.NF_ACCEPT, None, None)
DROP: Final[Action] = (nfqueue.NF_DROP, None, None)
RESET: Final[Action] = (nfqueue.NF_REPEAT, RESET_MARK, None)  # the rules refuse it with a reset


def settings_of(config: HostConfig, table: str) -> QueueSettings:
    """The kernel rules ``[host]`` asks for, in sipwarden's table ``table``."""
    ports = tuple(sorted(set(config.ports)))
    return QueueSettings(
        table=table,
        queue=config.queue,
        udp_ports=ports,
        tcp_ports=tuple(sorted(set(config.ports) | set(config.tls_ports))),
        answer_tcp_ports=ports,
        fail_open=config.fail == "open",
    )


class HostMode:
    """The ``Mode`` of host mode (see the module doc). ``inbound`` and
    ``outbound`` are the whole judgement of one packet, without a kernel
    (the tests and ``bench/hostmode.py`` call them directly)."""

    name = "host"

    def __init__(
        self,
        config: HostConfig,
        *,
        table: str,
        policy: Policy,
        events: EventQueue | None = None,
        flows: FlowTable | None = None,
        clock: Callable[[], float] = time.time,
        rules: QueueRules | None = None,
    ) -> None:
        self.config = config
        self.policy = policy
        self.events = events
        self.flows = flows
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self.pbx_answered_at: float | None = None  # when the PBX last answered (wall clock)
        self.rules = rules or QueueRules(settings_of(config, table), config.kernel)
        self.kernel: Kernel | None = None  # the way the rules went in, once started
        self._tls_ports = frozenset(config.tls_ports)
        self._credentials: dict[tuple[str, str], None] = {}  # (Call-ID, branch) with credentials
        # (source, source port, PBX, PBX port) of TCP connections that sent a passed message
        self._vouched: dict[tuple[str, int, str, int], None] = {}
        self._counts = PacketCounts()
        self._inbound_tcp = TcpReassembler(self._counts)
        self._outbound_tcp = TcpReassembler(PacketCounts())
        self._queues: list[nfqueue.Queue] = []

    # ------------------------------------------------------------ the Mode

    async def start(self) -> None:
        cfg = self.config
        fail_open = cfg.fail == "open"
        try:  # bound first: with fail closed, the rules then drop nothing we would pass
            inbound = nfqueue.Queue(cfg.queue, length=cfg.queue_length, fail_open=fail_open)
            self._queues.append(inbound)
            outbound = nfqueue.Queue(cfg.queue + 1, length=cfg.queue_length, fail_open=fail_open)
            self._queues.append(outbound)
        except OSError as exc:
            await self.stop()
            raise nfqueue.QueueError(
                exc.errno or 0,
                f"host.queue = {cfg.queue}: cannot bind NFQUEUE {cfg.queue} and {cfg.queue + 1}"
                f" ({exc.strerror or exc}): run as root (CAP_NET_ADMIN), and stop any other"
                " program reading those queues, or choose another host.queue",
            ) from None
        self.kernel = await self.rules.install()
        loop = asyncio.get_running_loop()
        loop.add_reader(inbound.fileno(), self._drain, inbound, self._inbound_action)
        loop.add_reader(outbound.fileno(), self._drain, outbound, self._outbound_action)
        log.info(
            "host mode: the PBX's packets reach sipwarden by %s",
            "nft's queue statement"
            if self.kernel == "nftables"
            else "the iptables NFQUEUE target (this kernel has no CONFIG_NFT_QUEUE)"
            if cfg.kernel == "auto"
            else "the iptables NFQUEUE target",
        )

    async def stop(self) -> None:
        """Unbind the queues; the rules stay (fail open: the PBX's traffic
        passes; closed: it is dropped until sipwarden is back)."""
        loop = asyncio.get_running_loop()
        for queue in self._queues:
            loop.remove_reader(queue.fileno())
            queue.close()
        self._queues.clear()

    def describe(self) -> str:
        cfg = self.config
        ports = ",".join(str(p) for p in cfg.ports)
        tls = f", tls {','.join(str(p) for p in cfg.tls_ports)} by source" if cfg.tls_ports else ""
        way = f" by {self.kernel}" if self.kernel else ""
        return (
            f"host mode on udp/tcp {ports}{tls}: NFQUEUE {cfg.queue}-{cfg.queue + 1}{way},"
            f" fail {cfg.fail}"
        )

    # ------------------------------------------------------------ the queues

    def _drain(self, queue: nfqueue.Queue, action: Callable[[bytes, float], Action]) -> None:
        """One readable event: at most ``BATCH`` packets, their verdicts in one write."""
        try:
            packets = queue.read(BATCH)
        except OSError as exc:
            self.counters["queue-errors"] += 1
            log.warning("NFQUEUE %d: %s", queue.number, exc)
            return
        now = self.clock()
        for packet in packets:
            try:
                verdict, mark, payload = action(packet.data, now)
            except Exception:  # a packet must never stay queued: it would stall the PBX
                log.exception("host mode: a packet could not be judged; accepted")
                self.counters["errors"] += 1
                verdict, mark, payload = ACCEPT
            queue.verdict(packet.id, verdict, mark=mark, payload=payload)
        try:
            queue.flush()
        except OSError as exc:
            self.counters["queue-errors"] += 1
            log.warning("NFQUEUE %d: verdicts not sent: %s", queue.number, exc)

    def _inbound_action(self, packet: bytes, now: float) -> Action:
        return self.inbound(packet, now)

    def _outbound_action(self, packet: bytes, now: float) -> Action:
        rewritten = self.outbound(packet, now)
        return ACCEPT if rewritten is None else (nfqueue.NF_ACCEPT, None, rewritten)

    # ------------------------------------------------------------ inbound

    def inbound(self, packet: bytes, now: float) -> Action:
        """The verdict on one inbound packet (see the module doc)."""
        counters = self.counters
        counters["received"] += 1
        d = decode(packet)
        if d is None:
            counters["not-read"] += 1
            return ACCEPT
        if d.proto == TCP:
            return self._tcp(d, now)
        source = Peer("udp", d.src, d.sport)
        verdict = self._judge(d.payload, source, d, now)
        if verdict.passes or verdict.reason == "keepalive":
            return ACCEPT
        return self._refuse(DROP, "dropped")

    def _tcp(self, d: Decoded, now: float) -> Action:
        if d.dport in self._tls_ports:
            if not d.payload:
                return ACCEPT
            return self._by_source(d, now)
        segment = _segment(d, now)
        key = (d.src, d.sport, d.dst, d.dport)
        vouched = self._vouched
        if segment.syn:
            vouched.pop(key, None)  # a new connection on these ports
        known = key in vouched
        pings = self._counts.keepalives
        arrivals = self._inbound_tcp.add(segment)
        pinged = self._counts.keepalives > pings
        if segment.fin or segment.rst:
            vouched.pop(key, None)  # the connection ends (this segment is still judged)
        hostile = False
        for arrival in arrivals:
            verdict = self._judge(arrival.data, arrival.source, d, now)
            hostile = hostile or not verdict.passes
        if hostile:
            vouched.pop(key, None)
            return self._refuse(RESET, "reset")
        if arrivals:
            if not (segment.fin or segment.rst):
                self._vouch(key)
            return ACCEPT
        if pinged and not known:
            self.counters["pings-refused"] += 1  # the PBX's pong would answer a scanner's probe
            return self._refuse(RESET, "reset")
        return self._by_source(d, now) if d.payload else ACCEPT

    def _vouch(self, key: tuple[str, int, str, int]) -> None:
        """A TCP connection sent a passed message: its pings pass from now on."""
        vouched = self._vouched
        vouched.pop(key, None)
        vouched[key] = None
        if len(vouched) > MAX_VOUCHED:
            del vouched[next(iter(vouched))]

    def _by_source(self, d: Decoded, now: float) -> Action:
        """A segment no message is read from: what its source alone decides."""
        self.counters["judged-by-source"] += 1
        verdict = self.policy.screen(d.src, now)
        if verdict is None or verdict.passes:
            return ACCEPT
        return self._refuse(RESET, "reset")

    def _refuse(self, action: Action, counted: str) -> Action:
        """``action`` (a drop or a reset), counted; in monitor mode
        (``[policy] mode = "monitor"``) judged and counted, but accepted."""
        if self.policy.monitor:
            self.counters["monitor:accepted"] += 1
            return ACCEPT
        self.counters[counted] += 1
        return action

    def _judge(self, data: bytes, source: Peer, d: Decoded, now: float) -> Verdict:
        verdict, view = self.policy.judge_bytes(data, source, d.dport, now)
        if view is not None and verdict.passes and view.is_request and view.has_credentials:
            self._remember(view)
        if self.flows is not None or self.events is not None:
            self._observe(data, source, d, verdict, view, now)
        return verdict

    def _remember(self, view: Peek) -> None:
        try:
            key = (view.call_id or "", view.via_branch or "")
        except SipError:
            return
        known = self._credentials
        known.pop(key, None)
        known[key] = None
        if len(known) > MAX_TRANSACTIONS:
            del known[next(iter(known))]

    def _observe(
        self,
        data: bytes,
        source: Peer,
        d: Decoded,
        verdict: Verdict,
        view: Peek | None,
        now: float,
    ) -> None:
        """Count the message in its flow; a verdict that is not a pass is an event."""
        kind = verdict.kind
        passed = kind in UNEVENTFUL
        if self.flows is not None:
            method = None
            if view is not None:
                method = view.method or (str(view.status) if view.status is not None else None)
            self.flows.record(
                FlowKey(source.host, source.port, d.dst, d.dport, source.transport),
                now,
                len(data),
                method=method,
                verdict=None if passed else verdict.reason,
            )
        if self.events is not None and not passed and verdict.reason != "keepalive":
            fields = (
                ("verdict", kind),
                ("transport", source.transport),
                ("port", source.port),
                ("user_agent", view.user_agent if view is not None else None),
                ("mode", "host"),
            )
            self.events.push(Event(now, VERDICT, source.host, verdict.reason, fields))

    # ------------------------------------------------------------ outbound

    def outbound(self, packet: bytes, now: float) -> bytes | None:
        """Read one packet the PBX sends; the packet to send instead (an
        answer made uniform, UDP only), or None to accept it as it is."""
        d = decode(packet)
        if d is None or not d.payload or d.sport in self._tls_ports:
            return None
        if d.proto == TCP:
            segment = _segment(d, now)
            for arrival in self._outbound_tcp.add(segment):
                self._answer(arrival.data, d, now)  # read only (see the module doc)
            return None
        uniform = self._answer(d.payload, d, now)
        if uniform is None:
            return None
        self.counters["answers-made-uniform"] += 1
        return with_udp_payload(packet, d, uniform)

    def _answer(self, data: bytes, d: Decoded, now: float) -> bytes | None:
        """One answer of the PBX's (``d``: its packet, to the client)."""
        if not data.startswith(b"SIP/2.0 "):
            return None  # a request of the PBX's own, or not SIP
        self.pbx_answered_at = now
        client = d.dst
        if self.flows is not None and data[8:11].isdigit():
            # counted in the client's flow, as the edge counts what it sends
            # back (the analysis reads a source's 2xx there: register-no-success)
            transport = "tcp" if d.proto == TCP else "udp"
            flow = FlowKey(client, d.dport, d.src, d.sport, transport)
            self.flows.answer(flow, now, int(data[8:11]))
        try:
            view = peek(data)
            status = view.status
            if status is None or not self.policy.reads_answer(status):
                return None
            key = (view.call_id or "", view.via_branch or "")
        except SipError:
            return None
        self.counters["answers-read"] += 1
        credentials = key in self._credentials
        if credentials and status >= 200:
            del self._credentials[key]
        return self.policy.answer(data, view, client, credentials, now)


def _segment(d: Decoded, now: float) -> TcpSegment:
    """A decoded TCP packet as the reassembly takes it."""
    return TcpSegment(
        now,
        d.src,
        d.sport,
        d.dst,
        d.dport,
        d.seq,
        syn=bool(d.flags & TH_SYN),
        fin=bool(d.flags & TH_FIN),
        rst=bool(d.flags & TH_RST),
        data=d.payload,
    )
