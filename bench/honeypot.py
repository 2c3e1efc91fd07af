"""The honeypot's calls per second on one core: the pure UAS, no I/O.

One call is what a toll-fraud caller costs it: sipp's uac INVITE (with its
SDP, a new Call-ID each time) parsed, its 100 and 180 built, the record
counted, the hold's wake, the final answer (486; or the 200 with no media),
the caller's ACK parsed and absorbed, and the call forgotten; for the 200,
our BYE after it too. Best of 5 runs of 20,000 calls, each call's messages
and wakes in order; at most ``max_calls`` calls in progress (the default).

Run: .venv/bin/python bench/honeypot.py
"""

from __future__ import annotations

import heapq
import sys
import time
from pathlib import Path

from sipwarden.config import HoneypotConfig
from sipwarden.deception.honeypot import Honeypot, Wake
from sipwarden.sip import parse
from sipwarden.values import Peer

SIPP = (
    Path(__file__).resolve().parents[1]
    / "tests/data/scanners/captured/sipp_3.6.1_uac_INVITE_udp.sip"
).read_bytes()
CALLER = Peer("udp", "203.0.113.9", 5060)
CALLS = 20_000
ACK = (
    "ACK sip:00972597562518@127.0.0.1:15060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-19426-1-1\r\n"
    "From: sipp <sip:sipp@127.0.0.1:5060>;tag=19426SIPpTag001\r\n"
    "To: {to}\r\nCall-ID: {call}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def invites() -> list[bytes]:
    data = SIPP.replace(b"sip:service@", b"sip:00972597562518@")
    return [data.replace(b"Call-ID: 1-", f"Call-ID: {n}-".encode()) for n in range(CALLS)]


def one_run(final: str, datagrams: list[bytes]) -> float:
    honeypot = Honeypot(HoneypotConfig(final=final))  # type: ignore[arg-type]
    now = 1_000_000.0
    start = time.perf_counter()
    for data in datagrams:
        now += 0.001
        timers = [
            (a.at, n, a.token)
            for n, a in enumerate(honeypot.receive(parse(data), CALLER, now))
            if isinstance(a, Wake)
        ]
        n = len(timers)
        while timers:  # the call's wakes in order; the ACK right after the final answer
            at, _, token = heapq.heappop(timers)
            for action in honeypot.wake(token, at):
                if isinstance(action, Wake):
                    n += 1
                    heapq.heappush(timers, (action.at, n, action.token))
                elif action.what == final and action.data.startswith(b"SIP/2.0 "):
                    answer = parse(action.data)
                    ack = ACK.format(to=answer.get("to"), call=answer.get("call-id")).encode()
                    for wake in honeypot.receive(parse(ack), CALLER, at):
                        if isinstance(wake, Wake):
                            n += 1
                            heapq.heappush(timers, (wake.at, n, wake.token))
    elapsed = time.perf_counter() - start
    assert len(honeypot) == 0 and honeypot.counters["calls"] == CALLS, honeypot.counters
    return elapsed


def main() -> None:
    datagrams = invites()
    print(f"honeypot, {CALLS:,} calls a run, best of 5, Python {sys.version.split()[0]}")
    for final in ("486", "200"):
        best = min(one_run(final, datagrams) for _ in range(5))
        label = "486 (INVITE, 100, 180, 486, ACK)" if final == "486" else "200 + BYE"
        print(f"  {label:34} {CALLS / best:>9,.0f} calls/s  {best / CALLS * 1e6:6.1f} µs a call")


if __name__ == "__main__":
    main()
