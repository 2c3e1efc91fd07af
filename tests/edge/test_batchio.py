"""The edge's UDP batches (``edge/batchio.py``): the C twin (``recvmmsg``,
``sendmmsg``) and the pure-Python one give the same datagrams, addresses,
order and errors, on loopback over IPv4 and IPv6; and the edge reads at most
a batch a wake-up, holds the sends it causes until the batch's end, and
counts a refused one without losing the others."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable

import pytest

from sipwarden.config import config_from_dict, parse_endpoint
from sipwarden.edge import batchio
from sipwarden.edge.server import Edge, _UdpReader
from sipwarden.values import Peer

from ..conftest import need
from .netns import in_namespace, namespace

HOSTS = ("127.0.0.1", "::1")
UNROUTED = {"127.0.0.1": "198.51.100.1", "::1": "2001:db8::1"}  # no route in a bare namespace
BIGGEST = {"127.0.0.1": 65_507, "::1": 65_527}  # the largest UDP payload of each family
# SIPWARDEN_PURE_PYTHON=1: the C twin is off on purpose; the Python one is
# still checked against the expected results
PURE = os.environ.get("SIPWARDEN_PURE_PYTHON", "") not in ("", "0")
TWINS = ("python",) if PURE else ("c", "python")
Receive = Callable[[socket.socket, int, int], tuple[list[batchio.Datagram], int, int]]
Send = Callable[[socket.socket, list[batchio.Datagram]], list[tuple[int, int]]]


def twin(name: str) -> tuple[Receive, Send]:
    if name == "python":
        return batchio.receive_python, batchio.send_python
    need(
        batchio.BATCHIO is not None,
        "the C extension sipwarden.edge._batchio is not built (needs a C compiler)",
    )
    return batchio.receive_c, batchio.send_c


@pytest.fixture(scope="module")
def twins() -> dict[str, tuple[Receive, Send]]:
    return {name: twin(name) for name in TWINS}


def udp(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def drain(receive: Receive, sock: socket.socket, limit: int, size: int) -> list[tuple]:
    """Every read until the socket is empty: (datagrams, truncated, error) each."""
    reads = []
    for _ in range(100):  # bounded: far more than any test queues
        got, truncated, error = receive(sock, limit, size)
        if not got and not truncated and not error:
            return reads
        reads.append((got, truncated, error))
    raise AssertionError("the socket never ran dry")


@pytest.mark.parametrize("host", HOSTS)
def test_both_twins_read_the_same_batches(twins, host) -> None:
    """150 datagrams from two senders (an empty one and the largest the
    family carries among them): batches of the bound, then the rest, in
    the order sent, each with its sender's address and port."""
    payloads = [b"m%d" % i for i in range(150)]
    payloads[7], payloads[99] = b"", b"L" * BIGGEST[host]
    seen = {}
    for name, (receive, _) in twins.items():
        rx, senders = udp(host), [udp(host), udp(host)]
        try:
            for i, payload in enumerate(payloads):
                senders[i % 2].sendto(payload, rx.getsockname()[:2])
            reads = drain(receive, rx, batchio.BATCH, batchio.DATAGRAM)
            ports = {s.getsockname()[1]: n for n, s in enumerate(senders)}
        finally:
            for sock in (rx, *senders):
                sock.close()
        assert [len(got) for got, _, _ in reads] == [64, 64, 22], name
        assert all(truncated == 0 and error == 0 for _, truncated, error in reads), name
        datagrams = [d for got, _, _ in reads for d in got]
        assert [data for data, _, _ in datagrams] == payloads, name
        assert {h for _, h, _ in datagrams} == {host}, name
        seen[name] = [(data, ports[port]) for data, _, port in datagrams]
        assert [sender for _, sender in seen[name]] == [i % 2 for i in range(150)], name
    assert all(result == seen["python"] for result in seen.values())


@pytest.mark.parametrize("host", HOSTS)
def test_a_datagram_longer_than_the_slot_is_counted_and_dropped(twins, host) -> None:
    payloads = [b"a" * 50, b"b" * 101, b"c" * 100, b"d" * 150, b""]
    seen = {}
    for name, (receive, _) in twins.items():
        rx, tx = udp(host), udp(host)
        try:
            for payload in payloads:
                tx.sendto(payload, rx.getsockname()[:2])
            reads = drain(receive, rx, 64, 100)
        finally:
            rx.close()
            tx.close()
        assert len(reads) == 1, name
        got, truncated, error = reads[0]
        assert [data for data, _, _ in got] == [b"a" * 50, b"c" * 100, b""], name
        assert (truncated, error) == (2, 0), name
        seen[name] = [data for data, _, _ in got], truncated, error
    assert all(result == seen["python"] for result in seen.values())


@pytest.mark.parametrize("host", HOSTS)
def test_an_icmp_error_is_reported_once_then_reading_goes_on(twins, host) -> None:
    """A port unreachable (seen by a connected socket, as libuv's reads saw
    them) is the read's error; the next read is clean."""
    for name, (receive, _) in twins.items():
        closed = udp(host)
        gone = closed.getsockname()[:2]
        closed.close()
        sock = udp(host)
        try:
            sock.connect(gone)
            sock.send(b"anyone?")
            reads = [receive(sock, 64, 2048) for _ in range(2)]
        finally:
            sock.close()
        assert reads == [([], 0, errno.ECONNREFUSED), ([], 0, 0)], name


@pytest.mark.parametrize("host", HOSTS)
def test_both_twins_send_in_order_to_each_destination(twins, host) -> None:
    """150 datagrams (more than one sendmmsg chunk) to two destinations,
    interleaved: each gets its own in the order given."""
    for name, (receive, send) in twins.items():
        tx, rx = udp(host), [udp(host), udp(host)]
        try:
            origin = tx.getsockname()[1]
            items = [(b"s%d" % i, host, rx[i % 2].getsockname()[1]) for i in range(150)]
            assert send(tx, items) == [], name
            got = [[d for r in drain(receive, s, 64, 2048) for d in r[0]] for s in rx]
        finally:
            for sock in (tx, *rx):
                sock.close()
        for n in (0, 1):
            assert [data for data, _, _ in got[n]] == [b"s%d" % i for i in range(n, 150, 2)], name
            assert {(h, p) for _, h, p in got[n]} == {(host, origin)}, name


@pytest.mark.parametrize("host", HOSTS)
def test_a_refused_datagram_does_not_lose_the_others(twins, host) -> None:
    """In a namespace of the test's own, with no route off loopback: the
    datagrams to an unrouted address are refused (ENETUNREACH), named by
    their index; those before, between and after them still go."""

    def scenario(send: Send, receive: Receive) -> tuple[list, list]:
        tx, rx = udp(host), udp(host)
        try:
            port = rx.getsockname()[1]
            items = [
                (b"1", host, port),
                (b"2", UNROUTED[host], 5060),
                (b"3", host, port),
                (b"4", UNROUTED[host], 5060),
                (b"5", host, port),
            ]
            failures = send(tx, items)
            got = [data for r in drain(receive, rx, 64, 2048) for data, _, _ in r[0]]
            return failures, got
        finally:
            tx.close()
            rx.close()

    with namespace() as ns:
        for name, (receive, send) in twins.items():
            failures, got = in_namespace(ns.name, scenario, send, receive)
            assert failures == [(1, errno.ENETUNREACH), (3, errno.ENETUNREACH)], name
            assert got == [b"1", b"3", b"5"], name


@pytest.mark.parametrize("which", TWINS)
def test_the_edge_reads_a_batch_a_wake_up_and_sends_at_its_end(
    which, tmp_path, monkeypatch
) -> None:
    """The edge's reader: at most ``BATCH`` datagrams a wake-up, handed on
    in order; the answers they cause wait until the batch is done, then go
    out in order; one the kernel refuses moves from ``to-client`` to
    ``drop:send-failed`` and the others still go."""
    receive, send = twin(which)
    monkeypatch.setattr(batchio, "receive", receive)
    monkeypatch.setattr(batchio, "send", send)
    cfg = config_from_dict(
        {
            "edge": {
                "listen": ["udp:127.0.0.1:0"],
                "backend": "udp:127.0.0.1:5060",
                "flow_key_file": str(tmp_path / "flow.key"),
            }
        }
    )
    edge = Edge(cfg.edge, b"k" * 32)
    listener = parse_endpoint("udp:127.0.0.1:0", allow_port_zero=True)

    def scenario() -> tuple[socket.socket, socket.socket]:
        return udp("127.0.0.1"), udp("127.0.0.1")

    with namespace() as ns:
        public, client = in_namespace(ns.name, scenario)
        try:
            edge._udp[False] = public
            handled: list[bytes] = []
            early: list[bool] = []  # whether any answer had gone while the batch ran

            def from_client(data: bytes, source: Peer, on: object) -> bool:
                assert on is listener
                handled.append(data)
                n = int(data[1:])
                to = source if n % 2 == 0 else Peer("udp", UNROUTED["127.0.0.1"], 5060)
                edge.send(to, b"a%d" % n)
                early.append(bool(batchio.receive_python(client, 1, 2048)[0]))
                return True

            monkeypatch.setattr(edge, "from_client", from_client)
            for i in range(150):
                client.sendto(b"m%d" % i, public.getsockname())
            reader = _UdpReader(edge, public, listener)
            answers: list[bytes] = []
            for expected in (64, 64, 22, 0):
                before = len(handled)
                reader.ready()
                assert len(handled) - before == expected
                answers += [
                    d for r in drain(batchio.receive_python, client, 64, 2048) for d, _, _ in r[0]
                ]
        finally:
            public.close()
            client.close()
    assert handled == [b"m%d" % i for i in range(150)]
    assert not any(early)
    assert answers == [b"a%d" % i for i in range(0, 150, 2)]
    assert edge.counters["to-client"] == 75
    assert edge.counters["drop:send-failed"] == 75
    assert edge._outbox is None  # after the batch, sends go out at once again
