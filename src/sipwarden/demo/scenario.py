"""The scenario: what is played against the edge, and what came of it.

``Scenario`` holds the actors' acts (the phone that keeps registering, the
scanner probes, the enumeration run, the password-guessing run) and records
in ``results`` what each actor saw and what the edge counted meanwhile.
Actors take turns (one lock): what the edge counted while one actor's
message was in flight is that message's verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..edge import Edge
from ..sip import Auth, Message
from .actors import UdpActor, digest, final_answer, register_request, tcp_probe
from .cast import (
    DISGUISE_UA,
    ENUMERATED,
    ENUMERATOR,
    GUESSER,
    GUESSES,
    PHONE,
    PHONE_EVERY,
    PHONE_USER,
    PHONE_WAIT,
    PROBES,
    SILENCE,
    USERS,
    probe_bytes,
)

if TYPE_CHECKING:
    from ..daemon.core import Daemon

_T = TypeVar("_T")


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
        ports = {ep.transport: ep.port for ep in reversed(daemon.mode(Edge).bound)}
        self.udp_port, self.tcp_port = ports["udp"], ports["tcp"]
        self.phone: UdpActor | None = None
        self._phone_cseq = 1
        self._phone_call = f"{secrets.token_hex(8)}@{PHONE}"
        self._phone_tag = secrets.token_hex(5)

    # what the edge counted while ``act`` ran (the actors take turns)
    async def judged(
        self, act: Callable[[], Awaitable[_T]]
    ) -> tuple[_T, Counter[str], Counter[str]]:
        edge = self.daemon.mode(Edge)
        async with self.lock:
            verdicts, counters = edge.policy.counters, Counter(edge.counters)
            result = await act()
            return result, edge.policy.counters - verdicts, Counter(edge.counters) - counters

    async def exchange(self, actor: UdpActor, data: bytes, cseq: int) -> Message | None:
        """Send a request; its final answer, or None. Once the edge has passed
        it to the PBX (which always answers) the answer is awaited longer: on
        a loaded machine a slow answer must not pass for a drop."""
        edge = self.daemon.mode(Edge)
        before = edge.counters["to-backend"]
        actor.flush()
        actor.send(data, self.udp_port)
        answer = await final_answer(actor, cseq, SILENCE)
        if answer is None and edge.counters["to-backend"] > before:
            answer = await final_answer(actor, cseq, PHONE_WAIT)
        return answer

    def banned(self, host: str) -> dict[str, Any] | None:
        """The ban in force on ``host`` in the edge's own ban book."""
        book = self.daemon.policy.bans
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
            challenge = await final_answer(phone, cseq, PHONE_WAIT)
            if challenge is None:
                return "no answer to the first REGISTER"
            if challenge.status != 401 or not challenge.www_authenticate:
                return f"{challenge.status} to the first REGISTER (expected a 401 challenge)"
            auth = digest(PHONE_USER, USERS[PHONE_USER], challenge.www_authenticate[0])
            phone.send(request(cseq + 1, auth), self.udp_port)
            ok = await final_answer(phone, cseq + 1, PHONE_WAIT)
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
