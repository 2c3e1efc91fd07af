"""What `firewall lane` and `status` print of the kernel lane (the kernel's
own side is tests/enforce/test_lane.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipwarden.cli import render
from sipwarden.enforce import LaneSettings, LaneView


def test_firewall_lane_shows_what_passed_and_what_was_dropped(capsys: pytest.CaptureFixture[str]):
    seen = LaneView(
        present=True,
        counters={
            "good": 42,
            "trusted": 3,
            "unknown-passed": 20_201,
            "prefix-dropped": 7,
            "total-dropped": 779_801,
        },
        known_good={"192.0.2.7": 7150.0, "2001:db8::1": 60.0},
        trusted=["198.51.100.0/28"],
    )
    render.firewall_lane(seen, LaneSettings(ports=(("udp", 5060),)), listed=True)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "lane on udp/5060: unknown sources 200/s per /24 (IPv6 /48), 1000/s in all",
        "packets: known-good 42, trusted 3, unknown passed 20,201; dropped per prefix 7,"
        " over the total 779,801",
        "known-good sources: 2; trusted networks: 1",
        f"  {'192.0.2.7':<40} 7150 s left",
        f"  {'2001:db8::1':<40} 60 s left",
    ]
    render.firewall_lane(LaneView(False, {}, {}, []), None, listed=False)
    assert capsys.readouterr().out == "no kernel lane\n"


def test_status_has_a_lane_line(capsys: pytest.CaptureFixture[str]):
    shown = {
        "running": True,
        "bans_in_force": 0,
        "intel": {},
        "lane": {"known-good": 12, "kernel-prefix-dropped": 5, "kernel-total-dropped": 9000},
    }
    render.status(shown, Path("s.sock"))
    assert (
        "kernel lane: 12 sources known-good; unknown sources dropped 5 per prefix,"
        " 9,000 over the total"
    ) in capsys.readouterr().out
    render.status({**shown, "lane": None}, Path("s.sock"))
    assert "kernel lane: none" in capsys.readouterr().out
