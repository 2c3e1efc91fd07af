"""A REGISTER flood from spoofed sources, for the kernel lane's flood test
and ``bench/flood.py``: raw IPv4 datagrams (``IPPROTO_RAW``, the header
ours), one REGISTER per source address of ``--sources`` in a shuffled
order, at a fixed rate, bounded in count and in time.

Run it inside the clients' network namespace the test made
(``ip netns exec NS python flooder.py ...``): the spoofed addresses exist
nowhere, and the answers sent to them die in that namespace (it does not
forward). It refuses sources outside the benchmarking and documentation
ranges and targets outside private ones, so it cannot spoof the internet's
addresses nor reach anyone's host. Each source always sends the same
REGISTER (one user, one Call-ID): a source's few packets a second never
trip a per-source limit, nor the failure tracker's enumeration.

Stdlib only; prints one JSON line when done: packets sent, seconds, the
rate achieved, the number of sources.

    python flooder.py --target 10.202.0.1 --rate 40000 --seconds 15
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import socket
import struct
import sys
import time

SPOOFABLE = [  # RFC 2544 benchmarking, RFC 5737 documentation
    ipaddress.ip_network(n) for n in ("198.18.0.0/15", "192.0.2.0/24", "198.51.100.0/24")
]
TARGETS = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "127.0.0.0/8")]
MAX_SECONDS = 120.0
MAX_PACKETS = 10_000_000
MAX_SOURCES = 131_072
CHUNK = 256  # packets sent between two looks at the clock
# seconds to wait when ahead: the flood goes out a few packets every ~0.15 ms
# (a longer wait makes bursts, and a rate limit's tokens then pile up in the
# gaps for whoever comes next, which a flood from the internet never leaves)
PACE = 0.0001
REALM = "pbx.test"


def register(source: str, target: str, port: int, n: int) -> bytes:
    sport = 5060 + n % 1000
    body = (
        f"REGISTER sip:{REALM} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source}:{sport};branch=z9hG4bK{n:08x}fl;rport\r\n"
        f"From: <sip:f{n}@{REALM}>;tag={n:x}\r\n"
        f"To: <sip:f{n}@{REALM}>\r\n"
        f"Call-ID: {n:x}-flood@{source}\r\n"
        "CSeq: 1 REGISTER\r\n"
        f"Contact: <sip:f{n}@{source}:{sport}>\r\n"
        "Max-Forwards: 70\r\n"
        "Expires: 600\r\n"
        "User-Agent: Yealink SIP-T46S 66.86.0.15\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    udp = struct.pack("!HHHH", sport, port, 8 + len(body), 0)  # no UDP checksum (IPv4)
    # the kernel fills in the total length, the id and the header checksum
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        0,
        0,
        0,
        64,
        socket.IPPROTO_UDP,
        0,
        socket.inet_aton(source),
        socket.inet_aton(target),
    )
    return ip + udp + body


def packets(sources: ipaddress.IPv4Network, count: int, target: str, port: int) -> list[bytes]:
    hosts = [str(h) for h in sources.hosts() if h.packed[-1] not in (0, 255)][:count]
    random.Random(14).shuffle(hosts)  # neighbours apart: no /24 sends in bursts
    return [register(h, target, port, n) for n, h in enumerate(hosts)]


def flood(sock: socket.socket, pkts: list[bytes], target: str, rate: float, seconds: float) -> int:
    """Send ``pkts`` round and round at ``rate`` a second for ``seconds``."""
    send = sock.sendto
    addr = (target, 0)
    total = min(int(rate * seconds), MAX_PACKETS)
    n = len(pkts)
    sent = i = 0
    start = time.monotonic()
    while sent < total:
        elapsed = time.monotonic() - start
        if elapsed > seconds + 1:
            break  # the machine could not keep the pace: stop on time all the same
        due = min(int(rate * elapsed), total) - sent
        if due <= 0:
            time.sleep(PACE)
            continue
        for _ in range(min(due, CHUNK)):
            try:  # noqa: SIM105 (suppress() costs a context manager per packet)
                send(pkts[i], addr)
            except OSError:  # a full queue: the packet is lost, as on a wire
                pass
            i = i + 1 if i + 1 < n else 0
            sent += 1
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--port", type=int, default=5060)
    parser.add_argument("--sources", default="198.18.0.0/16")
    parser.add_argument("--count", type=int, default=65_024, help="source addresses used")
    parser.add_argument("--rate", type=float, required=True, help="packets a second")
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args(argv)
    sources = ipaddress.ip_network(args.sources)
    target = ipaddress.ip_address(args.target)
    if not any(sources.subnet_of(n) for n in SPOOFABLE if n.version == sources.version):
        parser.error(f"--sources {sources}: only inside {', '.join(map(str, SPOOFABLE))}")
    if not any(target in n for n in TARGETS):
        parser.error(f"--target {target}: only inside {', '.join(map(str, TARGETS))}")
    if not 0 < args.seconds <= MAX_SECONDS or not 0 < args.count <= MAX_SOURCES:
        parser.error(f"--seconds up to {MAX_SECONDS:g}, --count up to {MAX_SOURCES}")
    assert isinstance(sources, ipaddress.IPv4Network)
    pkts = packets(sources, args.count, str(target), args.port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    print(json.dumps({"ready": len(pkts)}), flush=True)
    start = time.monotonic()
    sent = flood(sock, pkts, str(target), args.rate, args.seconds)
    took = time.monotonic() - start
    print(
        json.dumps(
            {
                "sent": sent,
                "seconds": round(took, 3),
                "rate": round(sent / took),
                "sources": len(pkts),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
