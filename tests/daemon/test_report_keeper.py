"""`[report]`: the weekly report mailed through an `[[alerts]]` email target
to a real SMTP server (aiosmtpd) on 127.0.0.1: on its weekday and time
(the clock handed in), the summary as text, the HTML with its plots as the
alternative, the JSON attached; a server that refuses is retried and the
error named; the config's mistakes name the key."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sipwarden.config import ConfigError, config_from_dict
from sipwarden.daemon.report import ReportKeeper
from sipwarden.observe.report import SECTIONS

from ..conftest import free_udp_port, start_edge_process
from ..edge.harness import UdpPhone, registrar_thread
from ..notify.receivers import Mailbox, free_tcp_port, smtp_server
from ..test_bans_daemon import answered, cli, stop
from ..test_report import fill


async def until(condition: Callable[[], bool], bound: float = 30.0) -> None:
    async with asyncio.timeout(bound):
        while not condition():
            await asyncio.sleep(0.02)


def settings(tmp_path: Path, port: int, **report: Any) -> dict[str, Any]:
    return {
        "storage": {"path": str(tmp_path / "store.db")},
        "alerts": [
            {"type": "email", "name": "ops", "host": "127.0.0.1", "port": port,
             "from": "sipwarden@example.com", "to": ["boss@example.com"], "timeout": 10},
        ],
        "report": {"enabled": True, "target": "ops", **report},
    }  # fmt: skip


def test_report_config_mistakes_name_the_key() -> None:
    base = settings(Path("/tmp"), 2525)
    for report, words in (
        ({"target": "nobody"}, ("report.target", "'nobody'", "ops")),
        ({"weekday": "monday"}, ("weekday", "'monday'", "mon, tue")),
        ({"time": "8am"}, ("time", "'8am'", "HH:MM")),
    ):
        with pytest.raises(ConfigError) as caught:
            config_from_dict({**base, "report": {**base["report"], **report}})
        assert all(word in str(caught.value) for word in words), caught.value
    webhook = {
        "type": "webhook",
        "name": "hook",
        "url": "https://h.example.com",
        "secret": "s" * 32,
    }
    with pytest.raises(ConfigError, match="of type email"):
        config_from_dict({"alerts": [webhook], "report": {"enabled": True, "target": "hook"}})
    off = config_from_dict({"report": {"target": "nobody"}})  # off: not checked
    assert ReportKeeper.from_config(off) is None


def test_the_report_is_mailed_on_its_weekday_and_time(tmp_path: Path) -> None:
    fill(tmp_path / "store.db", time.time())
    mailbox = Mailbox()
    controller = smtp_server(mailbox)
    config = config_from_dict(settings(tmp_path, controller.port, weekday="wed", time="06:30"))

    async def scenario() -> dict[str, Any]:
        probe = ReportKeeper.from_config(config)
        assert probe is not None
        due = probe.due(time.time())
        await probe.stop()
        offset = due - time.time() - 1.0  # the clock: a second before the due time
        keeper = ReportKeeper.from_config(config, clock=lambda: time.time() + offset)
        assert keeper is not None
        await keeper.start()
        try:
            await until(lambda: keeper.sent == 1)
            return keeper.status()
        finally:
            await keeper.stop()

    try:
        status = asyncio.run(scenario())
    finally:
        controller.stop()
    assert status["sent"] == 1 and status["failed"] == 0 and status["last-error"] is None
    assert status["to"] == f"smtp://127.0.0.1:{controller.port} to boss@example.com"
    [message] = mailbox.messages
    assert mailbox.envelopes == [("sipwarden@example.com", ["boss@example.com"])]
    assert message["Subject"].startswith("sipwarden report for ")
    assert message["X-Sipwarden-Kind"] == "report"
    parts = {part.get_content_type(): part for part in message.walk()}
    text = parts["text/plain"].get_payload(decode=True).decode()
    html = parts["text/html"].get_payload(decode=True).decode()
    attached = json.loads(parts["application/json"].get_payload(decode=True))
    assert f"attack events:            {attached['summary']['attacks']}" in text
    assert all(f"<section id='{name}'>" in html for name in SECTIONS)
    assert html.count("data:image/png;base64,") == len(SECTIONS) - 1
    assert attached["summary"]["packets"] == 600 + 12 + 30 + 90
    assert attached["window"]["until"] - attached["window"]["since"] == 7 * 86400
    assert message.is_multipart()


def test_a_server_that_refuses_is_retried_and_named(tmp_path: Path) -> None:
    fill(tmp_path / "store.db", time.time())
    port = free_tcp_port()  # nothing listens
    config = config_from_dict(settings(tmp_path, port))

    async def scenario() -> dict[str, Any]:
        probe = ReportKeeper.from_config(config)
        assert probe is not None
        offset = probe.due(time.time()) - time.time() - 0.2
        await probe.stop()
        keeper = ReportKeeper.from_config(
            config, clock=lambda: time.time() + offset, retry_first=0.05
        )
        assert keeper is not None
        await keeper.start()
        try:
            await until(lambda: keeper.failed >= 2)
            return keeper.status()
        finally:
            await keeper.stop()

    status = asyncio.run(scenario())
    assert status["sent"] == 0 and f"127.0.0.1:{port}" in status["last-error"]


def test_status_names_the_next_report_and_the_pbxs_last_answer(tmp_path: Path) -> None:
    """The running daemon's `status`: when the weekly report goes out and to
    whom, and when the PBX last answered (the daemon's own time of it)."""
    port, smtp = free_udp_port(), free_tcp_port()
    extra = (
        f'[storage]\npath = "{tmp_path / "store.db"}"\n'
        f'[[alerts]]\ntype = "email"\nname = "ops"\nhost = "127.0.0.1"\nport = {smtp}\n'
        'from = "sipwarden@example.com"\nto = ["boss@example.com"]\n'
        '[report]\nenabled = true\ntarget = "ops"\nweekday = "mon"\ntime = "07:00"\n'
    )
    with registrar_thread() as (backend, _):
        proc, _line = start_edge_process(tmp_path, port, backend, extra=extra)
        try:
            config = str(tmp_path / "edge.toml")
            before = cli("status", "-c", config)
            assert before.returncode == 0, before.stderr
            assert "PBX: last answer none yet" in before.stdout, before.stdout
            assert f"weekly report to smtp://127.0.0.1:{smtp} to boss@example.com" in before.stdout
            shown = json.loads(cli("status", "-c", config, "--json").stdout)
            due = shown["report"]["next"]
            # the next Monday at 07:00, local time (the schedule's timezone is the machine's)
            assert time.localtime(due).tm_wday == 0
            assert time.strftime("%H:%M", time.localtime(due)) == "07:00"
            assert 0 < due - time.time() <= 7 * 86400
            assert shown["report"]["sent"] == 0 and shown["report"]["last-error"] is None

            sent_at = time.time()
            assert answered(UdpPhone(), port)
            after = json.loads(cli("status", "-c", config, "--json").stdout)
            assert sent_at <= after["pbx_answered_at"] <= time.time()
            assert "PBX: last answer 20" in cli("status", "-c", config).stdout
        finally:
            stop(proc)
