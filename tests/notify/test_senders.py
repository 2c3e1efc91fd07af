"""Each alert sender against a real receiver on 127.0.0.1: the webhook's
signature verifies as documented, the mail arrives (plain, and over
STARTTLS with a login), the syslog line arrives over UDP, TCP and a Unix
socket; failures are NotifyErrors that name no secret, and a silent
server is given up on within the timeout."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl

import pytest

from sipwarden.notify import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    MailSender,
    NotifyError,
    SyslogSender,
    WebhookSender,
    sign,
)
from sipwarden.observe.alerts import Alert
from sipwarden.observe.events import LOGIN_FAILED, Event

from .receivers import Mailbox, SilentServer, UdpSyslog, Webhook, certificate, smtp_server

SECRET = b"a-webhook-secret-of-32-bytes...."
ALERT = Alert(
    target="t",
    kind=LOGIN_FAILED,
    reason="brute-force",
    count=250,
    first=1_796_000_000.0,
    last=1_796_000_060.0,
    sources=("203.0.113.5",),
    source_count=1,
    examples=(Event(1_796_000_000.0, LOGIN_FAILED, "203.0.113.5", "brute-force"),),
)


def run(coro):
    return asyncio.run(coro)


def test_the_signature_covers_the_timestamp_and_the_exact_body():
    body = ALERT.json_body("edge")
    assert sign(SECRET, "100", body) != sign(SECRET, "101", body)
    assert sign(SECRET, "100", body) != sign(SECRET, "100", body + b" ")
    assert sign(SECRET, "100", body).startswith("sha256=") and len(sign(SECRET, "1", b"")) == 71
    assert (SIGNATURE_HEADER, TIMESTAMP_HEADER) == (
        "X-Sipwarden-Signature",
        "X-Sipwarden-Timestamp",
    )


def test_webhook_delivers_a_signed_json_body():
    async def scenario() -> None:
        hook = await Webhook(SECRET).start()
        sender = WebhookSender("hook", hook.url, SECRET, timeout=10, host="edge-1")
        try:
            await sender.send(ALERT)
        finally:
            await sender.close()
            await hook.stop()
        assert hook.refused == 0
        [body] = hook.bodies
        assert body["count"] == 250 and body["host"] == "edge-1" and body["kind"] == LOGIN_FAILED
        assert body == json.loads(ALERT.json_body("edge-1"))

    run(scenario())


def test_webhook_refused_is_an_error_naming_no_secret():
    async def scenario() -> None:
        hook = await Webhook(b"another secret").start()
        sender = WebhookSender("hook", hook.url, SECRET, timeout=10)
        try:
            with pytest.raises(NotifyError) as caught:
                await sender.send(ALERT)
        finally:
            await sender.close()
            await hook.stop()
        assert hook.refused == 1 and hook.bodies == []
        assert "HTTP 401" in str(caught.value)
        assert "secret-path" not in str(caught.value)  # the URL's path is often its secret
        assert str(caught.value).startswith("http://127.0.0.1:")

    run(scenario())


def test_webhook_gives_up_on_a_SilentServer_within_its_timeout():
    async def scenario() -> None:
        server = await SilentServer().start()
        port = server.port
        sender = WebhookSender("hook", f"http://127.0.0.1:{port}/x", SECRET, timeout=0.5)
        try:
            async with asyncio.timeout(10):  # the test's own bound, generous
                with pytest.raises(NotifyError, match=r"no answer within 0\.5 s"):
                    await sender.send(ALERT)
        finally:
            await sender.close()
            await server.close()

    run(scenario())


def test_mail_reaches_an_smtp_server():
    mailbox = Mailbox()
    controller = smtp_server(mailbox)
    try:
        sender = MailSender(
            "mail", "127.0.0.1", controller.port, "sipwarden@example.com",
            ["ops@example.com", "night@example.com"], timeout=10, hostname="edge-1",
        )  # fmt: skip
        run(sender.send(ALERT))
        run(sender.close())
    finally:
        controller.stop()
    [message] = mailbox.messages
    assert mailbox.envelopes == [
        ("sipwarden@example.com", ["ops@example.com", "night@example.com"])
    ]
    assert message["Subject"] == ALERT.mail("edge-1")[0]
    assert message["X-Sipwarden-Kind"] == LOGIN_FAILED
    assert "250 event(s)" in message.get_payload()


def test_mail_over_starttls_with_a_login(tmp_path):
    cert, key = certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox = Mailbox()
    controller = smtp_server(mailbox, tls=context, login=("alerts", "pa55word"))

    def sender(password: str) -> MailSender:
        return MailSender(
            "mail", "127.0.0.1", controller.port, "sipwarden@example.com", ["ops@example.com"],
            starttls=True, user="alerts", password=password, ca_file=cert, timeout=10,
        )  # fmt: skip

    try:
        run(sender("pa55word").send(ALERT))
        with pytest.raises(NotifyError) as caught:
            run(sender("wrong-password").send(ALERT))
        plain = MailSender(
            "mail", "127.0.0.1", controller.port, "sipwarden@example.com", ["ops@example.com"],
            timeout=10,
        )  # fmt: skip
        with pytest.raises(NotifyError):  # the server requires STARTTLS
            run(plain.send(ALERT))
    finally:
        controller.stop()
    assert len(mailbox.messages) == 1
    assert "535" in str(caught.value) and "wrong-password" not in str(caught.value)


def test_mail_to_a_closed_port_or_a_SilentServer_fails_within_the_timeout():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: refused
        sender = MailSender("mail", "127.0.0.1", port, "a@example.com", ["b@example.com"])
        with pytest.raises(NotifyError, match=r"127.0.0.1:\d+: ConnectionRefusedError"):
            run(sender.send(ALERT))

    async def silent() -> None:
        server = await SilentServer().start()
        port = server.port
        sender = MailSender(
            "mail", "127.0.0.1", port, "a@example.com", ["b@example.com"], timeout=0.5
        )
        try:
            async with asyncio.timeout(10):
                with pytest.raises(NotifyError, match=r"no answer within 0\.5 s"):
                    await sender.send(ALERT)
        finally:
            await sender.close()
            await server.close()

    run(silent())


def test_syslog_over_udp_is_one_rfc5424_datagram():
    async def scenario() -> None:
        receiver = UdpSyslog()
        sender = SyslogSender(
            "log", f"udp:127.0.0.1:{receiver.port}", facility="local0", hostname="edge-1"
        )
        try:
            await sender.send(ALERT)
            line = await receiver.line()
        finally:
            receiver.close()
        assert line.startswith("<133>1 ")  # local0 (16) * 8 + notice (5)
        assert line.split(" ")[2:4] == ["edge-1", "sipwarden"]
        assert "count=250" in line and "\n" not in line

    run(scenario())


def test_syslog_over_tcp_is_octet_counted():
    async def scenario() -> None:
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            got.put_nowait(await reader.read())
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sender = SyslogSender("log", f"tcp:127.0.0.1:{port}", timeout=10)
        try:
            await sender.send(ALERT)
            async with asyncio.timeout(15):
                frame = await got.get()
        finally:
            server.close()
        length, _, message = frame.partition(b" ")
        assert int(length) == len(message) and message.startswith(b"<29>1 ")  # daemon, notice

    run(scenario())


def test_syslog_to_a_unix_datagram_socket_is_rfc3164(tmp_path):
    path = tmp_path / "log.sock"

    async def scenario() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
            receiver.bind(str(path))
            receiver.setblocking(False)
            sender = SyslogSender("log", str(path), facility="auth", timeout=10)
            await sender.send(ALERT)
            async with asyncio.timeout(15):
                data = await asyncio.get_running_loop().sock_recv(receiver, 65_535)
        line = data.decode()
        # auth (4) * 8 + notice (5); syslog(3)'s form: no host name on the local socket
        assert line.startswith("<37>") and " sipwarden[" in line and "]: sipwarden: 250 x" in line

    run(scenario())
    with pytest.raises(NotifyError, match=r"log\.sock"):  # nobody listens any more
        run(SyslogSender("log", str(path), timeout=5).send(ALERT))
