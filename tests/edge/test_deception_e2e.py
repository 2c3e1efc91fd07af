"""Deception through the real daemon (issue 16, the first acceptance tests):
SIPVicious against the edge with `[deception] enabled`, Kamailio behind it
challenging with qop="auth", in the namespace site (``site.py``).

- svwar gets an answer to every REGISTER of its range (kept busy, not
  quitting after a silent first request), finds no extension, and stops;
  its source ends banned once it has been idle for the deception's time.
- svcrack reports no password, and the real one never reaches Kamailio:
  nothing of the attacker is forwarded. The control run proves the test can
  fail: svcrack straight at Kamailio finds the password.
- With `crash_scanners`, the stopper: svwar gives up ("could not decode to
  tag") long before the end of its range; svcrack dies on it.
- A toll-fraud caller (sipp) reaches the honeypot, which records one number
  behind three prefixes; the walk is banned when the deception ends (at
  once without deception); `bans show`, `intel lookup` and REST tell what
  the source got.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..conftest import SCANNERS
from .harness import USERS
from .site import BIN, Daemon, Site, eventually, running, send_udp

SCENARIOS = Path(__file__).parent / "scenarios"

DECEIVE = """
[deception]
enabled = true
engaged_for = "10s"                     # the deception ends 10 s after its last packet
"""


def tool(site: Site, name: str, *options: str, cwd: Path) -> str:
    """A SIPVicious tool from the attacker's address against the edge; its output."""
    import subprocess

    done = subprocess.run(
        site.pair.in_clients(
            str(BIN / f"sipvicious_{name}"),
            *options,
            "-x",
            site.attacker,
            "--maximumtime",
            "3",
            site.pair.edge_ip,
        ),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    return done.stdout + done.stderr


def forwarded(daemon: Daemon, host: str) -> int:
    """The packets of ``host`` that reached the PBX (flows: those without a verdict)."""
    flows = daemon.json("flows", "--source", host)
    return sum(f["packets"] - sum(f["verdicts"].values()) for f in flows)


def test_svwar_is_kept_busy_finds_nothing_and_ends_banned(site: Site, tmp_path: Path) -> None:
    with running(site, tmp_path, DECEIVE, pack=True) as daemon:
        out = tool(site, "svwar", "-e", "100-130", "-m", "REGISTER", cwd=tmp_path)
        assert "reqauth" not in out and "noauth" not in out, out  # no extension found
        answered = daemon.stats()["edge"].get("deceive:register-ok", 0)
        assert answered >= 31, (answered, out)  # every extension of its range was answered
        told = [
            e for e in daemon.json("events", "--source", site.attacker) if e["kind"] == "deception"
        ]
        assert sum(int(e.get("repeated", 1)) for e in told) == answered, told  # each answer told
        assert {e["reason"] for e in told} == {"register-ok"}, told
        assert forwarded(daemon, site.attacker) == 0
        banned = eventually(lambda: [b for b in daemon.bans() if b["ip"] == site.attacker], 30, 0.5)
        assert banned and banned[0]["detector"] == "fingerprint.scan", daemon.bans()


def test_svcrack_never_gets_the_real_password_through_the_edge(site: Site, tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("".join(f"guess{i}\n" for i in range(5)) + USERS["100"] + "\n")
    with running(site, tmp_path, DECEIVE, pack=True) as daemon:
        out = tool(site, "svcrack", "-u", "100", "-d", str(words), cwd=tmp_path)
        assert USERS["100"] not in out, out
        assert forwarded(daemon, site.attacker) == 0  # Kamailio saw nothing of it


def test_control_svcrack_finds_the_password_at_kamailio_itself(site: Site, tmp_path: Path) -> None:
    import subprocess

    words = tmp_path / "words.txt"
    words.write_text("".join(f"guess{i}\n" for i in range(5)) + USERS["100"] + "\n")
    done = subprocess.run(
        site.pair.in_edge(
            str(BIN / "sipvicious_svcrack"),
            "-u",
            "100",
            "-d",
            str(words),
            "-p",
            str(site.backend_port),
            "--maximumtime",
            "5",
            "127.0.0.1",
        ),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert USERS["100"] in done.stdout + done.stderr, done.stdout + done.stderr


GB = '[dialplan]\ncountry = "GB"\n'
NUMBERS = ("00972597562518", "011972597562518", "9011972597562518")  # one number, 3 prefixes


def sipp_call(site: Site, number: str, tmp_path: Path) -> int:
    """One toll-fraud call from the attacker with sipp; its exit status (0: it
    got 100, 180 and the busy it ACKed)."""
    import subprocess

    done = subprocess.run(
        site.pair.in_clients(
            "sipp",
            f"{site.pair.edge_ip}:5060",
            "-sf",
            str(SCENARIOS / "tollfraud_caller.xml"),
            "-s",
            number,
            "-i",
            site.attacker,
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "12",
            "-timeout_error",
        ),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    return done.returncode


def test_a_toll_fraud_caller_reaches_the_honeypot_which_records_its_numbers(
    site: Site, tmp_path: Path
) -> None:
    extra = DECEIVE + '\n[deception.fake_pbx]\nhold = "1s"\n\n[dialplan]\ncountry = "GB"\n'
    with running(site, tmp_path, extra, pack=True) as daemon:
        # hostile first: a fingerprinted probe (discovery: it gets nothing)
        send_udp(site, site.attacker, (SCANNERS / "svmap_0.3.8_OPTIONS.sip").read_bytes())
        statuses = [sipp_call(site, number, tmp_path) for number in NUMBERS]
        assert statuses == [0, 0, 0], statuses  # 100, 180, then 486 after the hold
        calls = daemon.json("honeypot", "calls")
        assert sorted(c["number"] for c in calls) == sorted(NUMBERS), calls
        assert {(c["normalised"], c["country"]) for c in calls} == {("972597562518", "IL")}, calls
        assert all(c["source"] == site.attacker for c in calls)
        assert forwarded(daemon, site.attacker) == 0  # Kamailio received none of them
        # the walk was seen: its ban comes when the deception ends
        banned = eventually(lambda: [b for b in daemon.bans() if b["ip"] == site.attacker], 30, 0.5)
        assert banned and banned[0]["detector"] == "tollfraud.prefix-walk", daemon.bans()
        # what it got, in `bans show` and `intel lookup`
        deceived = daemon.show(site.attacker)["deceived"]
        assert sorted(c["number"] for c in deceived["calls"]) == sorted(NUMBERS), deceived
        answers = {kind: a["count"] for kind, a in deceived["answers"].items()}
        assert answers["100"] == answers["180"] == 3 and answers["486"] >= 3, answers
        assert daemon.json("intel", "lookup", site.attacker)["deceived"] == deceived  # the daemon's
        assert json.loads(daemon.http(f"/api/v1/bans/{site.attacker}"))["deceived"] == deceived
        shown = daemon.cli("bans", "show", site.attacker).stdout
        assert "deceived: " in shown and "dialled 00972597562518 (IL) 1 x" in shown, shown


def test_without_deception_the_same_walk_is_banned(site: Site, tmp_path: Path) -> None:
    with running(site, tmp_path, GB, pack=True) as daemon:
        sipp_call(site, NUMBERS[0], tmp_path)  # Kamailio: no such user (404), not our busy
        sipp_call(site, NUMBERS[1], tmp_path)  # the second prefix: a walk
        banned = eventually(lambda: [b for b in daemon.bans() if b["ip"] == site.attacker], 10, 0.2)
        assert banned and banned[0]["detector"] == "tollfraud.prefix-walk", daemon.bans()
        assert daemon.json("honeypot", "calls") == []  # no honeypot without deception


CRASH = DECEIVE + "crash_scanners = true\n"


def test_svwar_stops_on_the_stopper(site: Site, tmp_path: Path) -> None:
    with running(site, tmp_path, CRASH, pack=True) as daemon:
        out = tool(site, "svwar", "-e", "100-9999", "-m", "REGISTER", cwd=tmp_path)
        assert "could not decode to tag" in out, out  # svwar 0.3.8 gives up
        edge = daemon.stats()["edge"]
        assert edge.get("deceive:non-hex-tag", 0) >= 1, edge
        assert edge.get("deceive:register-ok", 0) < 9000, edge  # it did not scan on
        assert forwarded(daemon, site.attacker) == 0


def test_svcrack_crashes_on_the_stopper(site: Site, tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text(USERS["100"] + "\n" + "".join(f"guess{i}\n" for i in range(5)))
    with running(site, tmp_path, CRASH, pack=True) as daemon:
        out = tool(site, "svcrack", "-u", "100", "-d", str(words), cwd=tmp_path)
        assert "TypeError" in out, out  # svcrack 0.3.8 dies on svcrash's From tag
        assert USERS["100"] not in out, out
        edge = daemon.stats()["edge"]
        assert edge.get("deceive:svcrash", 0) == 1, edge
        assert forwarded(daemon, site.attacker) == 0
