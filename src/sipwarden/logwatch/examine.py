"""`sipwarden logwatch test`: what each line of a log gives, with totals
(fail2ban-regex for sipwarden).

``examine(fmt, tz, lines, now)`` gives one row per line (its number, the
rule that matched or none, the kind, host, account and the line's time, or
whether it looks like a failure no pattern matches) and the totals: lines,
matched, unmatched, by kind, by rule, the hosts with their counts, and the
unmatched lines that look like failures. Pure; the command reads the file.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from typing import Any

from .coverage import LOOKS_LIKE_FAILURE
from .patterns import Format


def examine(fmt: Format, tz: dt.tzinfo, lines: Iterable[str], now: dt.datetime) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    kinds: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    hosts: Counter[str] = Counter()
    missed: list[int] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        record = fmt.match(line, tz, now)
        row: dict[str, Any] = {"line": number, "text": line, "matched": record is not None}
        if record is None:
            if LOOKS_LIKE_FAILURE.search(line):
                row["looks_like_failure"] = True
                missed.append(number)
        else:
            row.update(
                kind=record.kind,
                host=record.host,
                account=record.account,
                time=None if record.when is None else record.when.isoformat(),
                rule=record.rule,
            )
            kinds[record.kind] += 1
            rules[record.rule] += 1
            hosts[record.host] += 1
        rows.append(row)
    matched = sum(kinds.values())
    return {
        "format": fmt.name,
        "lines": rows,
        "totals": {
            "lines": len(rows),
            "matched": matched,
            "unmatched": len(rows) - matched,
            "kinds": dict(kinds),
            "rules": dict(rules),
            "hosts": dict(hosts.most_common()),
            "looks_like_failures": missed,
        },
    }
