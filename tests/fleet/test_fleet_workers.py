"""A fleet node with ``edge.workers = 2``: a ban received from the fleet is
enforced by every worker, and an unban received is lifted by every worker
(worker 0 follows the stream; the others adopt the ban from the store and
are told of the unban: ``Daemon._lifted_by_fleet`` -> ``bans-remove``).

Two real `sipwarden run` nodes on loopback (no kernel enforcement: each
worker's own ban book is what drops a banned source's packets, so a worker
that missed the ban or the unban shows), the built-in registrar as the PBX.
The banned source speaks from 16 ports, which the kernel's SO_REUSEPORT
hash spreads over both workers.
"""

from __future__ import annotations

from pathlib import Path

from ..edge.harness import UdpPhone, registrar_thread
from ..edge.site import eventually
from ..test_bans_daemon import answered
from .loopback import LoopbackNode
from .redis_server import redis_server

SOURCE = "127.0.0.23"
PORTS = 16


def every_port(phones: list[UdpPhone], port: int, cseq: int) -> list[bool]:
    return [answered(phone, port, cseq=cseq) for phone in phones]


def drops(node: LoopbackNode, worker: int) -> int:
    return int(node.ask({"cmd": "stats"}, worker=worker)["verdicts"].get("drop:banned", 0))


def banned_in(node: LoopbackNode, worker: int) -> bool:
    return bool(node.ask({"cmd": "bans-show", "target": SOURCE}, worker=worker)["banned"])


def test_a_fleet_ban_and_unban_reach_every_worker_of_a_node(tmp_path: Path) -> None:
    with (
        redis_server(tmp_path / "redis") as redis,
        registrar_thread() as (backend, _),
    ):
        a = LoopbackNode(tmp_path, "a", redis, backend_port=backend)
        w = LoopbackNode(tmp_path, "w", redis, backend_port=backend, workers=2)
        sources = [UdpPhone(SOURCE) for _ in range(PORTS)]
        try:
            a.start()
            w.start()
            assert all(every_port(sources, w.port, cseq=1)), w.log()  # both workers answer

            ban = a.ask({"cmd": "bans-add", "target": SOURCE, "duration": 600, "reason": "fleet"})
            assert ban["ok"], ban
            # worker 0 applies it from the stream, worker 1 adopts it from the store
            assert eventually(lambda: banned_in(w, 0) and banned_in(w, 1), 15, 0.1), w.log()
            assert not any(every_port(sources, w.port, cseq=2))
            assert drops(w, 1) >= 1 and drops(w, 0) > drops(w, 1), "a worker saw none"

            lifted = a.ask({"cmd": "bans-remove", "target": SOURCE})
            assert lifted["ok"], lifted
            assert eventually(lambda: not banned_in(w, 0) and not banned_in(w, 1), 15, 0.1), w.log()
            before = (drops(w, 0), drops(w, 1))
            assert all(every_port(sources, w.port, cseq=3)), w.log()
            assert (drops(w, 0), drops(w, 1)) == before
        finally:
            for phone in sources:
                phone.close()
            a.stop()
            w.stop()
