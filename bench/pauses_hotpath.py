"""What the per-source tables cost a message on the hot path, in process:
``FlowTable.record`` (a known flow), ``ReflectionBudget.received`` and
``permit`` (a known unverified source), ``FailureTracker.answer`` (a 401 to
a request with credentials, then ``forget``), 1,000 sources each, best of 7
rounds. Compare two trees by running it under each one's PYTHONPATH,
interleaved (ABABAB): see bench/README.md (bench/pauses.py).

Run: PYTHONPATH=src .venv/bin/python bench/pauses_hotpath.py [LABEL]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from sipwarden.observe.flows import FlowKey, FlowTable
from sipwarden.policy.failures import FailureTracker
from sipwarden.policy.reflection import ReflectionBudget
from sipwarden.sip import peek

SOURCES = 1000
T0 = 1_800_000_000.0
KEYS = [
    FlowKey(f"198.18.{i >> 8}.{i & 255}", 5060, "127.0.0.1", 5060, "udp") for i in range(SOURCES)
]
HOSTS = [key.source for key in KEYS]
HEAD = (
    "Via: SIP/2.0/UDP 198.18.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
    "To: <sip:a@b>{tag}\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)
REQUEST = peek(("OPTIONS sip:a@b SIP/2.0\r\n" + HEAD.format(tag="")).encode())
ANSWER = ("SIP/2.0 200 OK\r\n" + HEAD.format(tag=";tag=2")).encode()
ANSWER_VIEW = peek(ANSWER)


def per_call(run: Callable[[], None], rounds: int) -> float:
    """Nanoseconds per source, best of 7 batches of ``rounds`` runs."""
    best = float("inf")
    for _ in range(7):
        began = time.perf_counter()
        for _ in range(rounds):
            run()
        best = min(best, (time.perf_counter() - began) / rounds / SOURCES)
    return best * 1e9


def main() -> None:
    flows = FlowTable()
    budget = ReflectionBudget(total=0)
    tracker = FailureTracker()

    def record() -> None:
        for key in KEYS:
            flows.record(key, T0 + 1.5, 400, method="OPTIONS")

    def reflect() -> None:
        for host in HOSTS:
            budget.received(host, 400, REQUEST, 1.0)
            budget.permit(host, ANSWER, 1.0, None, ANSWER_VIEW)

    def fail() -> None:
        for i, host in enumerate(HOSTS):
            tracker.answer(host, 401, "REGISTER", "100", True, 1.0 + i * 1e-3)
        for host in HOSTS:
            tracker.forget(host)

    label = sys.argv[1] if len(sys.argv) > 1 else "this tree"
    print(
        f"{label}: flows.record {per_call(record, 200):.0f} ns;"
        f" reflection received+permit {per_call(reflect, 200):.0f} ns;"
        f" failures.answer(401)+forget {per_call(fail, 50):.0f} ns"
    )


if __name__ == "__main__":
    main()
