"""What deception costs: the policy per clean message with `[deception]` off
and on (the stage is left out when off: the figure must not move), and the
deceiver's work per hostile message (the 200 OK to svwar's REGISTER, the
401 to svcrack's guess, a toll-fraud INVITE through the honeypot).

Each figure is the best of several rounds, µs per message; the policy's is
``judge_bytes`` on a phone's REGISTER from a source that is not hostile
(the common case), built with the whole pack.

Run: .venv/bin/python bench/deception.py [--rounds N]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from messages import INVITE, REGISTER  # bench/ is on sys.path when run as a script
from sipwarden.config import config_from_dict
from sipwarden.deception.deceiver import Deceiver
from sipwarden.policy import build_policy
from sipwarden.sip import peek
from sipwarden.values import Peer

SCANNERS = Path(__file__).resolve().parent.parent / "tests" / "data" / "scanners"
PHONE = Peer("udp", "192.0.2.10", 5060)
ATTACKER = Peer("udp", "203.0.113.9", 5070)
N = 20_000


def best(fn, rounds: int) -> float:  # type: ignore[no-untyped-def]
    """µs per call of ``fn`` (called N times a round), best round."""
    fastest = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(N):
            fn()
        fastest = min(fastest, (time.perf_counter() - start) / N * 1e6)
    return fastest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    print(f"python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M')}")
    register = REGISTER.encode() if isinstance(REGISTER, str) else REGISTER
    invite = INVITE.encode() if isinstance(INVITE, str) else INVITE
    for label, deception in (("off", False), ("on", True)):
        # (the rate limiter off: one phone at 20,000 a second would be banned)
        settings = {"deception": {"enabled": deception}, "limits": {"enabled": False}}
        policy = build_policy(config_from_dict(settings))
        cost = best(lambda p=policy: p.judge_bytes(register, PHONE, 5060, 1000.0), args.rounds)
        print(f"policy, a phone's REGISTER, deception {label}: {cost:.2f} µs")

    config = config_from_dict({"deception": {"enabled": True}}).deception
    deceiver = Deceiver(config)
    deceiver.limiter.take = lambda source, now: True  # type: ignore[method-assign]  # the answers' cost, not the limit
    for name, data in (
        ("svwar's REGISTER: 200 OK", (SCANNERS / "svwar_0.3.8_REGISTER_100.sip").read_bytes()),
        ("svcrack's guess: 401", (SCANNERS / "svcrack_0.3.8_REGISTER_auth_pw100.sip").read_bytes()),
    ):
        view = peek(data)
        cost = best(
            lambda d=data, v=view: deceiver.message(d, v, ATTACKER, 1000.0, ("scan.x",)),
            args.rounds,
        )
        print(f"deceiver, {name}: {cost:.2f} µs")
    view = peek(invite)
    calls = [0]

    def call() -> None:  # a new call each time (a new Call-ID): 100 and 180 and a timer
        calls[0] += 1
        data = invite.replace(b"Call-ID: ", f"Call-ID: {calls[0]}-".encode(), 1)
        deceiver.message(data, peek(data), ATTACKER, 1000.0 + calls[0] * 1e-4, ())

    print(f"deceiver, a new honeypot call (INVITE: 100, 180): {best(call, args.rounds):.2f} µs")
    del view


if __name__ == "__main__":
    main()
