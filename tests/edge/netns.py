"""A network namespace joined to this one by a veth pair, for tests that
need a second host: tools run inside it (``ns.run(...)``) against an address
on our side, and tcpdump on our end of the pair sees exactly their traffic.

Needs root and iproute2; the namespace, the link and the addresses are the
test's own (a /30 from 10.201.0.0/16 picked by process id) and are removed
on exit."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..conftest import need

T = TypeVar("T")
CLONE_NEWNET = 0x40000000  # setns(2): join a network namespace


@dataclass
class Namespace:
    name: str
    inside: str  # the namespace's address
    outside: str  # ours, on the veth end tcpdump watches
    link: str  # our end of the pair

    def command(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextmanager
def namespace() -> Iterator[Namespace]:
    need(os.geteuid() == 0, "network namespaces need root")
    need(shutil.which("ip") is not None, "iproute2 is not installed")
    n = os.getpid() % 16_000
    name, link, peer = f"swt{n}", f"swo{n}", f"swi{n}"
    subnet = f"10.201.{n // 64}.{(n % 64) * 4}"
    base = subnet.rsplit(".", 1)[0]
    last = int(subnet.rsplit(".", 1)[1])
    outside, inside = f"{base}.{last + 1}", f"{base}.{last + 2}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)  # a leftover
    subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=10)
    _ip("netns", "add", name)
    try:
        _ip("link", "add", link, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", name)
        _ip("addr", "add", f"{outside}/30", "dev", link)
        _ip("link", "set", link, "up")
        _ip("-n", name, "addr", "add", f"{inside}/30", "dev", peer)
        _ip("-n", name, "link", "set", peer, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        yield Namespace(name, inside, outside, link)
    finally:
        subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


@contextmanager
def capture(link: str, path: Path, bpf: str, netns: str | None = None) -> Iterator[None]:
    """tcpdump on ``link`` (in namespace ``netns``, if given) into ``path``
    while the block runs."""
    need(shutil.which("tcpdump") is not None, "tcpdump is not installed (apt-get install tcpdump)")
    inside = [] if netns is None else ["ip", "netns", "exec", netns]
    proc = subprocess.Popen(
        [*inside, "tcpdump", "-i", link, "--immediate-mode", "-U", "-n", "-w", str(path), bpf],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert b"listening on" in line, line
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


# ------------------------------------------------- two namespaces, one link


@dataclass
class Pair:
    """Two namespaces of their own joined by a veth pair: ``edge`` (one
    address, ``edge_ip``) and ``clients`` (``client_ips``, several addresses
    on its end so that an attacker and a phone are different sources). Our
    own namespace takes no part: nothing of the test reaches the host's
    network, and the host's ruleset is never touched."""

    edge: str
    clients: str
    edge_ip: str
    client_ips: list[str]

    def in_edge(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.edge, *argv]

    def in_clients(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.clients, *argv]


@contextmanager
def namespace_pair() -> Iterator[Pair]:
    """Two namespaces named after this process (pytest-xdist workers each
    get their own), a /29 from 10.202.0.0/15: the edge's end .1, the
    clients' end .2 to .6. Removed on exit, whatever happened."""
    need(os.geteuid() == 0, "network namespaces need root")
    need(shutil.which("ip") is not None, "iproute2 is not installed")
    n = os.getpid() % 16_000
    edge, clients = f"swbe{n}", f"swbc{n}"
    block = n * 8  # a /29 per process id
    base = f"10.{202 + block // 65536}.{block % 65536 // 256}"
    first = block % 256
    edge_ip = f"{base}.{first + 1}"
    client_ips = [f"{base}.{first + i}" for i in range(2, 7)]
    for name in (edge, clients):  # a leftover of a killed run with the same pid
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
    _ip("netns", "add", edge)
    try:
        _ip("netns", "add", clients)
        # created inside the namespaces: no name of ours in the host's namespace
        _ip(*f"link add e0 netns {edge} type veth peer name c0 netns {clients}".split())
        _ip("-n", edge, "addr", "add", f"{edge_ip}/29", "dev", "e0")
        for ip in client_ips:  # the first is the primary: the default source
            _ip("-n", clients, "addr", "add", f"{ip}/29", "dev", "c0")
        for name, link in ((edge, "e0"), (clients, "c0")):
            _ip("-n", name, "link", "set", link, "up")
            _ip("-n", name, "link", "set", "lo", "up")
        yield Pair(edge, clients, edge_ip, client_ips)
    finally:
        for name in (clients, edge):  # deleting a namespace deletes its end of the pair
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def in_namespace(name: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a thread that has joined namespace ``name``: the
    sockets it makes belong to that namespace for good, wherever they are
    used afterwards (a phone in the clients' namespace driven by the test)."""
    box: list[Any] = []

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
            try:
                joined = libc.setns(fd, CLONE_NEWNET)  # this thread only
            finally:
                os.close(fd)
            if joined != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"setns {name}: {os.strerror(errno)}")
            box.append((True, fn(*args)))
        except BaseException as exc:
            box.append((False, exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(30)
    assert box, f"{fn!r} in namespace {name} did not finish in 30 s"
    ok, value = box[0]
    if not ok:
        raise value
    return value
