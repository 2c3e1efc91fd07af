"""Logwatch mode through the real daemon (`sipwarden run`) in a network
namespace of the test's own, with its nftables: lines appended to a followed
file ban their source in the kernel; trusted peers and the allow list are
never banned; both kinds of rotation and a restart lose no line and read none
twice; the mode runs beside the edge; the journal, from a journal file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import need
from .daemon import append, eventually, netns, no_endpoint, running, stamp, wrong_password

ATTACKER = "203.0.113.7"
ATTACKER6 = "2001:db8:bad::7"
TRUSTED = "198.51.100.7"  # [policy] trusted_peers
ALLOWED = "198.51.100.8"  # [bans] allow


def file_source(path: Path) -> str:
    return f'[[logwatch.sources]]\npath = "{path}"\nformat = "asterisk"\ntimezone = "UTC"\n'


@pytest.fixture
def ns():  # type: ignore[no-untyped-def]
    with netns() as n:
        yield n


def test_appended_lines_ban_in_the_kernel(ns, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "messages"
    log.write_text("")
    with running(ns, tmp_path, file_source(log)) as d:
        # the trusted peer and the allowed office fail first, and more often
        append(log, "".join(wrong_password(TRUSTED) + wrong_password(ALLOWED) for _ in range(10)))
        # colours, IPv6 in brackets, trailing text: still the same source
        append(log, "".join(wrong_password(ATTACKER) for _ in range(4)))
        append(
            log,
            f"\x1b[1;33m{stamp()}\x1b[0m NOTICE[1] chan_sip.c: Registration from '<sip:9@x>'"
            f" failed for '{ATTACKER}:5060' - Wrong password (extra words)\n",
        )
        append(log, "".join(wrong_password(f"[{ATTACKER6}]") for _ in range(5)))
        banned = eventually(lambda: {ATTACKER, ATTACKER6} <= d.kernel(), 30)
        assert banned, (d.kernel(), d.counters(), d.log())
        kernel = d.kernel()
        assert TRUSTED not in kernel and ALLOWED not in kernel
        counters = d.counters()
        name = str(log)
        assert counters[f"read:{name}"] == 30
        assert counters[f"matched:{name}"] == 30
        assert counters[f"failed:{name}"] == 30
        assert counters["bans"] == 2
        # the ban's evidence names the log and its line
        shown = subprocess.run(
            ns.command(
                sys.executable,
                "-m",
                "sipwarden.cli",
                "bans",
                "show",
                ATTACKER,
                "--json",
                "-c",
                str(d.config),
            ),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert shown.returncode == 0, shown.stderr
        assert f"{log}: " in shown.stdout and "Wrong password" in shown.stdout
        # a line no pattern knows that looks like a failure: `logwatch status` shows it
        odd = f"{stamp()} NOTICE[1] chan_foo.c: Authentication failed for peer 'x'\n"
        append(log, odd)
        covered = eventually(lambda: status(ns, d)[name]["unmatched"] == 1, 20)
        assert covered, status(ns, d)
        assert status(ns, d)[name]["samples"] == [odd.rstrip("\n")]
        text = cli(ns, d, "logwatch", "status").stdout
        assert "31 lines read, 30 matched, 1 unmatched" in text and "look like failures" in text


def cli(ns, d, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    """`sipwarden ARGS -c CONFIG` in the namespace."""
    argv = [sys.executable, "-m", "sipwarden.cli", *args, "-c", str(d.config)]
    done = subprocess.run(ns.command(*argv), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done


def status(ns, d) -> dict:  # type: ignore[no-untyped-def]
    import json

    return json.loads(cli(ns, d, "logwatch", "status", "--json").stdout)  # type: ignore[no-any-return]


def test_beside_the_edge(ns, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "messages"
    log.write_text("")
    with running(ns, tmp_path, file_source(log)) as d:
        assert "listening on udp:127.0.0.1:5060" in d.banner and "logwatch on" in d.banner
        probe = (
            "import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.sendto(b'OPTIONS sip:x SIP/2.0\\r\\n\\r\\n' * 2, ('127.0.0.1', 5060))\n"
        )
        subprocess.run(ns.command("python3", "-c", probe), check=True, timeout=10)
        append(log, no_endpoint(ATTACKER, "100"))
        both = eventually(
            lambda: (
                d.stats().get("edge", {}).get("received", 0) >= 1
                and d.counters().get(f"not-found:{log}") == 1
            ),
            20,
        )
        assert both, d.stats()


def test_rotation_and_restart_lose_nothing_and_repeat_nothing(ns, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "messages"
    name = str(log)
    serial = iter(range(10_000))

    def lines(n: int) -> str:  # each a probe from another source: counted, never banned
        return "".join(no_endpoint(f"203.0.113.{next(serial) % 250 + 1}", "u") for _ in range(n))

    def settle(d, expected: int) -> None:  # type: ignore[no-untyped-def]
        reached = eventually(lambda: d.counters().get(f"read:{name}", 0) >= expected, 20)
        assert reached, (d.counters(), d.log())
        time.sleep(1.0)  # ten polls more: nothing read twice
        assert d.counters().get(f"read:{name}", 0) == expected, d.counters()

    log.write_text(lines(10))
    d_tmp = tmp_path / "run"
    d_tmp.mkdir()
    with running(ns, d_tmp, file_source(log)) as d:
        settle(d, 10)
        # rename and create; the PBX writes on into the old file a moment
        append(log, lines(5))
        log.rename(logs / "messages.1")
        log.write_text(lines(5))
        append(logs / "messages.1", lines(3))
        settle(d, 23)
        # copy and truncate
        append(log, lines(4))
        shutil.copyfile(log, logs / "messages-20261206")
        os.truncate(log, 0)
        append(log, lines(2))
        settle(d, 29)
        assert d.counters().get(f"rotations:{name}", 0) >= 2
        # a restart: what was written while it was down is read, once
        d.stop()
        append(log, lines(6))
        d.start()
        settle(d, 6)
        # rotated while it was down: copy-truncate, then rename
        d.stop()
        append(log, lines(3))
        shutil.copyfile(log, logs / "messages-20261207")
        os.truncate(log, 0)
        append(log, lines(2))
        d.start()
        settle(d, 5)
        d.stop()
        append(log, lines(4))
        log.rename(logs / "messages.2")
        log.write_text(lines(1))
        d.start()
        settle(d, 5)
        assert d.counters().get(f"matched:{name}") == 5


def test_a_source_that_reads_nothing_is_told(ns, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "no-such-dir" / "messages"
    with running(ns, tmp_path, file_source(missing), extra="silent_after = 1") as d:
        told = eventually(lambda: "has given no line" in d.log(), 20)
        assert told and "the file does not exist: check the path" in d.log()
        shown = status(ns, d)[str(missing)]
        assert shown["exists"] is False and shown["read"] == 0, shown
        assert "(the file does not exist)" in cli(ns, d, "logwatch", "status").stdout


JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"


def journal_write(journal: Path, messages: list[str], unit: str = "asterisk.service") -> None:
    """Entries in journal export format, written into ``journal`` by
    systemd-journal-remote (it appends to an existing file)."""
    now = time.time_ns() // 1000
    export = "".join(
        f"__REALTIME_TIMESTAMP={now + i}\n__MONOTONIC_TIMESTAMP={now + i}\n"
        f"_BOOT_ID=0123456789abcdef0123456789abcdef\n_SYSTEMD_UNIT={unit}\n"
        f"MESSAGE={message}\n\n"
        for i, message in enumerate(messages)
    )
    subprocess.run(
        [JOURNAL_REMOTE, f"--output={journal}", "-"],
        input=export.encode(),
        check=True,
        capture_output=True,
        timeout=30,
    )


def test_journal_entries_ban_and_the_cursor_survives_a_restart(ns, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    need(
        Path(JOURNAL_REMOTE).exists(),
        "systemd-journal-remote is not installed (apt-get install systemd-journal-remote)",
    )
    need(shutil.which("journalctl") is not None, "journalctl is not installed (systemd)")
    journal = tmp_path / "asterisk.journal"
    # another unit's line is not read
    journal_write(journal, [wrong_password(ATTACKER).strip()], unit="other.service")
    journal_write(journal, [no_endpoint("203.0.113.9", "100").strip()])
    source = (
        '[[logwatch.sources]]\njournal = "asterisk.service"\n'
        f'journal_files = ["{journal}"]\nformat = "asterisk"\n'
    )
    name = "journal:asterisk.service"
    with running(ns, tmp_path, source) as d:
        assert eventually(lambda: d.counters().get(f"read:{name}") == 1, 20), d.log()
        # the journal's form, without Asterisk's own timestamp
        journal_write(
            journal,
            [
                "NOTICE[566]: chan_sip.c:28926 handle_request_register: Registration from"
                f" '\"28\" <sip:28@127.0.0.100>' failed for '{ATTACKER}:7998' - Wrong password"
            ]
            * 5,
        )
        assert eventually(lambda: ATTACKER in d.kernel(), 30), (d.counters(), d.log())
        d.stop()
        journal_write(journal, [no_endpoint("203.0.113.10", "101").strip()])
        d.start()
        assert eventually(lambda: d.counters().get(f"read:{name}") == 1, 20), d.log()
        time.sleep(1.0)
        assert d.counters().get(f"read:{name}") == 1  # after its cursor: nothing twice
