"""Which path the tests run on: the C speedups, or the pure-Python twins
alone when ``SIPWARDEN_PURE_PYTHON=1`` (the test command runs the pure
core's unit and property tests both ways: scripts/test.sh)."""

from __future__ import annotations

import os

from sipwarden.sip import peek
from sipwarden.sip.accel import SPEEDUPS

from ..conftest import need

PURE = os.environ.get("SIPWARDEN_PURE_PYTHON", "") not in ("", "0")

OPTIONS = (
    b"OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK1\r\n"
    b"From: <sip:a@198.51.100.7>;tag=1\r\nTo: <sip:100@192.0.2.1>\r\nCall-ID: c1\r\n"
    b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


def test_the_switch_decides_the_path() -> None:
    view = peek(OPTIONS)
    if PURE:  # nothing of the C path may be used: no module, no layout (the C scanner's)
        assert SPEEDUPS is None
        assert view.layout is None
    else:
        need(SPEEDUPS is not None, "the C extension sipwarden.sip._speedups is not built")
        assert view.layout is not None
    assert (view.method, view.call_id, view.via_branch) == ("OPTIONS", "c1", "z9hG4bK1")
