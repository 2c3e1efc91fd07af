"""The kernel's drops as flow records: what nftables dropped for a ban or a
feed, per source, turned from cumulative counts into one record per source
and reading, beside the edge's flows (``flows.py``).

The enforcer's ``drop_counts`` gives, at each reading, every source's
(packets, bytes) since its counting element was made (``enforce/drops.py``).
``KernelDrops.read`` takes one reading and returns the records of what
changed since the previous one: ``FlowKey(source, None, "*", 0, "kernel")``
(the kernel counts per source address only: no port, no destination;
"kernel" tells these records from the edge's, whose transport is udp, tcp
or tls), ``verdicts`` ``{"kernel-drop": packets}``, ``peak_pps`` the mean
rate over the interval (the kernel keeps no peak: a lower bound), ``minute``
the minute of the interval's middle (read every minute, that is the minute
the packets came in), first and last seen the two readings' times.

Bytes are the kernel's: whole IP packets, headers included (28 bytes more
than the SIP payload per IPv4 UDP datagram, 48 per IPv6, 40 or more per TCP
segment). Nothing is subtracted, because the kernel does not say which
protocol each packet was; compare them with the edge's flows knowing so.

Counters that go back: a source whose count is below the last one
(its element timed out and came back, or the table was rebuilt) counts
from zero again; a source absent from a reading (timed out) is forgotten,
so its return counts whole. Never negative. Not seen: an element that
times out and comes back between two readings with at least its old count
is taken as going on (its new packets are undercounted by the old count);
it needs the source silent for the element's whole ``idle`` time (10
minutes by default) and back before the next reading.

Bounds: the state is the last reading (source -> counts), at most
``max_sources`` (the kernel's sets bound it first: 65,536 a family by
default); the sources past that in a reading are not tracked and not
reported (``counters["untracked"]``). Pure, sans-I/O: the clock is the
caller's.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .flows import FlowKey

TRANSPORT = "kernel"  # the transport of the kernel's records
DESTINATION = "*"  # the kernel counts per source only
REASON = "kernel-drop"  # their one verdict: dropped in the kernel for a ban or a feed


@dataclass
class KernelDrops:
    """Successive cumulative readings -> per-source flow records (see the
    module docstring). ``started``: when counting began (the enforcer's
    start emptied the kernel's counts), the first interval's beginning."""

    started: float
    max_sources: int = 262_144
    counters: Counter[str] = field(default_factory=Counter)  # "untracked", "restarted", "readings"

    def __post_init__(self) -> None:
        if self.max_sources < 1:
            raise ValueError("max_sources: at least 1")
        self._last = self.started
        self._counts: dict[str, tuple[int, int]] = {}

    def __len__(self) -> int:
        """Sources whose last counts are kept."""
        return len(self._counts)

    def read(self, reading: Mapping[str, tuple[int, int]], now: float) -> list[dict[str, Any]]:
        """The records of what ``reading`` (source -> cumulative packets,
        bytes) adds to the previous one, taken at ``now``."""
        self.counters["readings"] += 1
        since = self._last
        seconds = max(now - since, 1.0)
        minute = math.floor((since + now) / 2 / 60) * 60
        kept: dict[str, tuple[int, int]] = {}
        records = []
        for source, (packets, size) in reading.items():
            if len(kept) >= self.max_sources:
                self.counters["untracked"] += 1
                continue
            kept[source] = (packets, size)
            old = self._counts.get(source)
            if old is not None and (packets < old[0] or size < old[1]):
                self.counters["restarted"] += 1  # a new element: its counts are all new
                old = None
            new_packets = packets - old[0] if old else packets
            new_bytes = size - old[1] if old else size
            if new_packets > 0:
                records.append(_record(source, since, now, minute, new_packets, new_bytes, seconds))
        self._counts, self._last = kept, max(now, since)
        return records


def _record(
    source: str, since: float, now: float, minute: int, packets: int, size: int, seconds: float
) -> dict[str, Any]:
    """One record with the fields of ``flows.FlowTable``'s."""
    return {
        "minute": minute,
        **FlowKey(source, None, DESTINATION, 0, TRANSPORT)._asdict(),
        "first_seen": since,
        "last_seen": now,
        "packets": packets,
        "bytes": size,
        "peak_pps": math.ceil(packets / seconds),
        "methods": {},
        "answers": {},
        "verdicts": {REASON: packets},
    }
