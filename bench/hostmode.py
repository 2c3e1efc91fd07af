"""Host mode (issue 17): what a verdict costs, what the queue adds to each
packet, and what a flood costs with the kernel's pre-filter on.

1. In process (no root): ``HostMode.inbound`` on a phone's REGISTER and on
   svwar's (the pack on: dropped), ``HostMode.outbound`` on Kamailio's 401:
   µs per packet, best of ``--rounds`` rounds; verdicts a second on one core.
2. With root, in network namespaces of its own (tests/edge/netns.py's pair):
   Kamailio on the PBX namespace's public address, ``sipwarden run`` with
   ``[host]`` and no ``[edge]`` beside it. A client sends REGISTERs (no
   credentials: Kamailio's 401 comes back) one after the other and times
   each round trip, without sipwarden (no rules) and with it: the added
   latency per round trip (two queued packets: the REGISTER and the 401),
   p50 and p99. Then a flood of svwar's REGISTER from another address for
   ``--flood-seconds``: judged in Python (not banned), and banned (the
   kernel's pre-filter drops it before the queue); each time, what host
   mode judged a second and the phone's round trips meanwhile.

Run: ``python bench/hostmode.py`` (as root for part 2; ``--no-kernel``
skips it).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dpkt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sipwarden.config import config_from_dict
from sipwarden.hostmode import HostMode
from sipwarden.policy import build_policy

PBX, PHONE, SCANNER = "192.0.2.10", "198.51.100.7", "203.0.113.9"


def register(source: str, ua: str, n: int = 1) -> bytes:
    return (
        f"REGISTER sip:pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP {source}:5062;branch=z9hG4bK{n:08x};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:100@pbx.test>;tag=f{n}\r\nTo: <sip:100@pbx.test>\r\n"
        f"Call-ID: {n}@{source}\r\nCSeq: 1 REGISTER\r\nContact: <sip:100@{source}:5062>\r\n"
        f"User-Agent: {ua}\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def unauthorized(client: str) -> bytes:
    return (
        f"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP {client}:5062;branch=z9hG4bK00000001\r\n"
        "From: <sip:100@pbx.test>;tag=f1\r\nTo: <sip:100@pbx.test>;tag=t1\r\n"
        f"Call-ID: 1@{client}\r\nCSeq: 1 REGISTER\r\n"
        'WWW-Authenticate: Digest realm="pbx.test", nonce="abc", algorithm=MD5\r\n'
        "Server: kamailio\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def packet(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = 8 + len(payload)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=17, data=udp)
    ip.len = 20 + udp.ulen
    return bytes(ip)


def best(fn: Callable[[float], object], n: int, rounds: int) -> float:
    """µs per call, the best of ``rounds`` rounds of ``n``."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(n):
            fn(float(i))
        times.append((time.perf_counter() - start) / n * 1e6)
    return min(times)


def in_process(n: int, rounds: int) -> None:
    # limits high enough that the phone's thousands of REGISTERs are not limited
    # the fingerprints' bans off: svwar stays a source the pack drops, never a banned one
    cfg = config_from_dict(
        {
            "host": {"enabled": True},
            "limits": {"enabled": False},
            "policy": {"pack": True},
            "fingerprints": {"ban": False},
        }
    )
    host = HostMode(cfg.host, table="sipwarden", policy=build_policy(cfg))
    phone = packet(PHONE, PBX, 5062, 5060, register(PHONE, "Yealink SIP-T46S 66.86.0.15"))
    scan = packet(SCANNER, PBX, 5062, 5060, register(SCANNER, "friendly-scanner"))
    answer = packet(PBX, PHONE, 5060, 5062, unauthorized(PHONE))
    print(f"in process, best of {rounds} rounds of {n}, µs per packet (packets a second):")
    for name, fn in (
        ("inbound: a phone's REGISTER, accepted", lambda t: host.inbound(phone, t)),
        ("inbound: svwar's REGISTER, dropped by the pack", lambda t: host.inbound(scan, t)),
        ("outbound: Kamailio's 401, read", lambda t: host.outbound(answer, t)),
    ):
        us = best(fn, n, rounds)
        print(f"  {name:50} {us:7.2f} µs  ({1e6 / us:,.0f}/s)")


# ------------------------------------------------------------- the kernel part


def round_trips(pair, source: str, count: int, pause: float = 0.0) -> list[float]:  # type: ignore[no-untyped-def]
    """``count`` REGISTERs from ``source`` to Kamailio, one at a time; each
    round trip in µs (a lost one counts as 1 s)."""
    from tests.edge.netns import in_namespace

    def run() -> list[float]:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((source, 0))
        s.settimeout(1.0)
        took = []
        for i in range(count):
            data = register(source, "Yealink SIP-T46S 66.86.0.15", i)
            start = time.perf_counter()
            s.sendto(data, (pair.edge_ip, 5060))
            try:
                s.recv(4096)
                took.append((time.perf_counter() - start) * 1e6)
            except TimeoutError:
                took.append(1e6)
            if pause:
                time.sleep(pause)
        s.close()
        return took

    return in_namespace(pair.clients, run)


def quantiles(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100)
    return q[49], q[98]


CONFIG = """
[host]
enabled = true
ports = [5060]
fail = "open"

[limits]
enabled = false

[fingerprints]
ban = false  # the flood is judged by the pack until the operator bans it

[firewall]
enforcer = "nftables"

[storage]
path = "bans.db"

[control]
socket = "sipwarden.sock"

[api]
listen = ""
"""


def flood(pair, source: str, seconds: float) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    script = (
        "import socket, time\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"s.bind(({source!r}, 0))\n"
        f"data = {register(source, 'friendly-scanner')!r}\n"
        f"end, n = time.monotonic() + {seconds}, 0\n"
        "while time.monotonic() < end:\n"
        "    for _ in range(100):\n"
        f"        s.sendto(data, ({pair.edge_ip!r}, 5060))\n"
        "    n += 100\n"
        f"print(n / {seconds})\n"
    )
    return subprocess.Popen(
        pair.in_clients(sys.executable, "-c", script), stdout=subprocess.PIPE, text=True
    )


def udp_in(pair) -> int:  # type: ignore[no-untyped-def]
    """The PBX namespace's UDP InDatagrams: what reached a socket (Kamailio's)."""
    snmp = subprocess.run(
        pair.in_edge("cat", "/proc/net/snmp"), capture_output=True, text=True, timeout=10
    ).stdout.splitlines()
    names, values = [line.split() for line in snmp if line.startswith("Udp:")][:2]
    return int(dict(zip(names, values, strict=True))["InDatagrams"])


@contextlib.contextmanager
def host_mode(pair, tmp: Path, extra: str = "") -> Iterator[Callable[[], dict[str, int]]]:  # type: ignore[no-untyped-def]
    """`sipwarden run` with [host] in the PBX namespace; yields its host counters' reader."""
    from sipwarden.daemon.control import ask

    config = tmp / "host.toml"
    config.write_text(CONFIG + extra)
    log = (tmp / "sipwarden.log").open("wb")
    daemon = subprocess.Popen(
        pair.in_edge(sys.executable, "-m", "sipwarden.cli", "run", "-c", str(config)),
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:
        assert daemon.stdout is not None
        print(f"\n{daemon.stdout.readline().decode().strip()}")
        yield lambda: ask(tmp / "sipwarden.sock", {"cmd": "stats"})["host"]  # type: ignore[no-any-return]
    finally:
        daemon.terminate()
        daemon.wait(15)
        log.close()
        cli(pair, config, "firewall", "flush")


def cli(pair, config: Path, *args: str) -> None:  # type: ignore[no-untyped-def]
    done = subprocess.run(
        pair.in_edge(sys.executable, "-m", "sipwarden.cli", *args, "-c", str(config)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


def flood_case(pair, label: str, stats, seconds: float) -> None:  # type: ignore[no-untyped-def]
    phone, attacker = pair.client_ips[1], pair.client_ips[0]
    before, reached, began = stats().get("received", 0), udp_in(pair), time.monotonic()
    proc = flood(pair, attacker, seconds)
    during = round_trips(pair, phone, int(seconds * 20), pause=0.05)
    sent = float(proc.communicate(timeout=seconds + 30)[0] or 0)
    took = time.monotonic() - began
    judged = stats().get("received", 0) - before
    # what reached Kamailio's socket, less the phone's own REGISTERs
    passed = udp_in(pair) - reached - len(during)
    lost = sum(t >= 1e6 for t in during)
    p50, p99 = quantiles(during)
    print(
        f"flood of svwar's REGISTER, {label}: sent {sent:,.0f}/s; host mode judged"
        f" {judged / took:,.0f}/s; reached Kamailio {max(passed, 0) / took:,.0f}/s;"
        f" the phone's round trips p50 {p50:,.0f} µs p99 {p99:,.0f} µs, {lost}/{len(during)} lost"
    )


def with_kernel(samples: int, flood_seconds: float) -> None:
    from tests.edge.kamailio import kamailio
    from tests.edge.netns import namespace_pair

    with tempfile.TemporaryDirectory() as tmp_dir, namespace_pair() as pair:
        tmp = Path(tmp_dir)
        (tmp / "pbx").mkdir()
        phone, attacker = pair.client_ips[1], pair.client_ips[0]
        with kamailio(tmp / "pbx", netns=pair.edge, address=pair.edge_ip, port=5060):
            round_trips(pair, phone, 200)  # warm
            bare = round_trips(pair, phone, samples)
            with host_mode(pair, tmp) as stats:
                round_trips(pair, phone, 200)
                hosted = round_trips(pair, phone, samples)
                b50, b99 = quantiles(bare)
                h50, h99 = quantiles(hosted)
                print(
                    f"round trip, REGISTER -> Kamailio's 401, {samples} one at a time, µs:\n"
                    f"  without sipwarden  p50 {b50:7.1f}  p99 {b99:7.1f}\n"
                    f"  host mode          p50 {h50:7.1f}  p99 {h99:7.1f}\n"
                    f"  added              p50 {h50 - b50:7.1f}  p99 {h99 - b99:7.1f}"
                    "  (two packets queued: the REGISTER and the 401)"
                )
                flood_case(pair, "the lane on, not banned", stats, flood_seconds)
                cli(pair, tmp / "host.toml", "bans", "add", attacker)
                time.sleep(1.5)  # the ban keeper's batch
                flood_case(pair, "banned (dropped before the queue)", stats, flood_seconds)
            (tmp / "bans.db").unlink()
            with host_mode(pair, tmp, "\n[firewall.lane]\nenabled = false\n") as stats:
                flood_case(pair, "no lane, not banned (all of it queued)", stats, flood_seconds)


def main() -> None:
    logging.disable(logging.WARNING)  # the bans' log lines
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--flood-seconds", type=float, default=5.0)
    parser.add_argument("--no-kernel", action="store_true")
    args = parser.parse_args()
    in_process(args.n, args.rounds)
    if not args.no_kernel:
        if os.geteuid() != 0:
            print("\n(the kernel part needs root: skipped)")
            return
        with_kernel(args.samples, args.flood_seconds)


if __name__ == "__main__":
    main()
