"""CPU per message of the edge, against Kamailio as a stateless forwarder.

sipp (UAC) -> edge -> sipp (UAS), OPTIONS + 200, UDP, loopback. For each
edge and each fixed rate step, the edge process's CPU time (utime + stime
from /proc/PID/stat) over the step is divided by the messages it carried
(two per transaction); sipp's own CPU is reported beside it, because the two
sipp processes share the machine's two cores with the edge. The Kamailio run
uses Debian's package with the TLSF allocator (-x tlsf) and a stateless
forward(), the cheapest configuration it has. sipwarden runs with its whole
policy (sanity checks and the built-in scanner pack, OPTIONS forwarded so
they meet every rule, every message counted in its traffic flow), and once
more with the pack off, and once with observation off (no flows, no events),
to show their price. With --dashboards N (issue 19), once more beside N open
dashboards (``bench/dashboard.py --replay``: the page's requests and the
live stream, on a store filled with 100,000 flow records and 1,000 bans):
the packet path must not slow while operators watch.

It also prints, per edge, the highest tested rate with < 1 % failed
transactions: give --rates up to where it breaks to find the knee.

Run: .venv/bin/python bench/proxy.py [--rates 1000,2000,4000] [--seconds 5] [--dashboards 10]
Needs sipp (sip-tester) and kamailio on PATH.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def children(pid: int) -> list[int]:
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids = (task / "children").read_text().split()
        for kid in kids:
            out += children(int(kid))
    return out


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Wait until something answers an OPTIONS on udp port."""
    probe = (
        "OPTIONS sip:pbx@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKwait{n}\r\n"
        "Max-Forwards: 70\r\nTo: <sip:pbx@127.0.0.1>\r\nFrom: <sip:w@127.0.0.1>;tag=w\r\n"
        "Call-ID: wait{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    deadline = time.monotonic() + timeout
    n = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.3)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("the edge under test exited")
            n += 1
            s.sendto(probe.format(p=s.getsockname()[1], n=n).encode(), ("127.0.0.1", port))
            try:
                s.recv(4096)
                return
            except TimeoutError:
                continue
    raise RuntimeError(f"nothing answers on udp port {port}")


KAMAILIO_CFG = """#!KAMAILIO
debug=1
log_stderror=yes
children={children}
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "maxfwd.so"
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    forward("127.0.0.1", {uas});
}}
"""


def start_edge(
    kind: str,
    port: int,
    uas: int,
    workdir: Path,
    workers: int,
    pack: bool = True,
    observe: bool = True,
    api: str = "",
) -> subprocess.Popen[bytes]:
    if kind == "kamailio":
        cfg = workdir / "kamailio.cfg"
        cfg.write_text(KAMAILIO_CFG.format(children=workers, port=port, uas=uas))
        cmd = [
            "kamailio",
            "-f",
            str(cfg),
            "-DD",
            "-E",
            "-x",
            "tlsf",
            "-m",
            "64",
            "-Y",
            str(workdir),
            "-w",
            str(workdir),
        ]
    else:
        cfg = workdir / "sipwarden.toml"
        cfg.write_text(
            f'[edge]\nlisten = ["udp:127.0.0.1:{port}"]\nbackend = "udp:127.0.0.1:{uas}"\n'
            f'workers = {workers}\nflow_key_file = "{workdir / "flow.key"}"\n'
            f'[control]\nsocket = "{workdir / "sipwarden.sock"}"\n'
            # OPTIONS go through every rule (by default they would be dropped
            # before the pack as untrusted, which is cheaper than measuring)
            f'[policy]\noptions = "forward"\npack = {"true" if pack else "false"}\n'
            # the load generator is one source at thousands a second: the rate
            # limiter counts every message (its cost is measured) but never trips
            "[limits]\nrequests = 1000000000\n"
            # ...and never verified: the reflection budget weighs every answer
            # (its cost is measured) but its total (1 MiB/s) is lifted
            "[edge.reflection]\ntotal = 0\n"
            f'[api]\nlisten = "{api}"\n[storage]\npath = "{workdir / "bench.db"}"\n'
            # events and flows (on by default): every message counted in its flow
            f"[observe]\nenabled = {'true' if observe else 'false'}\n"
        )
        cmd = [sys.executable, "-m", "sipwarden.cli", "run", "-c", str(cfg)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)


def run_step(
    edge_pids: list[int], uas_pid: int, port: int, rate: int, seconds: float, workdir: Path
) -> dict[str, float]:
    calls = int(rate * seconds)
    uac_port = free_port()
    cmd = [
        "sipp",
        f"127.0.0.1:{port}",
        "-sf",
        str(HERE / "scenarios" / "options_uac.xml"),
        "-i",
        "127.0.0.1",
        "-p",
        str(uac_port),
        "-r",
        str(rate),
        "-m",
        str(calls),
        "-nostdin",
        "-timeout",
        str(int(seconds * 3 + 10)),
        "-recv_timeout",
        "2000",
        "-buff_size",
        "8388608",
    ]
    before_edge, before_uas = cpu_seconds(edge_pids), cpu_seconds([uas_pid])
    start = time.monotonic()
    uac = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir
    )
    out, _ = uac.communicate(timeout=seconds * 4 + 30)
    elapsed = time.monotonic() - start
    edge_cpu = cpu_seconds(edge_pids) - before_edge
    uas_cpu = cpu_seconds([uas_pid]) - before_uas
    ok = _stat(out, "Successful call")
    failed = _stat(out, "Failed call")
    messages = 2 * ok if ok else 2 * calls
    return {
        "rate": rate,
        "ok": ok,
        "failed": failed,
        "edge_us": edge_cpu / max(1, messages) * 1e6,
        "edge_core": edge_cpu / elapsed,
        "uas_core": uas_cpu / elapsed,
        "achieved": ok / elapsed,
    }


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def open_dashboards(
    api: str, workdir: Path, dashboards: int, rates: list[int], args: argparse.Namespace
) -> subprocess.Popen[bytes]:
    """1,000 bans made through the API, then ``dashboards`` open on it for
    every step (``bench/dashboard.py --replay``), after their first load."""
    from dashboard import make_bans

    make_bans(api, (workdir / "bench.token").read_text().strip())
    seconds = len(rates) * (args.seconds * 4 + 30)  # longer than every step; killed after
    watching = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "dashboard.py"),
            "--replay",
            api,
            "--dashboards",
            str(dashboards),
            "--seconds",
            str(seconds),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "dashboards.log").open("wb"),
    )
    time.sleep(3.0)  # every dashboard's first load done before the steps count
    return watching


def _stat(out: str, name: str) -> int:
    m = re.search(rf"{name}\s*\|\s*\d+\s*\|\s*(\d+)", out)
    return int(m.group(1)) if m else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="1000,2000,4000", help="transactions per second, per step")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument(
        "--dashboards",
        type=int,
        default=0,
        help="also run one worker beside this many open dashboards (0: not)",
    )
    args = ap.parse_args()
    for tool in ("sipp", "kamailio"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    rates = [int(r) for r in args.rates.split(",")]
    print(f"OPTIONS + 200 over UDP on loopback; {args.seconds:.0f} s per step; CPU from /proc")
    print(
        f"{'edge':38}{'rate tx/s':>10}{'ok':>9}{'failed':>8}{'edge µs/msg':>13}{'edge core':>11}{'sipp UAS core':>15}"
    )
    results: dict[str, list[dict[str, float]]] = {}
    setups = [  # kind, workers, the pack, observation (flows and events), dashboards
        ("sipwarden", 1, True, True, 0),
        ("sipwarden", 1, True, False, 0),
        ("sipwarden", 1, False, True, 0),
        ("sipwarden", 2, True, True, 0),
        ("kamailio", 1, True, True, 0),
        ("kamailio", 2, True, True, 0),
    ]
    if args.dashboards:
        setups.insert(1, ("sipwarden", 1, True, True, args.dashboards))
    for kind, workers, pack, observe, dashboards in setups:
        label = (
            f"{kind} ({workers} worker{'s' if workers > 1 else ''}{'' if pack else ', no pack'}"
            f"{'' if observe else ', no flows'}{f', {dashboards} dashboards' if dashboards else ''})"
        )
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            uas_port, edge_port = free_port(), free_port()
            uas = subprocess.Popen(
                [
                    "sipp",
                    "-sf",
                    str(HERE / "scenarios" / "options_uas.xml"),
                    "-i",
                    "127.0.0.1",
                    "-p",
                    str(uas_port),
                    "-nostdin",
                    "-buff_size",
                    "8388608",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=workdir,
            )
            api = f"127.0.0.1:{free_tcp_port()}" if dashboards else ""
            if dashboards:  # the store the dashboards read: 100,000 flow records
                from dashboard import fill_flows

                fill_flows(workdir / "bench.db", time.time())
            edge = start_edge(kind, edge_port, uas_port, workdir, workers, pack, observe, api)
            watching: subprocess.Popen[bytes] | None = None
            try:
                wait_port(edge_port, edge)
                time.sleep(0.5)  # let every worker come up before counting them
                pids = children(edge.pid)
                if dashboards:
                    watching = open_dashboards(f"http://{api}", workdir, dashboards, rates, args)
                for rate in rates:
                    r = run_step(pids, uas.pid, edge_port, rate, args.seconds, workdir)
                    results.setdefault(label, []).append(r)
                    print(
                        f"{label:38}{rate:>10}{r['ok']:>9.0f}{r['failed']:>8.0f}{r['edge_us']:>13.1f}"
                        f"{r['edge_core']:>11.2f}{r['uas_core']:>15.2f}",
                        flush=True,
                    )
            finally:
                if watching is not None:
                    watching.kill()
                    watching.wait()
                for proc in (edge, uas):
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
    print("highest tested rate with < 1 % failed transactions:")
    for label, steps in results.items():
        good = [
            r["rate"]
            for r in steps
            if r["ok"] + r["failed"] > 0 and r["failed"] < 0.01 * (r["ok"] + r["failed"])
        ]
        print(f"  {label:38}{max(good) if good else 0:>8.0f} tx/s")
    watched = results.get(f"sipwarden (1 worker, {args.dashboards} dashboards)", [])
    alone = results.get("sipwarden (1 worker)", [])
    if watched and alone:
        print(
            f"{args.dashboards} dashboards open, edge µs per message: "
            + ", ".join(
                f"{a['edge_us'] - b['edge_us']:+.1f}" for a, b in zip(watched, alone, strict=True)
            )
        )
    ours = results.get("sipwarden (1 worker)", [])
    theirs = results.get("kamailio (1 worker)", [])
    if ours and theirs:
        ratios = [
            a["edge_us"] / b["edge_us"]
            for a, b in zip(ours, theirs, strict=True)
            if b["edge_us"] > 0
        ]
        print("sipwarden / kamailio CPU per message: " + ", ".join(f"{x:.1f}x" for x in ratios))
    bare = results.get("sipwarden (1 worker, no flows)", [])
    if ours and bare:
        print(
            "flows and events, µs per message: "
            + ", ".join(
                f"{a['edge_us'] - b['edge_us']:+.1f}" for a, b in zip(ours, bare, strict=True)
            )
        )


if __name__ == "__main__":
    main()
