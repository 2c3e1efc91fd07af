"""The fake answers against the real SIPVicious 0.3.8 (svwar, svcrack, svmap).

A small responder on 127.0.0.1 (a UDP socket in a thread; loopback only;
bounded in time and messages) answers as the edge will: a source is hostile
from its first request the built-in pack fingerprints; discovery probes get
silence (``is_discovery``); a hostile REGISTER gets ``register_answer`` (or,
with ``crash_scanners``, the ``ScannerStopper``'s answer when one is due),
within the answer limits and the reflection budget at ``ratio=1.0``. The
assertions read the tools' own output. Control responders (a PBX that tells
users apart, one that checks the digest) prove each test can fail.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sipwarden.deception.answers import (
    Answer,
    ScannerStopper,
    challenge,
    fingerprinted_as_sipvicious,
    is_discovery,
    register_answer,
)
from sipwarden.deception.limits import AnswerLimiter
from sipwarden.policy.build import pack_rules
from sipwarden.policy.reflection import ReflectionBudget
from sipwarden.policy.rules import Context
from sipwarden.sip import Message, SipError, check_digest, make_response, peek
from sipwarden.values import Peer

from ..conftest import free_udp_port, need

BIN = Path(sys.executable).parent  # SIPVicious comes with the test dependencies
HOST = "127.0.0.1"
PASSWORD = "s3cret-42"  # the real password of extension 110
RULES = pack_rules()


def tool(name: str) -> str:
    path = BIN / f"sipvicious_{name}"
    need(path.exists(), f"SIPVicious is not installed ({path}: pip install sipvicious)")
    return str(path)


@dataclass
class Responder:
    """Answers on ``port`` until stopped (at most ``seconds`` and ``limit``
    messages). ``answer(request, view, host, now)`` gives the bytes or None."""

    deceive: bool = True
    crash: bool = False
    control: str = ""  # a PBX, not deception: "enumeration", "digest" or "answer-all"
    pbx_challenges_first: bool = False  # the PBX challenged the first REGISTER (deceive after)
    seconds: float = 90.0
    limit: int = 20_000
    sock: socket.socket = field(init=False)
    received: Counter[str] = field(default_factory=Counter)  # method, and "To user" entries
    sent: Counter[str] = field(default_factory=Counter)  # answer kinds
    users: set[str] = field(default_factory=set)  # To users of REGISTERs seen
    silent: int = 0  # discovery probes left unanswered

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.hostile: set[str] = set()
        self.sipvicious: set[str] = set()
        self.stopper = ScannerStopper(interval=1.0)
        self.limits = AnswerLimiter(rate=50.0, burst=100, total=1000.0)
        self.budget = ReflectionBudget()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Responder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        for _ in range(self.limit):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            try:
                data, addr = self.sock.recvfrom(65_535)
            except TimeoutError:
                continue
            reply = self._answer(data, addr[0], addr[1], time.monotonic())
            if reply is not None:
                self.sock.sendto(reply, addr)

    def _answer(self, data: bytes, host: str, port: int, now: float) -> bytes | None:
        try:
            view = peek(data)
            request = view.message()
        except SipError:
            return None
        if view.method is None:
            return None
        self.received[view.method] += 1
        if view.method == "REGISTER" and view.to_user:
            self.users.add(view.to_user)
        if self.control:
            return self._pbx(request)
        if self.pbx_challenges_first and view.method == "REGISTER" and not view.has_credentials:
            self.sent["pbx-401"] += 1
            return challenge(request, realm="pbx")
        ids = [r.id for r in RULES if r.predicate(Context(view, Peer("udp", host, port), 5060))]
        if ids:
            self.hostile.add(host)
            if fingerprinted_as_sipvicious(ids):
                self.sipvicious.add(host)
        if host not in self.hostile or not self.deceive:
            return None  # the edge would forward it to the PBX
        if is_discovery(view):
            self.silent += 1
            return None
        if view.method != "REGISTER":
            return None  # INVITEs: the honeypot's
        answer: Answer | None = None
        if self.crash and host in self.sipvicious:
            answer = self.stopper.answer(request, view, host, now)
        if answer is None:
            answer = register_answer(request)
        self.budget.received(host, len(data), view, now)
        if not self.limits.take(host, now) or not self.budget.permit(
            host, answer.data, now, ratio=1.0
        ):
            self.sent["withheld"] += 1
            return None
        self.sent[answer.kind] += 1
        return answer.data

    def _pbx(self, request: Message) -> bytes | None:
        """A PBX: extension 110 exists (401, 200 to its password), others
        do not (404, or with "digest" a challenge too); or a 200 to all."""
        if self.control == "answer-all":
            self.sent["200"] += 1
            return make_response(request, 200).to_bytes()
        if request.method != "REGISTER":
            return None
        user = request.to.uri.user if request.to and request.to.uri else None
        if self.control == "enumeration":
            status = 401 if user == "110" else 404
            if status == 401:
                data = challenge(request, nonce="abc123", realm="pbx")
            else:
                data = make_response(request, 404).to_bytes()
            self.sent[str(status)] += 1
            return data
        credentials = request.authorization
        if credentials is not None and check_digest(
            credentials, password=PASSWORD, method="REGISTER"
        ):
            self.sent["200"] += 1
            return make_response(request, 200).to_bytes()
        self.sent["401"] += 1
        return challenge(request, realm="pbx")


def run(argv: list[str], timeout: float = 60.0) -> tuple[int, str]:
    """A tool's exit code and its whole output (stdout and its log on stderr)."""
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    return done.returncode, done.stdout + done.stderr


def argv(name: str, port: int, *options: str) -> list[str]:
    """A SIPVicious tool against ``port`` on loopback, from a free local port."""
    local = ["-P", str(free_udp_port()), "-x", HOST]
    return [tool(name), *options, "-p", str(port), *local, HOST]


def svwar(port: int, extensions: str = "100-130") -> list[str]:
    return argv("svwar", port, "-e", extensions, "--maximumtime", "3")


def svcrack(port: int, words: Path) -> list[str]:
    return argv("svcrack", port, "-u", "110", "-d", str(words), "--maximumtime", "3")


def svmap(port: int, method: str) -> list[str]:
    return argv("svmap", port, "-m", method)


@pytest.fixture
def words(tmp_path: Path) -> Path:
    path = tmp_path / "words.txt"
    # the real password first: a 200 to the first guess would report it
    path.write_text(f"{PASSWORD}\n1234\npassword\n110\n")
    return path


def test_svwar_scans_its_whole_range_and_finds_nothing():
    with Responder() as edge:
        code, out = run(svwar(edge.port))
    assert "found nothing" in out, out
    assert "Extension" not in out, out  # no table of extensions found
    assert {str(n) for n in range(100, 131)} <= edge.users, "it did not scan its whole range"
    assert edge.sent["register-ok"] >= 32 and edge.sent["withheld"] == 0, edge.sent
    assert code in (0, 30), out  # it stopped by itself


def test_control_svwar_finds_the_extension_a_pbx_gives_away():
    with Responder(control="enumeration") as pbx:
        _, out = run(svwar(pbx.port))
    assert re.search(r"\|\s*110\s*\|\s*reqauth\s*\|", out), out
    assert "found nothing" not in out, out


def test_svwar_stops_on_the_stopper():
    with Responder(crash=True) as edge:
        _, out = run(svwar(edge.port, "100-9999"))
    assert "could not decode to tag" in out, out
    assert "Extension" not in out, out
    assert edge.sent["non-hex-tag"] >= 2, edge.sent  # its baseline, then the one that stopped it
    assert len(edge.users) < 9000, "it scanned on"


def test_svcrack_reports_no_password_and_never_guesses(words):
    with Responder() as edge:
        _, out = run(svcrack(edge.port, words))
    assert re.search(r"\|\s*110\s*\|\s*\[no password\]\s*\|", out), out
    assert PASSWORD not in out, out
    # it stopped at its first REGISTER: no guess (credentials) ever left it
    assert edge.received["REGISTER"] == 1 and edge.sent == Counter({"register-ok": 1})


def test_svcrack_crashes_on_the_stopper(words):
    with Responder(crash=True) as edge:
        _, out = run(svcrack(edge.port, words))
    assert "TypeError" in out, out  # 0.3.8: getCredentials on svcrash's tag
    assert PASSWORD not in out, out
    assert edge.sent == Counter({"svcrash": 1}), edge.sent


def test_a_cracker_past_the_pbx_challenge_is_challenged_to_the_end(words):
    """A cracker that got its first challenge from the PBX (before it was
    judged hostile) only ever gets challenges: it runs its whole list and
    reports nothing, the real password among its guesses."""
    with Responder(pbx_challenges_first=True) as edge:
        _, out = run(svcrack(edge.port, words))
    assert PASSWORD not in out and "Password" not in out, out
    assert "found nothing" in out, out
    assert edge.sent == Counter({"pbx-401": 1, "challenge": 4}), edge.sent  # every guess, no 200


def test_control_svcrack_finds_the_password_a_pbx_accepts(words):
    with Responder(control="digest") as pbx:
        _, out = run(svcrack(pbx.port, words))
    assert re.search(rf"\|\s*110\s*\|\s*{PASSWORD}\s*\|", out), out


@pytest.mark.parametrize("method", ["OPTIONS", "REGISTER", "INVITE"])
def test_svmap_gets_silence(method):
    with Responder(crash=True) as edge:
        _, out = run(svmap(edge.port, method))
    assert "found nothing" in out, out
    assert edge.silent >= 1 and sum(edge.sent.values()) == 0, edge.sent
    # control: the same probe answered lists the host
    with Responder(control="answer-all") as pbx:
        _, out = run(svmap(pbx.port, method))
    assert "found nothing" not in out and f"{HOST}:{pbx.port}" in out, out
