"""How well a source is read: lines read, matched and missed, and samples
of the missed lines that look like failures.

Why: the commonest logwatch misconfiguration is silent: a wrong path (the
file never appears), a PBX that logs elsewhere, a format that no longer
matches after an upgrade. A ``Coverage`` per source counts what it read,
keeps the time of its last line, and keeps the last ``SAMPLES`` unmatched
lines that hold a failure word ("fail", "wrong password", "No matching
endpoint"...): what an operator needs to write the missing pattern.
``silent(now, after)`` says whether a warning is due: nothing read for
``after`` seconds, once per silence. Bounded: ``SAMPLES`` lines of at most
``SAMPLE_CHARS`` characters. Pure.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Final

SAMPLES: Final = 5
SAMPLE_CHARS: Final = 300
# words a failure line has: an unmatched line with one is worth a look
LOOKS_LIKE_FAILURE: Final = re.compile(
    r"fail|wrong password|no matching|not found|rejected|denied|unauthori[sz]ed|invalid"
    r"|nonexistent|can't find|no such|mismatch|hacking",
    re.IGNORECASE,
)


@dataclass
class Coverage:
    started: float  # when following began (a silence is counted from here)
    read: int = 0
    matched: int = 0
    unmatched: int = 0
    last_line: float | None = None  # when a line was last read (the clock's time)
    warned: bool = False  # the current silence has been told
    samples: deque[str] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    suspicious: int = 0  # unmatched lines that look like failures

    def saw(self, now: float, line: str, matched: bool) -> None:
        self.read += 1
        self.last_line = now
        self.warned = False
        if matched:
            self.matched += 1
            return
        self.unmatched += 1
        if LOOKS_LIKE_FAILURE.search(line):
            self.suspicious += 1
            self.samples.append(line[:SAMPLE_CHARS])

    def silent(self, now: float, after: float) -> bool:
        """Whether to warn now: no line for ``after`` seconds, not yet told."""
        if self.warned or now - (self.last_line or self.started) < after:
            return False
        self.warned = True
        return True

    def as_dict(self) -> dict[str, object]:
        return {
            "read": self.read,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "looks_like_failures": self.suspicious,
            "last_line": self.last_line,
            "samples": list(self.samples),
        }
