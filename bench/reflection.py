"""What a spoofer gains by reflecting off the edge: bytes out / bytes in to a
source that never answers, budget on and off; and what the budget costs.

An edge (in-process, the daemon's whole policy) in front of a real Kamailio
registrar (the test suite's: digest auth, Path; its fr_timer cut to 2 s so
that an unanswered INVITE's 408 and its retransmissions come within the
run). A phone registers and then never answers. Each attack message is sent
once from its own loopback address (127.0.0.N, never verified) by a socket
that then only receives, for 3 s (12 s for the INVITE to the registered
user: the 408 comes after 2 s and is retransmitted). Printed per attack:
bytes sent, bytes that came back and their ratio, budget off then on, and
the worst ratio of each.

Then the budget's own cost per request and its answer, in-process (best of
7 x 50,000): ``received`` + ``permit`` for a verified source (the phones'
path); for an unverified one within its credit (the path of bench/proxy.py's
sipp, whose answers carry a To tag to remember), with the answer's peek in
hand (a relayed answer: the edge peeked it already) and without (a reject);
and for one whose answer is withheld.

Run: .venv/bin/python bench/reflection.py   (needs kamailio on PATH)
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test suite's helpers

from tests.edge.harness import running_edge
from tests.edge.kamailio import available, kamailio
from tests.edge.reflection import (
    ATTACKS,
    DECEPTION_ATTACKS,
    HOSTILE_INVITE,
    INVITE_REGISTERED,
    Reflected,
    reflect,
    register_silent_phone,
)

from sipwarden.policy import ReflectionBudget
from sipwarden.sip import make_response, parse, peek
from sipwarden.values import Peer

LISTEN = 3.0
LISTEN_408 = 12.0  # also the honeypot's 486 (after a 1 s hold) and its retransmissions
DECEPTION = {"enabled": True, "engaged_for": "30s", "fake_pbx": {"hold": "1s"}}


def attacks(
    enabled: bool, first_host: int, deceive: bool = False
) -> tuple[dict[str, Reflected], dict[str, int]]:
    """Each attack from its own victim; with ``deceive``, deception's attacks
    (hostile sources: the 200 OK, the challenge, the honeypot) with
    `[deception]` on."""
    armed = {"deception": DECEPTION} if deceive else {}
    chosen = DECEPTION_ATTACKS if deceive else ATTACKS
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with (
            kamailio(work, fr_timer=2000) as pbx,
            running_edge(
                work, backend_port=pbx, armed=armed, reflection={"enabled": enabled}
            ) as run,
        ):
            edge = run.ports["udp"]
            phone = register_silent_phone(edge)
            results = {}
            for i, (name, template) in enumerate(chosen.items()):
                seconds = LISTEN_408 if template in (INVITE_REGISTERED, HOSTILE_INVITE) else LISTEN
                results[name] = reflect(template, edge, f"127.0.0.{first_host + i}", seconds)
            phone.close()
            counters = {k: v for k, v in run.edge.counters.items() if k.startswith("reflection-")}
    return results, counters


def show_ratios(deceive: bool = False) -> None:
    off, _ = attacks(False, 40 if deceive else 10, deceive)
    on, counters = attacks(True, 50 if deceive else 20, deceive)
    chosen = DECEPTION_ATTACKS if deceive else ATTACKS
    print(
        "\nwith [deception] on, to hostile sources (ratio 1.0 for deception's answers)"
        if deceive
        else "bytes out / bytes in to a source that never answers (Kamailio behind the edge)"
    )
    print(
        f"{'attack':30}{'in':>6}{'off: out':>10}{'ratio':>7}{'on: out':>9}{'ratio':>7}  answers off -> on"
    )
    for name in chosen:
        a, b = off[name], on[name]
        codes = " ".join(line.split()[1] for line in a.firsts()) or "-"
        kept = " ".join(line.split()[1] for line in b.firsts()) or "-"
        print(
            f"{name:30}{a.sent:>6}{a.received:>10}{a.ratio:>7.2f}{b.received:>9}{b.ratio:>7.2f}"
            f"  {codes} -> {kept}"
        )
    print(
        f"worst ratio: budget off {max(r.ratio for r in off.values()):.2f}x,"
        f" on {max(r.ratio for r in on.values()):.2f}x"
        + (" (deception's ratio = 1.0)" if deceive else " (ratio = 1.5)")
    )
    print("budget counters:", counters)


def show_cost() -> None:
    answer = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport=5061\r\n"
        b"From: <sip:bench@127.0.0.1:5061>;tag=1-1\r\nTo: <sip:pbx@127.0.0.1>;tag=2SIPpTag011\r\n"
        b"Call-ID: 1-1@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    options = answer.replace(b"SIP/2.0 200 OK", b"OPTIONS sip:pbx@127.0.0.1 SIP/2.0").replace(
        b";tag=2SIPpTag011", b""
    )
    request = peek(options)
    now = 1000.0
    verified = ReflectionBudget()
    verified.verify("192.0.2.1", now, "tcp")
    unverified = ReflectionBudget(total=0)

    def best(fn) -> float:
        return min(timeit.repeat(fn, number=50_000, repeat=7)) / 50_000 * 1e6

    def cost(budget: ReflectionBudget, host: str, size: int, with_view: bool) -> float:
        def one() -> None:
            budget.received(host, size, request, now)
            budget.permit(host, answer, now, None, peek(answer) if with_view else None)

        return best(one)

    # the edge peeked the backend's answer already: that peek is not the budget's
    peek_alone = best(lambda: peek(answer))
    rows = {
        "verified source (phones)": cost(verified, "192.0.2.1", len(options), False),
        "unverified, a relayed answer": cost(unverified, "192.0.2.2", len(options), True)
        - peek_alone,
        "unverified, a reject (no view)": cost(unverified, "192.0.2.3", len(options), False),
        "unverified, answer withheld": cost(unverified, "192.0.2.4", 10, False),
    }
    print("\nthe budget's cost per request + answer: received() + permit(), in-process, µs")
    for name, micros in rows.items():
        print(f"  {name:34}{micros:6.2f}")


EDGE_CASES = {
    "off": {"enabled": False},  # no budget
    "unverified": {"total": 0},  # bench/proxy.py's sipp: one busy source, never verified
    "verified": {"total": 0},  # a phone that logged in
}


def edge_loop(case: str, rounds: int = 5, number: int = 20_000) -> float:
    """In this process, one edge: a client's OPTIONS judged and proxied
    (``from_client``) and the backend's 200 relayed back (``from_backend``),
    ``number`` times a round; the best round's CPU µs per pair."""
    options = (
        "OPTIONS sip:pbx@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.9:{port};branch=z9hG4bK-b1;rport\r\nMax-Forwards: 70\r\n"
        "To: <sip:pbx@127.0.0.1>\r\nFrom: <sip:bench@127.0.0.9>;tag=b1\r\nCall-ID: b1\r\n"
        "CSeq: 1 OPTIONS\r\nUser-Agent: Yealink SIP-T46S 66.86.0.15\r\nContent-Length: 0\r\n\r\n"
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as pbx,
    ):
        phone.bind(("127.0.0.9", 0))
        pbx.bind(("127.0.0.1", 0))  # the backend: it answers only when the bench says so
        pbx.settimeout(5)
        for sock in (phone, pbx):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # (drops the rest)
        client = Peer("udp", "127.0.0.9", phone.getsockname()[1])
        backend = Peer("udp", "127.0.0.1", pbx.getsockname()[1])
        data = options.format(port=client.port).encode()
        with running_edge(
            Path(tmp),
            policy={"options": "forward"},
            backend_port=backend.port,
            reflection=EDGE_CASES[case],
        ) as run:
            edge, listener = run.edge, run.edge.config.listen[0]
            run.call(edge.from_client, data, client, listener)
            # the backend's 200 to the proxied OPTIONS, as it would send it
            answer = make_response(parse(pbx.recv(65535)), 200, to_tag="2SIPpTag01").to_bytes()
            if case == "verified":
                assert edge.reflection is not None
                run.call(edge.reflection.verify, client.host, edge.clock(), "tcp")

            def loop() -> float:
                start = time.thread_time()
                for _ in range(number):
                    edge.from_client(data, client, listener)
                    edge.from_backend(answer, backend)
                return time.thread_time() - start

            best = min(run.call(loop) for _ in range(rounds)) / number * 1e6
            assert edge.counters["reflection-withheld"] == 0  # (every answer went out)
            assert edge.counters["to-client"] == rounds * number
    return best


def show_edge_cost(repeats: int = 5) -> None:
    """``edge_loop`` for each case, each in a process of its own (so that
    no two edges share a warmed-up interpreter), taking turns."""
    best: dict[str, float] = {}
    for _ in range(repeats):
        for case in EDGE_CASES:
            out = subprocess.run(
                [sys.executable, __file__, "--edge-loop", case],
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            ).stdout
            best[case] = min(best.get(case, float("inf")), float(out.split()[-1]))
    print(
        "\nthe edge's path: OPTIONS in, the backend's 200 out (from_client + from_backend),"
        f" CPU µs per pair, best of {repeats} processes x 5 x 20,000, taking turns"
    )
    for case, micros in best.items():
        extra = "" if case == "off" else f"   (+{micros - best['off']:.2f})"
        print(f"  budget {case:12}{micros:7.2f}{extra}")


def main() -> None:
    if sys.argv[1:2] == ["--edge-loop"]:
        print(f"{edge_loop(sys.argv[2]):.3f}")
        return
    if not available():
        sys.exit("kamailio is not installed")
    show_ratios()
    show_ratios(deceive=True)
    show_cost()
    show_edge_cost()


if __name__ == "__main__":
    main()
