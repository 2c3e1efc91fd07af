"""The report's plots: PNG bytes drawn by matplotlib from the report's value.

matplotlib's object API with the Agg canvas (``Figure`` and
``FigureCanvasAgg``, never ``pyplot``): no display, no global figure
state, so a report can be drawn on a thread of the daemon. Text from
attackers (User-Agents, accounts, numbers) is drawn with mathtext off and
cut to ``LABEL`` characters. Bounds: one figure per section, the report's
own lists (``top`` rows each), about 100 dpi: a few tens of kB a plot.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from typing import Any, Final

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..observe.schedule import WEEK_HOURS

LABEL: Final = 40  # characters of a label drawn
DPI: Final = 100
DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
COLOURS: Final = {"attacks": "#c0392b", "packets": "#2e86c1", "kernel": "#7f8c8d"}


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def _label(value: Any) -> str:
    text = " ".join(str(value).split()) or "(none)"
    return text if len(text) <= LABEL else text[: LABEL - 1] + "…"


def _nothing(figure: Figure, title: str) -> bytes:
    ax = figure.add_subplot()
    ax.set_title(title)
    ax.text(0.5, 0.5, "nothing recorded in this window", ha="center", va="center")
    ax.set_axis_off()
    return _png(figure)


def bars(title: str, labels: Sequence[Any], values: Sequence[float], unit: str) -> bytes:
    """Horizontal bars, the largest on top."""
    height = 1.2 + 0.28 * max(len(labels), 3)
    figure = Figure(figsize=(8, height), layout="constrained")
    if not labels:
        return _nothing(figure, title)
    ax = figure.add_subplot()
    rows = range(len(labels))
    ax.barh(rows, values, color=COLOURS["packets"])
    ax.set_yticks(rows, [_label(label) for label in labels])
    for tick in ax.get_yticklabels():
        tick.set_parse_math(False)  # an attacker's "$x$" is text, not a formula
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title)
    return _png(figure)


def volume(report: dict[str, Any]) -> bytes:
    """Attack events and packets per bar of the window."""
    data = report["volume"]
    starts = [dt.datetime.fromtimestamp(t, dt.UTC) for t in data["start"]]
    width = dt.timedelta(seconds=data["step"])
    figure = Figure(figsize=(10, 5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True)
    top.bar(starts, data["attacks"], width=width, align="edge", color=COLOURS["attacks"])
    top.set_ylabel("attack events")
    top.set_title(f"Attack volume over time (UTC, {data['step'] // 3600} h a bar)")
    bottom.bar(
        starts, data["packets"], width=width, align="edge", color=COLOURS["packets"], label="seen"
    )
    bottom.bar(
        starts,
        data["kernel"],
        width=width,
        align="edge",
        bottom=data["packets"],
        color=COLOURS["kernel"],
        label="dropped by the kernel",
    )
    bottom.set_ylabel("packets")
    bottom.legend(loc="upper left")
    figure.autofmt_xdate()
    return _png(figure)


def week(report: dict[str, Any]) -> bytes:
    """The hour-of-week heatmap of attack volume, quiet hours hatched."""
    data = report["week"]
    hours, quiet = data["hours"], data["quiet"]
    grid = [hours[d * 24 : (d + 1) * 24] for d in range(WEEK_HOURS // 24)]
    figure = Figure(figsize=(10, 3.6), layout="constrained")
    ax = figure.add_subplot()
    image = ax.imshow(grid, aspect="auto", cmap="Reds", interpolation="nearest")
    for i, is_quiet in enumerate(quiet):
        if is_quiet:  # a hatched box over the hour
            day, hour = divmod(i, 24)
            ax.add_patch(
                Rectangle((hour - 0.5, day - 0.5), 1, 1, fill=False, hatch="///", linewidth=0)
            )
    ax.set_yticks(range(7), DAYS)
    ax.set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)])
    ax.set_xlabel(f"hour ({data['timezone']}); hatched: quiet hours")
    ax.set_title(f"Attack events by hour of the week (mean over {data['weeks']} week(s))")
    figure.colorbar(image, ax=ax, label="events")
    return _png(figure)


def plots(report: dict[str, Any]) -> dict[str, bytes]:
    """Every section's plot, by section name (the summary has none)."""
    tools = report["tools"]["rules"] or [
        {"rule": row["user_agent"], "count": row["count"]} for row in report["tools"]["user_agents"]
    ]
    return {
        "volume": volume(report),
        "week": week(report),
        "sources": bars(
            "Top sources",
            [f"{r['source']} ({r['country']})" for r in report["sources"]],
            [r["packets"] for r in report["sources"]],
            "packets",
        ),
        "countries": bars(
            "Countries",
            [r["country"] for r in report["countries"]],
            [r["packets"] for r in report["countries"]],
            "packets",
        ),
        "tools": bars(
            "Tools seen (pack rules, else User-Agents)",
            [r["rule"] for r in tools],
            [r["count"] for r in tools],
            "messages",
        ),
        "bans": bars(
            "Bans made, by reason",
            [f"{r['detector']}: {r['reason']}" for r in report["bans"]["by_reason"]],
            [r["count"] for r in report["bans"]["by_reason"]],
            "bans",
        ),
        "accounts": bars(
            "Accounts attacked",
            [r["account"] for r in report["accounts"]],
            [r["count"] for r in report["accounts"]],
            "failed logins",
        ),
        "dialled": bars(
            "Numbers dialled into the honeypot",
            [r["number"] for r in report["dialled"]],
            [r["calls"] for r in report["dialled"]],
            "calls",
        ),
        "kernel": bars(
            "Dropped by the kernel (bans, feeds, the lane)",
            [r["source"] for r in report["kernel"]["top"]],
            [r["packets"] for r in report["kernel"]["top"]],
            "packets",
        ),
    }
