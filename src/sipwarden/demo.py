"""``sipwarden demo``: the edge at work, on loopback only, in a few seconds.

It starts the built-in registrar as a leaky PBX (404 for users it does not
know) and one edge worker in front of it, with its store, control socket and
flow key in a temporary directory (nothing is left behind; no firewall is
touched). Then, each from its own loopback address (127.0.0.0/8): real
scanner probes captured from nmap, SIPVicious and sipsak (``demo_probes/``),
an enumeration run and a password-guessing run with the scanners'
fingerprints removed (only their behaviour gives them away), while a phone on
127.0.0.1 keeps registering with the account under attack. It prints what
the edge did. Every figure comes from the running edge, its verdict counters,
its ban book and store, and its REST API; nothing is assumed.

Actors take turns (one lock): what the edge counted while one actor's
message was in flight is that message's verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table

from .config import Config, config_from_dict
from .registrar import Registrar, RegistrarServer
from .sip import Auth, Message, SipError, parse

if TYPE_CHECKING:
    from .api import ApiServer
    from .app import Daemon

REALM = "demo.sipwarden"
USERS = {"100": "1qaz2wsx", "200": "zaq1xsw2"}
PHONE_USER = "100"
PHONE = "127.0.0.1"
ENUMERATOR = "127.0.0.31"
GUESSER = "127.0.0.32"
ENUMERATED = tuple(str(n) for n in range(1000, 1016))  # svwar -e1000-1015
# a short wordlist with user 100's real password 7th: it must never get there
GUESSES = ("100", "1234", "100100", "password", "admin", "12345678", "1qaz2wsx", "qwerty")
PHONE_UA = "Yealink SIP-T46S 66.86.0.15"
DISGUISE_UA = "Grandstream GXP2170 1.0.11.3"  # what the attackers claim to be
SILENCE = 0.3  # seconds an attacker or scanner waits for an answer
PHONE_WAIT = 2.0  # seconds the phone waits for each answer (it always gets one)
PHONE_EVERY = 1.0  # seconds between the phone's registrations
SETTLE = 3.0  # seconds for a ban to reach the store

_T = TypeVar("_T")


class DemoError(Exception):
    """The demo could not run (not: the edge misbehaved)."""


@dataclass(frozen=True)
class Probe:
    file: str  # in demo_probes/
    tool: str
    what: str
    transport: Literal["udp", "tcp"]
    source: str


PROBES = (
    Probe("nmap_7.93_sU_portscan_empty_udp.sip", "nmap -sU", "port scan, an empty datagram", "udp", "127.0.0.21"),
    Probe("nmap_7.93_sV_SIPOptions_OPTIONS_udp.sip", "nmap -sV", "SIPOptions service probe", "udp", "127.0.0.22"),
    Probe("nmap_7.93_sV_SIPOptions_OPTIONS_tcp.sip", "nmap -sV", "SIPOptions service probe", "tcp", "127.0.0.23"),
    Probe("nmap_7.93_nse_sip-methods_OPTIONS_udp.sip", "nmap sip-methods", "OPTIONS", "udp", "127.0.0.24"),
    Probe("svmap_0.3.8_OPTIONS_udp.sip", "svmap", "OPTIONS", "udp", "127.0.0.25"),
    Probe("svmap_0.3.8_compact_REGISTER_udp.sip", "svmap -c -m REGISTER", "REGISTER, no User-Agent", "udp", "127.0.0.26"),
    Probe("svmap_0.3.8_INVITE_udp.sip", "svmap -m INVITE", "INVITE: would ring a phone", "udp", "127.0.0.27"),
    Probe("sipsak_0.9.8.1_OPTIONS_udp.sip", "sipsak", "OPTIONS", "udp", "127.0.0.28"),
)  # fmt: skip


def probe_bytes(probe: Probe) -> bytes:
    return files("sipwarden.demo_probes").joinpath(probe.file).read_bytes()


# ------------------------------------------------------------ a phone's SIP


def _md5(text: str) -> str:
    # digest authentication (RFC 2617) is defined on MD5
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def digest(
    user: str, password: str, challenge: Auth, *, method: str = "REGISTER", uri: str = ""
) -> str:
    """The Authorization value answering ``challenge``, as a phone computes it."""
    uri = uri or f"sip:{REALM}"
    realm, nonce = challenge.realm or "", challenge.nonce or ""
    ha1 = _md5(f"{user}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    value = (
        f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", algorithm=MD5'
    )
    if "auth" in [q.strip() for q in (challenge.qop or "").split(",")]:
        cnonce, nc = secrets.token_hex(8), "00000001"
        response = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        return f'{value}, response="{response}", qop=auth, nc={nc}, cnonce="{cnonce}"'
    return f'{value}, response="{_md5(f"{ha1}:{nonce}:{ha2}")}"'


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


async def _final(actor: UdpActor, cseq: int, timeout: float) -> Message | None:
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


# ---------------------------------------------------------------- scenario


@dataclass
class Results:
    started: float = field(default_factory=time.monotonic)
    scanners: list[dict[str, Any]] = field(default_factory=list)
    enumeration: list[dict[str, Any]] = field(default_factory=list)
    guessing: list[dict[str, Any]] = field(default_factory=list)
    phone: list[dict[str, Any]] = field(default_factory=list)


def _verdict(diff: Counter[str]) -> str:
    """The verdict(s) counted while one message was in flight, e.g. "drop:banned"."""
    names = [k.rstrip(":") for k, v in sorted(diff.items()) for _ in range(v)]
    return ", ".join(names) or "none"


class Scenario:
    """The actors, and what each saw and the edge counted (``results``)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.lock = asyncio.Lock()
        self.results = Results()
        ports = {ep.transport: ep.port for ep in reversed(daemon.edge.bound)}
        self.udp_port, self.tcp_port = ports["udp"], ports["tcp"]
        self.phone: UdpActor | None = None
        self._phone_cseq = 1
        self._phone_call = f"{secrets.token_hex(8)}@{PHONE}"
        self._phone_tag = secrets.token_hex(5)

    # what the edge counted while ``act`` ran (the actors take turns)
    async def judged(
        self, act: Callable[[], Awaitable[_T]]
    ) -> tuple[_T, Counter[str], Counter[str]]:
        edge = self.daemon.edge
        async with self.lock:
            verdicts, counters = edge.policy.counters, Counter(edge.counters)
            result = await act()
            return result, edge.policy.counters - verdicts, Counter(edge.counters) - counters

    async def exchange(self, actor: UdpActor, data: bytes, cseq: int) -> Message | None:
        """Send a request; its final answer, or None. Once the edge has passed
        it to the PBX (which always answers) the answer is awaited longer: on
        a loaded machine a slow answer must not pass for a drop."""
        edge = self.daemon.edge
        before = edge.counters["to-backend"]
        actor.flush()
        actor.send(data, self.udp_port)
        answer = await _final(actor, cseq, SILENCE)
        if answer is None and edge.counters["to-backend"] > before:
            answer = await _final(actor, cseq, PHONE_WAIT)
        return answer

    def banned(self, host: str) -> dict[str, Any] | None:
        """The ban in force on ``host`` in the edge's own ban book."""
        book = self.daemon.edge.policy.bans
        ban = None if book is None else book.banned(host, time.time())
        if ban is None:
            return None
        return {"detector": ban.detector, "reason": ban.reason, "expires_at": ban.expires_at}

    # --------------------------------------------------------------- phone

    async def register_phone(self) -> bool:
        assert self.phone is not None
        phone = self.phone

        async def register() -> str:
            phone.flush()
            cseq, self._phone_cseq = self._phone_cseq, self._phone_cseq + 2

            def request(cseq: int, auth: str = "") -> bytes:
                return register_request(
                    PHONE_USER,
                    host=PHONE,
                    port=phone.port,
                    call_id=self._phone_call,
                    cseq=cseq,
                    tag=self._phone_tag,
                    auth=auth,
                )

            phone.send(request(cseq), self.udp_port)
            challenge = await _final(phone, cseq, PHONE_WAIT)
            if challenge is None:
                return "no answer to the first REGISTER"
            if challenge.status != 401 or not challenge.www_authenticate:
                return f"{challenge.status} to the first REGISTER (expected a 401 challenge)"
            auth = digest(PHONE_USER, USERS[PHONE_USER], challenge.www_authenticate[0])
            phone.send(request(cseq + 1, auth), self.udp_port)
            ok = await _final(phone, cseq + 1, PHONE_WAIT)
            if ok is None:
                return "no answer to the authenticated REGISTER"
            return "" if ok.status == 200 else f"{ok.status} to the authenticated REGISTER"

        at = time.monotonic() - self.results.started
        problem, _, _ = await self.judged(register)
        self.results.phone.append(
            {"at": round(at, 2), "registered": not problem, "problem": problem}
        )
        return not problem

    async def keep_registering(self, done: asyncio.Event) -> None:
        """Every PHONE_EVERY seconds until ``done``, then once more."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), PHONE_EVERY)
            await self.register_phone()
            if done.is_set():
                return

    # ------------------------------------------------------------ scanners

    async def scanners(self) -> list[UdpActor]:
        """Each probe from its own address; the sockets stay open to the end,
        so an answer that comes late is counted too."""
        sockets = []
        for probe in PROBES:
            data = probe_bytes(probe)
            record: dict[str, Any] = {
                "tool": probe.tool,
                "probe": probe.what,
                "file": probe.file,
                "transport": probe.transport,
                "source": probe.source,
            }
            if probe.transport == "udp":
                actor = UdpActor(probe.source)
                sockets.append(actor)

                async def send(actor: UdpActor = actor, data: bytes = data) -> int:
                    actor.send(data, self.udp_port)
                    await actor.answer(SILENCE)
                    return actor.received

                _, diff, _ = await self.judged(send)
                record["actor"] = actor
            else:

                async def connect(host: str = probe.source, data: bytes = data) -> int:
                    return await tcp_probe(host, self.tcp_port, data, SILENCE)

                record["answer_bytes"], diff, _ = await self.judged(connect)
            record["verdict"] = _verdict(diff)
            self.results.scanners.append(record)
        return sockets

    # --------------------------------------------------------- enumeration

    async def enumerate_users(self) -> None:
        actor = UdpActor(ENUMERATOR)
        try:
            for user in ENUMERATED:
                banned_before = self.banned(ENUMERATOR) is not None
                data = register_request(
                    user,
                    host=ENUMERATOR,
                    port=actor.port,
                    call_id=f"{secrets.token_hex(8)}@{ENUMERATOR}",
                    cseq=1,
                    tag=secrets.token_hex(5),
                    ua=DISGUISE_UA,
                )

                async def ask(data: bytes = data) -> Message | None:
                    return await self.exchange(actor, data, 1)

                answer, verdicts, counters = await self.judged(ask)
                ban = self.banned(ENUMERATOR)
                self.results.enumeration.append(
                    {
                        "user": user,
                        "answer": None if answer is None else answer.status,
                        "verdict": _verdict(verdicts),
                        "pbx_404_made_uniform": counters["answers-made-uniform"] > 0,
                        "banned_now": ban if ban is not None and not banned_before else None,
                    }
                )
        finally:
            actor.close()

    # ------------------------------------------------------------ guessing

    async def guess_passwords(self) -> None:
        actor = UdpActor(GUESSER)
        call_id, tag = f"{secrets.token_hex(8)}@{GUESSER}", secrets.token_hex(5)
        challenge: Auth | None = None
        try:
            for cseq, password in enumerate((None, *GUESSES), 1):
                banned_before = self.banned(GUESSER) is not None
                auth = (
                    ""
                    if password is None or challenge is None
                    else digest(PHONE_USER, password, challenge)
                )
                data = register_request(
                    PHONE_USER,
                    host=GUESSER,
                    port=actor.port,
                    call_id=call_id,
                    cseq=cseq,
                    tag=tag,
                    auth=auth,
                    ua=DISGUISE_UA,
                )

                async def ask(data: bytes = data, cseq: int = cseq) -> Message | None:
                    return await self.exchange(actor, data, cseq)

                answer, verdicts, _ = await self.judged(ask)
                if answer is not None and answer.www_authenticate:
                    challenge = answer.www_authenticate[0]  # the next guess answers it
                ban = self.banned(GUESSER)
                self.results.guessing.append(
                    {
                        "password": password,
                        "with_credentials": bool(auth),
                        "answer": None if answer is None else answer.status,
                        "verdict": _verdict(verdicts),
                        "real_password": password == USERS[PHONE_USER],
                        "banned_now": ban if ban is not None and not banned_before else None,
                    }
                )
                if answer is not None and answer.status == 200:
                    break  # the attacker has the account
        finally:
            actor.close()


# ----------------------------------------------------------------- running


def demo_config(tmp: Path, backend_port: int) -> Config:
    return config_from_dict(
        {
            "edge": {
                "listen": ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"],
                "backend": f"udp:127.0.0.1:{backend_port}",
                "flow_key_file": str(tmp / "flow.key"),
            },
            "storage": {"path": str(tmp / "bans.db")},
            "control": {"socket": str(tmp / "control.sock")},
            "firewall": {"enforcer": "none"},
            "api": {"listen": "127.0.0.1:0"},
        }
    )


async def _api_bans(url: str) -> list[dict[str, Any]] | str:
    """GET /api/v1/bans as a user's curl would: the list, or what went wrong."""
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(f"{url}/api/v1/bans") as response,
        ):
            if response.status != 200:
                return f"HTTP {response.status}"
            body = await response.json()
            return body if isinstance(body, list) else "not a JSON list"
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return str(exc) or type(exc).__name__


async def _bans_stored(daemon: Daemon, hosts: set[str]) -> list[dict[str, Any]]:
    """The bans in force from the keeper's store, once ``hosts`` are in it
    (or SETTLE seconds have passed: then they are missing, and that shows)."""
    deadline = time.monotonic() + SETTLE
    while True:
        rows = await daemon.keeper.list()
        if hosts <= {row["ip"] for row in rows} or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


async def _run(hold: float, render: Renderer) -> dict[str, Any]:
    from .app import flow_key, serve
    from .policy import build_policy

    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="sipwarden-demo-") as tmp:
        registrar = Registrar(REALM, USERS, reveal_unknown=True)
        pbx = RegistrarServer(registrar, "127.0.0.1", 0)
        await pbx.start()
        try:
            config = demo_config(Path(tmp), pbx.port)
            policy = build_policy(config, countries=None)
            stop = asyncio.Event()
            ready: asyncio.Future[tuple[Daemon, ApiServer | None]] = loop.create_future()

            def on_ready(daemon: Daemon, api: ApiServer | None) -> None:
                if not ready.done():
                    ready.set_result((daemon, api))

            key = flow_key(config.edge.flow_key_file)
            serving = asyncio.create_task(
                serve(config, key, policy, stop=stop, on_ready=on_ready, announce=False)
            )
            started: set[asyncio.Future[Any]] = {serving, ready}
            await asyncio.wait(started, return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                serving.result()  # its error, if it failed
                raise DemoError("the edge stopped before it served")
            daemon, api = ready.result()
            try:
                summary = await _drive(daemon, api, pbx.port, stop, render)
                render.finish(summary, hold)
                if hold > 0 and not stop.is_set():
                    render.holding(hold, api)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), hold)
                return summary
            finally:
                stop.set()
                await serving
        finally:
            pbx.close()


async def _drive(
    daemon: Daemon, api: ApiServer | None, pbx_port: int, stop: asyncio.Event, render: Renderer
) -> dict[str, Any]:
    """Run the scenario; a SIGINT or SIGTERM (which set ``stop``) ends it early."""
    scenario = Scenario(daemon)
    render.intro(daemon, api, pbx_port)
    play = asyncio.create_task(_play(scenario, render))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({play, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not play.done():
        play.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await play
        raise DemoError("interrupted")
    stopped.cancel()
    play.result()
    rows = await _bans_stored(daemon, {ENUMERATOR, GUESSER})
    from_api = await _api_bans(api.url) if api is not None else "the API did not start"
    return summarise(scenario, daemon, api, pbx_port, rows, from_api)


async def _play(scenario: Scenario, render: Renderer) -> None:
    scenario.phone = UdpActor(PHONE)
    scanner_sockets: list[UdpActor] = []
    try:
        await scenario.register_phone()
        render.phone_first(scenario.results.phone[0])
        done = asyncio.Event()
        phone = asyncio.create_task(scenario.keep_registering(done))
        try:
            render.section_scanners()
            scanner_sockets = await scenario.scanners()
            await asyncio.sleep(SILENCE)  # a late answer to the last probe would show
            for record in scenario.results.scanners:
                actor = record.pop("actor", None)
                if actor is not None:
                    record["answers"] = actor.received
                else:
                    record["answers"] = 1 if record.pop("answer_bytes") else 0
            render.scanners(scenario.results.scanners)
            render.section_enumeration()
            await scenario.enumerate_users()
            render.enumeration(scenario.results.enumeration)
            render.section_guessing()
            await scenario.guess_passwords()
            render.guessing(scenario.results.guessing)
        finally:
            done.set()
            await phone
    finally:
        scenario.phone.close()
        for actor in scanner_sockets:
            actor.close()


def summarise(
    scenario: Scenario,
    daemon: Daemon,
    api: ApiServer | None,
    pbx_port: int,
    rows: list[dict[str, Any]],
    from_api: list[dict[str, Any]] | str,
) -> dict[str, Any]:
    res = scenario.results
    in_force = {row["ip"]: row for row in rows}

    def attacker(host: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        answers = Counter(str(r["answer"]) for r in records if r["answer"] is not None)
        return {
            "source": host,
            "sent": len(records),
            "answers": dict(answers),
            "unanswered": sum(1 for r in records if r["answer"] is None),
            "banned": host in in_force,
            "detector": in_force[host]["detector"] if host in in_force else None,
            "reason": in_force[host]["reason"] if host in in_force else None,
            "requests": records,
        }

    enum = attacker(ENUMERATOR, res.enumeration)
    enum["users"] = list(ENUMERATED)
    enum["pbx_404s_made_uniform"] = sum(1 for r in res.enumeration if r["pbx_404_made_uniform"])
    guess = attacker(GUESSER, res.guessing)
    guess["user"] = PHONE_USER
    guess["found_password"] = any(r["answer"] == 200 for r in res.guessing)
    guess["real_password_reached_pbx"] = any(
        r["real_password"] and r["answer"] is not None for r in res.guessing
    )
    phone = {
        "source": PHONE,
        "user": PHONE_USER,
        "attempts": len(res.phone),
        "registered": sum(1 for r in res.phone if r["registered"]),
        "times": res.phone,
    }
    edge = daemon.edge
    summary: dict[str, Any] = {
        "edge": {
            "listen": [str(ep) for ep in edge.bound],
            "backend": str(daemon.config.edge.backend),
            "rules": len(edge.policy.rules.rules),
        },
        "pbx": {"listen": f"udp:127.0.0.1:{pbx_port}", "realm": REALM, "users": sorted(USERS)},
        "api": {
            "url": None if api is None else f"{api.url}/api/v1",
            "answered": isinstance(from_api, list),
            "bans": len(from_api) if isinstance(from_api, list) else None,
            "error": None if isinstance(from_api, list) else from_api,
        },
        "scanners": res.scanners,
        "enumerator": enum,
        "guesser": guess,
        "phone": phone,
        "bans": rows,
        "verdicts": dict(edge.policy.counters.most_common()),
        "edge_counters": dict(sorted(edge.counters.items())),
        "seconds": round(time.monotonic() - res.started, 2),
    }
    summary["problems"] = problems(summary)
    summary["ok"] = not summary["problems"]
    return summary


def problems(summary: dict[str, Any]) -> list[str]:
    """What did not behave as it should, in words (empty: all is well)."""
    found = [
        f"{probe['tool']} ({probe['probe']}) got an answer"
        for probe in summary["scanners"]
        if probe["answers"]
    ]
    enum, guess, phone = summary["enumerator"], summary["guesser"], summary["phone"]
    if not enum["banned"]:
        found.append(f"the enumerator {enum['source']} was not banned")
    elif not str(enum["detector"]).startswith("enum."):
        found.append(f"the enumerator was banned by {enum['detector']}, not for enumeration")
    if "404" in enum["answers"]:
        found.append("the enumerator saw a 404: the PBX's user list leaked")
    if not guess["banned"]:
        found.append(f"the password guesser {guess['source']} was not banned")
    elif guess["detector"] != "auth.brute-force":
        found.append(
            f"the password guesser was banned by {guess['detector']}, not auth.brute-force"
        )
    if guess["found_password"]:
        found.append(f"the password guesser found user {guess['user']}'s password")
    if phone["registered"] < phone["attempts"] or not phone["attempts"]:
        failed = [t["problem"] for t in phone["times"] if not t["registered"]]
        found.append(
            f"the phone registered {phone['registered']} of {phone['attempts']} times"
            + (f" ({failed[0]})" if failed else "")
        )
    if phone["source"] in {row["ip"] for row in summary["bans"]}:
        found.append("the phone's address was banned")
    api = summary["api"]
    if not api["answered"]:
        found.append(f"the API did not answer: {api['error']}")
    return found


# ---------------------------------------------------------------- printing


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "permanent"
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def _for(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.0f} h"


def _users(users: list[str]) -> str:
    if len(users) == 1:
        return f"user {users[0]}"
    return f"users {users[0]}–{users[-1]}"


def _table(*columns: str) -> Table:
    table = Table(box=None, padding=(0, 3, 0, 0), pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, justify="right" if column == "messages" else "left")
    return table


class Renderer:
    """Prints the demo as it goes (or nothing, for --json)."""

    def __init__(self, console: Console, *, as_json: bool) -> None:
        self.console = console
        self.as_json = as_json

    def say(self, *args: Any, **kwargs: Any) -> None:
        if not self.as_json:
            self.console.print(*args, **kwargs)

    def finish(self, summary: dict[str, Any], hold: float) -> None:
        """The summary, before any --hold (a script reads the JSON at once)."""
        if self.as_json:
            self.console.file.write(json.dumps(summary, indent=2, default=str) + "\n")
            self.console.file.flush()
        else:
            self.summary(summary, hold)

    def intro(self, daemon: Daemon, api: ApiServer | None, pbx_port: int) -> None:
        edge = daemon.edge
        self.say(
            "[bold]sipwarden demo[/]: an edge in front of a small PBX, attacked on loopback"
            " (nothing leaves this machine)\n"
        )
        self.say(
            f"  [bold]PBX[/]    built-in registrar on udp:127.0.0.1:{pbx_port}, realm {REALM},"
            f" users {' and '.join(sorted(USERS))}; like a leaky PBX it answers 404 to users"
            " it does not know"
        )
        self.say(
            f"  [bold]edge[/]   {', '.join(map(str, edge.bound))} → the PBX;"
            f" {len(edge.policy.rules.rules)} rules; bans enforced in the edge (no firewall)"
        )
        self.say(f"  [bold]API[/]    {'not running' if api is None else f'{api.url}/api/v1'}")

    def phone_first(self, record: dict[str, Any]) -> None:
        status = (
            "registered (401 challenge, then 200 OK)"
            if record["registered"]
            else f"[red]did not register: {escape(record['problem'])}[/]"
        )
        self.say(
            f"  [bold]phone[/]  user {PHONE_USER} on {PHONE}: {status}; it registers again every"
            f" {PHONE_EVERY:g} s while the attacks run"
        )

    def section_scanners(self) -> None:
        self.say(
            f"\n[bold]1. Scanners[/]: {len(PROBES)} real probes, byte for byte as the tools sent"
            " them, each from its own address"
        )

    def scanners(self, records: list[dict[str, Any]]) -> None:
        table = _table("tool", "probe", "from", "answers", "the edge's verdict")
        for r in records:
            answer = "none" if not r["answers"] else f"[red]{r['answers']}[/]"
            kind, _, reason = r["verdict"].partition(":")
            verdict = f"dropped: {reason}" if kind == "drop" and reason else r["verdict"]
            table.add_row(
                escape(r["tool"]),
                escape(r["probe"]),
                f"{r['transport']} {r['source']}",
                answer,
                escape(verdict),
            )
        self.say(Padding(table, (0, 0, 0, 2), expand=False))

    def section_enumeration(self) -> None:
        self.say(
            f"\n[bold]2. Enumeration[/] from {ENUMERATOR}: REGISTER without credentials for"
            f" {_users(list(ENUMERATED))} (svwar's method, its fingerprints removed: only its"
            " behaviour gives it away)"
        )

    def _outcome(self, r: dict[str, Any]) -> str:
        if r["answer"] is None:
            kind, _, reason = r["verdict"].partition(":")
            why = f"dropped ({reason})" if kind == "drop" else r["verdict"]
            return f"no answer: {why}"
        return f"{r['answer']}"

    def _banned_line(self, host: str, ban: dict[str, Any]) -> str:
        until = (
            "for good"
            if ban["expires_at"] is None
            else f"for {_for(ban['expires_at'] - time.time() + 1)}"
        )
        return (
            f"[bold red]→ banned {host} {until}[/]: {escape(ban['detector'])},"
            f" {escape(ban['reason'])}"
        )

    def enumeration(self, records: list[dict[str, Any]]) -> None:
        groups: list[tuple[tuple[Any, ...], list[dict[str, Any]]]] = []
        for r in records:
            key = (
                r["answer"],
                r["verdict"],
                r["pbx_404_made_uniform"],
                r["banned_now"] is not None,
            )
            if groups and groups[-1][0] == key and not key[3]:
                groups[-1][1].append(r)
            else:
                groups.append((key, [r]))
        for (answer, _, uniform, _), rs in groups:
            line = f"  {_users([r['user'] for r in rs]):<18} {self._outcome(rs[0])}"
            if answer is not None and uniform:
                line += (
                    "   the PBX had answered 404 (no such user);"
                    " the edge sent the challenge a real user gets"
                )
            self.say(line)
            if rs[-1]["banned_now"] is not None:
                self.say("  " + " " * 19 + self._banned_line(ENUMERATOR, rs[-1]["banned_now"]))
        seen = {r["answer"] for r in records if r["answer"] is not None}
        self.say(
            f"  what the enumerator learnt: {len(records)} users tried,"
            f" {sum(1 for r in records if r['answer'] is not None)} answers, all alike"
            f" ({', '.join(map(str, sorted(seen))) or 'none'}): no user revealed"
            if len(seen) <= 1 and 404 not in seen
            else f"  [red]the enumerator could tell users apart: answers {sorted(seen)}[/]"
        )

    def section_guessing(self) -> None:
        self.say(
            f"\n[bold]3. Password guessing[/] from {GUESSER} against user {PHONE_USER}: a real"
            " digest over each real challenge (svcrack's method, its fingerprints removed)"
        )

    def guessing(self, records: list[dict[str, Any]]) -> None:
        n = 0
        for r in records:
            if r["password"] is None:
                label = "REGISTER, no credentials"
            else:
                n += 1
                label = f"guess {n}  {r['password']}"
            outcome = self._outcome(r)
            if r["answer"] == 401 and r["with_credentials"]:
                outcome += ": wrong password"
            elif r["answer"] == 401:
                outcome += ": the challenge"
            elif r["answer"] == 200:
                outcome = "[bold red]200 OK: the attacker has the password[/]"
            line = f"  {escape(label):<26} {outcome}"
            if r["real_password"] and r["answer"] != 200:
                line += f"   [bold]← user {PHONE_USER}'s real password: it never reached the PBX[/]"
            self.say(line)
            if r["banned_now"] is not None:
                self.say("  " + " " * 27 + self._banned_line(GUESSER, r["banned_now"]))

    def holding(self, hold: float, api: ApiServer | None) -> None:
        where = "" if api is None else f" ({api.url}/api/v1)"
        self.say(
            f"\nThe edge and its API{where} stay up for {hold:g} s: try the curl commands"
            " above (Ctrl-C ends the demo)."
        )

    def summary(self, s: dict[str, Any], hold: float) -> None:
        phone = s["phone"]
        times = ", ".join(f"{t['at']:.1f}" for t in phone["times"])
        colour = "green" if phone["registered"] == phone["attempts"] else "red"
        self.say(
            f"\n[bold]4. The phone[/], user {PHONE_USER} on {PHONE} (the account under attack):"
            f" [{colour}]registered {phone['registered']} of {phone['attempts']} times[/]"
            f" (at {times} s), before, during and after the attacks"
        )

        bans = _table("ip", "detector", "reason", "until", "offence")
        for row in s["bans"]:
            bans.add_row(
                row["ip"],
                escape(row["detector"]),
                escape(row["reason"]),
                _when(row["expires_at"]),
                str(row["offence"]),
            )
        self.say(
            "\n[bold]Bans in force[/] (the ban store, as `sipwarden bans list` and the API show it)"
        )
        self.say(Padding(bans, (0, 0, 0, 2), expand=False))

        verdicts = _table("verdict", "messages")
        for name, count in s["verdicts"].items():
            verdicts.add_row(escape(name.rstrip(":")), str(count))
        counters = s["edge_counters"]
        self.say("\n[bold]The edge's verdicts[/], counted by its policy (kind:reason)")
        self.say(Padding(verdicts, (0, 0, 0, 2), expand=False))
        self.say(
            f"  the edge received {counters.get('received', 0)} messages, passed"
            f" {counters.get('to-backend', 0)} to the PBX and made"
            f" {counters.get('answers-made-uniform', 0)} of its answers uniform (404 → 401)"
        )

        api = s["api"]
        if api["url"] is not None:
            answered = (
                f"it answered just now: {api['bans']} bans in force"
                if api["answered"]
                else f"[red]it did not answer: {escape(str(api['error']))}[/]"
            )
            self.say(f"\n[bold]The REST API[/] at {api['url']} ({answered}):")
            for path in ("bans", f"bans/{GUESSER}", "status"):
                self.say(f"  curl {api['url']}/{path}", soft_wrap=True)
            if hold <= 0:
                self.say(
                    "  it stops with the demo: `sipwarden demo --hold 300` keeps it up to try these"
                )

        if s["ok"]:
            self.say(
                f"\n[bold green]✓ as expected[/] in {s['seconds']:.1f} s: the scanners got no"
                " answer, both attackers were banned, and the phone registered every time."
            )
        else:
            self.say(f"\n[bold red]✗ sipwarden demo: {len(s['problems'])} things went wrong:[/]")
            for problem in s["problems"]:
                self.say(f"  - {escape(problem)}")


def run_demo(
    *, hold: float = 0.0, as_json: bool = False, verbose: bool = False, out: TextIO | None = None
) -> int:
    """Run the demo; 0 when the edge behaved as it should, 1 otherwise."""
    import uvloop

    out = out if out is not None else sys.stdout
    tty = out.isatty()
    # piped: long lines stay whole (soft wrap), tables get room
    console = Console(file=out, highlight=False, width=None if tty else 120, soft_wrap=not tty)
    render = Renderer(console, as_json=as_json)
    log = logging.getLogger("sipwarden")
    handler: logging.Handler = logging.NullHandler()
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        log.setLevel(logging.INFO)
    # without a handler, the edge's warnings (each ban) would go to stderr
    log.addHandler(handler)
    try:
        summary = uvloop.run(_run(hold, render))
    except DemoError as exc:
        Console(file=sys.stderr, highlight=False).print(
            f"[red]sipwarden demo: {escape(str(exc))}[/]"
        )
        return 1
    finally:
        log.removeHandler(handler)
    return 0 if summary["ok"] else 1
