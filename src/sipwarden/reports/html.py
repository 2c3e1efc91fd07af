"""The report as one self-contained HTML file: inline CSS, every plot a PNG
in a ``data:`` URI, no script, nothing fetched from anywhere, so it opens
the same from a mail, a disk or an archive.

Every value is escaped (``html.escape``): User-Agents, accounts and numbers
are chosen by the attackers. Each section of ``observe.report.SECTIONS`` is
an ``<section id="...">`` with its heading, its plot (the summary has none)
and its table of the report's rows.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Sequence
from typing import Any, Final

STYLE: Final = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 64em; padding: 0 1em;
       color: #1c2833; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #d5d8dc; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { border-bottom: 1px solid #eaeded; padding: .2em .8em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; }
.note { color: #7b241c; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def when(epoch: float | None) -> str:
    """An epoch time as ISO 8601 UTC to the minute (``-`` for none)."""
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _table(
    rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], *, numeric: Sequence[str]
) -> str:
    if not rows:
        return "<p>None in this window.</p>"
    head = "".join(f"<th scope='col'>{_e(title)}</th>" for _, title in columns)
    body = []
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row.get(key)
            if key.endswith("_at") or key in ("first_seen", "last_seen"):
                value = when(value)
            elif isinstance(value, bool):
                value = "yes" if value else "no"
            cls = " class='n'" if key in numeric else ""
            cells.append(f"<td{cls}>{_e(value)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _image(name: str, title: str, png: bytes | None) -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f"<img id='plot-{_e(name)}' alt='{_e(title)}' src='data:image/png;base64,{data}'>"


def render(report: dict[str, Any], plots: dict[str, bytes], *, host: str = "") -> str:
    """The report (``observe.report.build_report``'s value, with ``notes``)
    and its plots (``reports.plots.plots``) as one HTML document."""
    window, summary = report["window"], report["summary"]
    span = f"{when(window['since'])} to {when(window['until'])}"
    title = f"sipwarden report{' for ' + host if host else ''}: {span}"
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
    ]
    parts += [f"<p class='note'>{_e(note)}</p>" for note in report.get("notes", [])]

    def section(name: str, heading: str, body: str, plot_title: str = "") -> None:
        parts.append(
            f"<section id='{name}'><h2>{_e(heading)}</h2>"
            f"{_image(name, plot_title or heading, plots.get(name))}{body}</section>"
        )

    numbers = [
        ("Attack events (drops, rejects, bans, failed logins, would-be bans)", summary["attacks"]),
        ("Packets in flows", summary["packets"]),
        ("Of which dropped by the kernel", summary["kernel_packets"]),
        ("Flows", summary["flows"]),
        ("Sources", summary["sources"]),
        ("Bans made", summary["bans_made"]),
        ("Bans in force now", summary["bans_in_force"]),
        ("Honeypot calls", summary["honeypot_calls"]),
    ]
    numbers += [(f"Events: {kind}", n) for kind, n in summary["events"].items()]
    section(
        "summary",
        "Summary",
        "<table><tbody>"
        + "".join(
            f"<tr><th scope='row'>{_e(k)}</th><td class='n'>{_e(v)}</td></tr>" for k, v in numbers
        )
        + "</tbody></table>",
    )
    volume = report["volume"]
    section(
        "volume",
        "Attack volume over time",
        f"<p>{sum(volume['attacks'])} attack events, {sum(volume['packets'])} packets seen and"
        f" {sum(volume['kernel'])} dropped by the kernel, in bars of"
        f" {volume['step'] // 3600} hour(s).</p>",
    )
    week = report["week"]
    quiet = sum(week["quiet"])
    busiest = max(range(len(week["hours"])), key=lambda i: week["hours"][i])
    day, hour = divmod(busiest, 24)
    days = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    section(
        "week",
        "By hour of the week",
        f"<p>Timezone {_e(week['timezone'])}; {quiet} of 168 hours are quiet hours (hatched)."
        f" Busiest: {days[day]} {hour:02d}:00 ({_e(week['hours'][busiest])} events a week).</p>",
    )
    section(
        "sources",
        "Top sources",
        _table(
            report["sources"],
            [
                ("source", "source"),
                ("country", "country"),
                ("packets", "packets"),
                ("bytes", "bytes"),
                ("stopped", "stopped by the policy"),
                ("kernel", "dropped by the kernel"),
                ("events", "attack events"),
                ("banned", "banned now"),
            ],
            numeric=("packets", "bytes", "stopped", "kernel", "events"),
        ),
    )
    section(
        "countries",
        "Countries",
        _table(
            report["countries"],
            [("country", "country"), ("sources", "sources"), ("packets", "packets")],
            numeric=("sources", "packets"),
        ),
    )
    tools = report["tools"]
    section(
        "tools",
        "Tools seen",
        "<h3>Scanner fingerprints (the pack's rules)</h3>"
        + _table(tools["rules"], [("rule", "rule"), ("count", "messages")], numeric=("count",))
        + "<h3>User-Agents of stopped messages</h3>"
        + _table(
            tools["user_agents"],
            [("user_agent", "User-Agent"), ("count", "messages")],
            numeric=("count",),
        )
        + "<h3>Verdicts by rule or detector</h3>"
        + _table(
            tools["verdicts"], [("reason", "reason"), ("count", "messages")], numeric=("count",)
        ),
    )
    bans = report["bans"]
    section(
        "bans",
        "Bans",
        "<h3>Made in this window, by reason</h3>"
        + _table(
            bans["by_reason"],
            [("detector", "detector"), ("reason", "reason"), ("count", "bans")],
            numeric=("count",),
        )
        + "<h3>In force now</h3>"
        + _table(
            bans["in_force"],
            [
                ("ip", "target"),
                ("detector", "detector"),
                ("reason", "reason"),
                ("created_at", "since"),
                ("expires_at", "until"),
                ("offence", "offence"),
            ],
            numeric=("offence",),
        )
        + "<h3>Would-be bans (monitor mode)</h3>"
        + _table(
            bans["would_ban"], [("reason", "reason"), ("count", "events")], numeric=("count",)
        ),
    )
    section(
        "accounts",
        "Accounts attacked",
        _table(
            report["accounts"],
            [("account", "account"), ("count", "failed logins"), ("sources", "sources")],
            numeric=("count", "sources"),
        ),
    )
    section(
        "dialled",
        "Numbers dialled (the honeypot)",
        _table(
            report["dialled"],
            [
                ("number", "number"),
                ("normalised", "E.164"),
                ("country", "country"),
                ("calls", "calls"),
                ("sources", "sources"),
            ],
            numeric=("calls", "sources"),
        ),
    )
    kernel = report["kernel"]
    section(
        "kernel",
        "What the kernel dropped",
        f"<p>{kernel['packets']} packets ({kernel['bytes']} bytes) from {kernel['sources']}"
        " sources dropped in the kernel for a ban, a feed or the lane.</p>"
        + _table(
            kernel["top"], [("source", "source"), ("packets", "packets")], numeric=("packets",)
        ),
    )
    parts.append(f"<footer><p>Generated {when(window.get('generated'))} by sipwarden.</p></footer>")
    parts.append("</body></html>")
    return "\n".join(parts)
