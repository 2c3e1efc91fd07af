"""Reports (issue 19): what the store recorded over a window, for people.

``gather`` reads the stores, the country database and the schedule into
the pure ``observe.report`` value; ``plots`` draws its PNGs (matplotlib,
Agg); ``render_html`` makes one self-contained HTML file of both, and
``render_json`` the same report as JSON. `sipwarden report` and the
daemon's weekly mail (``daemon/report.py``) run ``make``.
"""

from __future__ import annotations

import json
from typing import Any

from ..config import Config
from .gather import gather
from .html import render as render_html
from .plots import plots


def render_json(report: dict[str, Any]) -> str:
    """The report as JSON (what the HTML shows, without the images)."""
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


def make(
    config: Config, since: float, until: float | None = None, *, top: int = 20, host: str = ""
) -> tuple[dict[str, Any], str]:
    """The report over the window and its HTML (blocking: run it on a thread
    in the daemon)."""
    report = gather(config, since, until, top=top)
    return report, render_html(report, plots(report), host=host)


__all__ = ["gather", "make", "plots", "render_html", "render_json"]
