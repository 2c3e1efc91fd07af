"""The acceptance of shared failure counts: three real `sipwarden run`
nodes (UDP on loopback, each its own store and control socket, enforcer
"none") in front of one registrar with digest auth, and one real
redis-server. A guesser sending 2 wrong passwords to each node is banned on
its 5th failure fleet-wide, by the node that saw it (``bans list``: the
tracker's detector, a reason that says it was fleet-wide); a source with 4
failures spread over the nodes is not banned; a success for the account
wipes that source's failures for it fleet-wide."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from sipwarden.sip import parse
from sipwarden.sip.fields import parse_auth

from ..conftest import free_udp_port, start_edge_process
from ..edge.harness import UdpPhone, authorization, register_request, registrar_thread
from .redis_server import redis_server

FLUSHED = 0.3  # a node's flush is every 0.1 s: its count is in Redis before the next guess


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipwarden.cli", *args], capture_output=True, text=True, timeout=30
    )


class Guesser:
    """A UDP phone that logs in as 100 with a wrong password (or the right one)."""

    def __init__(self, host: str) -> None:
        self.phone = UdpPhone(host)
        self.cseq = 0

    def register(self, port: int, *, right: bool = False) -> bytes | None:
        """One login through the node on ``port``: the challenge, then the
        answer to the credentials (None: no answer, the source is banned)."""
        self.cseq += 1
        self.phone.send(register_request("100", port=self.phone.port, cseq=self.cseq), port)
        challenge = self.phone.recv(1.0)
        if challenge is None:
            return None
        auth = parse_auth(parse(challenge).fields("www-authenticate")[0].value)
        credentials = authorization("100", auth)
        if not right:
            credentials = credentials.replace('response="', 'response="f')
        self.cseq += 1
        self.phone.send(
            register_request("100", port=self.phone.port, cseq=self.cseq, auth=credentials), port
        )
        answer = self.phone.recv(1.0)
        time.sleep(FLUSHED)
        return answer

    def close(self) -> None:
        self.phone.close()


def banned(config: Path) -> dict[str, dict[str, object]]:
    listed = cli("bans", "list", "--json", "-c", str(config))
    assert listed.returncode == 0, listed.stderr
    return {b["ip"]: b for b in json.loads(listed.stdout)}


def test_a_guesser_spread_over_three_nodes_is_banned_on_the_fifth_failure(tmp_path: Path):
    with redis_server(tmp_path / "redis") as server, registrar_thread() as (backend, _):
        nodes: list[tuple[subprocess.Popen[bytes], int, Path]] = []
        guessers: list[Guesser] = []
        try:
            for name in ("a", "b", "c"):
                home, port = tmp_path / name, free_udp_port()
                home.mkdir()
                extra = (
                    f'[storage]\npath = "{home / "sipwarden.db"}"\n'
                    '[firewall]\nenforcer = "none"\n[api]\nlisten = ""\n' + server.fleet_toml(name)
                )
                proc, line = start_edge_process(home, port, backend, extra=extra)
                assert b"listening" in line or b"udp" in line, line
                nodes.append((proc, port, home / "edge.toml"))
            (_, a, ca), (_, b, cb), (_, c, cc) = nodes
            guesser, slow, wiped = (Guesser(h) for h in ("127.0.0.2", "127.0.0.3", "127.0.0.4"))
            guessers += (guesser, slow, wiped)

            # 2 wrong passwords to each node: the 5th failure (c's first) bans, at c
            for port in (a, a, b, b):
                assert guesser.register(port) is not None  # 401: counted, not banned
            assert guesser.register(c) is not None  # the 5th failure: c's answer, then the ban
            assert guesser.register(c) is None  # the 6th: c drops the banned source
            ban = banned(cc)["127.0.0.2"]
            assert ban["detector"] == "auth.brute-force"
            assert str(ban["reason"]).startswith(
                "5 failed logins across the fleet (1 here) for 100 within"
            ), ban
            # c decided: a and b hold the ban as received from node c (the ban stream)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                rows = [banned(cfg).get("127.0.0.2") for cfg in (ca, cb)]
                if all(row is not None for row in rows):
                    break
                time.sleep(0.2)
            assert all(row is not None and row["origin"] == "c" for row in rows), rows

            # 4 failures spread over the nodes: no ban anywhere
            for port in (a, b, c, a):
                assert slow.register(port) is not None
            time.sleep(FLUSHED)
            assert all("127.0.0.3" not in banned(cfg) for cfg in (ca, cb, cc))

            # 4 failures, then a login that works: counted afresh for 100 fleet-wide
            for port in (a, a, b, b):
                assert wiped.register(port) is not None
            ok = wiped.register(c, right=True)
            assert ok is not None and b" 200 " in ok.split(b"\r\n", 1)[0], ok
            for port in (c, a, b, c):  # four more: still below five
                assert wiped.register(port) is not None
            assert all("127.0.0.4" not in banned(cfg) for cfg in (ca, cb, cc))

            status = cli("status", "--json", "-c", str(cc))
            assert status.returncode == 0, status.stderr
            shared = json.loads(status.stdout)["fleet_counters"]
            assert shared["workers-up"] == 1 and shared["decisions:auth.brute-force"] == 1
            server.stop()  # Redis away: the node says so and holds what it counts
            assert wiped.register(c) is not None  # its challenge and its failure: 2 events
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                said = cli("status", "-c", str(cc)).stdout
                if "Redis does not answer 1 worker(s): counted locally" in said:
                    break
                time.sleep(0.2)
            assert "Redis does not answer 1 worker(s): counted locally, 2 events held" in said, said
        finally:
            for g in guessers:
                g.close()
            for proc, _, _ in nodes:
                proc.terminate()
                proc.wait(15)
