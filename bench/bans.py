"""Issue 5's benchmark: how fast a ban reaches the kernel, what a banned
source's flood costs the edge, and what the detectors hold under a spoofed
flood.

1. ``latency``: fail -> kernel. ``sipwarden run`` (``enforcer = "nftables"``)
   and the built-in registrar run in a network namespace of their own;
   attackers on many loopback addresses of that namespace (127.0.0.0/8 all
   routes to its lo) send REGISTERs with wrong credentials until banned
   (a challenge, then 5 failures: ``failures.maxretry``). Twice, with a
   fresh daemon each time: one attacker at a time, then all at once. Shown:
   the daemon's own ``enforcement`` figures from ``stats`` (the ban's
   decision -> the kernel set, conntrack and the store written) and an
   outside check, the time from the attacker receiving its last 401 to its
   address being in ``inet sipwarden ban4``, read in a tight loop (through
   libnftables in-process, ~0.1 ms a read; the ``nft -j list set`` command,
   ~5 ms a read, for every other attacker of the first run).
2. ``flood``: the CPU the daemon spends while sipp floods REGISTER as fast
   as it can from an address banned beforehand, with ``enforcer =
   "nftables"`` (the kernel drops it at prerouting) and ``"none"`` (the edge
   reads and drops every message in Python). Daemon CPU from /proc/PID/stat;
   the rate sipp achieved from lo's packet counter in the namespace; the
   kernel's drops from the drop rules' counters over the measured period,
   and ``sipwarden firewall show --json`` over the whole flood.
3. ``memory``: in-process, the armed default policy (``build_policy(config)``)
   fed 1,000,000 REGISTERs from distinct spoofed sources (100,000 a second
   of simulated time), each followed by the backend's 401 challenge through
   ``Policy.answer`` (no credentials: the failure tracker keeps the source's
   pending user). Each address family runs in a child process of its own,
   so its resident memory is its own; what the rate limiter and failure
   tracker hold is measured by walking their objects (``--tracemalloc``
   traces allocations too, about 5x slower). Then what the ban book's
   lookup costs per message with network (CIDR) bans in force.

Parts 1 and 2 need root (network namespaces, nftables), iproute2, nftables,
conntrack and sipp; they are skipped with a message otherwise. Nothing is
sent outside the namespace; it is removed on exit, errors included.

Run: .venv/bin/python bench/bans.py [latency|flood|memory|all]
     [--sequential 40] [--burst 100] [--flood-seconds 5] [--sources 1000000]
     [--tracemalloc]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import itertools
import json
import os
import platform
import random
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sipwarden.config import Config
from sipwarden.daemon.control import ask
from sipwarden.policy import build_policy
from sipwarden.sip import peek
from sipwarden.sip.accel import SPEEDUPS
from sipwarden.values import Peer

TICK = os.sysconf("SC_CLK_TCK")
CLONE_NEWNET = 0x40000000
REALM, USER, PASSWORD = "pbx.test", "100", "secret100"
EDGE_PORT, PBX_PORT = 5060, 5080
TABLE = "sipwarden"
FLOOD_SOURCE = "127.66.0.1"
FAILURES = 5  # failures.maxretry's default: the 5th failed login is banned
CLI = (sys.executable, "-m", "sipwarden.cli")

# ---------------------------------------------------------------- helpers


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def summary(values: list[float]) -> str:
    """median / p90 / worst, in ms."""
    if not values:
        return "no values"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return (
        f"median {ms(statistics.median(ordered))} ms, p90 {ms(p90)} ms, "
        f"worst {ms(ordered[-1])} ms (n={len(ordered)})"
    )


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def proc_status(key: str) -> int:
    """A figure in kB from /proc/self/status (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def missing_tools(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def can_namespace(*tools: str) -> str | None:
    """Why the namespace parts cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and nftables)"
    absent = missing_tools("ip", "nft", *tools)
    if absent:
        return f"needs {', '.join(absent)} (apt-get install iproute2 nftables conntrack sip-tester)"
    return None


# ------------------------------------------------------------ the namespace

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def namespace() -> Iterator[str]:
    """A fresh network namespace (only lo, up) that this thread enters, so
    that every socket, thread and process made inside the block lives in
    it; left and deleted at the end."""
    name = f"swbench{os.getpid()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)  # a leftover
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    entered = False
    try:
        subprocess.run(
            ["ip", "-n", name, "link", "set", "lo", "up"],
            check=True,
            capture_output=True,
            timeout=10,
        )
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(fd)
            entered = True
        finally:
            os.close(fd)
        yield name
    finally:
        if entered:
            _setns(home)
        os.close(home)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def lo_packets() -> int:
    """Packets lo has received in this thread's namespace."""
    out = subprocess.run(
        ["ip", "-s", "-j", "link", "show", "dev", "lo"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


def udp_rcvbuf_errors() -> int:
    """UDP datagrams the kernel dropped for a full socket buffer (this namespace)."""
    lines = [line.split() for line in Path("/proc/thread-self/net/snmp").read_text().splitlines()]
    for names, values in itertools.pairwise(lines):
        if names[0] == "Udp:" and values[0] == "Udp:" and "RcvbufErrors" in names:
            return int(values[names.index("RcvbufErrors")])
    return 0


# ------------------------------------------------------------- the daemon

REGISTRAR = """
import asyncio, socket, sys
from sipwarden.demo.registrar import Registrar, RegistrarServer

async def main() -> None:
    realm, user, password, port = sys.argv[1:5]
    server = RegistrarServer(Registrar(realm, {user: password}), "127.0.0.1", int(port))
    await server.start()
    # a hundred attackers at once must not overflow the PBX's queue (the default
    # holds about 90 datagrams on lo): what is measured is the edge
    sock = server._transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@dataclass
class Setup:
    """The built-in registrar and ``sipwarden run`` in the namespace."""

    workdir: Path
    enforcer: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    daemon: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.workdir / "sipwarden.toml"

    @property
    def control(self) -> Path:
        return self.workdir / "sipwarden.sock"

    def start(self) -> None:
        w = self.workdir
        self.config.write_text(
            f'[edge]\nlisten = ["udp:127.0.0.1:{EDGE_PORT}"]\n'
            f'backend = "udp:127.0.0.1:{PBX_PORT}"\nflow_key_file = "{w / "flow.key"}"\n'
            f'[control]\nsocket = "{self.control}"\n'
            f'[storage]\npath = "{w / "bans.db"}"\n'
            f'[firewall]\nenforcer = "{self.enforcer}"\ntable = "{TABLE}"\n'
            '[api]\nlisten = ""\n'
        )
        registrar = self._spawn(
            [sys.executable, "-c", REGISTRAR, REALM, USER, PASSWORD, str(PBX_PORT)], "registrar"
        )
        self._wait_line(registrar, "registrar", "ready")
        self.daemon = self._spawn([*CLI, "run", "-c", str(self.config)], "daemon")
        self._wait_line(self.daemon, "daemon", "listening on")

    def _spawn(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        with (
            (self.workdir / f"{name}.out").open("wb") as out,
            (self.workdir / f"{name}.err").open("wb") as err,
        ):
            proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=self.workdir)
        self.procs.append(proc)
        return proc

    def _wait_line(self, proc: subprocess.Popen[bytes], name: str, text: str) -> None:
        deadline = time.monotonic() + 20
        out = self.workdir / f"{name}.out"
        while time.monotonic() < deadline:
            if text in out.read_text(errors="replace"):
                return
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        err = (self.workdir / f"{name}.err").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the {name} did not start:\n{err}")

    def stats(self) -> dict[str, Any]:
        return ask(self.control, {"cmd": "stats"})

    def settled(self, bans: int, timeout: float = 10) -> dict[str, Any]:
        """``stats`` once ``bans`` bans are enforced and written (the kernel
        may show a ban before its conntrack cleanup and store write end)."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            done = (stats.get("enforcement") or {}).get("bans", 0)
            if done >= bans or time.monotonic() > deadline:
                return stats
            time.sleep(0.05)

    def firewall(self) -> dict[str, Any]:
        """``sipwarden firewall show --json``."""
        done = subprocess.run(
            [*CLI, "firewall", "show", "--json", "-c", str(self.config)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs.clear()


@contextlib.contextmanager
def running(enforcer: str) -> Iterator[Setup]:
    with tempfile.TemporaryDirectory(prefix="swbench") as tmp:
        setup = Setup(Path(tmp), enforcer)
        try:
            setup.start()
            yield setup
        finally:
            setup.stop()


# ------------------------------------------------------------ an attacker


def register(host: str, port: int, cseq: int, auth: str = "") -> bytes:
    """A REGISTER for USER, as a phone (or svcrack) sends it."""
    lines = [
        f"REGISTER sip:{REALM} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-b{cseq}x{port};rport",
        "Max-Forwards: 70",
        f"From: <sip:{USER}@{REALM}>;tag=b{port}",
        f"To: <sip:{USER}@{REALM}>",
        f"Call-ID: bench-{host}-{port}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{USER}@{host}:{port}>",
        "Expires: 600",
        "User-Agent: Yealink SIP-T46S",
        *([f"Authorization: {auth}"] if auth else []),
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


_NONCE = re.compile(rb'nonce="([^"]*)"')
_CSEQ = re.compile(rb"\r\nCSeq:\s*(\d+)", re.IGNORECASE)


class Attacker:
    """Guesses USER's password from ``host``: a challenge, then FAILURES
    wrong answers, each sent when the previous 401 arrives."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.cseq = 0
        self._auth = ""
        self.sent_at = 0.0
        self.resends = 0
        self.failures = 0
        self.last_401: float | None = None  # monotonic: the last failure's 401 arrived

    @property
    def done(self) -> bool:
        return self.last_401 is not None

    def send(self, auth: str = "") -> None:
        self.cseq += 1
        self._auth = auth
        self._transmit()

    def _transmit(self) -> None:
        self.sock.sendto(
            register(self.host, self.port, self.cseq, self._auth), ("127.0.0.1", EDGE_PORT)
        )
        self.sent_at = time.monotonic()

    def resend_if_lost(self, now: float) -> None:
        if not self.done and now - self.sent_at > 1.0 and self.resends < 3:
            self.resends += 1
            self._transmit()

    def readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except BlockingIOError:
                return
            now = time.monotonic()
            cseq = _CSEQ.search(data)
            if not data.startswith(b"SIP/2.0 401") or cseq is None or int(cseq[1]) != self.cseq:
                continue  # not the answer to the request in flight
            if self.cseq > 1:  # an answer to credentials: a failed login
                self.failures += 1
                if self.failures == FAILURES:
                    self.last_401 = now
                    return
            nonce = _NONCE.search(data)
            wrong = (
                f'Digest username="{USER}", realm="{REALM}", '
                f'nonce="{nonce[1].decode() if nonce else ""}", uri="sip:{REALM}", '
                f'response="{random.getrandbits(128):032x}", algorithm=MD5'
            )
            self.send(wrong)

    def close(self) -> None:
        self.sock.close()


def attack(attackers: list[Attacker], timeout: float = 20.0) -> None:
    """Run ``attackers`` together until each has had its last 401."""
    with selectors.DefaultSelector() as sel:
        for a in attackers:
            sel.register(a.sock, selectors.EVENT_READ, a)
            a.send()
        deadline = time.monotonic() + timeout
        while not all(a.done for a in attackers) and time.monotonic() < deadline:
            for key, _ in sel.select(0.05):
                key.data.readable()
            now = time.monotonic()
            for a in attackers:
                a.resend_if_lost(now)


def attacker_hosts(n: int, second: int) -> list[str]:
    return [f"127.{second}.{i // 250}.{i % 250 + 1}" for i in range(n)]


# ------------------------------------------------------------- the kernel


class SetReader:
    """The addresses in ``inet sipwarden ban4`` in this thread's namespace:
    through libnftables in-process, or the ``nft -j list set`` command."""

    def __init__(self, library: bool = True) -> None:
        self._ctx: int | None = None
        self.library = False
        if library:
            try:
                lib = ctypes.CDLL("libnftables.so.1")
            except OSError:
                return
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error", "nft_ctx_free"):
                getattr(lib, name).argtypes = [ctypes.c_void_p]
            lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
            lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
            lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            ctx = lib.nft_ctx_new(0)
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            lib.nft_ctx_output_set_flags(ctx, 1 << 4)  # NFT_CTX_OUTPUT_JSON
            self._lib, self._ctx, self.library = lib, ctx, True

    @property
    def how(self) -> str:
        return "libnftables" if self.library else "nft -j list set"

    def _json(self, command: str) -> dict[str, Any]:
        if self._ctx is not None:
            if self._lib.nft_run_cmd_from_buffer(self._ctx, command.encode()) != 0:
                return {}
            text = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
        else:
            done = subprocess.run(
                ["nft", "-j", *command.split()], capture_output=True, text=True, timeout=10
            )
            if done.returncode != 0:
                return {}
            text = done.stdout
        answer: dict[str, Any] = json.loads(text)
        return answer

    def read(self) -> set[str]:
        found: set[str] = set()
        for obj in self._json(f"list set inet {TABLE} ban4").get("nftables", []):
            for item in obj.get("set", {}).get("elem", []):
                value = item["elem"]["val"] if isinstance(item, dict) else item
                if isinstance(value, str):
                    found.add(value)
        return found

    def dropped(self) -> int:
        """Packets sipwarden's drop rules have counted."""
        packets = 0
        for obj in self._json(f"list chain inet {TABLE} prerouting").get("nftables", []):
            for expr in obj.get("rule", {}).get("expr", []):
                if isinstance(expr, dict) and "counter" in expr:
                    packets += int(expr["counter"]["packets"])
        return packets

    def close(self) -> None:
        if self._ctx is not None:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None


def wait_in_set(reader: SetReader, host: str, polls: list[float], timeout: float = 5) -> float:
    """Read the set in a tight loop until ``host`` is in it; when it was
    first seen (monotonic: the end of the read that showed it)."""
    deadline = time.monotonic() + timeout
    while True:
        start = time.monotonic()
        members = reader.read()
        now = time.monotonic()
        polls.append(now - start)
        if host in members:
            return now
        if now > deadline:
            raise RuntimeError(f"{host} did not reach the kernel set within {timeout:g} s")


class Watcher(threading.Thread):
    """Reads the set in a tight loop (its own thread, so in the namespace)
    and notes when each address first appears."""

    def __init__(self, expected: set[str]) -> None:
        super().__init__(daemon=True)
        self.expected = expected
        self.first_seen: dict[str, float] = {}
        self.polls: list[float] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        reader = SetReader()
        try:
            while not self.stop.is_set() and len(self.first_seen) < len(self.expected):
                start = time.monotonic()
                members = reader.read()
                now = time.monotonic()
                self.polls.append(now - start)
                for host in members - self.first_seen.keys():
                    self.first_seen[host] = now
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            reader.close()


# --------------------------------------------------------------- part 1


def command_ms(argv: list[str], stdin: str | None = None, repeat: int = 7) -> float:
    """Median ms one run of a command takes (here: in the namespace)."""
    took = []
    for _ in range(repeat):
        start = time.monotonic()
        subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
        took.append(time.monotonic() - start)
    return statistics.median(took) * 1000


def tool_costs() -> str:
    """What the keeper's two commands for one ban cost in this namespace."""
    where = f"element inet {TABLE} ban4"
    spare = "127.98.0.1"  # never an attacker
    batch = (
        f"add {where} {{ {spare} }}\ndelete {where} {{ {spare} }}\n"
        f"add {where} {{ {spare} timeout 600s }}\n"
    )
    nft = command_ms(["nft", "-f", "-"], batch)
    subprocess.run(["nft", f"delete {where} {{ {spare} }}"], capture_output=True, timeout=30)
    conntrack = command_ms(["conntrack", "-D", "-f", "ipv4", "-s", spare])
    return (
        f"for scale, one ban's commands here: the `nft -f` batch (add, delete, add with timeout) "
        f"{nft:.1f} ms, then `conntrack -D -s` {conntrack:.1f} ms (median of 7)"
    )


def enforcement_line(stats: dict[str, Any]) -> str:
    e = stats.get("enforcement") or {}
    bans = stats.get("bans", {})
    return (
        f"daemon `stats` enforcement (decision -> kernel, conntrack and store written): "
        f"median {e.get('median-ms', '?')} ms, worst {e.get('worst-ms', '?')} ms over "
        f"{e.get('bans', 0)} bans; {bans.get('nftables:batches', 0)} nft batches, "
        f"{bans.get('nftables:elements-added', 0)} elements added"
    )


def latency(sequential: int, burst: int) -> None:
    print(f"1. fail -> kernel latency ({sequential} attackers one at a time, then {burst} at once)")
    why = can_namespace("conntrack")
    if why:
        print(f"   skipped: {why}")
        return
    with namespace():
        # one at a time: each attacker's 401, then the set read in a tight loop
        with running("nftables") as setup:
            hosts = attacker_hosts(sequential, 20)
            library, command = SetReader(library=True), SetReader(library=False)
            outside: dict[str, list[float]] = {}
            polls: dict[str, list[float]] = {}
            try:
                for i, host in enumerate(hosts):
                    # every other attacker is checked with the nft command
                    reader = command if i % 2 and library.library else library
                    a = Attacker(host)
                    try:
                        attack([a])
                        if a.last_401 is None:
                            raise RuntimeError(f"{host}: no 401 to its failure {a.failures + 1}")
                        seen = wait_in_set(reader, host, polls.setdefault(reader.how, []))
                        outside.setdefault(reader.how, []).append(seen - a.last_401)
                    finally:
                        a.close()
            finally:
                library.close()
                command.close()
            stats = setup.settled(len(hosts))
            shown = setup.firewall()
            tools = tool_costs()
            print(f"   one at a time: {len(shown['elements'])} addresses in the kernel set")
            print(f"     {enforcement_line(stats)}")
            for how, values in outside.items():
                print(
                    f"     outside, last 401 -> in ban4, read with {how} "
                    f"(one read: median {ms(statistics.median(polls[how]))} ms): {summary(values)}"
                )
            print(f"     {tools}")
        # all at once: a watcher thread reads the set while they attack
        with running("nftables") as setup:
            hosts = attacker_hosts(burst, 21)
            attackers = [Attacker(h) for h in hosts]
            watcher = Watcher(set(hosts))
            watcher.start()
            try:
                start = time.monotonic()
                attack(attackers)
                took = time.monotonic() - start
                watcher.join(10)
            finally:
                watcher.stop.set()
                watcher.join(5)
                for a in attackers:
                    a.close()
            if watcher.error is not None:
                raise watcher.error
            banned = [a for a in attackers if a.last_401 is not None]
            deltas = [
                watcher.first_seen[a.host] - a.last_401
                for a in banned
                if a.host in watcher.first_seen and a.last_401 is not None
            ]
            stats = setup.settled(len(banned))
            shown = setup.firewall()
            resent = sum(a.resends for a in attackers)
            print(
                f"   all at once: {len(banned)} of {burst} attackers got their {FAILURES} failures "
                f"in {took:.2f} s ({resent} requests resent after 1 s without an answer); "
                f"{len(shown['elements'])} addresses in the kernel set"
            )
            print(f"     {enforcement_line(stats)}")
            print(
                f"     outside, last 401 -> in ban4, read with libnftables in a thread "
                f"(one read: median {ms(statistics.median(watcher.polls))} ms): {summary(deltas)}; "
                f"the set grew in {len(set(watcher.first_seen.values()))} steps"
            )


# --------------------------------------------------------------- part 2

FLOOD_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="REGISTER flood, nothing awaited">
  <send>
    <![CDATA[
REGISTER sip:pbx.test SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
Max-Forwards: 70
From: <sip:100@pbx.test>;tag=f[call_number]
To: <sip:100@pbx.test>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:100@[local_ip]:[local_port]>
Expires: 600
User-Agent: Yealink SIP-T46S
Content-Length: 0

    ]]>
  </send>
</scenario>
"""


def flood(seconds: float, rate: int) -> None:
    print(
        f"2. a banned source's REGISTER flood (sipp asked for {rate:,}/s; {seconds:g} s measured)"
    )
    why = can_namespace("conntrack", "sipp")
    if why:
        print(f"   skipped: {why}")
        return
    header = (
        f"   {'enforcer':10}{'sipp pkt/s':>12}{'daemon CPU s':>14}{'core':>7}"
        f"{'µs/pkt':>8}{'edge read':>11}{'drop:banned':>13}{'kernel drops':>14}"
        f"{'rcvbuf errs':>13}{'sipp core':>11}{'idle core':>11}"
    )
    rows: list[str] = []
    totals: list[str] = []
    for enforcer in ("nftables", "none"):
        # a namespace each: the nftables run's kernel ban must not drop the other's flood
        with namespace(), running(enforcer) as setup:
            assert setup.daemon is not None
            pid = setup.daemon.pid
            made = ask(
                setup.control,
                {"cmd": "bans-add", "target": FLOOD_SOURCE, "duration": None, "reason": "bench"},
            )
            if not made.get("ok"):
                raise RuntimeError(f"bans-add refused: {made}")
            # idle: what the daemon spends with nothing to do (ticks, sweeps)
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(2)
            idle = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
            scenario = setup.workdir / "flood.xml"
            scenario.write_text(FLOOD_SCENARIO)
            # the counters before, while nothing floods yet: the CLI's own
            # CPU and nft calls stay outside the measured period
            dropped0 = setup.firewall()["dropped"] if enforcer == "nftables" else 0
            sipp = subprocess.Popen(
                [
                    *("sipp", f"127.0.0.1:{EDGE_PORT}", "-sf", str(scenario)),
                    *("-i", FLOOD_SOURCE, "-p", "5070", "-r", str(rate), "-rp", "1000"),
                    *("-m", "1000000000", "-nostdin", "-buff_size", "8388608"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=setup.workdir,
            )
            kernel = SetReader()
            try:
                time.sleep(1.0)  # up to speed
                before = setup.stats()
                lo0, rcv0, drop0 = lo_packets(), udp_rcvbuf_errors(), kernel.dropped()
                cpu0, sipp0, t0 = cpu_seconds(pid), cpu_seconds(sipp.pid), time.monotonic()
                time.sleep(seconds)
                cpu1, sipp1, t1 = cpu_seconds(pid), cpu_seconds(sipp.pid), time.monotonic()
                lo1, rcv1, drop1 = lo_packets(), udp_rcvbuf_errors(), kernel.dropped()
                after = setup.stats()
            finally:
                kernel.close()
                sipp.send_signal(signal.SIGTERM)
                try:
                    sipp.wait(10)
                except subprocess.TimeoutExpired:
                    sipp.kill()
                    sipp.wait(5)
            time.sleep(0.3)
            total = setup.firewall()["dropped"] - dropped0 if enforcer == "nftables" else 0
            span = t1 - t0
            packets = lo1 - lo0
            cpu = cpu1 - cpu0
            read = after["edge"].get("received", 0) - before["edge"].get("received", 0)
            banned = after["verdicts"].get("drop:banned", 0) - before["verdicts"].get(
                "drop:banned", 0
            )
            rows.append(
                f"   {enforcer:10}{packets / span:>12,.0f}{cpu:>14.2f}{cpu / span:>7.2f}"
                f"{cpu / max(packets, 1) * 1e6:>8.2f}{read:>11,}{banned:>13,}"
                f"{drop1 - drop0:>14,}{rcv1 - rcv0:>13,}"
                f"{(sipp1 - sipp0) / span:>11.2f}{idle:>11.3f}"
            )
            if enforcer == "nftables":
                totals.append(
                    f"   `sipwarden firewall show --json`: dropped {total:,} over the whole flood "
                    f"({packets / span * (seconds + 1):,.0f} expected from sipp's rate: "
                    "the measured period and the second before it)"
                )
            print(f"   {enforcer}: done", flush=True)
    print(header)
    for row in rows:
        print(row)
    for line in totals:
        print(line)
    print(
        "   (over the measured period: sipp pkt/s from lo's received packets in the namespace,"
        " all of them sipp's; kernel drops from the drop rules' counters; µs/pkt: daemon CPU"
        " / packets sipp sent; rcvbuf errs: datagrams the kernel dropped for the edge's full"
        " socket queue; idle core: the daemon before the flood)"
    )


# --------------------------------------------------------------- part 3

REG = (
    b"REGISTER sip:pbx.test SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-spoof1;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:100@pbx.test>;tag=t100\r\nTo: <sip:100@pbx.test>\r\n"
    b"Call-ID: reg-100@spoof\r\nCSeq: 1 REGISTER\r\nContact: <sip:100@192.168.1.50:5060>\r\n"
    b"Expires: 600\r\nUser-Agent: Yealink SIP-T46S\r\nContent-Length: 0\r\n\r\n"
)
CHALLENGE = (
    b"SIP/2.0 401 Unauthorized\r\n"
    b"Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-spoof1;rport=5060\r\n"
    b"From: <sip:100@pbx.test>;tag=t100\r\nTo: <sip:100@pbx.test>;tag=a7b1c2\r\n"
    b"Call-ID: reg-100@spoof\r\nCSeq: 1 REGISTER\r\n"
    b'WWW-Authenticate: Digest realm="pbx.test", nonce="6613a1f0.9b2f4c1d7e8a0b3c", '
    b'algorithm=MD5, qop="auth"\r\nServer: sipwarden-registrar\r\nContent-Length: 0\r\n\r\n'
)
CHUNK = 50_000


def spoofed(family: str, start: int, n: int, rng: random.Random) -> list[str]:
    """Distinct sources: IPv4 counting up from 10.0.0.0; IPv6 one random
    address in each of consecutive /64s of 2001:db8::/32 (a /64 each, as a
    spoofer would pick them: the limiter's /64 keys are all new too)."""
    if family == "v4":
        return [
            socket.inet_ntop(socket.AF_INET, (0x0A000000 + i).to_bytes(4))
            for i in range(start, start + n)
        ]
    return [
        socket.inet_ntop(
            socket.AF_INET6, ((0x20010DB8 << 96) | (i << 64) | rng.getrandbits(64)).to_bytes(16)
        )
        for i in range(start, start + n)
    ]


def deep_size(roots: list[object]) -> int:
    """Bytes of every object reachable from ``roots`` (each counted once;
    classes, modules and functions not followed)."""
    seen: set[int] = set()
    stack = list(roots)
    total = 0
    skip = (type, type(sys), type(deep_size), type(len))
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def memory_one(family: str, sources: int, trace: bool) -> dict[str, Any]:
    """One family's run (in its own process: see ``memory``)."""
    config = Config()
    policy = build_policy(config)
    assert policy.limiter is not None and policy.failures is not None
    rng = random.Random(5)
    now0 = time.time()
    step = 1e-5  # 100,000 new sources a second
    gc.collect()
    rss0 = proc_status("VmRSS")
    # full (generation 2) collections walk every tracked object: their pauses
    pauses: list[float] = []
    began: list[int] = [0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 2:
            if phase == "start":
                began[0] = time.perf_counter_ns()
            else:
                pauses.append((time.perf_counter_ns() - began[0]) / 1e6)

    gc.callbacks.append(timed)
    if trace:
        tracemalloc.start()
    judge = policy.judge_bytes
    answer = policy.answer
    clock = time.perf_counter_ns
    judged = answered = peeked = slowest = 0
    forwarded = 0
    for start in range(0, sources, CHUNK):
        hosts = spoofed(family, start, min(CHUNK, sources - start), rng)
        for i, host in enumerate(hosts, start):
            host = "".join(host)  # a fresh string per datagram, as the edge has
            now = now0 + i * step
            t0 = clock()
            verdict, _ = judge(REG, Peer("udp", host, 5060), 5060, now)
            t1 = clock()
            view = peek(CHALLENGE)
            t2 = clock()
            answer(CHALLENGE, view, host, False, now)
            t3 = clock()
            judged += t1 - t0
            peeked += t2 - t1
            answered += t3 - t2
            slowest = max(slowest, t3 - t2 + t1 - t0)
            forwarded += verdict.kind == "forward"
        del hosts
    traced = tracemalloc.get_traced_memory()[0] if trace else None
    if trace:
        tracemalloc.stop()
    gc.callbacks.remove(timed)
    gc.collect()
    rss1, peak = proc_status("VmRSS"), proc_status("VmHWM")  # (before deep_size's own)
    limiter, tracker = policy.limiter, policy.failures
    limiter_bytes = deep_size([limiter._current, limiter._previous, limiter._cache])
    tracker_bytes = deep_size([tracker._sources, tracker.accounts])
    return {
        "family": family,
        "sources": sources,
        "forwarded": forwarded,
        "judge_us": judged / sources / 1000,
        "peek_us": peeked / sources / 1000,
        "answer_us": answered / sources / 1000,
        "slowest_ms": slowest / 1e6,
        "gc_full": len(pauses),
        "gc_worst_ms": max(pauses, default=0.0),
        "rss_before_mb": rss0 / 1024,
        "rss_after_mb": rss1 / 1024,
        "rss_peak_mb": peak / 1024,
        "traced_mb": None if traced is None else traced / 2**20,
        "limiter_len": len(limiter),
        "limiter_current": len(limiter._current),
        "limiter_cache": len(limiter._cache),
        "limiter_cap": limiter.max_sources,
        "early_rotations": limiter.counters["early-rotations"],
        "limiter_mb": limiter_bytes / 2**20,
        "tracker_len": len(tracker),
        "tracker_cap": tracker.max_sources,
        "tracker_mb": tracker_bytes / 2**20,
        "bans": len(policy.bans.active(now0 + sources * step)) if policy.bans else 0,
    }


def ban_lookup() -> None:
    """The ban book's lookup per message, with network bans in force."""
    print(
        "   ban book lookup per message with N network bans in force "
        "(/64s, as the rate limiter bans IPv6 sources by default):"
    )
    print(f"   {'N':>7}{'banned() µs':>14}{'judge_bytes, clean REGISTER µs':>33}")
    config = Config()
    # the same source again and again would be rate-banned: no limiter
    unlimited = config.model_copy(
        update={"limits": config.limits.model_copy(update={"enabled": False})}
    )
    clean = Peer("udp", "192.0.2.10", 5060)
    for n in (0, 1, 10, 100, 1000, 10_000):
        policy = build_policy(unlimited)
        book = policy.bans
        assert book is not None and policy.limiter is None
        for i in range(n):
            book.decide(
                f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::/64",
                reason="bench",
                detector="rate.register",
                now=1000.0,
            )
        book.drain()

        def best(fn: Callable[[], object]) -> float:
            timer = timeit.Timer(fn)
            count, _ = timer.autorange()
            return min(timer.repeat(3, count)) / count * 1e6

        lookup = best(lambda: book.banned("192.0.2.10", 1001.0))  # noqa: B023
        judged = best(lambda: policy.judge_bytes(REG, clean, 5060, 1001.0))  # noqa: B023
        print(f"   {n:>7,}{lookup:>14.2f}{judged:>33.2f}", flush=True)
    # a banned source's message, in Python (enforcer "none"): peeked, then looked up
    policy = build_policy(config)
    assert policy.bans is not None
    policy.bans.decide(FLOOD_SOURCE, reason="bench", detector="operator", now=1000.0)
    flow = Peer("udp", FLOOD_SOURCE, 5070)
    timer = timeit.Timer(lambda: policy.judge_bytes(REG, flow, 5060, 1001.0))
    count, _ = timer.autorange()
    whole = min(timer.repeat(3, count)) / count * 1e6
    timer = timeit.Timer(lambda: peek(REG))
    count, _ = timer.autorange()
    alone = min(timer.repeat(3, count)) / count * 1e6
    verdict = policy.judge_bytes(REG, flow, 5060, 1001.0)[0]
    print(
        f"   a banned source's REGISTER through judge_bytes: {whole:.2f} µs "
        f"({verdict.kind}:{verdict.reason}), of which peek() {alone:.2f} µs"
    )


def memory(sources: int, trace: bool) -> None:
    print(
        f"3. detectors under {sources:,} spoofed sources, one REGISTER and its 401 each "
        f"(in-process; Python {platform.python_version()}, C speedups {'on' if SPEEDUPS else 'off'}"
        f"{', under tracemalloc: the µs are not representative' if trace else ''})"
    )
    results = []
    for family in ("v4", "v6"):
        argv = [sys.executable, __file__, "memory-one", family, "--sources", str(sources)]
        done = subprocess.run(
            argv + (["--tracemalloc"] if trace else []),
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode != 0:
            raise RuntimeError(f"memory-one {family} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    for r in results:
        name = "IPv4" if r["family"] == "v4" else "IPv6 (a /64 each)"
        print(f"   {name}: {r['forwarded']:,} of {r['sources']:,} forwarded, {r['bans']} bans")
        print(
            f"     µs per request: judge_bytes {r['judge_us']:.2f}, peek(401) {r['peek_us']:.2f}, "
            f"answer {r['answer_us']:.2f}; total "
            f"{r['judge_us'] + r['peek_us'] + r['answer_us']:.2f}; slowest request + answer "
            f"{r['slowest_ms']:.1f} ms; {r['gc_full']} full GC collections, the longest "
            f"{r['gc_worst_ms']:.1f} ms"
        )
        print(
            f"     RSS {r['rss_before_mb']:.0f} -> {r['rss_after_mb']:.0f} MiB "
            f"(+{r['rss_after_mb'] - r['rss_before_mb']:.0f}; peak {r['rss_peak_mb']:.0f})"
            + (
                f"; tracemalloc: {r['traced_mb']:.0f} MiB held"
                if r["traced_mb"] is not None
                else ""
            )
        )
        print(
            f"     rate limiter: len {r['limiter_len']:,} (current window {r['limiter_current']:,}; "
            f"cap {r['limiter_cap']:,} per window, 2x over both), key cache "
            f"{r['limiter_cache']:,}, {r['early_rotations']} early rotations, "
            f"{r['limiter_mb']:.1f} MiB"
        )
        print(
            f"     failure tracker: len {r['tracker_len']:,} (cap {r['tracker_cap']:,}), "
            f"{r['tracker_mb']:.1f} MiB ({r['tracker_mb'] * 2**20 / max(r['tracker_len'], 1):.0f} B "
            "a source)"
        )
    ban_lookup()


# ------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "part",
        nargs="?",
        default="all",
        choices=("all", "latency", "flood", "memory", "memory-one"),
    )
    ap.add_argument("family", nargs="?", default="v4", help=argparse.SUPPRESS)
    ap.add_argument("--sequential", type=int, default=40, help="attackers one at a time")
    ap.add_argument("--burst", type=int, default=100, help="attackers at once")
    ap.add_argument("--flood-seconds", type=float, default=5.0)
    ap.add_argument("--flood-rate", type=int, default=1_000_000, help="sipp's -r (per second)")
    ap.add_argument("--sources", type=int, default=1_000_000, help="spoofed sources")
    ap.add_argument(
        "--tracemalloc", action="store_true", help="also trace allocations (about 4x slower)"
    )
    args = ap.parse_args()
    # SIGTERM unwinds like Ctrl-C: the daemon, sipp and the namespace are removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.part == "memory-one":
        print(json.dumps(memory_one(args.family, args.sources, args.tracemalloc)))
        return
    started = time.monotonic()
    if args.part in ("all", "latency"):
        latency(args.sequential, args.burst)
    if args.part in ("all", "flood"):
        flood(args.flood_seconds, args.flood_rate)
    if args.part in ("all", "memory"):
        memory(args.sources, args.tracemalloc)
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
