"""`GET /metrics` against the real daemon (issue 15, item 5): two workers,
SIPVicious scans spread over both and a flood the rate limiter bans, then
the scrape, parsed with prometheus_client's own parser, agrees with
`sipwarden status --json` for every verdict; an operator's ban shows in
``sipwarden_bans_active``, ``sipwarden_bans_total{detector}`` and the ban
latency histogram, counted once though both workers enforce it; no label
value is an address; /metrics passes the API's guard like every route."""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from sipwarden.daemon.control import ask, worker_path

from .conftest import SCANNERS, free_udp_port, start_edge_process
from .test_api_auth import stop
from .test_bans_daemon import api_url, bearer

FLOOD_SOURCE = "127.0.0.5"  # of 127.0.0.0/8, bannable (only 127.0.0.1 is protected)
SCANS = 20
FLOOD = 8  # OPTIONS from one source; [limits] requests = 5: the sixth is a ban


def scrape(api: str, **headers: str) -> dict[str, Any]:
    answer = httpx.get(f"{api}/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(answer.text)}


def values(family: Any, *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels[name] for name in labels): s.value for s in family.samples}


def status(config: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "sipwarden.cli", "status", "-c", str(config), "--json"],
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def options(n: int) -> bytes:
    return (
        f"OPTIONS sip:pbx.example SIP/2.0\r\nVia: SIP/2.0/UDP {FLOOD_SOURCE}:5060;branch=z9hG4bK-m{n}"
        f"\r\nMax-Forwards: 70\r\nFrom: <sip:m@pbx.example>;tag=m{n}\r\nTo: <sip:pbx.example>\r\n"
        f"Call-ID: m{n}\r\nCSeq: {n + 1} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def send_traffic(port: int) -> None:
    scan = (SCANNERS / "svmap_0.3.8_OPTIONS.sip").read_bytes()
    for _ in range(SCANS):  # a port each: the kernel spreads them over the workers
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as scanner:
            scanner.bind(("127.0.0.1", 0))
            scanner.sendto(scan, ("127.0.0.1", port))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
        flood.bind((FLOOD_SOURCE, 0))
        for n in range(FLOOD):
            flood.sendto(options(n), ("127.0.0.1", port))


def wait_for(check: Any, what: str, seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.2)


def no_address_in(families: dict[str, Any]) -> None:
    for family in families.values():
        for sample in family.samples:
            for value in sample.labels.values():
                assert not re.search(r"\d+\.\d+\.\d+\.\d+", value), (sample, value)
                try:
                    ipaddress.ip_network(value, strict=False)
                except ValueError:
                    continue
                raise AssertionError(f"{sample.name} has an address for a label: {value}")


def test_metrics_agree_with_status_over_two_workers(tmp_path: Path):
    port = free_udp_port()
    proc, line = start_edge_process(
        tmp_path, port, 9, workers=2, extra="[limits]\nrequests = 5\nwindow = 60\n"
    )
    config = tmp_path / "edge.toml"
    try:
        api = api_url(line)
        before = scrape(api)
        assert values(before["sipwarden_bans_active"]) == {(): 0}
        assert before["sipwarden_bans"].samples == []  # the contract's names, there but empty
        assert before["sipwarden_ban_latency_seconds"].type == "histogram"

        send_traffic(port)
        verdicts = wait_for(
            lambda: (
                (v := status(config)["verdicts"]).get("drop:scan.sipvicious-tag") == SCANS
                and sum(n for k, n in v.items() if k.startswith("ban:")) == 1
                and sum(v.values()) == SCANS + FLOOD
                and v
            ),
            "every datagram judged",
        )
        families = scrape(api)
        scraped = values(families["sipwarden_verdicts"], "verdict", "reason")
        assert {f"{kind}:{reason}": n for (kind, reason), n in scraped.items()} == verdicts
        assert scraped[("drop", "scan.sipvicious-tag")] == SCANS
        # summed over the workers: each judged some of the scans
        socket_path = Path(tmp_path / "sipwarden.sock")
        per_worker = [
            ask(worker_path(socket_path, n), {"cmd": "stats", "local": True})["edge"]["received"]
            for n in (0, 1)
        ]
        assert all(per_worker) and sum(per_worker) == SCANS + FLOOD, per_worker
        assert values(families["sipwarden_edge_received"]) == {(): SCANS + FLOOD}
        assert values(families["sipwarden_rule_hits"], "rule")[("scan.sipvicious-tag",)] == SCANS

        # the rate limiter's ban, by its detector
        (detector,) = [k.partition(":")[2] for k in verdicts if k.startswith("ban:")]
        assert values(families["sipwarden_bans"], "detector") == {(detector,): 1}
        # worker 0's count: the ban may be worker 1's, adopted within a second
        wait_for(
            lambda: values(scrape(api)["sipwarden_bans_active"]) == {(): 1}, "the ban in force"
        )

        def local_bans(worker: int) -> set[str]:
            asked = ask(worker_path(socket_path, worker), {"cmd": "bans-list", "local": True})
            return {ban["ip"] for ban in asked["bans"]}

        # an operator's ban: made by worker 0, adopted by worker 1, counted once
        made = httpx.post(
            f"{api}/api/v1/bans", json={"ip": "203.0.113.7"}, headers=bearer(tmp_path)
        )
        assert made.status_code == 201, made.text
        for worker in (0, 1):
            wait_for(
                lambda n=worker: {FLOOD_SOURCE, "203.0.113.7"} <= local_bans(n),
                f"worker {worker} enforces both bans",
            )
        families = scrape(api)
        assert values(families["sipwarden_bans_active"]) == {(): 2}
        assert status(config)["bans_in_force"] == 2
        assert values(families["sipwarden_bans"], "detector") == {(detector,): 1, ("operator",): 1}
        latency = {
            (s.name, s.labels.get("le")): s.value
            for s in families["sipwarden_ban_latency_seconds"].samples
        }
        assert latency[("sipwarden_ban_latency_seconds_count", None)] == 2
        assert latency[("sipwarden_ban_latency_seconds_bucket", "+Inf")] == 2
        assert latency[("sipwarden_ban_latency_seconds_sum", None)] > 0
        buckets = sorted(
            (float(le), n)
            for (name, le), n in latency.items()
            if name.endswith("_bucket") and le is not None
        )
        assert [n for _, n in buckets] == sorted(n for _, n in buckets)  # cumulative

        assert values(families["sipwarden_build_info"], "version") != {}
        no_address_in(families)
        body = httpx.get(f"{api}/metrics").text
        assert "203.0.113.7" not in body and FLOOD_SOURCE not in body

        # the guard runs first, as for every route: a foreign Host is refused
        refused = httpx.get(f"{api}/metrics", headers={"Host": "evil.example"})
        assert refused.status_code == 403, refused.text
    finally:
        stop(proc)


def test_metrics_need_the_token_the_operator_set(tmp_path: Path):
    token = "metrics-scraper-token-0123456789"
    proc, line = start_edge_process(
        tmp_path, free_udp_port(), 9, extra=f'[api]\nlisten = "127.0.0.1:0"\ntoken = "{token}"\n'
    )
    try:
        api = api_url(line)
        refused = httpx.get(f"{api}/metrics")
        assert refused.status_code == 401, refused.text
        assert "sipwarden_verdicts_total" not in refused.text
        families = scrape(api, Authorization=f"Bearer {token}")
        assert "sipwarden_verdicts" in families
        # OpenMetrics, when the scraper asks for it
        open_metrics = httpx.get(
            f"{api}/metrics",
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/openmetrics-text; version=1.0.0",
            },
        )
        assert open_metrics.headers["Content-Type"].startswith("application/openmetrics-text")
        assert open_metrics.text.endswith("# EOF\n")
    finally:
        stop(proc)
