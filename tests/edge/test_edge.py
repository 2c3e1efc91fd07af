"""The edge end to end on loopback: real sockets, the built-in registrar
behind it (Kamailio, sipp and baresip come in test_real_peers.py)."""

from __future__ import annotations

import socket
import time

import pytest

from sipwarden.sip import parse

from .harness import UdpPhone, authorization, register_request, running_edge, wait_for


def register_over_udp(run, phone: UdpPhone, user: str = "100", *, host: str = "127.0.0.1"):
    edge_port = run.ports["udp"]
    phone.send(register_request(user, port=phone.port, cseq=1), edge_port, host)
    challenge = parse(phone.recv())
    assert challenge.status == 401
    nonce = challenge.www_authenticate[0]
    phone.send(
        register_request(user, port=phone.port, cseq=2, auth=authorization(user, nonce)),
        edge_port,
        host,
    )
    return parse(phone.recv())


def test_register_with_digest_auth_over_udp(tmp_path):
    with running_edge(tmp_path) as run:
        phone = UdpPhone()
        ok = register_over_udp(run, phone)
        assert ok.status == 200
        # the backend's identity never reaches the client
        assert "server" not in ok and b"sipwarden-registrar" not in ok.to_bytes()
        # only the phone's own Via comes back, with received/rport filled in
        assert (
            len(ok.vias) == 1 and ok.via.rport == str(phone.port) and ok.via.received == "127.0.0.1"
        )
        # the registrar stored the binding with our Path in front of it
        (binding,) = run.registrar.lookup("100")
        assert len(binding.path) == 1 and ";lr" in binding.path[0]
        assert wait_for(lambda: run.edge.counters["to-client"] == 2), dict(run.edge.counters)
        assert run.edge.counters["to-backend"] == 2
        phone.close()


def test_register_over_ipv6(tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    with running_edge(tmp_path, host="::1") as run:
        phone = UdpPhone("::1")
        assert register_over_udp(run, phone, host="::1").status == 200
        phone.close()


def tcp_exchange(port: int, data: bytes, *, expect: int = 1, timeout: float = 3) -> list[bytes]:
    from sipwarden.sip import StreamFramer

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        framer, frames = StreamFramer(), []
        deadline = time.monotonic() + timeout
        while len(frames) < expect and time.monotonic() < deadline:
            chunk = sock.recv(65535)
            if not chunk:
                break
            frames += framer.feed(chunk)
        return frames


def test_tcp_client_bridged_to_udp_backend(tmp_path):
    with running_edge(tmp_path) as run:
        with socket.create_connection(("127.0.0.1", run.ports["tcp"]), timeout=3) as sock:
            from sipwarden.sip import StreamFramer

            framer = StreamFramer()
            port = sock.getsockname()[1]

            def roundtrip(data: bytes) -> bytes:
                sock.sendall(data)
                while True:
                    frames = framer.feed(sock.recv(65535))
                    if frames:
                        return frames[0]

            challenge = parse(roundtrip(register_request("200", port=port, transport="TCP")))
            assert challenge.status == 401
            nonce = challenge.www_authenticate[0]
            ok = parse(
                roundtrip(
                    register_request(
                        "200", port=port, transport="TCP", cseq=2, auth=authorization("200", nonce)
                    )
                )
            )
            assert ok.status == 200 and ok.via.transport == "TCP"
        (binding,) = run.registrar.lookup("200")
        assert binding.source.transport == "udp"  # the backend saw the edge's UDP socket


def test_garbage_and_slow_tcp_peers_are_cut_off_while_a_client_works(tmp_path):
    with running_edge(tmp_path, message_timeout=1.5, max_message_size=2048) as run:
        port = run.ports["tcp"]
        garbage = socket.create_connection(("127.0.0.1", port), timeout=3)
        garbage.sendall(b"\x00\x01\x02 not sip at all\r\n\r\n")
        slow = socket.create_connection(("127.0.0.1", port), timeout=3)
        slow.sendall(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h")  # and never finishes
        big = socket.create_connection(("127.0.0.1", port), timeout=3)
        big.sendall(b"OPTIONS sip:x SIP/2.0\r\n" + b"X-Junk: " + b"a" * 4000 + b"\r\n")
        # a legitimate client on the same listener keeps working meanwhile
        frames = tcp_exchange(port, register_request("100", port=5060, transport="TCP"))
        assert parse(frames[0]).status == 401
        deadline = time.monotonic() + 5
        closed = set()
        while time.monotonic() < deadline and len(closed) < 3:
            for name, sock in (("garbage", garbage), ("slow", slow), ("big", big)):
                sock.settimeout(0.2)
                try:
                    if sock.recv(100) == b"":
                        closed.add(name)
                except (TimeoutError, ConnectionResetError):
                    if name != "slow":  # an abort with unread data is a reset
                        closed.add(name)
                except OSError:
                    closed.add(name)
        assert closed == {"garbage", "slow", "big"}
        counters = run.edge.counters
        assert counters["closed:slow-message"] == 1
        assert counters["stream-closed:message-too-large"] == 1
        assert counters["stream-closed:missing-content-length"] == 1  # the garbage, never answered
        for sock in (garbage, slow, big):
            sock.close()


def test_connection_caps(tmp_path):
    with running_edge(tmp_path, max_connections_per_source=2) as run:
        socks = [
            socket.create_connection(("127.0.0.1", run.ports["tcp"]), timeout=3) for _ in range(3)
        ]
        time.sleep(0.3)
        assert run.edge.counters["refused:max-connections-per-source"] == 1
        for s in socks:
            s.close()


def test_max_forwards_zero_gets_483_and_malformed_gets_silence(tmp_path):
    with running_edge(tmp_path) as run:
        phone = UdpPhone()
        req = register_request("100", port=phone.port).replace(
            b"Max-Forwards: 70", b"Max-Forwards: 0"
        )
        phone.send(req, run.ports["udp"])
        assert parse(phone.recv()).status == 483
        phone.send(b"INVITE sip:x SIP/2.0\r\nGarbage\r\n\r\n", run.ports["udp"])
        phone.send(b"", run.ports["udp"])
        assert phone.recv(timeout=0.5) is None
        assert run.edge.policy.counters["drop:malformed.bad-header"] == 1
        assert run.edge.policy.counters["drop:scan.empty-datagram"] == 1
        phone.close()


def make_certificate(tmp_path):
    import shutil
    import subprocess

    from ..conftest import need

    need(shutil.which("openssl") is not None, "openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def test_register_over_tls_and_handshake_timeout(tmp_path):
    import ssl

    from sipwarden.sip import StreamFramer

    cert, key = make_certificate(tmp_path)
    options = {"tls_certificate": str(cert), "tls_key": str(key), "tls_handshake_timeout": 1.0}
    with running_edge(tmp_path, listen=("udp", "tls"), **options) as run:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        with (
            socket.create_connection(("127.0.0.1", run.ports["tls"]), timeout=5) as raw,
            ctx.wrap_socket(raw) as sock,
        ):
            framer, port = StreamFramer(), sock.getsockname()[1]

            def roundtrip(data: bytes):
                sock.sendall(data)
                while True:
                    frames = framer.feed(sock.recv(65535))
                    if frames:
                        return parse(frames[0])

            challenge = roundtrip(register_request("100", port=port, transport="TLS"))
            assert challenge.status == 401
            auth = authorization("100", challenge.www_authenticate[0])
            ok = roundtrip(register_request("100", port=port, transport="TLS", cseq=2, auth=auth))
            assert ok.status == 200 and ok.via.transport == "TLS"
        # a peer that opens a connection and never speaks TLS is cut off
        with socket.create_connection(("127.0.0.1", run.ports["tls"]), timeout=5) as idle:
            idle.settimeout(4)
            try:
                closed = idle.recv(100) == b""
            except ConnectionResetError:
                closed = True
            assert closed


def test_requests_for_other_hosts_are_not_relayed_anywhere(tmp_path):
    with running_edge(tmp_path, domains=["pbx.test"]) as run:
        phone = UdpPhone()
        nmap = register_request("100", port=phone.port).replace(
            b"REGISTER sip:pbx.test", b"REGISTER sip:203.0.113.1"
        )
        phone.send(nmap, run.ports["udp"])
        relay = register_request("100", port=phone.port).replace(
            b"REGISTER sip:pbx.test", b"REGISTER sip:victim.example.net"
        )
        phone.send(relay, run.ports["udp"])
        assert phone.recv(timeout=0.5) is None
        assert wait_for(lambda: run.edge.counters["drop:foreign-domain"] == 2)
        assert run.edge.counters["to-backend"] == 0
        assert register_over_udp(run, phone).status == 200  # our own domain still works
        phone.close()


def test_a_uas_backend_is_hidden_behind_the_edge(tmp_path):
    """The built-in UAS answers with its own Contact, like Asterisk: the phone
    never sees the backend's address, and its BYE to that Contact arrives.
    (The phone calls without logging in, so it is never verified: its 100,
    180 and 200 would outgrow the reflection budget, which is not on trial
    here.)"""
    with running_edge(tmp_path, reflection={"enabled": False}) as run:
        phone = UdpPhone()
        pbx = f"127.0.0.1:{run.registrar_port}".encode()
        invite = (
            f"INVITE sip:200@pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.50:{phone.port};branch=z9hG4bK-c1;rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:100@pbx.test>;tag=c1\r\nTo: <sip:200@pbx.test>\r\nCall-ID: c1\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:100@192.168.1.50:{phone.port}>\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        phone.send(invite, run.ports["udp"])
        answers = [parse(phone.recv()) for _ in range(3)]
        assert [a.status for a in answers] == [100, 180, 200]
        assert not any(pbx in a.to_bytes() for a in answers)
        ok = answers[-1]
        (rr,) = ok.record_routes  # our one entry
        target = ok.contacts[0].uri.raw
        bye = (
            f"BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.50:{phone.port};branch=z9hG4bK-c2;rport\r\n"
            f"Max-Forwards: 70\r\nRoute: {rr}\r\nFrom: <sip:100@pbx.test>;tag=c1\r\nTo: {ok.get('to')}\r\n"
            f"Call-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        phone.send(bye, run.ports["udp"])
        done = parse(phone.recv())
        assert done.status == 200 and done.cseq.method == "BYE" and pbx not in done.to_bytes()
        phone.close()


def test_record_route_names_the_listener_the_call_came_in_on(tmp_path):
    # (a caller that never logs in: see the test above)
    with running_edge(tmp_path, listen=("udp", "udp"), reflection={"enabled": False}) as run:
        second = run.edge.bound[1].port
        phone = UdpPhone()
        invite = (
            f"INVITE sip:200@pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{phone.port};branch=z9hG4bK-l2;rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:100@pbx.test>;tag=l2\r\nTo: <sip:200@pbx.test>\r\nCall-ID: l2\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:100@127.0.0.1:{phone.port}>\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        phone.send(invite, second)
        answers = [parse(phone.recv()) for _ in range(3)]
        (rr,) = answers[-1].record_routes
        assert rr.uri.port == second != run.edge.bound[0].port
        phone.close()


def test_an_internal_error_is_counted_and_logged_a_bounded_number_of_times(tmp_path, caplog):
    from sipwarden.edge import server

    with running_edge(tmp_path) as run:

        def broken(data, source, local_port):
            raise RuntimeError("a bug in a detector")

        run.edge.policy.judge_bytes = broken
        phone = UdpPhone()
        for n in range(server.ERRORS_LOGGED + 15):
            phone.send(register_request("100", port=phone.port, cseq=n + 1), run.ports["udp"])
        assert wait_for(lambda: run.edge.counters["internal-error"] == server.ERRORS_LOGGED + 15)
        assert phone.recv(timeout=0.3) is None  # nothing answered
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert len(tracebacks) == server.ERRORS_LOGGED
        phone.close()


def test_keepalive_pings_get_pongs_only_on_a_vouched_connection(tmp_path):
    """RFC 5626 CRLF pings are answered on a connection that has sent a
    message the policy passed; to a bare CRLF (nmap's GenericLines probe) the
    port stays mute, so nothing reveals a SIP service."""
    with running_edge(tmp_path) as run:
        port = run.ports["tcp"]
        with socket.create_connection(("127.0.0.1", port), timeout=3) as probe:
            probe.sendall(b"\r\n\r\n")
            probe.settimeout(0.5)
            with pytest.raises(TimeoutError):
                probe.recv(10)
        assert run.edge.counters["ping-unanswered"] == 1
        with socket.create_connection(("127.0.0.1", port), timeout=3) as phone:
            phone.sendall(register_request("100", port=5060, transport="TCP"))
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += phone.recv(4096)
            assert parse(reply).status == 401
            phone.sendall(b"\r\n\r\n")
            assert phone.recv(10) == b"\r\n"


def test_a_backend_down_is_said_once_naming_edge_backend_then_counted(tmp_path, caplog):
    """A TCP PBX that refuses connections: the edge serves on, and says so in
    one warning naming the key and the address, not one per message (the
    log is no place for a flood's every packet); every failure is counted."""
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with running_edge(tmp_path, backend_port=port, backend_transport="tcp") as run:
        phone = UdpPhone()
        for n in range(5):
            phone.send(register_request("100", port=phone.port, cseq=n + 1), run.ports["udp"])
            assert wait_for(lambda n=n: run.edge.counters["backend-connect-failed"] >= n + 2)
        phone.close()
    said = [r.getMessage() for r in caplog.records if "edge.backend" in r.getMessage()]
    assert said == [
        f"edge.backend = 'tcp:127.0.0.1:{port}': cannot connect (Connection refused):"
        " check that the PBX is up and listens there; the edge serves meanwhile and tries"
        " again with the next message"
    ]
