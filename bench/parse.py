"""µs per message for the SIP core, with sipmessage (PyPI) as the reference.

For each typical message (REGISTER with credentials, INVITE with SDP, OPTIONS):
- hot path: ``peek()`` and reading what the security pipeline reads per packet
  through its scalar accessors (method, R-URI host, top Via branch, host,
  port and rport, From/To user and tag, Call-ID, CSeq, User-Agent, Contact
  user, credentials present);
- peek index only: ``peek()`` alone (framing, start line, header index);
- parse: ``parse()`` alone (framing, start line, header fields; views lazy);
- full parse: ``parse()`` plus every typed view (R-URI, all Vias, From, To,
  Contacts, CSeq, Max-Forwards, Content-Length, Expires, Authorization),
  and the same with ``validate()`` (cross-header rules) on top;
- sipmessage: ``Message.parse()`` alone, and plus the same typed views.
The speed-up rows compare like with like: split with split, typed with typed.

Run: .venv/bin/python bench/parse.py [--seconds S]
(with the C speedups built, it then runs again in pure Python for comparison)
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import timeit
from collections.abc import Callable

from messages import TYPICAL  # bench/ is on sys.path when run as a script
from sipwarden.sip import parse, peek

try:
    import sipmessage
except ImportError:  # pragma: no cover
    sipmessage = None


def hot_path(data: bytes) -> object:
    v = peek(data)
    return (
        v.method,
        v.ruri_host,
        v.via_branch,
        v.via_host,
        v.via_port,
        v.via_rport,
        v.from_user,
        v.from_tag,
        v.to_user,
        v.to_tag,
        v.call_id,
        v.cseq_method,
        v.user_agent,
        v.contact_user,
        v.has_credentials,
    )


def peek_only(data: bytes) -> object:
    return peek(data)


def parse_only(data: bytes) -> object:
    return parse(data)


def _views(m: object) -> object:
    return (
        m.uri,
        m.vias,
        m.from_,
        m.to,
        m.contacts,
        m.cseq,
        m.max_forwards,
        m.content_length,
        m.expires,
        m.authorization,
    )


def full_parse(data: bytes) -> object:
    return _views(parse(data))


def full_parse_validate(data: bytes) -> object:
    return _views(parse(data).validate())


def sipmessage_parse_only(data: bytes) -> object:
    return sipmessage.Message.parse(data)


def sipmessage_parse(data: bytes) -> object:
    m = sipmessage.Message.parse(data)
    return (
        m.uri,
        m.via,
        m.from_address,
        m.to_address,
        m.contact,
        m.cseq,
        m.max_forwards,
        m.content_length,
        m.expires,
        m.authorization,
    )


def per_call_us(fn: Callable[[bytes], object], data: bytes, seconds: float) -> float:
    fn(data)
    timer = timeit.Timer(lambda: fn(data))
    number, _ = timer.autorange()
    repeats = max(3, int(seconds / max(1e-9, timer.timeit(number) or 1e-9)))
    best = min(timer.repeat(repeat=min(repeats, 15), number=number))
    return best / number * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.3, help="rough time per repeat")
    ap.add_argument("--once", action="store_true", help="do not re-run in pure Python afterwards")
    args = ap.parse_args()
    cases: list[tuple[str, Callable[[bytes], object]]] = [
        ("hot path (peek + fields)", hot_path),
        ("peek index only", peek_only),
        ("parse (split, lazy)", parse_only),
        ("full parse (typed views)", full_parse),
        ("full parse + validate", full_parse_validate),
    ]
    if sipmessage is not None:
        cases += [
            (f"sipmessage {sipmessage.__version__} split", sipmessage_parse_only),
            (f"sipmessage {sipmessage.__version__} typed", sipmessage_parse),
        ]
    from sipwarden.sip.accel import SPEEDUPS

    accel = "C speedups" if SPEEDUPS is not None else "pure Python (no C speedups)"
    print(f"Python {platform.python_version()} on {platform.machine()}, {accel}")
    print("µs per message, best of repeats")
    print(f"{'':30}" + "".join(f"{name:>14}" for name in TYPICAL))
    results: dict[str, list[float]] = {}
    for label, fn in cases:
        row = [per_call_us(fn, data, args.seconds) for data in TYPICAL.values()]
        results[label] = row
        print(f"{label:30}" + "".join(f"{us:14.2f}" for us in row))
    if sipmessage is not None:

        def ratio(ref: str, ours: str) -> None:
            pairs = zip(results[ref], results[ours], strict=True)
            print(
                f"{'speed-up ' + ours.split(' (')[0]:30}"
                + "".join(f"{r / o:13.1f}x" for r, o in pairs)
            )

        ratio(cases[-2][0], "parse (split, lazy)")
        ratio(cases[-1][0], "full parse (typed views)")
    if SPEEDUPS is not None and not args.once:
        print()
        env = {**os.environ, "SIPWARDEN_PURE_PYTHON": "1"}
        subprocess.run(
            [sys.executable, __file__, "--once", f"--seconds={args.seconds}"], env=env, check=True
        )


if __name__ == "__main__":
    main()
