"""The alert keeper with real targets on 127.0.0.1, built from ``[[alerts]]``:
a burst is one signed alert at once and one with the count; a target that
refuses is retried with backoff and delivers what folded meanwhile once it
is back; a target that hangs holds up neither ``offer`` nor the others;
``status`` tells it all and never a secret."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import pytest

from sipwarden.config import ConfigError, config_from_dict
from sipwarden.daemon.alerts import AlertKeeper, check_alerts
from sipwarden.observe.alerts import HEALTH
from sipwarden.observe.events import BAN, LOGIN_FAILED, Event, EventQueue

from ..notify.receivers import Mailbox, SilentServer, UdpSyslog, Webhook, smtp_server

SECRET = "a-webhook-secret-of-32-bytes...."


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def until(condition: Callable[[], bool], bound: float = 15.0) -> None:
    """Wait for an outcome, generously bounded."""
    async with asyncio.timeout(bound):
        while not condition():
            await asyncio.sleep(0.02)


def failed_logins(t: float, n: int, source: str = "203.0.113.7") -> list[Event]:
    """``n`` failed logins through the real event queue (sampled, summarised)."""
    queue = EventQueue(sample=5)
    for i in range(n):
        queue.push(Event(t + i / 1000, LOGIN_FAILED, source, "brute-force"))
    return queue.drain()


def refused_port() -> tuple[socket.socket, int]:
    """A port bound but not listening: connections to it are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def test_a_burst_is_one_signed_alert_at_once_then_one_with_the_count(monkeypatch):
    monkeypatch.setenv("SIPWARDEN_TEST_HOOK_SECRET", SECRET)

    async def scenario() -> None:
        hook = await Webhook(SECRET.encode()).start()
        config = config_from_dict(
            {"alerts": [{
                "type": "webhook", "url": hook.url, "secret_env": "SIPWARDEN_TEST_HOOK_SECRET",
                "kinds": ["login-failed", "health"], "min_interval": 1.0,
            }]}
        )  # fmt: skip
        keeper = AlertKeeper.from_config(config)
        await keeper.start()
        try:
            keeper.offer(failed_logins(1000.0, 1))  # the burst begins: told at once
            await until(lambda: len(hook.bodies) == 1)
            for i in range(20):  # the flood: 20 drains of 50 each
                keeper.offer(failed_logins(1001.0 + i, 50))
            keeper.offer([Event(1000.0, BAN, "203.0.113.7", "brute-force")])  # not wanted
            await until(lambda: keeper.status()["targets"]["webhook-0"]["sent"] == 2)
            await asyncio.sleep(1.5)  # an interval more: nothing else comes
            status = keeper.status()
        finally:
            await keeper.stop()
            await hook.stop()
        assert hook.refused == 0  # every body's signature verified
        first, second = hook.bodies
        assert (first["kind"], first["reason"], first["count"]) == (
            LOGIN_FAILED, "brute-force", 1,
        )  # fmt: skip
        assert second["count"] == 1000 and second["sources"] == ["203.0.113.7"]
        target = status["targets"]["webhook-0"]
        assert target["sent"] == 2 and target["failed"] == 0 and target["waiting"] == 0
        assert target["folded"] == 999 and target["type"] == "webhook"
        assert status["offered"] == 1 + 20 * 6 + 1  # 5 sampled and 1 summary per drain
        assert SECRET not in json.dumps(status) and "hooks/secret-path" not in json.dumps(status)

    run(scenario())


def test_a_refusing_target_backs_off_then_delivers_what_folded_meanwhile():
    async def scenario() -> None:
        hook = await Webhook(b"not the secret the keeper signs with").start()
        config = config_from_dict(
            {"alerts": [{
                "type": "webhook", "name": "night", "url": hook.url, "secret": SECRET,
                "kinds": ["health"], "min_interval": 0.1, "timeout": 5,
            }]}
        )  # fmt: skip
        keeper = AlertKeeper.from_config(config, retry_first=0.2, retry_cap=0.8)
        await keeper.start()
        delays = []
        try:
            keeper.offer([Event(1.0, HEALTH, "", "store-not-writable")])
            for failures in range(1, 6):
                await until(lambda f=failures: hook.refused >= f)
                await until(lambda f=failures: keeper.status()["targets"]["night"]["failed"] >= f)
                night = keeper.status()["targets"]["night"]
                delays.append(night["next-attempt"] - night["last-error-at"])
                keeper.offer([Event(2.0, HEALTH, "", "store-not-writable")] * 10)
            assert night["last-error"].endswith("HTTP 401") and night["waiting"] == 1
            hook.secret = SECRET.encode()  # the receiver is fixed
            await until(lambda: keeper.status()["targets"]["night"]["sent"] == 2)
            status = keeper.status()["targets"]["night"]
        finally:
            await keeper.stop()
            await hook.stop()
        assert delays == pytest.approx([0.2, 0.4, 0.8, 0.8, 0.8])
        assert [b["count"] for b in hook.bodies] == [1, 50]  # the old one, then all that folded
        assert status["failures"] == 0 and status["next-attempt"] is None
        assert status["sent"] == 2 and status["failed"] >= 5

    run(scenario())


def test_a_hanging_and_a_refusing_target_hold_up_neither_offer_nor_the_others():
    async def scenario() -> None:
        server = await SilentServer().start()
        silent_port, held = server.port, server.held
        closed, closed_port = refused_port()
        syslog = UdpSyslog()
        wanted = ["ban", "login-failed"]
        config = config_from_dict(
            {"alerts": [
                {"type": "email", "name": "hung", "host": "127.0.0.1", "port": silent_port,
                 "from": "sipwarden@example.com", "to": ["ops@example.com"], "kinds": wanted,
                 "timeout": 2, "min_interval": 0.1},
                {"type": "webhook", "name": "refused", "url": f"http://127.0.0.1:{closed_port}/",
                 "secret": SECRET, "kinds": wanted, "timeout": 2, "min_interval": 0.1},
                {"type": "syslog", "name": "log", "address": f"udp:127.0.0.1:{syslog.port}",
                 "kinds": wanted, "min_interval": 0.1},
            ]}
        )  # fmt: skip
        keeper = AlertKeeper.from_config(config, retry_first=0.3, retry_cap=1.0)
        await keeper.start()
        try:
            keeper.offer([Event(1.0, BAN, "203.0.113.9", "brute-force")])
            line = await syslog.line()  # the working target is not held up
            await until(lambda: len(held) == 1)  # the mail server holds the connection
            hung = keeper.status()["targets"]["hung"]
            assert hung["waiting"] == 1 and hung["sent"] == 0 and hung["failed"] == 0
            for i in range(200):  # while the mail target hangs, every offer returns
                keeper.offer(failed_logins(2.0 + i, 20, f"198.51.100.{i % 250}"))
            assert keeper.status()["targets"]["hung"]["failed"] == 0  # still hanging
            second = await syslog.line()  # and syslog goes on
            await until(lambda: keeper.status()["targets"]["hung"]["failed"] >= 2)
            await until(lambda: keeper.status()["targets"]["refused"]["failed"] >= 3)
            status = keeper.status()
        finally:
            await keeper.stop()
            await server.close()
            closed.close()
            syslog.close()
        assert "sipwarden: ban brute-force from 203.0.113.9" in line
        assert "login-failed" in second
        hung, refused, log = (status["targets"][n] for n in ("hung", "refused", "log"))
        assert hung["last-error"].endswith("no answer within 2 s")
        assert hung["next-attempt"] is not None and hung["folding"] >= 1
        assert refused["last-error"].endswith("(Connection refused)")
        assert refused["failures"] >= 3 and refused["next-attempt"] is not None
        assert log["sent"] >= 2 and log["failed"] == 0
        assert status["offered"] == 1 + 200 * 6

    run(scenario())


def test_mail_from_the_keeper_reaches_an_smtp_server(tmp_path):
    mailbox = Mailbox()
    controller = smtp_server(mailbox)
    config = config_from_dict(
        {"alerts": [{
            "type": "email", "host": "127.0.0.1", "port": controller.port,
            "from": "sipwarden@example.com", "to": ["ops@example.com"], "min_interval": 60,
        }]}
    )  # fmt: skip

    async def scenario() -> None:
        keeper = AlertKeeper.from_config(config)
        await keeper.start()
        try:
            keeper.offer([Event(1.0, BAN, "203.0.113.9", "brute-force")] * 3)
            await until(lambda: len(mailbox.messages) == 1)
        finally:
            await keeper.stop()

    try:
        run(scenario())
    finally:
        controller.stop()
    [message] = mailbox.messages
    # one batch offered: one alert, at once
    assert message["Subject"].startswith("sipwarden: 3 x ban brute-force from 203.0.113.9")


def test_secrets_come_from_files_or_the_environment_and_errors_name_the_key(tmp_path, monkeypatch):
    hook = {"type": "webhook", "url": "https://hooks.example.com/x"}
    secret_file = tmp_path / "hook.secret"
    secret_file.write_text(SECRET + "\n")
    keeper = AlertKeeper.from_config(
        config_from_dict({"alerts": [{**hook, "secret_file": str(secret_file)}]})
    )
    assert bool(keeper) and SECRET not in json.dumps(keeper.status())
    assert keeper.status()["targets"]["webhook-0"]["to"] == "https://hooks.example.com/..."
    with pytest.raises(ConfigError, match=r"alerts\[0\]\.secret_file: cannot read .*missing"):
        AlertKeeper.from_config(
            config_from_dict({"alerts": [{**hook, "secret_file": str(tmp_path / "missing")}]})
        )
    with pytest.raises(ConfigError, match=r"alerts\[0\]\.secret_file: cannot read"):
        check_alerts(
            config_from_dict({"alerts": [{**hook, "secret_file": str(tmp_path / "missing")}]})
        )
    monkeypatch.setenv("SIPWARDEN_SHORT_SECRET", "short")
    with pytest.raises(ConfigError, match=r"alerts\[0\]\.secret_env: an HMAC key of 5 char"):
        check_alerts(
            config_from_dict({"alerts": [{**hook, "secret_env": "SIPWARDEN_SHORT_SECRET"}]})
        )
    monkeypatch.delenv("SIPWARDEN_NO_SUCH_SECRET", raising=False)
    with pytest.raises(ConfigError, match=r"alerts\[0\]\.secret_env: .*SIPWARDEN_NO_SUCH_SECRET"):
        AlertKeeper.from_config(
            config_from_dict({"alerts": [{**hook, "secret_env": "SIPWARDEN_NO_SUCH_SECRET"}]})
        )


def test_no_targets_no_cost():
    keeper = AlertKeeper.from_config(config_from_dict({}))
    assert not keeper
    keeper.offer([Event(1.0, BAN, "203.0.113.9", "x")])
    assert keeper.status() == {"targets": {}}
    run(keeper.start())
    run(keeper.stop())
