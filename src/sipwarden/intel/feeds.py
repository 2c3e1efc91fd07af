"""Generic threat feeds: a file or an http(s) URL with one address or CIDR
per line.

Operations: ``parse_feed(text)`` (here, sans-I/O) and ``fetch.lists.Feed.refresh()``
(the fetch, async), whose answer the caller hands to ``AddressIndex.replace``.

Syntax: one IPv4 or IPv6 address or CIDR per line (host bits of a CIDR are
cleared); ``#`` and ``;`` start a comment, at the start of a line or after
an entry; blank lines are skipped; anything after the first word is ignored
(``192.0.2.7<TAB>12`` as some lists count reports); a line that is not an
address is counted as bad and skipped, and the first few are kept as
examples for the operator. Entries come out canonical (``inet_ntop``
spelling, the edge's) and once each, in the feed's order.

Goals: a feed can never take the edge down or leave it unprotected: a
failed fetch (network, HTTP status, timeout, a list over its size limits,
a body with more bad lines than addresses, such as an error page served
with 200) keeps the last good list and records the error; bounded memory
(at most ``max_bytes`` read, ``max_entries`` kept); polite polling
(conditional requests: a 304 keeps the list, as does an unchanged file).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .index import parse_target

MAX_ENTRIES: Final = 500_000
MAX_BYTES: Final = 32 * 1024 * 1024
TIMEOUT: Final = 30.0  # seconds for a whole fetch
BAD_EXAMPLES: Final = 5  # bad lines kept for the operator
EXAMPLE_CHARS: Final = 80
_COMMENTS: Final = str.maketrans({";": "#"})


class FeedError(Exception):
    """A fetch that cannot be used (its message goes to ``last_error``)."""


class FeedTooLarge(FeedError):
    pass


class NotAFeed(FeedError):
    pass


@dataclass(frozen=True)
class Parsed:
    entries: tuple[str, ...]  # canonical, each once, in the feed's order
    lines: int  # lines read
    bad: int  # lines that are not an address or CIDR
    examples: tuple[str, ...] = ()  # the first few bad lines, ``line N: '...'``
    duplicates: int = 0


def parse_line(line: str) -> str | None:
    """The canonical target on ``line``; None for a blank or comment line.
    Raises ValueError for anything else."""
    word = line.translate(_COMMENTS).partition("#")[0].split(None, 1)
    if not word:
        return None
    return parse_target(word[0]).spelling


def parse_feed(text: str, *, max_entries: int | None = None) -> Parsed:
    """Parse a feed's text (see the module doc). Raises FeedTooLarge when it
    lists more than ``max_entries`` targets."""
    seen: dict[str, None] = {}
    bad = duplicates = lines = 0
    examples: list[str] = []
    for lines, line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        try:
            target = parse_line(line)
        except ValueError:
            bad += 1
            if len(examples) < BAD_EXAMPLES:
                examples.append(f"line {lines}: {line.strip()[:EXAMPLE_CHARS]!r}")
            continue
        if target is None:
            continue
        if target in seen:
            duplicates += 1
            continue
        seen[target] = None
        if max_entries is not None and len(seen) > max_entries:
            raise FeedTooLarge(f"over {max_entries} entries")
    return Parsed(tuple(seen), lines, bad, tuple(examples), duplicates)


@dataclass
class FeedStatus:
    """What a feed holds and how its fetches went (for status and metrics)."""

    name: str
    source: str
    entries: tuple[str, ...] = ()  # the last good list
    size: int = 0  # bytes of the last good list
    last_success: float | None = None  # last fetch that worked (304 included)
    last_change: float | None = None  # when the list last changed
    last_error: str | None = None  # of the last fetch; None once one works again
    last_error_at: float | None = None
    bad_lines: int = 0  # in the last good list
    bad_examples: tuple[str, ...] = ()
    fetches: int = 0
    failures: int = 0
    not_modified: int = 0

    @property
    def count(self) -> int:
        return len(self.entries)
