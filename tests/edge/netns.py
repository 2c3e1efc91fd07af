"""A network namespace joined to this one by a veth pair, for tests that
need a second host: tools run inside it (``ns.run(...)``) against an address
on our side, and tcpdump on our end of the pair sees exactly their traffic.

Needs root and iproute2; the namespace, the link and the addresses are the
test's own (a /30 from 10.201.0.0/16 picked by process id) and are removed
on exit."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..conftest import need


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
def capture(link: str, path: Path, bpf: str) -> Iterator[None]:
    """tcpdump on ``link`` into ``path`` while the block runs."""
    need(shutil.which("tcpdump") is not None, "tcpdump is not installed (apt-get install tcpdump)")
    proc = subprocess.Popen(
        ["tcpdump", "-i", link, "--immediate-mode", "-U", "-n", "-w", str(path), bpf],
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
