"""Periodic analysis that acts, quiet time and alerts, and the kernel's
drops in the flows: acceptance tests with the real daemon, Kamailio and
nftables in the namespace site (``site.py``).

- A banned source sends 1,000 datagrams: its flow (source port null) shows
  them, though the edge's socket never saw one.
- A distributed guesser: 12 addresses of 203.0.113.0/24, each failing
  fewer logins than the per-source threshold: the analysis bans the /24,
  and a phone outside it keeps registering.
- A campaign: 12 addresses scanning with SIPVicious: one finding.
- REGISTER with no success: a source that only ever gets 401s.
- A rise: failed logins well above the usual level for this hour of the week
  (the usual level: four weeks of history written to the store first).
- The phones' own traffic (logins, a stale password): no finding at all.
- Quiet time (a schedule built around the test's own clock): the same three
  failed logins that are only counted by day ban at night, and the ban
  reaches a webhook (its HMAC signature checked) and a mailbox (aiosmtpd).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from sipwarden.observe import Event
from sipwarden.store import ObserveStore

from ..notify.receivers import Mailbox, Webhook, smtp_server
from .netns import in_namespace
from .site import BIN, Daemon, Site, eventually, phone, running, send_udp

NET = "203.0.113"  # the guessers' network (documentation range, routed in the namespaces)
SECRET = "a-test-webhook-secret-0123"


@pytest.fixture(scope="module")
def guessers(site: Site) -> list[str]:
    """12 addresses of 203.0.113.0/24 in the clients' namespace, routed from the edge's."""
    ips = [f"{NET}.{10 + i}" for i in range(12)]
    for ip in ips:
        subprocess.run(
            site.pair.in_clients("ip", "addr", "add", f"{ip}/32", "dev", "c0"),
            check=True,
            timeout=10,
        )
    subprocess.run(
        site.pair.in_edge("ip", "route", "replace", f"{NET}.0/24", "via", site.pair.client_ips[0]),
        check=True,
        timeout=10,
    )
    return ips


@contextmanager
def receivers(site: Site) -> Iterator[tuple[Webhook, Mailbox, int]]:
    """A webhook (its signature checked) and an SMTP server (aiosmtpd) on the
    edge namespace's loopback, where the daemon runs: their threads are made
    by a thread inside that namespace, so their sockets are there."""

    def start() -> tuple[asyncio.AbstractEventLoop, Webhook, Mailbox, Any]:
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        hook = asyncio.run_coroutine_threadsafe(Webhook(SECRET.encode()).start(), loop).result(10)
        mailbox = Mailbox()
        return loop, hook, mailbox, smtp_server(mailbox)

    loop, hook, mailbox, smtp = in_namespace(site.pair.edge, start)
    try:
        yield hook, mailbox, smtp.port
    finally:
        smtp.stop()
        asyncio.run_coroutine_threadsafe(hook.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)


def fail_logins(site: Site, ip: str, times: int) -> list[int]:
    """``times`` logins with a wrong password from ``ip``; their final statuses."""
    with phone(site, ip) as p:
        return [p.login("wrong password") for _ in range(times)]


def analysis(daemon: Daemon) -> list[dict[str, Any]]:
    return daemon.json("analysis", "run")  # type: ignore[no-any-return]


def test_a_banned_sources_flood_shows_in_its_flow_though_the_edge_never_saw_it(
    site: Site, tmp_path: Path
) -> None:
    with running(site, tmp_path, "") as daemon:
        added = daemon.cli("bans", "add", site.attacker, "--for", "1h")
        assert added.returncode == 0, added.stderr
        received = daemon.stats()["edge"].get("received", 0)
        send_udp(site, site.attacker, b"x" * 100, 1000)
        flows = daemon.json("flows", "--source", site.attacker)
        kernel = [f for f in flows if f["source_port"] is None]
        assert len(kernel) == 1, flows
        (flow,) = kernel
        assert flow["packets"] == 1000 and flow["transport"] == "kernel", flow
        assert flow["bytes"] == 1000 * (100 + 28), flow  # whole IP packets, as nft counts
        assert flow["verdicts"] == {"kernel-drop": 1000}, flow
        assert daemon.stats()["edge"].get("received", 0) == received  # not one reached the socket
        kernel = daemon.stats()["kernel-drops"]
        assert kernel["packets:ban-or-feed"] == 1000 and kernel["sources"] == 1, kernel
        metrics = daemon.http("/metrics")
        assert 'sipwarden_kernel_dropped_packets_total{reason="ban-or-feed"} 1000.0' in metrics


DISTRIBUTED = """
[analysis]
interval = 2

[analysis.distributed]
min_sources = 10
min_failures = 30
"""


def test_a_distributed_guesser_gets_its_network_banned_a_phone_outside_goes_on(
    site: Site, tmp_path: Path, guessers: list[str]
) -> None:
    with running(site, tmp_path, DISTRIBUTED) as daemon, phone(site, site.phone) as good:
        assert good.login() == 200
        for ip in guessers:  # 3 guesses each: below [failures] maxretry = 5
            assert fail_logins(site, ip, 3) == [401, 401, 401]
        network = f"{NET}.0/24"
        banned = eventually(lambda: [b for b in daemon.bans() if b["ip"] == network], 20, 0.5)
        assert banned, (daemon.bans(), daemon.log())
        (ban,) = banned
        assert ban["detector"] == "analysis.distributed", ban
        assert not [b for b in daemon.bans() if b["ip"] in guessers]  # none alone
        assert fail_logins(site, guessers[0], 1) == [0]  # silence: the network is banned
        for _ in range(3):
            assert good.login() == 200
        findings = [
            e for e in daemon.json("events") if e["kind"] == "finding" and e["source"] == network
        ]
        assert findings and findings[0]["reason"] == "distributed", findings


def test_a_campaign_of_one_tool_from_many_sources_is_one_finding(
    site: Site, tmp_path: Path, guessers: list[str]
) -> None:
    daemon = Daemon(site, tmp_path, pack=True, extra="[analysis]\ninterval = 3600\n")
    daemon.start()
    try:
        scans = [  # all at once, as a botnet's nodes would
            subprocess.Popen(
                site.pair.in_clients(str(BIN / "sipvicious_svmap"), "-b", ip, site.pair.edge_ip),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=tmp_path,
            )
            for ip in guessers
        ]
        for scan in scans:
            output = scan.communicate(timeout=60)[0]
            assert "found nothing" in output, output
        findings = [f for f in analysis(daemon) if f["analyser"] == "campaign"]
        assert findings, analysis(daemon)
        assert any(str(len(guessers)) in f["summary"] for f in findings), findings
    finally:
        daemon.stop()
        print(daemon.log())
        subprocess.run(site.pair.in_edge("nft", "delete", "table", "inet", "sipwarden"), timeout=10)


REGISTER_HEAVY = """
[analysis]
interval = 3600

[analysis.register_no_success]
min_registers = 40
"""


def test_a_source_whose_registers_never_succeed_is_a_finding(
    site: Site, tmp_path: Path, guessers: list[str]
) -> None:
    with running(site, tmp_path, REGISTER_HEAVY) as daemon, phone(site, guessers[0]) as p:
        for _ in range(40):  # challenged, never answered: no failed login, no success either
            assert p.register() is not None
            time.sleep(0.15)  # below [limits]' 20 REGISTERs in 2 s
        with phone(site, site.phone) as good:
            assert good.login() == 200
        findings = analysis(daemon)
        assert [f["target"] for f in findings if f["analyser"] == "register-no-success"] == [
            guessers[0]
        ], findings


def test_failed_logins_far_above_the_usual_for_this_hour_are_a_rise(
    site: Site, tmp_path: Path, guessers: list[str]
) -> None:
    # four weeks of history: 2 failed logins in this hour of the week, each week
    now = time.time()
    store = ObserveStore(tmp_path / "bans.db")
    store.write_events(
        [
            Event(now - week * 7 * 86400 - 60, "login-failed", "198.51.100.9", "auth.failed")
            for week in range(1, 5)
            for _ in range(2)
        ]
        + [Event(now - 29 * 86400, "verdict", "198.51.100.9", "old")]  # the store's beginning
    )
    store.close()
    with running(site, tmp_path, "[analysis]\ninterval = 3600\n") as daemon:
        for ip in guessers[:8]:
            fail_logins(site, ip, 4)  # 32 failures this hour (below maxretry each)
        rises = [f for f in analysis(daemon) if f["analyser"] == "rise"]
        assert rises, analysis(daemon)
        assert "32" in rises[0]["summary"], rises


def test_the_phones_own_traffic_makes_no_finding(site: Site, tmp_path: Path) -> None:
    extra = """
[analysis]
interval = 1
"""
    with running(site, tmp_path, extra) as daemon:
        with phone(site, site.phone) as good:
            for _ in range(10):
                assert good.login() == 200
        assert fail_logins(site, site.office, 2) == [401, 401]  # an old password, twice
        assert analysis(daemon) == []
        time.sleep(2.5)  # periodic runs too
        assert not [e for e in daemon.json("events") if e["kind"] == "finding"]
        assert daemon.stats()["analysis"]["runs"] >= 2


def quiet_config(now: float, *, quiet: bool, webhook: str, smtp_port: int) -> str:
    """A schedule around ``now``: its hour quiet (or the day's other hours)."""
    hour = time.gmtime(now).tm_hour
    start, end = (hour, (hour + 1) % 24) if quiet else ((hour + 1) % 24, hour)
    return f"""
[schedule]
timezone = "UTC"
quiet_hours = "{start:02d}:00-{end:02d}:00"

[schedule.quiet]
maxretry = 2

[[alerts]]
type = "webhook"
url = "{webhook}"
secret = "{SECRET}"
kinds = ["ban"]
quiet_kinds = ["login-failed"]                # noise by day, news at night
min_interval = 60

[[alerts]]
type = "email"
host = "127.0.0.1"
port = {smtp_port}
from = "sipwarden@example.com"
to = ["ops@example.com"]
kinds = ["ban"]
min_interval = 60
"""


@pytest.mark.parametrize("quiet", [False, True], ids=["by-day", "at-night"])
def test_quiet_time_turns_counted_failures_into_a_ban_and_an_alert(
    site: Site, tmp_path: Path, guessers: list[str], quiet: bool
) -> None:
    now = time.time()
    if time.gmtime(now).tm_min == 59 and time.gmtime(now).tm_sec > 30:
        time.sleep(31)  # the hour must not turn during the test
        now = time.time()
    with ExitStack() as stack:
        hook, mailbox, smtp_port = stack.enter_context(receivers(site))
        extra = quiet_config(now, quiet=quiet, webhook=hook.url, smtp_port=smtp_port)
        daemon = stack.enter_context(running(site, tmp_path, extra))
        source = guessers[1]
        statuses = fail_logins(site, source, 3)  # 3 failed logins: maxretry 5 by day, 2 at night
        if not quiet:
            time.sleep(3)  # time enough for a ban and an alert, had there been one
            assert not daemon.bans() and hook.bodies == [] and mailbox.messages == [], statuses
            return
        bans = eventually(daemon.bans, 10, 0.2)
        assert [b["ip"] for b in bans] == [source], bans
        assert "quiet time" in bans[0]["reason"], bans
        assert eventually(lambda: hook.bodies, 15, 0.2), json.dumps(
            {k: v for k, v in daemon.stats().items() if k in ("observe", "alerts", "alert-targets")}
        )
        # the ban, and (at night only) the failed logins that led to it: one
        # alert each for the burst's first event (the rest is folded into
        # the next, a min_interval later), every signature checked by the receiver
        assert eventually(lambda: len(hook.bodies) >= 2, 15, 0.2), hook.bodies
        time.sleep(1)  # nothing more comes within the interval
        assert sorted(a["kind"] for a in hook.bodies) == ["ban", "login-failed"], hook.bodies
        assert hook.refused == 0
        assert all(source in json.dumps(a) for a in hook.bodies), hook.bodies
        by_kind = {a["kind"]: a for a in hook.bodies}
        # the two failures that made the ban came in one write: one alert, count 2
        assert by_kind["ban"]["count"] == 1 and 1 <= by_kind["login-failed"]["count"] <= 2
        assert eventually(lambda: mailbox.messages, 15, 0.2), daemon.log()
        assert source in str(mailbox.messages[0].get_payload()), mailbox.messages[0]


def test_a_reload_applies_a_new_schedule(site: Site, tmp_path: Path, guessers: list[str]) -> None:
    now = time.time()
    if time.gmtime(now).tm_min == 59 and time.gmtime(now).tm_sec > 30:
        time.sleep(31)  # the hour must not turn during the test
        now = time.time()
    hour = time.gmtime(now).tm_hour
    day = f'[schedule]\nquiet_hours = "{(hour + 1) % 24:02d}:00-{hour:02d}:00"\n'
    night = f'[schedule]\nquiet_hours = "{hour:02d}:00-{(hour + 1) % 24:02d}:00"\n'
    extra = "[schedule.quiet]\nmaxretry = 2\n"
    with running(site, tmp_path, day + extra) as daemon:
        assert fail_logins(site, guessers[2], 3) == [401, 401, 401]
        assert daemon.bans() == []  # by day: counted only
        text = daemon.config.read_text()
        daemon.config.write_text(text.replace(day, night))
        reloaded = daemon.cli("reload")
        assert reloaded.returncode == 0, reloaded.stderr
        fail_logins(site, guessers[3], 3)
        assert [b["ip"] for b in eventually(daemon.bans, 10, 0.2)] == [guessers[3]]
