"""What the dashboard's fleet card and `sipwarden top`'s fleet line read:
``/api/v1/status``'s "fleet" from a real node (up, the nodes up, lag, bans
published and applied; DEGRADED with Redis's error when Redis goes away),
and the page that has the card and the script that fills it. (Drawing it
in a browser is tests/edge/test_dashboard_browser.py's kind of test.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from ..edge.site import eventually
from .loopback import LoopbackNode
from .redis_server import redis_server


def test_the_status_the_fleet_card_reads_up_then_degraded(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as redis:
        a, b = LoopbackNode(tmp_path, "a", redis, api=True), LoopbackNode(tmp_path, "b", redis)
        try:
            a.start()
            b.start()
            found = re.search(rb"API (http://[^/\s]+)/api/v1", a.line)
            assert found, a.line
            api = found.group(1).decode()

            def fleet() -> dict[str, Any]:
                return httpx.get(f"{api}/api/v1/status", timeout=10).json()["fleet"]  # type: ignore[no-any-return]

            assert eventually(lambda: fleet()["nodes-up"] == 2, 15, 0.2), fleet()
            b.ask({"cmd": "bans-add", "target": "203.0.113.44", "duration": 600})
            assert eventually(lambda: fleet()["counters"].get("applied") == 1, 15, 0.1)
            up = fleet()
            assert up["degraded"] is False and up["nodes"] == 2 and up["lag"] >= 0

            page = httpx.get(f"{api}/", timeout=10).text
            script = httpx.get(f"{api}/static/app.js", timeout=10).text
            assert 'id="fleet-card"' in page and 'id="fleet-detail"' in page
            assert "showFleet(status.fleet)" in script and '"nodes-up"' in script

            redis.stop()
            assert eventually(lambda: fleet()["degraded"], 15, 0.2), fleet()
            assert fleet()["last-error"], fleet()
        finally:
            a.stop()
            b.stop()
