"""Monitor mode (``[policy] mode = "monitor"``, `run --monitor`): everything
is judged, counted and recorded, nothing is dropped, banned, rejected or
deceived.

- The invisibility scenario's tools (tests/edge/test_invisible.py) against
  an edge in monitor mode in front of Kamailio: they get the PBX's answers
  (svmap finds it, svwar its challenges, sipsak a final response; tcpdump
  sees the edge answer), while every verdict is still given and recorded
  as an event marked not enforced, with deception armed and not used.
- The brute-force scenario (tests/edge/test_bruteforce.py, svcrack) against
  the real daemon with nftables: svcrack finds the password (every guess
  answered by the PBX), the would-be ban is a ``would-ban`` event, no ban
  is in the book or the kernel; `status` says MONITOR; a reload switches
  to enforce and the next svcrack is banned in the kernel.
- `run --monitor` holds across a reload whatever the file says.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipwarden.observe import VERDICT, WOULD_BAN, EventQueue, FlowTable

from ..conftest import need
from .harness import USERS, running_edge
from .kamailio import available as kamailio_available
from .kamailio import kamailio
from .netns import capture, namespace
from .site import BIN, TABLE, Daemon, Site, eventually
from .test_invisible import payload_bytes


def test_scanners_get_the_pbx_answers_and_every_verdict_is_recorded(tmp_path: Path) -> None:
    for tool in ("sipsak", "tcpdump"):
        need(shutil.which(tool) is not None, f"{tool} is not installed")
    need(
        (BIN / "sipvicious_svmap").exists(), "SIPVicious is not installed (pip install sipvicious)"
    )
    need(kamailio_available(), "kamailio is not installed (apt-get install kamailio)")
    with namespace() as ns, kamailio(tmp_path) as pbx_port:
        public = (f"udp:{ns.outside}:5060", f"tcp:{ns.outside}:5060")
        # deception armed, and still nothing is deceived; 3 fingerprint hits earn a ban
        armed = {"deception": {"enabled": True}, "fingerprints": {"hits": 3}}
        with running_edge(
            tmp_path,
            backend_port=pbx_port,
            listen=(),  # the public listeners alone (answers leave by the first UDP one)
            extra_listen=public,
            armed=armed,
            policy={"mode": "monitor"},
        ) as run:
            policy = run.edge.policy
            assert policy.monitor
            events = EventQueue(max_keys=100_000)
            run.edge.events, run.edge.flows, policy.events = events, FlowTable(), events
            verdicts: Counter[str] = Counter()
            judge = policy.judge_bytes

            def recording(data, source, local_port, now):  # type: ignore[no-untyped-def]
                verdict, view = judge(data, source, local_port, now)
                if source.host == ns.inside:
                    verdicts["passed" if verdict.passes else verdict.reason] += 1
                return verdict, view

            policy.judge_bytes = recording  # type: ignore[method-assign]
            svmap, svwar = (str(BIN / f"sipvicious_{t}") for t in ("svmap", "svwar"))
            tools = {
                "svmap": [svmap, ns.outside],
                "svwar": [svwar, "-e100-110", ns.outside],
                "sipsak": ["sipsak", "-v", "-s", f"sip:100@{ns.outside}"],
                "sipsak tcp": ["sipsak", "-v", "--transport", "tcp", "-s", f"sip:100@{ns.outside}"],
            }
            pcap = tmp_path / "public.pcap"
            with capture(ns.link, pcap, f"host {ns.outside} and port 5060"):
                outputs = {
                    name: subprocess.run(
                        ns.command(*argv),
                        capture_output=True,
                        text=True,
                        timeout=120,
                        cwd=tmp_path,
                    )
                    for name, argv in tools.items()
                }
            counters = dict(run.edge.counters)
            queued = run.call(events.drain)
    for name, done in outputs.items():
        print(f"----- {name}: exit {done.returncode}\n{done.stdout}{done.stderr}")
    # the tools got the PBX's answers
    found = outputs["svmap"]
    assert found.returncode == 0 and f"{ns.outside}:5060" in found.stdout, found.stdout
    # Kamailio challenges every extension: svwar says so (silence would be a timeout)
    war = outputs["svwar"].stdout + outputs["svwar"].stderr
    assert "replied with an authentication request" in war, war
    for name in ("sipsak", "sipsak tcp"):
        out = outputs[name].stdout + outputs[name].stderr
        assert "giving up, no final response" not in out, (name, out)
        assert re.search(r"SIP/2\.0 [1-6]\d\d", out), (name, out)
    sent, _ = payload_bytes(pcap, ns.outside)
    assert sent["udp"] > 0 and sent["tcp"] > 0, sent
    # ... and every verdict was given, counted and recorded as ever
    assert {"scan.sipvicious-tag", "scan.sipsak"} <= set(verdicts), verdicts
    assert counters.get("monitor:forwarded", 0) >= sum(
        n for reason, n in verdicts.items() if reason != "passed"
    ), counters
    assert not any(k.startswith("deceive:") for k in counters), counters  # nothing deceived
    recorded = [e for e in queued if e.kind == VERDICT and e.source == ns.inside]
    assert {e.reason for e in recorded} >= {"scan.sipvicious-tag", "scan.sipsak"}, recorded
    assert all(("enforced", "no") in e.fields for e in recorded), recorded
    # the pack's fingerprints earn a ban, which monitor mode only records
    would = [e for e in queued if e.kind == WOULD_BAN and e.source == ns.inside]
    assert would, [e for e in queued if e.kind != VERDICT]
    assert policy.bans is not None and policy.bans.active(1e12) == []


# --------------------------------------------------------- the real daemon


@contextlib.contextmanager
def started(d: Daemon) -> Iterator[Daemon]:
    """``d`` started, then stopped with its kernel table deleted (as ``site.running``)."""
    d.start()
    try:
        yield d
    finally:
        try:
            if d.proc is not None:
                d.stop()
        finally:
            print(d.log())
            subprocess.run(
                site_edge(d, "nft", "delete", "table", "inet", TABLE),
                capture_output=True,
                timeout=10,
            )


def site_edge(d: Daemon, *argv: str) -> list[str]:
    return d.site.pair.in_edge(*argv)


def monitored(daemon: Daemon) -> None:
    daemon.config.write_text(
        daemon.config.read_text().replace("[policy]\n", '[policy]\nmode = "monitor"\n', 1)
    )


def svcrack(site: Site, tmp: Path, guesses: int) -> subprocess.Popen[str]:
    dictionary = tmp / "passwords.txt"
    dictionary.write_text("".join(f"guess{i}\n" for i in range(guesses)) + USERS["100"] + "\n")
    return subprocess.Popen(
        site.pair.in_clients(
            str(BIN / "sipvicious_svcrack"),
            "-u",
            "100",
            "-d",
            str(dictionary),
            "-b",
            site.attacker,
            "--timeout",
            "0.02",
            "--maximumtime",
            "20",
            site.pair.edge_ip,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp,
    )


def test_svcrack_finds_the_password_the_ban_is_only_recorded(site: Site, tmp_path: Path) -> None:
    d = Daemon(site, tmp_path)
    monitored(d)
    with started(d):
        status = d.cli("status")
        assert "MODE: MONITOR" in status.stdout, status.stdout
        crack = svcrack(site, tmp_path, 40)
        output = crack.communicate(timeout=60)[0]
        print(output)
        # every guess got the PBX's answer: svcrack found the password
        assert re.search(rf"\|\s*100\s*\|\s*{re.escape(USERS['100'])}\s*\|", output), output
        stats = d.stats()
        assert stats["mode"] == "monitor"
        assert stats["decisions"].get("would-ban:auth.brute-force", 0) == 1, stats["decisions"]
        assert stats["bans-in-force"] == 0 and d.bans() == []
        assert site.attacker not in d.firewall()["elements"]

        def would_ban() -> list[dict]:
            rows = d.json("events", "--source", site.attacker)
            return [r for r in rows if r["kind"] == "would-ban"]

        rows = eventually(would_ban, 10, 0.2)
        assert rows and rows[0]["reason"], rows
        assert rows[0]["enforced"] == "no" and rows[0]["detector"] == "auth.brute-force", rows
        metrics = d.http("/metrics")
        assert "sipwarden_monitor_mode 1" in metrics
        # a reload switches to enforce: the next guesser is banned in the kernel
        d.config.write_text(d.config.read_text().replace('mode = "monitor"\n', "", 1))
        assert d.cli("reload").returncode == 0
        assert d.stats()["mode"] == "enforce"
        crack = svcrack(site, tmp_path, 40)
        try:
            assert eventually(lambda: site.attacker in d.firewall()["elements"], 10, 0.1), d.log()
        finally:
            crack.terminate()
            crack.communicate(timeout=10)


def test_run_monitor_holds_across_a_reload(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = Daemon(site, tmp_path)  # the config file says nothing: enforce
    in_edge = site.pair.in_edge

    def with_flag(*argv: str) -> list[str]:  # `sipwarden run ... --monitor`
        return in_edge(*argv, *(["--monitor"] if "run" in argv else []))

    monkeypatch.setattr(site.pair, "in_edge", with_flag)
    with started(d):
        assert d.stats()["mode"] == "monitor"
        assert d.cli("reload").returncode == 0
        assert d.stats()["mode"] == "monitor"
        assert "MODE: MONITOR" in d.cli("status").stdout
