"""Interleaved A/B of two sipwarden source trees under bench/proxy.py's load.

Both edges run at once (one worker each, the whole policy, flows and events
on, as ``bench/proxy.py`` configures them), in front of one sipp UAS; sipp's
OPTIONS + 200 steps go to A, then B, then A... at each rate, so slow drifts
of a shared machine fall on both. Each tree is a directory holding
``sipwarden/`` (a checkout's ``src``, with its C extensions built); an
environment variable may be set for one side only (``--b-env
SIPWARDEN_PURE_PYTHON=1``). Prints every step, then per edge and rate the
median and best edge CPU per message and the failed transactions.

Run: .venv/bin/python bench/ab.py --a OLD/src --b NEW/src [--rates 4000,8000]
[--seconds 5] [--rounds 3]   (keep rounds x rates x 2 x seconds under ~150 s)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from proxy import HERE, children, free_port, run_step, start_edge, stop, wait_port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="A's source directory (holds sipwarden/)")
    ap.add_argument("--b", required=True, help="B's source directory")
    ap.add_argument("--b-env", action="append", default=[], help="NAME=VALUE for B only")
    ap.add_argument("--a-env", action="append", default=[], help="NAME=VALUE for A only")
    ap.add_argument("--rates", default="4000,8000")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    sides = {"A": (args.a, args.a_env), "B": (args.b, args.b_env)}
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        uas_port = free_port()
        uas = subprocess.Popen(
            ["sipp", "-sf", str(HERE / "scenarios" / "options_uas.xml"), "-i", "127.0.0.1",
             "-p", str(uas_port), "-nostdin", "-buff_size", "8388608"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp,
        )  # fmt: skip
        edges: dict[str, tuple[subprocess.Popen[bytes], int, list[int], Path]] = {}
        saved = dict(os.environ)
        try:
            for name, (src, env) in sides.items():
                workdir = Path(tmp) / name
                workdir.mkdir()
                os.environ["PYTHONPATH"] = str(Path(src).resolve())
                for pair in env:
                    key, _, value = pair.partition("=")
                    os.environ[key] = value
                port = free_port()
                proc = start_edge("sipwarden", port, uas_port, workdir, 1)
                os.environ.clear()
                os.environ.update(saved)
                wait_port(port, proc)
                edges[name] = (proc, port, [], workdir)
            time.sleep(0.5)
            for proc, _, pids, _ in edges.values():
                pids.extend(children(proc.pid))
            print(f"A = {args.a} {args.a_env}\nB = {args.b} {args.b_env}")
            print(f"{'edge':6}{'rate':>7}{'ok':>8}{'failed':>8}{'µs/msg':>9}{'core':>7}")
            for _ in range(args.rounds):
                for rate in rates:
                    for name, (_, port, pids, workdir) in edges.items():
                        r = run_step(pids, uas.pid, port, rate, args.seconds, workdir)
                        results.setdefault((name, rate), []).append(r)
                        print(
                            f"{name:6}{rate:>7}{r['ok']:>8.0f}{r['failed']:>8.0f}"
                            f"{r['edge_us']:>9.1f}{r['edge_core']:>7.2f}",
                            flush=True,
                        )
        finally:
            stop(*(edge[0] for edge in edges.values()), uas)
    print("edge  rate   µs/msg median (best, worst)   failed %")
    for (name, rate), steps in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        us = [s["edge_us"] for s in steps]
        failed = sum(s["failed"] for s in steps) / max(1, sum(s["ok"] + s["failed"] for s in steps))
        print(
            f"{name:6}{rate:>5}{statistics.median(us):>10.1f} ({min(us):.1f}, {max(us):.1f})"
            f"{100 * failed:>12.1f}"
        )


if __name__ == "__main__":
    sys.exit(main())
