"""`sipwarden report` over a store filled by a real run: the daemon in its
namespace with the scanner pack and deception on; a fingerprinted probe, a
toll-fraud caller (sipp) walking three prefixes into the honeypot, a
guesser the failure tracker bans and whose next packets the kernel drops,
a phone that logs in. With the daemon still running, the report has every
section, its numbers agree with `bans list`, `flows` and `honeypot calls`
over the same window, and its plots decode as real images."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from pathlib import Path

from PIL import Image

from sipwarden.observe.report import SECTIONS

from ..conftest import SCANNERS
from .site import Site, eventually, phone, running, send_udp
from .test_deception_e2e import DECEIVE, NUMBERS, sipp_call

EXTRA = (
    DECEIVE
    + '\n[deception.fake_pbx]\nhold = "1s"\n\n[dialplan]\ncountry = "GB"\n'
    + '\n[observe]\nkernel_drops_every = "1s"\n'
)


def test_a_report_of_a_real_run_agrees_with_the_lists(site: Site, tmp_path: Path) -> None:
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    with running(site, tmp_path, EXTRA, pack=True) as daemon:
        send_udp(site, site.attacker, (SCANNERS / "svmap_0.3.8_OPTIONS.sip").read_bytes())
        assert [sipp_call(site, number, tmp_path) for number in NUMBERS] == [0, 0, 0]
        with phone(site, site.flooder) as guesser, phone(site, site.phone) as bystander:
            assert bystander.login() == 200
            statuses = [guesser.login(f"guess{i}", timeout=0.5) for i in range(6)]
            assert 401 in statuses or 403 in statuses, statuses
            assert eventually(lambda: site.flooder in {b["ip"] for b in daemon.bans()}, 20, 0.2)
            assert guesser.unanswered(5)  # dropped in the kernel now
        kernel = eventually(
            lambda: [f for f in daemon.json("flows", "--since", since)
                     if f["transport"] == "kernel" and f["source"] == site.flooder],
            20, 0.5,
        )  # fmt: skip
        assert kernel, "the kernel's drops never reached the flows"
        # the walk's ban comes when the deception ends (10 s after its last packet)
        assert eventually(lambda: site.attacker in {b["ip"] for b in daemon.bans()}, 30, 0.5)
        time.sleep(1.5)  # quiet: nothing more is counted

        out = tmp_path / "report.html"
        done = daemon.cli("report", "--since", since, "-o", str(out))
        assert done.returncode == 0, done.stderr
        report = daemon.json("report", "--since", since)
        flows = daemon.json("flows", "--since", since, "--limit", "100000")
        bans = daemon.bans()
        calls = daemon.json("honeypot", "calls", "--since", since)

    summary = report["summary"]
    assert summary["packets"] == sum(f["packets"] for f in flows) > 0
    assert summary["flows"] == len(flows)
    per_source: dict[str, int] = {}
    for f in flows:
        per_source[f["source"]] = per_source.get(f["source"], 0) + f["packets"]
    assert {r["source"]: r["packets"] for r in report["sources"]} == per_source
    dropped = sum(f["packets"] for f in flows if f["transport"] == "kernel")
    assert report["kernel"]["packets"] == dropped >= 5
    assert {(b["ip"], b["detector"]) for b in report["bans"]["in_force"]} == {
        (b["ip"], b["detector"]) for b in bans
    }
    assert summary["bans_in_force"] == len(bans) >= 2
    detectors = {r["detector"] for r in report["bans"]["by_reason"]}
    assert "tollfraud.prefix-walk" in detectors and len(detectors) >= 2, report["bans"]
    assert summary["honeypot_calls"] == sum(c["count"] for c in calls) >= 3
    assert {r["number"] for r in report["dialled"]} == set(NUMBERS)
    assert report["tools"]["rules"], report["tools"]  # the probe's fingerprint
    assert sum(r["count"] for r in report["accounts"]) >= 5  # the guesses
    html = out.read_text()
    assert all(f"<section id='{name}'>" in html for name in SECTIONS)
    images = re.findall(r"src='data:image/png;base64,([^']+)'", html)
    assert len(images) == len(SECTIONS) - 1
    for data in images:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            image.load()
            assert image.format == "PNG" and image.size[0] >= 400
    print(json.dumps(summary))
