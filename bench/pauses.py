"""The event loop's pauses under a million spoofed sources: how long the
garbage collector and the edge's per-source state stop `sipwarden run`.

A worker is built in process as `sipwarden run` builds it (``app.serve``:
the policy from the config with the pack, flows and events on, the rate
limiter, the reflection budget, the failure tracker, the observe keeper
writing to SQLite, on uvloop). Its UDP sockets to clients and to the
backend are swapped for ones that count what they would send (no packet
leaves this process: the sources are spoofed, 198.18.0.0/15 and on), and
an in-process backend answers every forwarded REGISTER with a 401
carrying a nonce, as a PBX answers a brute force: each request carries
credentials, so each answer is a failed login for the failure tracker.

The sources are fed in batches of ``--batch`` (a receive burst) from loop
callbacks (``call_soon``), each source sending ``--per-source`` REGISTERs
(the periodic analysis is off: it would ban the spoofed /24s and the
failure tracker would stop filling),
while a 1 ms ticker measures how late the loop runs it. Printed: the time
taken; every garbage collection's duration by generation (gc.callbacks);
the longest batch callback and the longest stall the ticker saw; the
objects the collector tracks (per generation and frozen); each per-source
structure's size; the types the collector tracks most, then and at the
widest full collection; a full collection at the end, then with each
per-source structure emptied in turn (what each costs it).

Run (PYTHONPATH picks the tree measured, else the venv's install):
     .venv/bin/python bench/pauses.py [--sources 200000] [--batch 32]
     [--per-source 1] (a million sources: --sources 1000000, 8+ minutes
     here; the per-source tables are full from 100,000 on. bench/README.md)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import time
from array import array
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvloop

from sipwarden.app import serve
from sipwarden.config import load_config
from sipwarden.daemon.core import Daemon
from sipwarden.edge import Edge
from sipwarden.fetch.calendar import open_schedule
from sipwarden.policy import build_policy
from sipwarden.values import Peer

BACKEND_PORT = 5090
SPOOFED = ("198.18.0.0", "100.64.0.0", "10.128.0.0")  # /15, /10, /9: 6.3 million addresses


def sources(count: int) -> Iterator[str]:
    """``count`` distinct addresses from the spoofed ranges, in order."""
    made = 0
    for base in SPOOFED:
        a, b, c, d = (int(x) for x in base.split("."))
        start = a << 24 | b << 16 | c << 8 | d
        for n in range(2_000_000):
            if made == count:
                return
            v = start + n + 1
            yield f"{v >> 24}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}"
            made += 1


def register(host: str, port: int, seq: int) -> bytes:
    return (
        f"REGISTER sip:pbx.example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{seq:x}{port}\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:{1000 + seq % 50}@pbx.example.com>;tag=f{seq:x}\r\n"
        f"To: <sip:{1000 + seq % 50}@pbx.example.com>\r\n"
        f"Call-ID: {seq:x}-{host}\r\n"
        f"CSeq: 2 REGISTER\r\n"
        f"Contact: <sip:{1000 + seq % 50}@{host}:{port}>\r\n"
        f'Authorization: Digest username="{1000 + seq % 50}", realm="pbx",'
        f' nonce="n{seq:x}", uri="sip:pbx.example.com", response="{seq:032x}"\r\n'
        f"User-Agent: Yealink SIP-T46S 66.86.0.15\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def challenge(request: bytes, seq: int) -> bytes:
    """The PBX's 401 to a forwarded REGISTER: its Via, From, To (tagged),
    Call-ID and CSeq, a fresh nonce."""
    head = request[: request.find(b"\r\n\r\n")].split(b"\r\n")[1:]
    keep = [line for line in head if line[:4].lower() in (b"via:", b"from", b"call", b"cseq")]
    to = next(line for line in head if line[:3].lower() == b"to:")
    return b"\r\n".join(
        [
            b"SIP/2.0 401 Unauthorized",
            *keep,
            to + b";tag=as%x" % seq,
            b'WWW-Authenticate: Digest realm="pbx", nonce="%08x", algorithm=MD5' % seq,
            b"Content-Length: 0",
            b"",
            b"",
        ]
    )


class CountingSocket:
    """Stands for a UDP socket: counts what would be sent, keeps the last
    ``keep`` datagrams (the backend's share: answered by ``challenge``)."""

    def __init__(self) -> None:
        self.sent = 0
        self.bytes = 0
        self.queue: list[bytes] = []

    def sendto(self, data: bytes, addr: Any) -> int:
        self.sent += 1
        self.bytes += len(data)
        self.queue.append(data)
        return len(data)


class GcTimes:
    """Every collection's duration by generation (gc.callbacks): wall time,
    and the thread's CPU time (a shared machine's descheduling left out)."""

    def __init__(self) -> None:
        self.times: dict[int, list[float]] = defaultdict(list)
        self.cpu: dict[int, list[float]] = defaultdict(list)
        self._began = self._began_cpu = 0.0
        self.widest = 0  # the most objects a full collection walked
        self.widest_kinds: list[tuple[str, int]] = []  # ... and their types then

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            if info["generation"] == 2:  # (counted before the clock starts)
                walked = len(gc.get_objects(generation=2))
                if walked > self.widest:
                    self.widest, self.widest_kinds = walked, census(8, generation=2)
            self._began, self._began_cpu = time.perf_counter(), time.thread_time()
        else:
            self.times[info["generation"]].append(time.perf_counter() - self._began)
            self.cpu[info["generation"]].append(time.thread_time() - self._began_cpu)


def census(top: int, generation: int | None = None) -> list[tuple[str, int]]:
    """The types the collector tracks the most instances of."""
    kinds: Counter[str] = Counter()
    for obj in gc.get_objects(generation):
        kind = type(obj)
        kinds[f"{kind.__module__}.{kind.__qualname__}"] += 1
    return kinds.most_common(top)


def structures(daemon: Daemon, edge: Edge) -> dict[str, object]:
    policy = daemon.policy
    found: dict[str, object] = {
        "failure tracker": policy.failures,
        "rate limiter": policy.limiter,
        "reflection budget": edge.reflection,
        "flow table": edge.flows,
        "event queue": edge.events,
        "hostile sources": policy.hostile,
        "known-good": policy.known_good,
        "ban book": policy.bans,
        "intel screen": policy.intel,
        "toll fraud": policy.tollfraud,
    }
    return {name: s for name, s in found.items() if s is not None}


def full_collection() -> str:
    """The shortest of three full collections: wall and the thread's CPU."""
    best = best_cpu = float("inf")
    for _ in range(3):
        began, began_cpu = time.perf_counter(), time.thread_time()
        gc.collect()
        best = min(best, time.perf_counter() - began)
        best_cpu = min(best_cpu, time.thread_time() - began_cpu)
    return f"{ms(best)} (CPU {ms(best_cpu)})"


def big_containers(least: int = 1000) -> list[tuple[int, str]]:
    """The containers the collector tracks that hold ``least`` entries or
    more (each walked entry by entry by a collection of its generation)."""
    found = []
    for obj in gc.get_objects():
        if isinstance(obj, (dict, list, set, frozenset, tuple, deque)):
            try:
                n = len(obj)
            except Exception:
                continue
            if n >= least:
                kind = type(obj)
                sample = next(iter(obj.values() if isinstance(obj, dict) else obj))
                found.append(
                    (n, f"{kind.__module__}.{kind.__qualname__} of {type(sample).__qualname__}")
                )
    return sorted(found, reverse=True)[:10]


def emptiers(daemon: Daemon, edge: Edge) -> list[tuple[str, Any]]:
    """How to empty each per-source structure, to see what a full collection
    spends on it (a bench's liberty: their private tables, cleared at the end)."""
    policy, proxy = daemon.policy, edge.proxy
    out: list[tuple[str, Any]] = []
    if policy.failures is not None:
        out.append(("failure tracker", policy.failures._sources.clear))
    if edge.reflection is not None:
        out.append(("reflection budget", edge.reflection._sources.clear))
    if proxy is not None:
        out.append(
            (
                "proxy's token caches",
                lambda: (
                    proxy._token_of.clear(),
                    proxy._flow_of.clear(),
                    proxy._token_of_text.clear(),
                    proxy._text_of_token.clear(),
                ),
            )
        )
    if edge.flows is not None:
        flows = edge.flows
        out.append(("flow table", lambda: flows.__post_init__()))
    if policy.limiter is not None:
        out.append(("rate limiter", lambda: policy.limiter.reconfigured()))
    return out


def size(thing: object) -> str:
    try:
        return str(len(thing))  # type: ignore[arg-type]
    except TypeError:
        return "-"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def config_text(workdir: Path) -> str:
    return (
        '[edge]\nlisten = ["udp:127.0.0.1:0"]\n'
        f'backend = "udp:127.0.0.1:{BACKEND_PORT}"\n'
        f'flow_key_file = "{workdir / "flow.key"}"\n'
        f'[control]\nsocket = "{workdir / "sipwarden.sock"}"\n'
        '[policy]\npack = true\n[firewall]\nenforcer = "none"\n'
        f'[api]\nlisten = ""\n[storage]\npath = "{workdir / "bench.db"}"\n'
        "[observe]\nenabled = true\n"
        # the periodic analysis (off the packet path) would ban the spoofed
        # ranges' /24s after five failing addresses each, and the failure
        # tracker would stop filling: off, to measure it full
        "[analysis]\nenabled = false\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # (the per-source tables are bounded at 65,536-100,000: full from 100,000 on;
    # 1,000,000 takes 8+ minutes on this machine)
    ap.add_argument("--sources", type=int, default=200_000)
    ap.add_argument("--per-source", type=int, default=1, help="REGISTERs (and 401s) per source")
    ap.add_argument("--batch", type=int, default=32, help="messages per loop callback")
    ap.add_argument("--census", type=int, default=12, help="types listed by tracked count")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "sipwarden.toml").write_text(config_text(workdir))
        config = load_config(workdir / "sipwarden.toml")
        key = os.urandom(32)
        schedule = open_schedule(config.schedule, time.time())
        policy = build_policy(config, schedule=schedule)
        uvloop.run(run(config, key, policy, schedule, args))


async def run(config: Any, key: bytes, policy: Any, schedule: Any, args: Any) -> None:
    stop = asyncio.Event()
    ready: asyncio.Future[Daemon] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(
        serve(
            config,
            key,
            policy,
            schedule,
            announce=False,
            stop=stop,
            on_ready=lambda daemon, api: ready.set_result(daemon),
        )
    )
    daemon = await ready
    try:
        await feed(daemon, args)
    finally:
        stop.set()
        await server


async def feed(daemon: Daemon, args: Any) -> None:
    loop = asyncio.get_running_loop()
    edge = next(m for m in daemon.modes if isinstance(m, Edge))
    listener = edge.bound[0]
    configured = daemon.config.edge.listen[0]  # the listener as configured (from_client takes it)
    clients, backend = CountingSocket(), CountingSocket()
    edge._udp = {False: clients, True: clients}
    edge._internal = backend  # type: ignore[assignment]
    backend_peer = Peer("udp", "127.0.0.1", BACKEND_PORT)
    print(
        f"listening {listener.host}:{listener.port}; gc thresholds {gc.get_threshold()},"
        f" frozen {gc.get_freeze_count()}, tracked {len(gc.get_objects())}"
    )

    gc_times = GcTimes()
    gc.callbacks.append(gc_times)
    # (arrays: the bench's own lists would be walked by the collections it measures)
    ticks, batches, batches_cpu = array("d"), array("d"), array("d")
    done = loop.create_future()
    total = args.sources * args.per_source
    addresses = sources(args.sources)
    state = {"seq": 0, "round": 0, "hosts": [], "at": 0}

    def tick(last: float) -> None:
        now = time.perf_counter()
        ticks.append(now - last)
        if not done.done():
            loop.call_later(0.001, tick, now)

    def next_batch() -> list[tuple[str, int]]:
        out = []
        hosts: list[str] = state["hosts"]  # type: ignore[assignment]
        while len(out) < args.batch:
            if state["at"] == len(hosts):  # a fresh block of sources, each sends per_source
                hosts[:] = [h for _, h in zip(range(4096), addresses, strict=False)]
                state["at"] = 0
                if not hosts:
                    break
            host = hosts[state["at"]]
            state["at"] += 1
            out.extend([(host, 5060 + state["seq"] % 1000)] * args.per_source)
        return out

    def batch() -> None:
        began, began_cpu = time.perf_counter(), time.thread_time()
        work = next_batch()
        for host, port in work:
            seq = state["seq"] = state["seq"] + 1
            edge.from_client(register(host, port, seq), Peer("udp", host, port), configured)
        forwarded, backend.queue = backend.queue, []
        for request in forwarded:
            edge.from_backend(challenge(request, state["seq"]), backend_peer)
        clients.queue.clear()
        batches.append(time.perf_counter() - began)
        batches_cpu.append(time.thread_time() - began_cpu)
        if state["seq"] >= total or not work:
            done.set_result(None)
        else:
            loop.call_soon(batch)

    began = time.perf_counter()
    loop.call_later(0.001, tick, time.perf_counter())
    loop.call_soon(batch)
    last_report = began
    while not done.done():
        await asyncio.sleep(0.5)
        if time.perf_counter() - last_report > 15:
            last_report = time.perf_counter()
            print(f"  {state['seq']:,} messages, {last_report - began:.0f} s", flush=True)
    took = time.perf_counter() - began
    gc.callbacks.remove(gc_times)

    print(
        f"fed {state['seq']:,} REGISTERs from {args.sources:,} sources in {took:.1f} s"
        f" ({took / max(1, state['seq']) * 1e6:.0f} µs per REGISTER and its 401);"
        f" to the backend {backend.sent:,}, to clients {clients.sent:,}"
    )
    for gen in sorted(gc_times.times):
        times, cpu = sorted(gc_times.times[gen]), sorted(gc_times.cpu[gen])
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        cpu99 = cpu[min(len(cpu) - 1, int(len(cpu) * 0.99))]
        print(
            f"gen {gen} collections: {len(times):,}, longest {ms(times[-1])}, p99 {ms(p99)},"
            f" median {ms(statistics.median(times))}, sum {ms(sum(times))};"
            f" CPU: longest {ms(cpu[-1])}, p99 {ms(cpu99)}"
        )
    print(f"the widest full collection walked {gc_times.widest:,} objects, most of them:")
    for kind, count in gc_times.widest_kinds:
        print(f"  {count:9,}  {kind}")
    stalls = sorted(t - 0.001 for t in ticks)
    print(
        f"longest batch callback ({args.batch} messages): {ms(max(batches))},"
        f" p99 {ms(sorted(batches)[int(len(batches) * 0.99)])}; CPU: longest"
        f" {ms(max(batches_cpu))}, p99 {ms(sorted(batches_cpu)[int(len(batches_cpu) * 0.99)])}"
    )
    print(
        f"loop stall (1 ms ticker lateness): longest {ms(stalls[-1])},"
        f" p99 {ms(stalls[int(len(stalls) * 0.99)])}, over 10 ms: {sum(s > 0.010 for s in stalls)}"
    )
    gens = [len(gc.get_objects(generation=g)) for g in range(3)]
    print(f"tracked objects: {sum(gens):,} (generations {gens}), frozen {gc.get_freeze_count():,}")
    for name, thing in structures(daemon, edge).items():
        print(f"  {name}: size {size(thing)}")
    print("the types the collector tracks most:")
    for kind, count in census(args.census):
        print(f"  {count:9,}  {kind}")
    print("tracked containers of 1,000 entries or more:")
    for n, kind in big_containers():
        print(f"  {n:9,}  {kind}")
    print("a full collection now (best of 3), then with each structure emptied in turn:")
    print(f"  everything: {full_collection()}")
    for name, empty in emptiers(daemon, edge):
        empty()
        print(f"  without the {name}: {full_collection()}")
    counters = {
        k: v for k, v in edge.counters.items() if k.startswith(("reflection", "drop", "bug"))
    }
    print(f"edge counters: {counters}")


if __name__ == "__main__":
    main()
