"""Shared intel with three real ``sipwarden run`` nodes, a real redis-server,
the local APIBAN mock (one key for the fleet) and a list feed over HTTP,
all on the loopback of a network namespace of the test's own (the listed
sources' addresses exist there only; the enforcer is "none": the edge
drops them itself).

Each node names the mock and the list's server by a loopback address of
its own (127.0.0.11, .12, .13: the Host it asks), so the servers can tell
which node's requests reach them: exactly one node fetches each feed; all
three have the feeds' entries and drop a listed source; the fetcher
killed (SIGKILL), another takes over within the lease's bound; a fetch
that fails keeps the last good list on every node."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sipwarden.daemon.control import ask
from sipwarden.fleet.intel import LEASE, REMOTE_EVERY

from ..conftest import need
from ..edge.netns import in_namespace
from ..intel.mock_apiban import mock_thread
from .redis_server import free_tcp_port, redis_server

KEY = "s3cr3t-k3y-0123456789"
ATTACKER = "45.95.147.7"  # public (APIBAN lists public addresses only); in the namespace only
LISTED = "203.0.113.7"  # on the list feed
NODES = ("a", "b", "c")
APIBAN_FEED, LIST_FEED = "apiban:sip", "blocklist"


def host_of(name: str) -> str:
    return f"127.0.0.{11 + NODES.index(name)}"


def wait_for(check: Callable[[], bool], seconds: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


@contextmanager
def own_namespace() -> Iterator[str]:
    need(os.geteuid() == 0, "network namespaces need root")
    need(shutil.which("ip") is not None, "iproute2 is not installed")
    name = f"swfi{os.getpid() % 100_000}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)  # a leftover
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        for command in (
            "link set lo up",
            f"addr add {ATTACKER}/32 dev lo",
            f"addr add {LISTED}/32 dev lo",
        ):
            subprocess.run(["ip", "-n", name, *command.split()], check=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


class ListServer:
    """The list feed over HTTP: the file's lines, or a 503 while ``failing``;
    the Host of every request kept."""

    def __init__(self, netns: str, body: str) -> None:
        self.body = body
        self.failing = False
        self.hosts: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hosts.append((self.headers.get("Host") or "").rpartition(":")[0])
                status, data = (503, b"down") if owner.failing else (200, owner.body.encode())
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        # bound in the namespace (its socket stays there), served from a thread here
        self.server = in_namespace(netns, lambda: ThreadingHTTPServer(("0.0.0.0", 0), Handler))
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Node:
    def __init__(self, name: str, netns: str, tmp: Path, config: str) -> None:
        self.name, self.netns, self.dir = name, netns, tmp / name
        self.dir.mkdir()
        (self.dir / "node.toml").write_text(config)
        self.port = free_tcp_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.dir / "node.log").open("wb")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, sys.executable, "-m", "sipwarden.cli", "run",
             "-c", str(self.dir / "node.toml")],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
        )  # fmt: skip
        log.close()

    def stats(self) -> dict[str, Any] | None:
        try:
            return ask(self.dir / "sipwarden.sock", {"cmd": "stats"})
        except (OSError, ValueError):
            return None

    def in_force(self) -> dict[str, int]:
        stats = self.stats()
        if stats is None:
            return {}
        return {f["feed"]: f.get("in_force", 0) for f in stats["intel"]["feeds"]}

    def fleet(self, feed: str) -> dict[str, Any]:
        stats = self.stats() or {}
        for item in stats.get("fleet-intel", {}).get("feeds", []):
            if item["feed"] == feed:
                return dict(item)
        return {}

    def cli(self, *args: str) -> str:
        """`sipwarden ARGS -c node.toml`'s output (the control socket: no namespace needed)."""
        argv = [sys.executable, "-m", "sipwarden.cli", *args, "-c", str(self.dir / "node.toml")]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=self.dir)
        assert done.returncode == 0, f"{args}: {done.stderr}"
        return done.stdout

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)  # its lease is not given back: it runs out
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        return (self.dir / "node.log").read_text(errors="replace")[-3000:]


def send_from(netns: str, source: str, port: int) -> None:
    """One SIP OPTIONS from ``source`` to a node (the edge judges it)."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((source, 0))
        return sock

    sock = in_namespace(netns, make)
    message = (
        f"OPTIONS sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP {source};branch=z9hG4bK1\r\n"
        f"From: <sip:x@{source}>;tag=1\r\nTo: <sip:example.test>\r\nCall-ID: 1@{source}\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    try:
        sock.sendto(message.encode(), ("127.0.0.1", port))
    finally:
        sock.close()


def test_one_node_fetches_the_others_take_the_lists(tmp_path: Path) -> None:
    with (
        own_namespace() as netns,
        redis_server(tmp_path / "redis", prefix=["ip", "netns", "exec", netns]) as redis,
        mock_thread(key=KEY, rate_window=1.0, netns=netns, host="0.0.0.0") as apiban,
    ):
        start = int(time.time()) - 86400
        for i in range(300):  # two pages of 250
            apiban.add(f"45.{(i >> 8) + 60}.{i & 255}.9", start + i)
        apiban.add(ATTACKER, start + 400)
        lists = ListServer(netns, f"{LISTED}\n198.51.100.0/24\n")
        nodes: list[Node] = []
        try:
            for name in NODES:
                host = host_of(name)
                node = Node(name, netns, tmp_path, "")
                (node.dir / "node.toml").write_text(
                    f"""
[edge]
listen = ["udp:127.0.0.1:{node.port}"]
backend = "udp:127.0.0.1:9"
flow_key_file = "flow.key"

[storage]
path = "sipwarden.db"

[control]
socket = "sipwarden.sock"

[api]
listen = ""

[intel.apiban]
key = "{KEY}"
url = "http://{host}:{apiban.port}/api/"
rate_window = "1s"
refresh = "2s"

[[intel.feeds]]
name = "{LIST_FEED}"
url = "http://{host}:{lists.port}/list.txt"
refresh = "2s"

{redis.fleet_toml(name)}"""
                )
                nodes.append(node)
                node.start()
            wanted = {APIBAN_FEED: 301, LIST_FEED: 2}
            for node in nodes:
                assert wait_for(lambda n=node: n.in_force() == wanted, 60), node.log()
            # one fetcher per feed: every request to the mock and to the list's server
            # came from one node (the Host it named), the one the fleet says fetches it
            api_hosts = {r.host.rpartition(":")[0] for r in apiban.requests}
            assert len(api_hosts) == 1, api_hosts
            assert len(set(lists.hosts)) == 1, set(lists.hosts)
            fetcher = next(n for n in nodes if host_of(n.name) in api_hosts)
            for node in nodes:
                shown = node.fleet(APIBAN_FEED)
                assert shown["fetcher"] == fetcher.name
                if node is fetcher:
                    assert shown["role"] == "fetcher"
                else:
                    assert (shown["role"], shown["taken_from"]) == ("fleet", fetcher.name), shown
            assert apiban.rate_limited == 0
            # what an operator sees: where each feed's list came from
            follower = next(n for n in nodes if n is not fetcher)
            said = follower.cli("status")
            assert (
                f"feed {APIBAN_FEED} in the fleet: taken from the fleet: node {fetcher.name}"
                in said
            )
            assert "fetched by this node for the fleet" in fetcher.cli("status")
            looked = json.loads(follower.cli("intel", "lookup", ATTACKER, "--json"))
            assert [i["feed"] for i in looked["listed"]] == [APIBAN_FEED]
            # every node drops the listed sources (APIBAN's and the list's)
            for node in nodes:
                send_from(netns, ATTACKER, node.port)
                send_from(netns, LISTED, node.port)
            for node in nodes:

                def dropped(n: Node = node) -> bool:
                    verdicts = (n.stats() or {}).get("verdicts", {})
                    return (
                        verdicts.get("drop:intel.apiban-sip") == 1
                        and verdicts.get(f"drop:intel.{LIST_FEED}") == 1
                    )

                assert wait_for(dropped, 10), node.stats()
            # the fetcher dies: another node takes over within the lease's bound
            fetcher.kill()
            survivors = [n for n in nodes if n is not fetcher]
            asked = len(apiban.requests)
            bound = LEASE + 2 * REMOTE_EVERY + 10  # the lease runs out, a round takes it, it asks
            assert wait_for(lambda: len(apiban.requests) > asked, bound)
            new_hosts = {r.host.rpartition(":")[0] for r in apiban.requests[asked:]}
            assert len(new_hosts) == 1 and host_of(fetcher.name) not in new_hosts, new_hosts
            heir = next(n for n in survivors if host_of(n.name) in new_hosts)
            assert wait_for(lambda: heir.fleet(APIBAN_FEED).get("role") == "fetcher", 10)
            # a change the heir fetches reaches the other survivor
            apiban.add("45.61.200.9", int(time.time()))
            assert wait_for(
                lambda: all(n.in_force().get(APIBAN_FEED) == 302 for n in survivors), 30
            )
            # the list's server fails: every node keeps the last good list, and says why
            assert wait_for(
                lambda: any(n.fleet(LIST_FEED).get("role") == "fetcher" for n in survivors), 30
            )
            lists.failing = True
            failing_since = len(lists.hosts)
            assert wait_for(lambda: len(lists.hosts) > failing_since + 1, 20)
            for node in survivors:
                assert wait_for(
                    lambda n=node: n.fleet(LIST_FEED).get("fetcher_last_error") is not None,
                    10,
                ), node.fleet(LIST_FEED)
                assert node.in_force()[LIST_FEED] == 2
        finally:
            for node in nodes:
                node.stop()
            for node in nodes:
                print(f"--- {node.name}\n{node.log()}")  # shown when the test failed
            lists.close()
