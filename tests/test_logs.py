"""Logs fit for machines (issue 15, item 7): `sipwarden run --log-format
json` (or ``[logging] format = "json"``) writes one JSON object per line on
stderr, from every worker, with the time in ISO 8601 UTC, the level, the
logger and the message; a bad config is such a line too. And, in-process,
the formatter's extra fields and exceptions."""

from __future__ import annotations

import io
import json
import logging
import select
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sipwarden.cli.logs import JsonFormatter

from .conftest import free_udp_port, start_edge_process

KEYS = {"time", "level", "logger", "message"}


def json_lines(stderr: bytes) -> list[dict]:
    """Every line of ``stderr`` as a JSON object with the keys (fails on any other line)."""
    lines = stderr.decode().splitlines()
    assert lines, "nothing was logged"
    parsed = []
    for line in lines:
        record = json.loads(line)  # a line that is not JSON fails the test here
        assert isinstance(record, dict) and record.keys() >= KEYS, line
        when = datetime.fromisoformat(record["time"])
        assert when.utcoffset() == timedelta(0), line
        parsed.append(record)
    return parsed


def stop(proc: subprocess.Popen) -> bytes:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def test_run_with_log_format_json_writes_only_json_lines(tmp_path: Path):
    # the config says human: the option wins
    proc, _ = start_edge_process(
        tmp_path, free_udp_port(), 9, workers=2, extra='[logging]\nformat = "human"\n'
    )
    stop(proc)
    config = tmp_path / "edge.toml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipwarden.cli", "run", "-c", str(config), "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "sipwarden run printed nothing in 15 s"
        assert b"listening on" in proc.stdout.readline()  # stdout keeps its line for people
    finally:
        err = stop(proc)
    records = json_lines(err)
    messages = [r["message"] for r in records]
    assert any("bans in force" in m for m in messages), messages
    assert sum("stopped" in m for m in messages) == 2, messages  # each worker's last line
    assert len({r["pid"] for r in records}) == 2  # the workers share stderr: told apart
    assert {r["level"] for r in records} <= {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    assert all(r["logger"].startswith("sipwarden") for r in records)


def test_the_config_key_and_a_bad_config_as_json(tmp_path: Path):
    proc, _ = start_edge_process(tmp_path, free_udp_port(), 9, extra='[logging]\nformat = "json"\n')
    records = json_lines(stop(proc))
    assert any("stopped" in r["message"] for r in records)

    bad = tmp_path / "bad.toml"
    bad.write_text('[edge]\nlisten = ["udp:127.0.0.1:99999"]\n')
    out = subprocess.run(
        [sys.executable, "-m", "sipwarden.cli", "run", "-c", str(bad), "--log-format", "json"],
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 2
    (record,) = json_lines(out.stderr)
    assert record["level"] == "CRITICAL" and "edge.listen[0]" in record["message"]

    refused = tmp_path / "refused.toml"
    refused.write_text('[logging]\nformat = "xml"\n')
    out = subprocess.run(
        [sys.executable, "-m", "sipwarden.cli", "run", "-c", str(refused)],
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert b"logging.format: Input should be 'human' or 'json' (got 'xml')" in out.stderr


def test_the_formatter_keeps_extra_fields_and_exceptions():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("sipwarden.test-logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("banned %s", "a source", extra={"detector": "auth.brute-force", "n": 3})
        try:
            raise ValueError("a bad feed line")
        except ValueError:
            logger.exception("the feed failed", extra={"feed": Path("/x")})
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "banned a source" and first["level"] == "WARNING"
    assert (first["detector"], first["n"]) == ("auth.brute-force", 3)
    assert first["logger"] == "sipwarden.test-logs" and "exception" not in first
    assert second["level"] == "ERROR" and second["feed"] == "/x"  # str() of what JSON cannot hold
    assert (
        second["exception"].startswith("Traceback")
        and "ValueError: a bad feed line" in (second["exception"])
    )
    with pytest.raises(KeyError):
        first["args"]  # the record's own attributes stay out
