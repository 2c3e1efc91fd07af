"""The dashboard in a real browser (issue 19's acceptance): Debian's
chromium with chromium-driver and selenium, while SIPVicious attacks the
edge in a namespace.

The daemon's API listens off loopback (the edge namespace's address, with
a token); the browser, in the clients' namespace, logs in through the form
and opens the dashboard. Then svmap scans and svcrack guesses passwords:
the page shows svcrack's ban without a reload (the delay from the ban to
its row is printed), the source's story lists its evidence, and unbanning
it from the page lifts it from `bans list` and from the kernel. The
console holds no error; the controls have labels and the keyboard reaches
them; screenshots at 1280x720 and at a phone's width are kept under the
test's tmp dir (the path is printed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from ..conftest import need
from .harness import USERS
from .site import BIN, TABLE, Daemon, Site, eventually, site  # noqa: F401 (the fixture)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "browser-test-token-0123456789abcdef"


def read_step(out: IO[str], deadline: float) -> dict[str, Any]:
    """The browser script's next JSON line (its other lines are skipped)."""
    while time.monotonic() < deadline:
        line = out.readline()
        if not line:
            raise AssertionError("the browser script ended early")
        if line.startswith("{"):
            return json.loads(line)  # type: ignore[no-any-return]
    raise AssertionError("the browser script said nothing in time")


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_the_dashboard_in_a_browser_while_sipvicious_attacks(site: Site, tmp_path: Path):  # noqa: F811
    need(
        shutil.which("chromium") is not None, "chromium is not installed (apt-get install chromium)"
    )
    need(
        shutil.which("chromedriver") is not None,
        "chromium-driver is not installed (apt-get install chromium-driver)",
    )
    need(
        importlib.util.find_spec("selenium") is not None,
        "selenium is not installed (pip install selenium)",
    )
    need(
        (BIN / "sipvicious_svmap").exists(), "SIPVicious is not installed (pip install sipvicious)"
    )

    daemon = Daemon(site, tmp_path, extra=f'token = "{TOKEN}"')
    # the API off loopback: on the edge's address, where the clients reach it
    daemon.config.write_text(
        daemon.config.read_text().replace(
            'listen = "127.0.0.1:0"', f'listen = "{site.pair.edge_ip}:0"'
        )
    )
    daemon.start()
    browser: subprocess.Popen[str] | None = None
    browser_log = tmp_path / "browser.log"
    attackers: list[subprocess.Popen[str]] = []
    try:
        assert daemon.api is not None and site.pair.edge_ip in daemon.api, daemon.api
        browser = subprocess.Popen(
            site.pair.in_clients(
                sys.executable,
                "-m",
                "tests.edge.browser",
                daemon.api,
                TOKEN,
                str(tmp_path),
                site.attacker,
                site.flooder,
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=browser_log.open("w"),
            text=True,
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            },
        )
        assert browser.stdout is not None
        deadline = time.monotonic() + 120
        ready = read_step(browser.stdout, deadline)
        assert ready["step"] == "ready", ready

        # the attack: a scanner from one address, a guesser from another
        dictionary = tmp_path / "passwords.txt"
        dictionary.write_text("".join(f"guess{i}\n" for i in range(40)) + USERS["100"] + "\n")
        attackers.append(
            subprocess.Popen(
                site.pair.in_clients(
                    str(BIN / "sipvicious_svmap"),
                    "-b",
                    site.flooder,
                    "-p",
                    "5060",
                    site.pair.edge_ip,
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
                cwd=tmp_path,
            )
        )
        attackers.append(
            subprocess.Popen(
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
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
                cwd=tmp_path,
            )
        )
        banned = read_step(browser.stdout, deadline)
        assert banned["step"] == "banned", (banned, daemon.log())
        assert banned["reloaded"] is False
        assert banned["pbx"].endswith(" answers") and int(banned["pbx"].split()[0]) > 0
        (ban,) = [b for b in daemon.bans() if b["ip"] == site.attacker]
        delay = banned["shown_at"] - ban["created_at"]
        print(f"the ban of {site.attacker} appeared on the page {delay:.3f} s after it was made")
        assert delay < 60

        story = read_step(browser.stdout, deadline)
        assert story["step"] == "story", story
        for attacker in attackers:  # or svcrack would guess again after the unban
            attacker.terminate()
            attacker.wait(20)
        assert browser.stdin is not None
        browser.stdin.write("unban\n")
        browser.stdin.flush()
        done = read_step(browser.stdout, deadline)
        assert done["step"] == "done", done
        print(f"screenshots: {done['screenshots']}")
        assert done["deceived"] == "never deceived", done  # deception is off here
        assert done["evidence"] and all("401 to REGISTER for 100" in e for e in done["evidence"]), (
            done
        )
        assert done["console_errors"] == [], done["console_errors"]
        assert done["unlabelled"] == [], done["unlabelled"]
        assert done["tab_reaches_unban"] is True
        # unbanned from the page: gone from the store and the kernel
        assert site.attacker not in [b["ip"] for b in daemon.bans()]
        lifted = eventually(lambda: site.attacker not in daemon.firewall()["elements"], 10, 0.1)
        assert lifted, daemon.firewall()
        shots = Path(done["screenshots"])
        assert png_size(shots / "dashboard-1280x720.png") == (1280, 720)
        assert png_size(shots / "dashboard-phone.png")[0] == 390
        assert png_size(shots / "story-phone.png")[0] == 390
    finally:
        for proc in [*attackers, *([browser] if browser else [])]:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate(timeout=10)
        if browser_log.exists():
            print("the browser script's stderr:", browser_log.read_text()[-3000:])
        try:
            if daemon.proc is not None:
                daemon.stop()
        finally:
            print(daemon.log())
            subprocess.run(
                site.pair.in_edge("nft", "delete", "table", "inet", TABLE),
                capture_output=True,
                timeout=10,
            )
