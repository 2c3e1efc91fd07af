"""The kernel lane against the real kernel, in two network namespaces of
the test's own (nft runs in the edge's; the flooder sends spoofed
datagrams from the clients'): known-good and trusted sources pass before
any limit, unknown ones are held per prefix and in total, and every packet
is counted where the lane decided it."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from sipwarden.enforce import LaneSettings, NftablesEnforcer, NullEnforcer
from sipwarden.enforce.lane import layout

from ..conftest import need
from ..edge.flood import FLOODER
from ..edge.netns import Pair, namespace_pair

TABLE = "sipwarden"
PORT = 5060
GOOD = "192.0.2.7"  # a phone that logged in
TRUSTED = "198.51.100.0/28"  # a trunk's network


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    need(os.geteuid() == 0, "network namespaces and nftables need root")
    need(shutil.which("nft") is not None, "nftables is not installed (apt-get install nftables)")
    with namespace_pair() as made:
        yield made


@pytest.fixture
def e(pair: Pair) -> Iterator[NftablesEnforcer]:
    enforcer = NftablesEnforcer(table=TABLE, command_prefix=pair.in_edge(), conntrack=False)
    try:
        yield enforcer
    finally:
        subprocess.run(pair.in_edge("nft", "delete", "table", "inet", TABLE), timeout=10)


def settings(**changes) -> LaneSettings:
    return LaneSettings(**{"ports": (("udp", PORT),), **changes})


def send(pair: Pair, sources: str, count: int, rate: int, seconds: float) -> int:
    """Spoofed REGISTERs from ``count`` addresses of ``sources`` to the
    edge's address; how many were sent."""
    done = subprocess.run(
        pair.in_clients(
            sys.executable,
            str(FLOODER),
            "--target",
            pair.edge_ip,
            "--sources",
            sources,
            "--count",
            str(count),
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1].split('"sent": ')[1].split(",")[0])


def test_known_good_and_trusted_pass_unknown_sources_are_held_per_prefix_and_in_total(
    pair: Pair, e: NftablesEnforcer
):
    now = time.time()
    asyncio.run(e.start([], now))  # the bans' table and chain, as the daemon starts
    asyncio.run(
        e.start_lane(settings(prefix_rate=100, total_rate=1000), [ipaddress.ip_network(TRUSTED)])
    )
    assert asyncio.run(e.add_known_good({GOOD: now + 600}, now)) == []
    assert asyncio.run(e.lane_counters()) == dict.fromkeys(
        ("good", "trusted", "unknown-passed", "prefix-dropped", "total-dropped"), 0
    )

    # one /24 sending 20 times its rate: held to it (100 a second, 100 at once)
    dense = send(pair, "198.18.7.0/24", 254, 20_000, 0.1)
    after_dense = asyncio.run(e.lane_counters())
    # a phone that logged in and a trunk, as fast: every packet passes
    good = send(pair, f"{GOOD}/32", 1, 20_000, 0.1)
    trusted = send(pair, TRUSTED, 14, 20_000, 0.1)
    time.sleep(1.2)  # the total's bucket fills again
    # thousands of /24s, each under its rate: held together to the total
    spread = send(pair, "198.18.0.0/16", 65_024, 20_000, 0.3)
    c = asyncio.run(e.lane_counters())
    print(f"sent {dense} dense, {good} good, {trusted} trusted, {spread} spread: {c}")

    assert dense >= 1500 and good >= 1500 and trusted >= 1500 and spread >= 4000
    assert after_dense["prefix-dropped"] >= dense - 400, after_dense
    assert c["good"] == good
    assert c["trusted"] == trusted
    assert c["total-dropped"] >= spread - 1000, c  # a burst of 200, and 1000 a second
    assert c["prefix-dropped"] - after_dense["prefix-dropped"] <= spread // 10, c
    # every packet from an unknown source was passed or dropped, and counted once
    unknown = c["unknown-passed"] + c["prefix-dropped"] + c["total-dropped"]
    assert unknown == dense + spread, c


def test_a_start_keeps_the_known_good_and_rebuilds_the_rest(pair: Pair, e: NftablesEnforcer):
    now = time.time()
    asyncio.run(e.start([], now))
    asyncio.run(e.start_lane(settings(), [ipaddress.ip_network(TRUSTED)]))
    added = {GOOD: now + 600, "2001:db8::1": now + 300}
    assert asyncio.run(e.add_known_good(added, now)) == []
    send(pair, "198.18.7.0/24", 254, 5000, 0.1)
    assert asyncio.run(e.lane_counters())["unknown-passed"] > 0

    # a restart with other settings: the known-good sources stay, with their
    # time left; the counters start again at zero; the new rates are in force
    asyncio.run(e.start_lane(settings(prefix_rate=50, prefix_v4=16), []))
    view = asyncio.run(e.lane_view())
    assert view.present
    assert set(view.known_good) == {GOOD, "2001:db8::1"}
    assert 590 <= (view.known_good[GOOD] or 0) <= 600
    assert view.trusted == []
    assert set(view.counters.values()) == {0}
    rules = subprocess.run(
        pair.in_edge("nft", "list", "chain", "inet", TABLE, "lane_sip"),
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    assert "ip saddr & 255.255.0.0 limit rate over 50/second" in rules, rules

    # renewed: the longer timeout replaces the old one
    asyncio.run(e.add_known_good({GOOD: now + 5000}, now))
    assert (asyncio.run(e.lane_view()).known_good[GOOD] or 0) > 4900
    # nothing but an address reaches nft; the rest of the batch does
    refused = asyncio.run(
        e.add_known_good(
            {"not an address": now + 60, "fe80::1%eth0": now + 60, "192.0.2.9": now + 60}, now
        )
    )
    assert sorted(refused) == ["fe80::1%eth0", "not an address"]
    assert "192.0.2.9" in asyncio.run(e.lane_view()).known_good

    # trusted networks replaced, overlaps merged (nft refuses overlapping intervals)
    nets = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "10.1.0.0/16", "2001:db8:1::/48")]
    asyncio.run(e.load_trusted(nets))
    assert sorted(asyncio.run(e.lane_view()).trusted) == ["10.0.0.0/8", "2001:db8:1::/48"]

    # switched off: the lane goes, the bans' chain stays
    asyncio.run(e.start_lane(None, []))
    view = asyncio.run(e.lane_view())
    assert not view.present and view.known_good == {} and view.counters == {}
    chains = subprocess.run(
        pair.in_edge("nft", "list", "chains", "inet"), capture_output=True, text=True, timeout=10
    ).stdout
    assert "prerouting" in chains and "lane" not in chains, chains
    asyncio.run(e.start_lane(None, []))  # removing no lane is no error


def test_the_lane_guards_only_the_edges_ports_and_new_tcp_connections():
    lines = "\n".join(layout("t", settings(ports=(("tcp", 5061), ("udp", 5060)), prefix_v6=64), []))
    assert "meta l4proto . th dport { tcp . 5061, udp . 5060 } jump lane_sip" in lines
    assert "tcp flags & (syn | ack) != syn accept" in lines  # an established connection
    assert "ip6 saddr and ffff:ffff:ffff:ffff:: limit rate over 200/second" in lines
    assert "ip saddr and 255.255.255.0 limit rate over 200/second" in lines
    # per address when asked: no mask at all
    assert "{ ip saddr limit" in "\n".join(layout("t", settings(prefix_v4=32), []))
    with pytest.raises(ValueError, match="no SIP port"):
        LaneSettings(ports=())


def test_without_nftables_there_is_no_lane():
    null = NullEnforcer()
    asyncio.run(null.start_lane(settings(), []))
    assert asyncio.run(null.add_known_good({GOOD: 1e10}, 0.0)) == []
    assert asyncio.run(null.lane_counters()) == {}
    assert not asyncio.run(null.lane_view()).present
