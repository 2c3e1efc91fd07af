"""Acceptance of the fleet's bans (issue 20): three real `sipwarden run`
nodes and a real `redis-server`, in the edge namespace of the brute-force
site (``tests/edge/site.py``: Kamailio with digest auth behind, SIPVicious
in the clients' namespace).

    clients namespace               edge namespace
    .2 svcrack          --- veth --- .1:5060 node A   table inet swfleet_a
                                     .1:5070 node B   table inet swfleet_b
                                     .1:5080 node C   table inet swfleet_c (publish_limit 4)
                                     127.0.0.1 redis-server, Kamailio

The three nodes are shared by the module's tests, which run in order:
svcrack banned by A reaches B's and C's kernels (the delay printed), an
unban on C lifts it on A and B; Redis away 20 s while A bans, back: B and C
catch up, none lost, none doubled; B SIGKILLed and restarted holds every
ban in force; C over its publish limit is held back and reported; a wrong
password refuses to start.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..edge.phone import PORT
from ..edge.site import BIN, Daemon, Site, eventually
from ..edge.site import site as site  # the fixture
from .redis_server import Redis, redis_server

# one three-node fleet for the module, its cases in order on one xdist worker
# (scripts/test.sh runs --dist loadgroup): they share the fleet's state
pytestmark = pytest.mark.xdist_group("fleet-bans")

NODES = {"a": PORT, "b": 5070, "c": 5080}
LIMITED = "c"  # the node with a small publish limit
LIMIT = 4


class Node(Daemon):
    """One `sipwarden run` of the fleet, in the edge namespace: the edge
    tests' daemon (its start, log, cli) with a config of its own."""

    ready_within = 20.0

    def __init__(
        self, site: Site, tmp: Path, name: str, redis: Redis, port: int = 0, **fleet: object
    ) -> None:
        self.site, self.name, self.tmp = site, name, tmp / name
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.table = f"swfleet_{name}"
        self.config = self.tmp / "edge.toml"
        ip = site.pair.edge_ip
        self.config.write_text(
            f"""
[edge]
listen = ["udp:{ip}:{port or NODES[name]}"]
backend = "udp:127.0.0.1:{site.backend_port}"
flow_key_file = "flow.key"

[policy]
pack = false

[failures]
maxretry = 5

[firewall]
enforcer = "nftables"
table = "{self.table}"

[storage]
path = "bans.db"

[control]
socket = "sipwarden.sock"

[api]
listen = ""

{redis.fleet_toml(f"node-{name}", **fleet)}
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def stop(self, sig: int = signal.SIGTERM) -> int:
        return 0 if self.proc is None else super().stop(sig)

    def kernel(self) -> dict[str, Any]:
        """The node's kernel set: target -> seconds left (None: permanent)."""
        return self.json("firewall", "show")["elements"]  # type: ignore[no-any-return]

    def by_ip(self) -> dict[str, dict[str, Any]]:
        return {row["ip"]: row for row in self.bans()}

    def fleet(self) -> dict[str, Any]:
        return self.json("status")["fleet"]  # type: ignore[no-any-return]

    def ban(self, target: str, seconds: int = 3600) -> None:
        done = self.cli("bans", "add", target, "--for", f"{seconds // 60}m", "--reason", "fleet")
        assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def fleet(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    tmp = tmp_path_factory.mktemp("fleet")
    with redis_server(tmp / "redis", prefix=site.pair.in_edge()) as redis:
        nodes = {
            name: Node(
                site, tmp, name, redis, **({"publish_limit": LIMIT} if name == LIMITED else {})
            )
            for name in NODES
        }
        nodes["a"].redis = redis  # type: ignore[attr-defined]
        try:
            for node in nodes.values():
                node.start()
            yield nodes
        finally:
            for node in nodes.values():
                node.stop()
                print(f"--- node {node.name}\n{node.log()}")
                subprocess.run(
                    site.pair.in_edge("nft", "delete", "table", "inet", node.table),
                    capture_output=True,
                    timeout=10,
                )


def test_svcrack_banned_on_a_is_dropped_by_b_and_c_and_an_unban_on_c_lifts_it(
    site: Site,
    fleet: dict[str, Node],
    tmp_path: Path,
) -> None:
    a, b, c = fleet["a"], fleet["b"], fleet["c"]
    dictionary = tmp_path / "passwords.txt"
    dictionary.write_text("".join(f"guess{i}\n" for i in range(40)))
    svcrack = subprocess.Popen(
        site.pair.in_clients(
            str(BIN / "sipvicious_svcrack"), "-u", "100", "-d", str(dictionary),
            "-b", site.attacker, "--timeout", "0.02", "--maximumtime", "30",
            site.pair.edge_ip,
        ),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        banned = eventually(lambda: site.attacker in a.kernel(), 15, 0.05)
        assert banned, a.log()
    finally:
        svcrack.kill()
        svcrack.wait(10)
    held = eventually(lambda: site.attacker in b.kernel() and site.attacker in c.kernel(), 15, 0.05)
    assert held, f"{b.log()}\n{c.log()}"
    ban_a = a.by_ip()[site.attacker]
    assert ban_a["origin"] == "" and ban_a["detector"].startswith("auth")
    for node in (b, c):
        row = node.by_ip()[site.attacker]
        assert row["origin"] == "node-a", row
        assert row["detector"] == ban_a["detector"] and row["offence"] == ban_a["offence"]
        assert abs(row["expires_at"] - ban_a["expires_at"]) < 5  # the remaining time, kept
        shown = node.json("bans", "show", site.attacker)
        assert shown["history"][-1]["origin"] == "node-a", shown
        assert "from fleet node node-a" in node.cli("bans", "show", site.attacker).stdout
        fleet = node.fleet()  # the daemon's own measure: A's publication to applied here
        assert fleet["propagation"]["le:+Inf"] >= 1 and fleet["delay-median-ms"] is not None, fleet
        print(
            f"propagation A -> {node.name} (node {node.name}'s own measure):"
            f" median {fleet['delay-median-ms']} ms, p99 {fleet['delay-p99-ms']} ms"
        )

    done = c.cli("bans", "remove", site.attacker)
    assert done.returncode == 0, done.stderr
    lifted = eventually(lambda: all(site.attacker not in n.kernel() for n in (a, b, c)), 15, 0.1)
    assert lifted, f"{a.log()}\n{b.log()}"
    assert site.attacker not in a.by_ip() and site.attacker not in b.by_ip()

    status = a.json("fleet", "status")
    assert set(status["nodes"]) == {"node-a", "node-b", "node-c"}, status
    assert status["nodes"]["node-a"]["published"] >= 1
    assert status["nodes"]["node-b"]["applied"] >= 1
    text = a.cli("fleet", "status")
    assert text.returncode == 0 and "node-c" in text.stdout, text


def test_redis_away_twenty_seconds_then_back_b_and_c_catch_up_none_lost_none_doubled(
    fleet: dict[str, Node],
) -> None:
    a, b, c = fleet["a"], fleet["b"], fleet["c"]
    redis: Redis = a.redis  # type: ignore[attr-defined]
    targets = [f"203.0.113.{n}" for n in range(10, 13)]
    applied = {n.name: n.fleet()["counters"].get("applied", 0) for n in (b, c)}
    redis.stop()
    try:
        stopped = time.monotonic()
        for target in targets:
            a.ban(target)
        assert eventually(lambda: a.fleet()["degraded"], 10, 0.2), a.log()
        assert a.fleet()["queue"] == len(targets)
        metrics_degraded = a.json("status")["fleet"]["state"]
        assert metrics_degraded == "degraded"
        # the node works alone: its own kernel holds them at once
        assert all(t in a.kernel() for t in targets)
        time.sleep(max(0.0, 20 - (time.monotonic() - stopped)))
    finally:
        redis.start()
    for node in (b, c):
        caught = eventually(lambda n=node: all(t in n.kernel() for t in targets), 30, 0.2)
        assert caught, node.log()
    assert eventually(lambda: not a.fleet()["degraded"] and a.fleet()["queue"] == 0, 10, 0.2)
    for node in (b, c):
        rows = node.by_ip()
        assert all(rows[t]["origin"] == "node-a" for t in targets), rows
        # none doubled: each applied once
        assert node.fleet()["counters"].get("applied") == applied[node.name] + len(targets), (
            node.fleet()
        )
        for target in targets:  # and the store, read by another process, one row each
            history = node.json("bans", "show", target)["history"]
            assert len(history) == 1, (node.name, target, history)
            assert history[0]["origin"] == "node-a" and history[0]["ended_at"] is None


def test_b_killed_and_restarted_holds_every_ban_in_force(fleet: dict[str, Node]) -> None:
    a, b = fleet["a"], fleet["b"]
    b.stop(signal.SIGKILL)
    late = "203.0.113.20"
    a.ban(late)  # made while B is away
    b.start()
    in_force = set(a.by_ip())
    assert late in in_force
    caught = eventually(lambda: in_force <= set(b.kernel()), 20, 0.2)
    assert caught, (in_force, b.kernel(), b.log())
    assert in_force <= set(b.by_ip())


def test_a_node_over_its_publish_limit_is_held_back_and_reported(fleet: dict[str, Node]) -> None:
    a, c = fleet["a"], fleet["c"]
    before = c.fleet()["counters"].get("published", 0)
    targets = [f"198.51.100.{n}" for n in range(30, 30 + LIMIT + 3)]
    for target in targets:
        c.ban(target)
    assert all(t in c.kernel() for t in targets)  # every ban holds on C itself
    allowed = LIMIT - before
    reported = eventually(lambda: c.fleet()["counters"].get("held-back", 0) >= 3, 10, 0.2)
    assert reported, c.fleet()
    published = eventually(lambda: sum(t in a.kernel() for t in targets) == allowed, 15, 0.2)
    assert published, (allowed, a.kernel())
    time.sleep(2)  # no more come
    assert sum(t in a.kernel() for t in targets) == allowed
    assert re.search(r"publish_limit", c.log()), c.log()
    status = a.json("fleet", "status")["nodes"]["node-c"]
    assert status["held_back"] >= 3, status


def test_a_wrong_redis_password_refuses_to_start(
    site: Site,
    fleet: dict[str, Node],
    tmp_path: Path,
) -> None:
    redis: Redis = fleet["a"].redis  # type: ignore[attr-defined]
    node = Node(site, tmp_path, "d", redis, port=5090)
    node.config.write_text(node.config.read_text().replace('password = "', 'password = "wrong-'))
    done = subprocess.run(
        site.pair.in_edge(sys.executable, "-m", "sipwarden.cli", "run", "-c", str(node.config)),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused user 'sipwarden'" in lines[0], done.stderr
    assert "wrong-" not in done.stderr  # the password is not shown
