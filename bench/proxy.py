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
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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
    limit: int = 0,
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
            f"[limits]\nrequests = {limit or 1_000_000_000}\n"
            # ...and never verified: the reflection budget weighs every answer
            # (its cost is measured) but its total (1 MiB/s) is lifted
            "[edge.reflection]\ntotal = 0\n"
            f'[api]\nlisten = "{api}"\n[storage]\npath = "{workdir / "bench.db"}"\n'
            # events and flows (on by default): every message counted in its flow
            f"[observe]\nenabled = {'true' if observe else 'false'}\n"
        )
        cmd = [sys.executable, "-m", "sipwarden.cli", "run", "-c", str(cfg)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)


SOCKETS_PER_SOURCE = 250  # sipp -t un -max_socket: source ports per source address
HOT_SOURCE = "127.0.0.99"


def uac_command(
    port: int, ip: str, rate: float, calls: int, seconds: float, many: bool
) -> list[str]:
    """sipp sending OPTIONS at ``rate`` from ``ip``: one socket, or (``many``)
    a socket per call over SOCKETS_PER_SOURCE ports."""
    cmd = ["sipp", f"127.0.0.1:{port}", "-sf", str(HERE / "scenarios" / "options_uac.xml")]
    cmd += ["-i", ip, "-r", f"{rate:g}", "-m", str(calls), "-nostdin"]
    cmd += ["-timeout", str(int(seconds * 3 + 10)), "-recv_timeout", "2000"]
    cmd += ["-buff_size", "8388608"]
    if many:
        cmd += ["-t", "un", "-max_socket", str(SOCKETS_PER_SOURCE)]
    else:
        cmd += ["-p", str(free_port())]
    return cmd


HOT_SENDER = """
import socket, sys, time
port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[4], 0))
me = s.getsockname()[1]
end = time.monotonic() + seconds
n = 0
began = time.monotonic()
while time.monotonic() < end:
    n += 1
    s.sendto((
        f"OPTIONS sip:pbx@127.0.0.1:{port} SIP/2.0\\r\\n"
        f"Via: SIP/2.0/UDP {sys.argv[4]}:{me};branch=z9hG4bK-hot-{n};rport\\r\\n"
        f"Max-Forwards: 70\\r\\nTo: <sip:pbx@127.0.0.1:{port}>\\r\\n"
        f"From: <sip:hot@{sys.argv[4]}>;tag=h{n}\\r\\nCall-ID: hot-{n}\\r\\n"
        "CSeq: 1 OPTIONS\\r\\nUser-Agent: Yealink SIP-T46S 66.86.0.15\\r\\n"
        "Content-Length: 0\\r\\n\\r\\n"
    ).encode(), ("127.0.0.1", port))
    lag = began + n / rate - time.monotonic()
    if lag > 0:
        time.sleep(lag)
print(n)
"""


def run_step(
    edge_pids: list[int],
    uas_pid: int,
    port: int,
    rate: int,
    seconds: float,
    workdir: Path,
    sources: int = 0,
    hot: int = 0,
) -> dict[str, float]:
    """One step at ``rate`` transactions a second: from one sipp socket, or
    (``sources``) from that many addresses (127.0.0.10...) with
    SOCKETS_PER_SOURCE ports each, the rate shared; with ``hot``, one more
    source (HOT_SOURCE) sends that many OPTIONS a second besides, never
    reading the answers (its messages are not counted in the edge's µs)."""
    calls = int(rate * seconds)
    if sources:
        share = calls // sources
        cmds = [
            uac_command(port, f"127.0.0.{10 + i}", rate / sources, share, seconds, True)
            for i in range(sources)
        ]
        calls = share * sources
    else:
        cmds = [uac_command(port, "127.0.0.1", rate, calls, seconds, False)]
    before_edge, before_uas = cpu_seconds(edge_pids), cpu_seconds([uas_pid])
    start = time.monotonic()
    hot_sender = None
    if hot:
        hot_sender = subprocess.Popen(
            [sys.executable, "-c", HOT_SENDER, str(port), str(hot), str(seconds), HOT_SOURCE],
            stdout=subprocess.PIPE,
            text=True,
        )
    uacs = [
        subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir
        )
        for cmd in cmds
    ]
    outs = [uac.communicate(timeout=seconds * 4 + 30)[0] for uac in uacs]
    elapsed = time.monotonic() - start
    hot_sent = int(hot_sender.communicate(timeout=seconds + 30)[0] or 0) if hot_sender else 0
    edge_cpu = cpu_seconds(edge_pids) - before_edge
    uas_cpu = cpu_seconds([uas_pid]) - before_uas
    ok = sum(_stat(out, "Successful call") for out in outs)
    failed = sum(_stat(out, "Failed call") for out in outs)
    messages = 2 * ok if ok else 2 * calls
    return {
        "rate": rate,
        "ok": ok,
        "failed": failed,
        "edge_us": edge_cpu / max(1, messages) * 1e6,
        "edge_core": edge_cpu / elapsed,
        "uas_core": uas_cpu / elapsed,
        "achieved": ok / elapsed,
        "hot_sent": hot_sent,
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


@dataclass(frozen=True)
class Setup:
    kind: str  # "sipwarden" or "kamailio"
    workers: int = 1
    pack: bool = True
    observe: bool = True  # flows and events
    dashboards: int = 0
    sources: int = 0  # 0: one sipp socket; N: N addresses with many ports each
    hot: int = 0  # a hot source's OPTIONS a second besides (sipwarden: a real rate limit)

    @property
    def label(self) -> str:
        words = [f"{self.workers} worker{'s' if self.workers > 1 else ''}"]
        words += [] if self.pack else ["no pack"]
        words += [] if self.observe else ["no flows"]
        words += [f"{self.dashboards} dashboards"] if self.dashboards else []
        words += [f"{self.sources} sources"] if self.sources else []
        words += [f"hot {self.hot // 1000}k/s"] if self.hot else []
        return f"{self.kind} ({', '.join(words)})"


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
    ap.add_argument(
        "--sources",
        type=int,
        default=8,
        help="the many-source runs' addresses (each with 250 ports; 0: no many-source runs)",
    )
    ap.add_argument(
        "--hot",
        type=int,
        default=20_000,
        help="the hot source's OPTIONS a second beside the many sources (0: no such run)",
    )
    ap.add_argument("--only", default="", help="run only the setups whose label holds this")
    args = ap.parse_args()
    for tool in ("sipp", "kamailio"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    rates = [int(r) for r in args.rates.split(",")]
    print(f"OPTIONS + 200 over UDP on loopback; {args.seconds:.0f} s per step; CPU from /proc")
    # (a PGO/LTO build such as Debian's runs the edge faster than a plain one such as pyenv's)
    print(f"sipwarden's interpreter: {sys.executable} (Python {platform.python_version()})")
    print(
        f"{'edge':44}{'rate tx/s':>10}{'ok':>9}{'failed':>8}{'edge µs/msg':>13}{'edge core':>11}{'sipp UAS core':>15}"
    )
    setups = [
        Setup("sipwarden"),
        Setup("sipwarden", observe=False),
        Setup("sipwarden", pack=False),
        Setup("sipwarden", workers=2),
        Setup("kamailio"),
        Setup("kamailio", workers=2),
    ]
    if args.dashboards:
        setups.insert(1, Setup("sipwarden", dashboards=args.dashboards))
    if args.sources:
        setups += [
            Setup(kind, workers=w, sources=args.sources)
            for kind in ("sipwarden", "kamailio")
            for w in (1, 2)
        ]
        if args.hot:
            setups.append(Setup("sipwarden", workers=2, sources=args.sources, hot=args.hot))
    setups = [s for s in setups if args.only in s.label]
    results: dict[Setup, list[dict[str, float]]] = {}
    for setup in setups:
        label = setup.label
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
            api = f"127.0.0.1:{free_tcp_port()}" if setup.dashboards else ""
            if setup.dashboards:  # the store the dashboards read: 100,000 flow records
                from dashboard import fill_flows

                fill_flows(workdir / "bench.db", time.time())
            # the hot source meets a real per-source limit: three times what
            # each of the many sources sends at the highest step
            limit = 2 * 3 * max(rates) // max(1, setup.sources) if setup.hot else 0
            edge = start_edge(
                setup.kind,
                edge_port,
                uas_port,
                workdir,
                setup.workers,
                setup.pack,
                setup.observe,
                api,
                limit,
            )
            watching: subprocess.Popen[bytes] | None = None
            try:
                wait_port(edge_port, edge)
                time.sleep(0.5)  # let every worker come up before counting them
                pids = children(edge.pid)
                if setup.dashboards:
                    watching = open_dashboards(
                        f"http://{api}", workdir, setup.dashboards, rates, args
                    )
                for rate in rates:
                    r = run_step(
                        pids,
                        uas.pid,
                        edge_port,
                        rate,
                        args.seconds,
                        workdir,
                        setup.sources,
                        setup.hot,
                    )
                    results.setdefault(setup, []).append(r)
                    hot = f"  (hot source: {r['hot_sent']:,} sent)" if setup.hot else ""
                    print(
                        f"{label:44}{rate:>10}{r['ok']:>9.0f}{r['failed']:>8.0f}{r['edge_us']:>13.1f}"
                        f"{r['edge_core']:>11.2f}{r['uas_core']:>15.2f}{hot}",
                        flush=True,
                    )
            finally:
                if watching is not None:
                    watching.kill()
                    watching.wait()
                stop(edge, uas)
    summarize(results, args.dashboards)


def stop(*procs: subprocess.Popen[bytes]) -> None:
    """SIGTERM to each, then SIGKILL to any still there 10 s later."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def summarize(results: dict[Setup, list[dict[str, float]]], dashboards: int) -> None:
    print("highest tested rate with < 1 % failed transactions:")
    for setup, steps in results.items():
        good = [
            r["rate"]
            for r in steps
            if r["ok"] + r["failed"] > 0 and r["failed"] < 0.01 * (r["ok"] + r["failed"])
        ]
        print(f"  {setup.label:44}{max(good) if good else 0:>8.0f} tx/s")

    def compare(a: Setup, b: Setup, what: str, ratio: bool) -> None:
        ours, theirs = results.get(a), results.get(b)
        if not ours or not theirs:
            return
        pairs = zip(ours, theirs, strict=True)
        if ratio:
            figures = [f"{x['edge_us'] / y['edge_us']:.1f}x" for x, y in pairs if y["edge_us"] > 0]
        else:
            figures = [f"{x['edge_us'] - y['edge_us']:+.1f}" for x, y in pairs]
        print(f"{what}: " + ", ".join(figures))

    for workers in (1, 2):
        for sources in (0, *{s.sources for s in results if s.sources}):
            many = f", {sources} sources" if sources else ""
            compare(
                Setup("sipwarden", workers=workers, sources=sources),
                Setup("kamailio", workers=workers, sources=sources),
                f"sipwarden / kamailio CPU per message ({workers} worker{'s' if workers > 1 else ''}{many})",
                True,
            )
    if dashboards:
        compare(
            Setup("sipwarden", dashboards=dashboards),
            Setup("sipwarden"),
            f"{dashboards} dashboards open, edge µs per message",
            False,
        )
    compare(
        Setup("sipwarden"),
        Setup("sipwarden", observe=False),
        "flows and events, µs per message",
        False,
    )
    for setup in results:
        if setup.hot:
            compare(
                setup,
                Setup("sipwarden", workers=setup.workers, sources=setup.sources),
                f"a hot source at {setup.hot:,}/s beside them, µs per carried message",
                False,
            )


if __name__ == "__main__":
    main()
