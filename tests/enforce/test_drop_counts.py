"""The kernel's per-source drop counts against the real kernel, in two
network namespaces of the test's own (nft runs in the edge's; the sources
send real UDP datagrams from addresses of 203.0.113.0/24 and 2001:db8::/64
put on the clients' end): a banned source's and a listed source's 1,000
datagrams are dropped and counted to the packet; a full counting set
still drops; a table of the previous release takes the counting at start."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from sipwarden.enforce import DropCounting, NftablesEnforcer, NullEnforcer, drops
from sipwarden.enforce.drops import OVERFLOW
from sipwarden.values import Ban

from ..conftest import need
from ..edge.netns import Pair, in_namespace, namespace_pair

TABLE = "sipwarden"
PORT = 5060
PAYLOAD = 100  # bytes of each datagram: the kernel counts 128 (IPv4), 148 (IPv6)
BANNED = "203.0.113.5"
LISTED = "203.0.113.6"
OTHERS = ("203.0.113.7", "203.0.113.8", "203.0.113.9")
BANNED6 = "2001:db8::5"
EDGE6 = "fd0a::1"


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    need(os.geteuid() == 0, "network namespaces and nftables need root")
    need(shutil.which("nft") is not None, "nftables is not installed (apt-get install nftables)")
    with namespace_pair() as made:
        for source in (BANNED, LISTED, *OTHERS):
            _ip("-n", made.clients, "addr", "add", f"{source}/32", "dev", "c0")
        _ip("-n", made.edge, "addr", "add", f"{EDGE6}/64", "dev", "e0", "nodad")
        _ip("-n", made.clients, "addr", "add", "fd0a::2/64", "dev", "c0", "nodad")
        _ip("-n", made.clients, "addr", "add", f"{BANNED6}/128", "dev", "c0", "nodad")
        _ip("-n", made.edge, "route", "add", "2001:db8::/64", "dev", "e0")  # neighbour answers
        yield made


@pytest.fixture
def edge_socket(pair: Pair) -> Iterator[socket.socket]:
    """The edge's UDP socket (both families): what the kernel let through."""
    sock = in_namespace(pair.edge, _listener)
    try:
        yield sock
    finally:
        sock.close()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("::", PORT))
    sock.setblocking(False)
    return sock


def received(sock: socket.socket) -> dict[str, int]:
    """Datagrams waiting on the edge's socket, by source (after a moment)."""
    time.sleep(0.3)
    found: dict[str, int] = {}
    for _ in range(100_000):  # bounded: more than any test sends
        try:
            _, (host, *_) = sock.recvfrom(2048)
        except BlockingIOError:
            break
        host = host.removeprefix("::ffff:")
        found[host] = found.get(host, 0) + 1
    return found


def send(pair: Pair, source: str, count: int) -> None:
    """``count`` datagrams of PAYLOAD bytes from ``source`` to the edge's port."""
    target = EDGE6 if ":" in source else pair.edge_ip

    def run() -> None:
        family = socket.AF_INET6 if ":" in source else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
            for i in range(count):
                sock.sendto(i.to_bytes(4, "big") * (PAYLOAD // 4), (target, PORT))
                if i % 100 == 99:
                    time.sleep(0.002)  # the veth's backlog holds 1,000: never overflow it

    in_namespace(pair.clients, run)


def enforcer(pair: Pair, **options) -> NftablesEnforcer:
    return NftablesEnforcer(
        table=TABLE,
        ports=[("udp", PORT)],
        command_prefix=pair.in_edge(),
        conntrack=False,
        **options,
    )


def ban(target: str, now: float) -> Ban:
    return Ban(target, "test", "test", now, now + 600)


@pytest.fixture
def clean(pair: Pair) -> Iterator[None]:
    yield
    subprocess.run(pair.in_edge("nft", "delete", "table", "inet", TABLE), timeout=10)


@pytest.mark.usefixtures("clean")
def test_a_banned_and_a_listed_source_are_dropped_and_counted_to_the_packet(pair, edge_socket):
    e = enforcer(pair)
    now = time.time()
    asyncio.run(e.start([ban(BANNED, now), ban(BANNED6, now)], now))
    asyncio.run(e.load_feeds({"203.0.113.6/31": None}, now))  # LISTED, not banned
    assert asyncio.run(e.drop_counts()) == {}

    send(pair, pair.client_ips[0], 10)  # the edge's socket hears an ordinary source
    for source in (BANNED, LISTED, BANNED6):
        send(pair, source, 1000)
    assert received(edge_socket) == {pair.client_ips[0]: 10}  # the rest never reached it

    counts = asyncio.run(e.drop_counts())
    # the whole IP packet: 20 bytes of IPv4 header (40 of IPv6) and 8 of UDP more
    assert counts == {
        BANNED: (1000, 1000 * (PAYLOAD + 28)),
        LISTED: (1000, 1000 * (PAYLOAD + 28)),
        BANNED6: (1000, 1000 * (PAYLOAD + 48)),
    }
    # the drop rules' own counters agree: the bans' and the feeds'
    assert asyncio.run(e.dropped()) == 2000
    assert asyncio.run(e.feed_dropped()) == 1000

    send(pair, BANNED, 500)  # cumulative
    assert asyncio.run(e.drop_counts())[BANNED] == (1500, 1500 * (PAYLOAD + 28))
    asyncio.run(e.start([ban(BANNED, now)], now))  # a restart: the counts start at zero
    assert asyncio.run(e.drop_counts()) == {}


@pytest.mark.usefixtures("clean")
def test_a_full_counting_set_still_drops_and_counts_the_rest_together(pair, edge_socket):
    e = enforcer(pair, drop_counting=DropCounting(size=2, idle=60))
    now = time.time()
    asyncio.run(e.start([ban(s, now) for s in (BANNED, LISTED, *OTHERS)], now))
    for source in (BANNED, LISTED, *OTHERS):
        send(pair, source, 100)
    send(pair, pair.client_ips[0], 10)
    assert received(edge_socket) == {pair.client_ips[0]: 10}

    counts = asyncio.run(e.drop_counts())
    assert counts.pop(OVERFLOW) == (300, 300 * (PAYLOAD + 28))  # three found the set full
    assert counts == {BANNED: (100, 12_800), LISTED: (100, 12_800)}  # the first two
    assert asyncio.run(e.dropped()) == 500


@pytest.mark.usefixtures("clean")
def test_the_previous_releases_table_takes_the_counting_and_loses_no_ban(pair, edge_socket):
    t = f"inet {TABLE}"
    old = [  # what the release before wrote (enforce/nftables.py without drops.py)
        f"add table {t}",
        *(f"add set {t} {n} {{ type ipv4_addr; flags timeout; }}" for n in ["ban4"]),
        f"add set {t} ban6 {{ type ipv6_addr; flags timeout; }}",
        *(
            f"add set {t} {n} {{ type ipv{n[-1]}_addr; flags interval,timeout; }}"
            for n in ("net4", "net6", "feed4", "feed6")
        ),
        f"add chain {t} prerouting {{ type filter hook prerouting priority raw; policy accept; }}",
        *(
            f"add rule {t} prerouting {'ip' if n.endswith('4') else 'ip6'} saddr @{n}"
            f" meta l4proto . th dport {{ udp . {PORT} }} counter drop"
            for n in ("ban4", "ban6", "net4", "net6", "feed4", "feed6")
        ),
        f'add element {t} ban4 {{ {BANNED} timeout 600s comment "sw1 test 1.000 1 old" }}',
    ]
    subprocess.run(
        pair.in_edge("nft", "-f", "-"), input="\n".join(old), text=True, check=True, timeout=10
    )
    e = enforcer(pair)
    now = time.time()
    kept = asyncio.run(e.bans(now))  # what the daemon merges at start
    assert [b.target for b in kept] == [BANNED]
    asyncio.run(e.start(kept, now))
    send(pair, BANNED, 1000)
    assert received(edge_socket) == {}
    assert asyncio.run(e.drop_counts()) == {BANNED: (1000, 128_000)}

    # switched off: the counting goes, the drops stay; on again: back, from zero
    off = enforcer(pair, drop_counting=None)
    asyncio.run(off.start(kept, now))
    text = subprocess.run(
        pair.in_edge("nft", "list", "table", *t.split()), capture_output=True, text=True, timeout=10
    ).stdout
    assert "drops" not in text and "dropped" not in text, text
    send(pair, BANNED, 10)
    assert received(edge_socket) == {}
    assert asyncio.run(off.drop_counts()) == {}
    asyncio.run(e.start(kept, now))
    send(pair, BANNED, 10)
    assert asyncio.run(e.drop_counts()) == {BANNED: (10, 1280)}
    asyncio.run(e.start(kept, now))  # twice: nothing duplicated
    rules = subprocess.run(
        pair.in_edge("nft", "-a", "list", "chain", *t.split(), "dropped4"),
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    assert rules.count("drop #") == 2, rules


def test_without_nftables_nothing_is_counted():
    assert asyncio.run(NullEnforcer().drop_counts()) == {}
    with pytest.raises(ValueError, match=r"drop_counts\.size"):
        DropCounting(size=0)


def test_the_listing_is_read_robustly_in_a_child_process():
    sets = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {
                "set": {
                    "name": "drops6",
                    "elem": [
                        {
                            "elem": {
                                "val": "2001:DB8:0:0::5",
                                "counter": {"packets": 3, "bytes": 444},
                            }
                        },
                        {"elem": {"val": "not an address", "counter": {"packets": 1, "bytes": 1}}},
                        {"elem": {"val": "192.0.2.1"}},  # no counter
                        {"elem": {"val": "192.0.2.2", "counter": {"packets": -1, "bytes": 9}}},
                        "192.0.2.3",  # a bare element
                    ],
                }
            },
            {"set": {"name": "ban4", "elem": ["192.0.2.4"]}},  # not a counting set
        ]
    }
    counter = {"nftables": [{"counter": {"name": "drops_uncounted", "packets": 7, "bytes": 896}}]}
    text = json.dumps(sets) + "\n" + json.dumps(counter, indent=2)
    expected = {"2001:db8::5": (3, 444), OVERFLOW: (7, 896)}
    assert drops.counts(drops.listing(text)) == expected
    script = [sys.executable, "-I", drops.__file__]
    done = subprocess.run(script, input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert drops.from_lines(done.stdout) == expected
    bad = subprocess.run(script, input='{"x": 1}', capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "no nftables array" in bad.stderr
    with pytest.raises(ValueError):
        drops.from_lines("192.0.2.1 3\n")
