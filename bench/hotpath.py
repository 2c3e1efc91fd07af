"""The edge's Python per message, without the kernel: bench/proxy.py's
traffic (OPTIONS from one phone-like source, the backend's 200) driven
straight into ``Edge.from_client`` and ``Edge.from_backend`` in process.

The edge is configured as bench/proxy.py configures it (the whole policy,
OPTIONS forwarded so they meet every rule, flows and events on), started on
loopback, and its sockets' ``sendto`` replaced by a list append: what is
left is the Python a message costs, which is what issue 21's in-process
changes move. The forwarded request is turned into the backend's 200 (our
Via on top, as Kamailio or sipp would answer), so the answer's path is the
real one too (flow token, the policy's reading of answers, reflection).

Printed: µs per message (a request and its answer are two), best and
median of ``--rounds`` rounds of ``--transactions``; with ``--profile``,
cProfile's top functions by own time.

Run: .venv/bin/python bench/hotpath.py [--transactions 20000] [--rounds 7] [--profile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bench/profile.py would shadow the standard library's profile (cProfile imports it)
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import uvloop  # noqa: E402

from sipwarden.config import config_from_dict  # noqa: E402
from sipwarden.edge import Edge  # noqa: E402
from sipwarden.observe.events import EventQueue  # noqa: E402
from sipwarden.observe.flows import FlowTable  # noqa: E402
from sipwarden.policy import build_policy  # noqa: E402
from sipwarden.values import Peer  # noqa: E402

CLIENT = ("127.0.0.1", 40000)

OPTIONS = (
    "OPTIONS sip:pbx@127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-{n}-1-0;rport\r\n"
    "Max-Forwards: 70\r\n"
    "To: <sip:pbx@127.0.0.1:5060>\r\n"
    "From: <sip:bench@127.0.0.1:40000>;tag=4242-{n}\r\n"
    "Call-ID: {n}-4242@127.0.0.1\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Contact: <sip:bench@127.0.0.1:40000>\r\n"
    "User-Agent: Yealink SIP-T46S 66.86.0.15\r\n"
    "Accept: application/sdp\r\n"
    "Content-Length: 0\r\n\r\n"
)


class Sink:
    """A socket whose sendto keeps what it was given."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> int:
        self.sent.append((data, addr))
        return len(data)


def answer_to(request: bytes) -> bytes:
    """The backend's 200 to a forwarded request: its Vias, From, To (tagged), Call-ID, CSeq."""
    head = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    keep = [
        h + (b";tag=uas1" if h.lower().startswith(b"to:") else b"")
        for h in head
        if h.split(b":", 1)[0].lower() in (b"via", b"from", b"to", b"call-id", b"cseq")
    ]
    return b"SIP/2.0 200 OK\r\n" + b"\r\n".join(keep) + b"\r\nContent-Length: 0\r\n\r\n"


async def measure(args: argparse.Namespace, workdir: Path) -> list[float]:
    cfg = config_from_dict(
        {
            "edge": {
                "listen": ["udp:127.0.0.1:0"],
                "backend": "udp:127.0.0.1:5099",
                "flow_key_file": str(workdir / "flow.key"),
                "reflection": {"total": 0},
            },
            "policy": {"options": "forward", "pack": True},
            "limits": {"requests": 1_000_000_000},
            "storage": {"path": str(workdir / "bench.db")},
        }
    )
    policy = build_policy(cfg)
    events = EventQueue(
        sample=cfg.observe.event_sample,
        max_events=cfg.observe.max_events,
        max_keys=cfg.observe.max_events,
    )
    edge = Edge(
        cfg.edge,
        b"k" * 32,
        policy=policy,
        events=events,
        flows=FlowTable(max_flows=cfg.observe.max_flows),
    )
    await edge.start()
    try:
        sink = Sink()
        edge._udp = {False: sink}  # type: ignore[dict-item]  # (the bench's one private reach)
        edge._internal = sink  # type: ignore[assignment]
        listener = edge.bound[0]
        configured = cfg.edge.listen[0]
        source = Peer("udp", *CLIENT)
        backend = Peer("udp", "127.0.0.1", 5099)
        n = args.transactions
        requests = [OPTIONS.format(n=i).encode() for i in range(n)]
        # the answers, made once from what the edge forwards (the flow token is per source)
        for data in requests:
            edge.from_client(data, source, configured)
        answers = [answer_to(data) for data, _ in sink.sent]
        assert len(answers) == n, f"the edge forwarded {len(answers)} of {n}: {edge.counters}"
        del listener
        results = []
        profile = None
        if args.profile:
            import cProfile

            profile = cProfile.Profile()
        for _ in range(args.rounds):
            sink.sent.clear()
            if profile is not None:
                profile.enable()
            began = time.process_time()
            for data, answer in zip(requests, answers, strict=True):
                edge.from_client(data, source, configured)
                edge.from_backend(answer, backend)
            took = time.process_time() - began
            if profile is not None:
                profile.disable()
            assert len(sink.sent) == 2 * n, f"{len(sink.sent)} sent: {edge.counters}"
            results.append(took / (2 * n) * 1e6)
        if profile is not None:
            import pstats

            pstats.Stats(profile).sort_stats("tottime").print_stats(
                int(os.environ.get("TOP", "25"))
            )
        return results
    finally:
        await edge.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transactions", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--profile", action="store_true", help="cProfile's top 25 by own time")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = uvloop.run(measure(args, Path(tmp)))
    print(
        f"edge Python per message (OPTIONS + 200, in process): best {min(results):.2f} µs,"
        f" median {statistics.median(results):.2f} µs over {len(results)} rounds"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
