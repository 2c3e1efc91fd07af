"""Logwatch mode: lines per second parsed per format, and the delay from a
line appended to a followed file to the ban in the kernel.

1. Parsing (``Format.match``, the mode's per-line work on its thread), one
   core, best of 5 rounds of 20,000 lines, per format: lines that match
   (failures of each kind the format knows, fail2ban's samples and our
   own) and noise (the lines a PBX writes between failures: dialplan,
   registrations, RTP warnings), and a mix of 1 failure in 10.
2. Append to ban (needs root, nft): `sipwarden run` with a file source and
   the nftables enforcer in a network namespace; ``maxretry`` failures of a
   new source are appended in one write, and the time until the kernel's
   ban set holds that source is measured (the kernel listed every 10 ms:
   that is the resolution), ``--bans`` sources one after another, with the
   default ``[logwatch] poll`` (0.25 s) and with 0.05 s.

Run: .venv/bin/python bench/logwatch.py [--bans 10] [--no-kernel]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.logwatch.daemon import append, netns, running, wrong_password

from sipwarden.logwatch import load

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
LOGS = Path(__file__).resolve().parent.parent / "tests" / "data" / "logs"

NOISE = {
    "asterisk": [
        "[2026-12-06 11:59:58] VERBOSE[2041][C-0000001a] pbx.c: Executing [201@from-internal:1]"
        ' Dial("PJSIP/200-0000002b", "PJSIP/201,30") in new stack',
        "[2026-12-06 11:59:58] WARNING[2040] res_rtp_asterisk.c: 192.0.2.10:10000 ->"
        " Unknown RTP version 0",
        "[2026-12-06 11:59:59] VERBOSE[1976] res_pjsip_registrar.c: Added contact"
        " 'sip:200@192.0.2.20:5060' to AOR '200' with expiration of 3600 seconds",
    ],
    "freeswitch": [
        "2026-12-06 11:59:58.767815 [NOTICE] switch_channel.c:1104 New Channel"
        " sofia/internal/1000@192.0.2.1 [b6c7a8d2-6f1b-4a5e-9a40-0c8b2e8f1d11]",
        "2026-12-06 11:59:58.767815 [INFO] mod_dialplan_xml.c:637 Processing 1000 <1000>->1001"
        " in context default",
    ],
    "kamailio": [
        "Dec  6 11:59:58 pbx kamailio[812]: INFO: <script>: REGISTER from sip:200@pbx ok",
        "Dec  6 11:59:58 pbx kamailio[812]: NOTICE: tm [t_lookup.c:1293]: t_newtran(): x",
    ],
}


def samples(name: str) -> list[str]:
    lines = (LOGS / name).read_text("utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


MATCHING = {
    "asterisk": samples("asterisk.log"),
    "freeswitch": samples("freeswitch.log"),
    "kamailio": [
        "Dec  6 11:59:59 pbx kamailio[812]: NOTICE: <script>: sipwarden: event=auth-failed"
        " method=REGISTER user=301 source=203.0.113.7",
        "Dec  6 11:59:59 pbx kamailio[812]: NOTICE: <script>: sipwarden: event=user-not-found"
        " method=REGISTER user=9 source=2001:db8::9",
    ],
}


def rate(fmt_name: str, lines: list[str], n: int = 20_000) -> float:
    fmt = load(fmt_name)
    batch = (lines * (n // len(lines) + 1))[:n]
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for line in batch:
            fmt.match(line, dt.UTC, NOW)
        best = min(best, time.perf_counter() - t)
    return n / best


def parsing() -> None:
    print("lines per second (best of 5 x 20,000), one core")
    print(f"{'format':<12} {'matching':>10} {'noise':>10} {'1 in 10':>10}")
    for name in ("asterisk", "freeswitch", "kamailio"):
        mix = MATCHING[name][:1] + (NOISE[name] * 9)[:9]
        print(
            f"{name:<12} {rate(name, MATCHING[name]):>10,.0f} {rate(name, NOISE[name]):>10,.0f}"
            f" {rate(name, mix):>10,.0f}"
        )


def kernel(bans: int) -> None:
    for poll in (0.25, 0.05):
        with tempfile.TemporaryDirectory() as tmp, netns() as ns:
            log = Path(tmp) / "messages"
            log.write_text("")
            source = (
                f'[[logwatch.sources]]\npath = "{log}"\nformat = "asterisk"\ntimezone = "UTC"\n'
            )
            delays = []
            with running(ns, Path(tmp), source, poll=poll) as d:
                for i in range(bans):
                    host = f"203.0.113.{i + 1}"
                    t = time.perf_counter()
                    append(log, "".join(wrong_password(host) for _ in range(5)))
                    while host not in d.kernel():
                        if time.perf_counter() - t > 30:
                            raise SystemExit(f"{host} not banned within 30 s:\n{d.log()}")
                        time.sleep(0.01)
                    delays.append(time.perf_counter() - t)
            delays.sort()
            print(
                f"append to kernel ban, poll {poll} s, {bans} sources: p50"
                f" {statistics.median(delays) * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bans", type=int, default=10)
    parser.add_argument("--no-kernel", action="store_true", help="parsing only (no root needed)")
    args = parser.parse_args()
    print(f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}")
    parsing()
    if not args.no_kernel:
        kernel(args.bans)


if __name__ == "__main__":
    main()
