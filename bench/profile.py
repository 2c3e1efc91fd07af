"""Where the edge's CPU goes per message: a sampling profile (py-spy) of
`sipwarden run` carrying sipp's OPTIONS + 200 at a fixed rate, as
bench/proxy.py does (the whole policy, flows and events on).

It prints the functions with the most samples where they are on top of
the stack (self) and anywhere in it (inclusive), in percent of the edge's
samples, and writes the flame graph (SVG) and the raw stacks beside it.
py-spy samples the interpreter from outside (no slowdown of the edge worth
counting at 250 Hz); native frames (the C scanner, uvloop, the kernel's
send and receive) appear as the Python call that entered them.

Run: .venv/bin/python bench/profile.py [--rate 8000] [--seconds 10] [--out DIR]
Needs sipp (sip-tester) and py-spy (pip install py-spy) on PATH or in the venv.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import proxy

HERE = Path(__file__).resolve().parent


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        sys.exit("py-spy is not installed (pip install py-spy)")
    return found


def record(pid: int, seconds: float, out: Path, fmt: str) -> None:
    subprocess.run(
        [py_spy(), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "250",
         "-f", fmt, "-o", str(out), "--nonblocking"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def summarise(raw: Path, top: int) -> None:
    """The raw (collapsed) stacks: self and inclusive shares per function."""
    own: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]  # fmt: skip
        own[frames[-1]] += n
        for frame in set(frames):
            anywhere[frame] += n
    print(f"{total} samples")
    print("on top of the stack (self):")
    for frame, n in own.most_common(top):
        print(f"  {100 * n / total:5.1f} %  {frame}")
    print("anywhere in the stack (inclusive):")
    for frame, n in anywhere.most_common(top):
        print(f"  {100 * n / total:5.1f} %  {frame}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=8000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--out", type=Path, default=Path("profile"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        uas_port, edge_port = proxy.free_port(), proxy.free_port()
        uas = subprocess.Popen(
            ["sipp", "-sf", str(HERE / "scenarios" / "options_uas.xml"), "-i", "127.0.0.1",
             "-p", str(uas_port), "-nostdin", "-buff_size", "8388608"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir,
        )  # fmt: skip
        edge = proxy.start_edge("sipwarden", edge_port, uas_port, workdir, 1)
        try:
            proxy.wait_port(edge_port, edge)
            time.sleep(0.5)
            load = subprocess.Popen(
                [sys.executable, "-c",
                 "import sys, proxy; from pathlib import Path;"
                 f"print(proxy.run_step([{edge.pid}], {uas.pid}, {edge_port}, {args.rate},"
                 f" {args.seconds + 4}, Path({str(workdir)!r})))"],
                cwd=HERE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            time.sleep(2)  # into the step
            raw = args.out / "edge.raw.txt"
            record(edge.pid, args.seconds, raw, "raw")
            step = load.communicate(timeout=args.seconds * 4 + 60)[0].strip()
            print(f"the step while sampled: {step}")
            summarise(raw, args.top)
            svg = args.out / "edge.svg"
            subprocess.run(
                [py_spy(), "record", "-p", str(edge.pid), "-d", "1", "-f", "flamegraph", "-o",
                 str(svg)], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            proxy.stop(edge, uas)


if __name__ == "__main__":
    main()
