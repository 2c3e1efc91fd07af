"""fail2ban's sample logs: every `# failJSON:` line says what the next line
gives (a match or not, the host, the line's time); each is checked exactly."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from sipwarden.logwatch import CHALLENGE, load

LOGS = Path(__file__).parent.parent / "data" / "logs"
# fail2ban's samples are tested at its fixed clock, 2005-08-14 10:00 UTC:
# a line without a year takes the year that puts it at most a day ahead
NOW = dt.datetime(2005, 8, 14, 10, 0, tzinfo=dt.UTC)


def expectations(name: str) -> list[tuple[int, dict[str, object], str]]:
    """(line number, its failJSON, the line) for every failJSON of a file; a
    non-comment line without one is an error (nothing goes unchecked)."""
    out: list[tuple[int, dict[str, object], str]] = []
    pending: dict[str, object] | None = None
    for number, line in enumerate((LOGS / name).read_text("utf-8").splitlines(), 1):
        if line.startswith("# failJSON:"):
            assert pending is None, f"{name}:{number}: two failJSON lines in a row"
            pending = json.loads(line.removeprefix("# failJSON:"))
        elif line.startswith("#") or not line.strip():
            continue
        else:
            assert pending is not None, f"{name}:{number}: a log line without a failJSON"
            out.append((number, pending, line))
            pending = None
    return out


CASES = [
    pytest.param(fmt, number, expected, line, id=f"{fmt}:{number}")
    for name, fmt in (("asterisk.log", "asterisk"), ("freeswitch.log", "freeswitch"))
    for number, expected, line in expectations(name)
]


def test_every_sample_is_checked() -> None:
    assert (
        len([c for c in CASES if c.values[0] == "asterisk"]) == 48
    )  # grep -c "^# failJSON:" asterisk.log
    assert len([c for c in CASES if c.values[0] == "freeswitch"]) == 11


@pytest.mark.parametrize(("fmt", "number", "expected", "line"), CASES)
def test_sample_line(fmt: str, number: int, expected: dict[str, object], line: str) -> None:
    record = load(fmt).match(line, dt.UTC, NOW)
    if not expected.get("match"):
        assert record is None
        return
    assert record is not None, line
    assert record.host == expected["host"]
    if "time" in expected:
        assert record.when is not None
        wall = record.when.replace(tzinfo=None, microsecond=0).isoformat()
        assert wall == expected["time"]
    if "SIP auth challenge" in line:  # matched (it is FreeSWITCH's), never a failure
        assert record.kind == CHALLENGE
    else:
        assert record.kind in ("auth.failed", "auth.not-found")
