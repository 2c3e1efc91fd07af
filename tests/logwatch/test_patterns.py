"""The format layer beyond fail2ban's samples: times and timezones, the
Kamailio lines, the security log's kinds, custom pattern files and their
errors, and `sipwarden logwatch test`."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from pathlib import Path

import pytest
from click.testing import CliRunner

from sipwarden.cli import main
from sipwarden.logwatch import PatternError, load
from sipwarden.logwatch.timestamps import find

NOW = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.UTC)
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def test_times_in_the_zone_given_or_their_own() -> None:
    when = find("[2026-07-01 10:00:00] NOTICE", BERLIN, NOW)
    assert when is not None and when.astimezone(dt.UTC).hour == 8  # CEST, UTC+2
    own = find('EventTV="2015-05-24T08:42:16.296+0300"', BERLIN, NOW)
    assert own is not None and own.utcoffset() == dt.timedelta(hours=3)
    assert own.microsecond == 296000


def test_a_yearless_december_line_read_in_january_is_last_year() -> None:
    when = find("Dec 31 23:59:59 pbx asterisk[1]: x", dt.UTC, NOW)
    assert when is not None and when.year == 2025
    when = find("Jan  2 11:00:00 pbx asterisk[1]: x", dt.UTC, NOW)
    assert when is not None and when.year == 2026


def test_no_time_and_not_a_date() -> None:
    assert find("NOTICE[566]: chan_sip.c: no time here", dt.UTC, NOW) is None
    assert find("02-30 10:00:00 impossible", dt.UTC, NOW) is None


KAMAILIO = [
    ("sipwarden: event=auth-failed method=REGISTER user=301 source=203.0.113.7", "auth.failed"),
    ("sipwarden: event=user-not-found method=REGISTER user=9 source=2001:db8::9", "auth.not-found"),
    ("sipwarden: event=extension-not-found method=INVITE user=0044 source=203.0.113.7 x", "auth.not-found"),
    ("sipwarden: event=auth-ok method=REGISTER user=301 source=203.0.113.8", "auth.ok"),
]  # fmt: skip


@pytest.mark.parametrize(("message", "kind"), KAMAILIO)
def test_kamailio_xlog_lines(message: str, kind: str) -> None:
    line = f"Jan  2 11:59:00 pbx kamailio[812]: NOTICE: <script>: {message}"
    record = load("kamailio").match(line, dt.UTC, NOW)
    assert record is not None and record.kind == kind
    assert record.host == message.split("source=")[1].split()[0]
    assert record.account == message.split("user=")[1].split()[0]


def test_security_log_kinds_and_success() -> None:
    fmt = load("asterisk-security")
    base = (
        '[2026-01-02 11:00:00] SECURITY[1] res_security_log.c: SecurityEvent="{}",'
        'EventTV="2026-01-02T11:00:00.000+0000",Severity="Informational",Service="PJSIP",'
        'AccountID="301",SessionID="x",LocalAddress="IPV4/UDP/192.0.2.9/5060",'
        'RemoteAddress="IPV6/UDP/::ffff:203.0.113.7/5060"'
    )
    ok = fmt.match(base.format("SuccessfulAuth"), dt.UTC, NOW)
    assert ok is not None and ok.kind == "auth.ok" and ok.account == "301"
    assert ok.host == "203.0.113.7"  # an IPv4-mapped address is its IPv4 form
    sent = fmt.match(base.format("ChallengeSent"), dt.UTC, NOW)
    assert sent is not None and sent.kind == "auth.challenge"
    assert fmt.match(base.format("UnexpectedAddress"), dt.UTC, NOW) is None


def test_colours_and_bad_addresses() -> None:
    fmt = load("asterisk")
    line = (
        "\x1b[0;37m[2026-01-02 11:00:00]\x1b[0m \x1b[1;33mNOTICE\x1b[0m[1] chan_sip.c:"
        " Registration from '<sip:301@x>' failed for '203.0.113.7:5060' - Wrong password"
    )
    record = fmt.match(line, dt.UTC, NOW)
    assert record is not None and record.host == "203.0.113.7" and record.account == "301"
    assert fmt.match(line.replace("203.0.113.7", "999.1.1.1"), dt.UTC, NOW) is None


def test_custom_patterns(tmp_path: Path) -> None:
    patterns = tmp_path / "mypbx.toml"
    patterns.write_text(
        'include = ["freeswitch"]\n'
        "[[rules]]\n"
        'id = "mypbx.denied"\n'
        "regex = '''login denied for (?P<account>\\w+) from <HOST>'''\n"
        'kind = "auth.failed"\n'
    )
    fmt = load("custom", patterns)
    got = fmt.match("2026-01-02 11:00:00 login denied for bob from [2001:db8::5]:5060", dt.UTC, NOW)
    assert got is not None and (got.host, got.account, got.rule) == (
        "2001:db8::5",
        "bob",
        "mypbx.denied",
    )
    assert len(fmt.rules) == 4  # FreeSWITCH's three come first


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[[rules]]\nid = 'a'\nregex = 'no host'\nkind = 'auth.failed'\n", "<HOST> once"),
        ("[[rules]]\nid = 'a'\nregex = '<HOST> ('\nkind = 'auth.failed'\n", "does not compile"),
        ("[[rules]]\nid = 'a'\nregex = '<HOST>'\nkind = 'banned'\n", "kind 'banned'"),
        ("[[rules]]\nid = 'a'\nregex = '<HOST>'\nkinds = {x = 'auth.failed'}\n", "(?P<event>"),
        ("include = ['sendmail']\n", "not a shipped format"),
        (
            "colour = 1\n[[rules]]\nid='a'\nregex='<HOST>'\nkind='auth.failed'\n",
            "unknown key 'colour'",
        ),
        ("[[rules]\n", "not TOML"),
    ],
)
def test_pattern_file_errors_name_the_file_and_key(tmp_path: Path, text: str, error: str) -> None:
    patterns = tmp_path / "bad.toml"
    patterns.write_text(text)
    with pytest.raises(PatternError, match=r"bad\.toml") as info:
        load("custom", patterns)
    assert error in str(info.value)


def test_logwatch_test_command() -> None:
    log = Path(__file__).parent.parent / "data" / "logs" / "freeswitch.log"
    done = CliRunner().invoke(
        main,
        ["logwatch", "test", str(log), "--format", "freeswitch", "--timezone", "UTC", "--json"],
    )
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["totals"]["matched"] == 10  # 11 samples, one of which matches nothing
    assert report["totals"]["kinds"] == {"auth.challenge": 1, "auth.failed": 3, "auth.not-found": 6}
    text = CliRunner().invoke(main, ["logwatch", "test", str(log), "--format", "freeswitch"])
    assert "10 matched" in text.output and "auth.failed" in text.output
    bad = CliRunner().invoke(main, ["logwatch", "test", str(log), "--format", "custom"])
    assert bad.exit_code == 1 and "needs patterns" in bad.output
