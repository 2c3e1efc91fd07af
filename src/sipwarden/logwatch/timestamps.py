"""A log line's own time: the first timestamp written in it.

Why the line's time and not the time it was read: a file read after a
restart, a rotated file caught up with, a journal replayed, all hold lines
written minutes or days ago; the failure tracker's windows (``findtime``)
are about when the PBX saw the failures.

The forms PBXs and syslog write, found anywhere in the line (the first one
wins, so a syslog prefix's time comes before the message's own):

- ISO 8601, ``2013-12-31 17:39:54.767815`` or ``2016-09-25T18:57:58``, with
  an optional offset (``Z``, ``+0300``, ``-05:00``): the offset is used;
- ``Jan 18 17:39:50`` (syslog, Asterisk's default) with an optional year
  after it;
- ``08-03 07:56:53.026292`` (FreeSWITCH without the year).

A time without an offset is read in the timezone handed in (the source's
``timezone``, else the machine's). A missing year is the reference year,
or the one before when that would put the line more than a day after the
reference (a December line read in January). Bounds: one regex search over
the line; nothing is kept between lines.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
# one search, three forms; at a position where two could start, ISO first
_STAMP: Final = re.compile(
    r"(?<!\d)(?P<iy>\d{4})-(?P<im>\d{2})-(?P<id>\d{2})[T ](?P<iH>\d{2}):(?P<iM>\d{2}):(?P<iS>\d{2})"
    r"(?:[.,](?P<if>\d{1,9}))?(?P<iz>Z|[+-]\d{2}:?\d{2}(?!\d))?"
    r"|(?<![\w-])(?P<bm>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(?P<bd>\d{1,2})"
    r" (?P<bH>\d{2}):(?P<bM>\d{2}):(?P<bS>\d{2})(?:\.(?P<bf>\d{1,9}))?(?: (?P<by>\d{4})(?!\d))?"
    r"|(?<![\d-])(?P<sm>\d{2})-(?P<sd>\d{2}) (?P<sH>\d{2}):(?P<sM>\d{2}):(?P<sS>\d{2})"
    r"(?:\.(?P<sf>\d{1,9}))?"
)
_AHEAD: Final = dt.timedelta(days=1)  # a yearless line this far after "now" is last year's


def find(text: str, tz: dt.tzinfo, now: dt.datetime) -> dt.datetime | None:
    """The first timestamp in ``text`` as an aware datetime (None: none, or
    not a real date); ``now`` (aware) gives a missing year."""
    for match in _STAMP.finditer(text):
        when = _build(match, tz, now)
        if when is not None:
            return when
    return None


def _build(m: re.Match[str], tz: dt.tzinfo, now: dt.datetime) -> dt.datetime | None:
    g = m.group
    try:
        if g("iy") is not None:
            zone = _offset(g("iz")) or tz
            return dt.datetime(
                int(g("iy")), int(g("im")), int(g("id")),
                int(g("iH")), int(g("iM")), int(g("iS")), _micro(g("if")), tzinfo=zone,
            )  # fmt: skip
        if g("bm") is not None:
            month, day, hms, year = _MONTHS[g("bm")], int(g("bd")), ("bH", "bM", "bS"), g("by")
            frac = g("bf")
        else:
            month, day, hms, year = int(g("sm")), int(g("sd")), ("sH", "sM", "sS"), None
            frac = g("sf")
        hour, minute, second = (int(g(k)) for k in hms)
        local_now = now.astimezone(tz)
        when = dt.datetime(
            int(year) if year else local_now.year, month, day, hour, minute, second,
            _micro(frac), tzinfo=tz,
        )  # fmt: skip
        if not year and when - local_now > _AHEAD:
            when = when.replace(year=when.year - 1)
        return when
    except ValueError:  # 02-30, 25:00: not a date after all
        return None


def _micro(frac: str | None) -> int:
    return int((frac or "0")[:6].ljust(6, "0"))


def _offset(text: str | None) -> dt.tzinfo | None:
    if not text:
        return None
    if text == "Z":
        return dt.UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
