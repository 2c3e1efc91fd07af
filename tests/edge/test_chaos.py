"""Chaos: during a brute-force attack the store's disk fills, bad bans are
posted through REST and the control socket, the daemon is SIGKILLed and
started again on the full disk, then the space comes back. At the end every
detector ban is in the store and in the kernel, none was lost, and the
phone registered throughout (but for the seconds the daemon was down).

The site of ``test_bruteforce`` (namespaces, Kamailio with digest auth,
real nftables), with the store on a small tmpfs of the test's own and
twenty attackers on addresses added to the clients' namespace.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from sipwarden.daemon.control import ask

from ..disk import fill, small_disk
from .netns import in_namespace
from .phone import Phone
from .site import TABLE, Site, eventually
from .test_bruteforce import Daemon as BruteForceDaemon

TOKEN = "chaos-test-token-0123456789abcdef"
API = "127.0.0.1:8080"
ATTACKERS = [f"10.251.0.{n}" for n in range(10, 30)]


class Daemon(BruteForceDaemon):
    def kernel(self) -> set[str]:
        return set(self.firewall()["elements"])


class ChaosDaemon(Daemon):
    """The brute-force tests' daemon: its store on ``disk``, the API on a
    fixed port of the edge namespace's loopback (the namespace is the
    test's own), with a token."""

    def __init__(self, where: Site, tmp_path: Path, disk: Path) -> None:
        super().__init__(where, tmp_path)
        text = self.config.read_text()
        text = text.replace('path = "bans.db"', f'path = "{disk / "bans.db"}"')
        text = text.replace('listen = "127.0.0.1:0"', f'listen = "{API}"\ntoken = "{TOKEN}"')
        self.config.write_text(text)


@contextlib.contextmanager
def attackers(where: Site) -> Iterator[list[str]]:
    """Twenty more addresses in the clients' namespace, routed from the edge's."""
    for ip in ATTACKERS:
        subprocess.run(
            where.pair.in_clients("ip", "addr", "add", f"{ip}/32", "dev", "c0"), check=True
        )
    subprocess.run(
        where.pair.in_edge("ip", "route", "add", "10.251.0.0/24", "dev", "e0"), check=True
    )
    try:
        yield ATTACKERS
    finally:
        subprocess.run(where.pair.in_edge("ip", "route", "del", "10.251.0.0/24"), check=False)
        for ip in ATTACKERS:
            subprocess.run(
                where.pair.in_clients("ip", "addr", "del", f"{ip}/32", "dev", "c0"), check=False
            )


def guess(where: Site, ips: list[str]) -> None:
    """Each of ``ips`` guesses passwords until the edge stops answering."""
    for ip in ips:
        p = Phone(where, ip)
        try:
            statuses = [p.login(f"guess{i}", timeout=0.5) for i in range(6)]
        finally:
            p.close()
        assert statuses[-1] == 0, (ip, statuses)  # banned: silence


class PhoneLoop(threading.Thread):
    """The phone registers every 0.5 s until stopped (at most 600 times)."""

    def __init__(self, where: Site) -> None:
        super().__init__(daemon=True)
        self.phone = Phone(where, where.phone)
        self.results: list[tuple[float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        for _ in range(600):
            if self.done.is_set():
                break
            # 0: no answer (the daemon down: the port closed, or lost)
            self.results.append((time.time(), self.phone.login(timeout=0.5)))
            self.done.wait(0.5)
        self.phone.close()

    def between(self, start: float, end: float) -> list[int]:
        return [status for when, status in self.results if start <= when < end]


def test_no_ban_is_lost_to_a_full_disk_bad_requests_and_a_crash(
    site: Site,
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk", "16m") as disk, attackers(site) as ips:
        daemon = ChaosDaemon(site, tmp_path, disk)
        loop = PhoneLoop(site)
        try:
            daemon.start()
            loop.start()
            t0 = time.time()
            guess(site, ips[:10])
            assert eventually(lambda: len(daemon.bans()) == 10, 10)

            filler = fill(disk)
            t1 = time.time()
            guess(site, ips[10:])
            status = eventually(
                lambda: (s := daemon.stats())["bans"].get("store-unwritten") and s, 10
            )
            assert status, daemon.log()
            assert "disk is full" in status["store-error"]
            shown = daemon.cli("status")
            assert "ban changes not written yet" in shown.stdout, shown.stdout
            listed = {b["ip"] for b in daemon.bans()}  # what is in force, written or not
            assert listed == set(ips)

            # bad bans, through the control socket and REST: each refused, nothing changes
            for target in ("0.0.0.0/0", "::/0", "0.0.0.0", site.pair.edge_ip, "127.0.0.1"):
                answer = ask(daemon.socket, {"cmd": "bans-add", "target": target})
                assert answer["ok"] is False, (target, answer)
            nan = ask(daemon.socket, {"cmd": "bans-add", "target": "198.51.100.5", "duration": "x"})
            assert nan["ok"] is False

            def post_bad() -> list[int]:
                api = f"http://{API}"
                headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
                bodies = [
                    b'{"ip": "0.0.0.0/0"}',
                    b'{"ip": "::/0", "permanent": true}',
                    b'{"ip": "198.51.100.5", "for": NaN}',
                    b'{"ip": "198.51.100.5", "for": 1e308}',
                    b'{"ip": "fe80::1%eth0"}',
                    b'{"ip": "198.51.100.5", "for": "99999999999w"}',
                ]
                return [
                    httpx.post(f"{api}/api/v1/bans", content=b, headers=headers).status_code
                    for b in bodies
                ]

            codes = in_namespace(site.pair.edge, post_bad)
            assert all(400 <= c < 500 for c in codes), codes
            assert {b["ip"] for b in daemon.bans()} == set(ips)

            # a crash with ten bans the store never took: the kernel holds them
            killed = time.time()
            assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
            t2 = time.time()
            assert daemon.kernel() == set(ips)
            daemon.start()  # on the full disk: it starts, keeps them, and holds them
            t3 = time.time()
            assert daemon.kernel() == set(ips)
            assert {b["ip"] for b in daemon.bans()} == set(ips)

            filler.unlink()  # space again
            written = eventually(
                lambda: (
                    not daemon.stats()["bans"].get("store-unwritten")
                    and daemon.stats().get("store-error") is None
                ),
                10,
            )
            assert written, daemon.log()
            t4 = time.time()
            time.sleep(2)
        finally:
            loop.done.set()
            loop.join(15)
            if daemon.proc is not None:
                daemon.stop()
            print(daemon.log())
            subprocess.run(site.pair.in_edge("nft", "delete", "table", "inet", TABLE), check=False)

        # every detector ban, in the store (read with no daemon) and the kernel
        stored = json.loads(daemon.cli("bans", "list", "--json").stdout)
        assert {b["ip"] for b in stored} == set(ips)
        assert {b["detector"] for b in stored} == {"auth.brute-force"}
        # the phone: registered in every phase, failing only while the daemon was down
        for start, end in ((t0, t1), (t1, t2), (t3, t4), (t4, time.time())):
            assert 200 in loop.between(start, end), (start, end, loop.results)
        failures = [(when, s) for when, s in loop.results if s != 200]
        print(f"phone: {len(loop.results) - len(failures)} of {len(loop.results)} logins succeeded")
        # a login takes up to 1 s (two round trips of 0.5 s at most): one that
        # began before the kill or ended after the start fails with them
        down = [(w, s) for w, s in failures if killed - 1.5 <= w <= t3 + 1.5]
        assert failures == down, (killed, t3, failures)


def test_a_store_deleted_before_a_start_does_not_empty_the_kernel(
    site: Site,
    tmp_path: Path,
) -> None:
    """Before, a start with no store made the kernel match the empty store:
    every ban was flushed. Now the kernel's bans are kept and the new store
    is rebuilt from them, detector and reason included."""
    with attackers(site) as ips:
        daemon = Daemon(site, tmp_path)
        try:
            daemon.start()
            guess(site, ips[:3])
            before = eventually(lambda: len(b := daemon.bans()) == 3 and b, 10)
            assert before, daemon.log()
            assert daemon.stop() == 0
            for name in ("bans.db", "bans.db-wal", "bans.db-shm"):
                (tmp_path / name).unlink(missing_ok=True)
            daemon.start()
            assert daemon.kernel() == set(ips[:3])
            after = eventually(lambda: len(b := daemon.bans()) == 3 and b, 10)
            assert after, daemon.log()
            assert daemon.stop() == 0
        finally:
            if daemon.proc is not None:
                daemon.stop()
            print(daemon.log())
            subprocess.run(site.pair.in_edge("nft", "delete", "table", "inet", TABLE), check=False)
        stored = json.loads(daemon.cli("bans", "list", "--json").stdout)  # the store alone
        assert {b["ip"] for b in stored} == set(ips[:3])
        assert {b["detector"] for b in stored} == {"auth.brute-force"}
        assert [b["reason"] for b in stored] == [b["reason"] for b in before]
        for old, new in zip(before, stored, strict=True):
            assert abs(old["expires_at"] - new["expires_at"]) < 2
