"""What every analyser shares: the window it reads, the finding it gives,
and the small interface it has (as CrowdSec's bucket processors: one
behaviour per module behind one shape).

- ``Window``: the recent data the caller (the daemon's runner, or
  ``sipwarden analysis run``) read from the store: events, flow records
  (per-minute or aggregated: ``observe.flows``), ``now``, and what some
  analysers compare against (the hour-of-week profile, the countries seen
  before, a country lookup), each optional.
- ``Finding``: what an analyser saw, for people (``summary``, a few lines of
  ``evidence``), with a ``severity`` and optionally a ``Decision`` asking the
  ban book to ban the target. Analysers never ban; they ask.
- ``Analyser``: ``name`` and ``run(window) -> list[Finding]``, pure and
  bounded by the window it is handed.

An event's weight is its ``("repeated", n)`` field when it has one (a
summary of n events the queue did not keep one by one), else 1.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final, Literal, NamedTuple, Protocol

from ...values import AF_INET, AF_INET6, Decision, Network, canonical, inet_ntop, inet_pton
from ..events import BAN, UNBAN, Event
from .profile import HourOfWeekProfile

Severity = Literal["info", "warning", "critical"]
SEVERITIES: Final[tuple[Severity, ...]] = ("info", "warning", "critical")
EVIDENCE_KEPT: Final = 5
Duration = float | Literal["progressive"]


class Finding(NamedTuple):
    """One thing an analyser saw (see the module doc)."""

    analyser: str  # "distributed", "register-no-success", "rise", "campaign"
    target: str  # a canonical address or network; "" for the whole site (a rise)
    summary: str  # one line for people
    severity: Severity
    evidence: tuple[str, ...] = ()
    decision: Decision | None = None  # a ban the analyser asks for
    quiet: bool = False  # found during quiet time

    def as_dict(self) -> dict[str, Any]:
        """For ``sipwarden analysis run --json``, the finding event and alerts."""
        decision = self.decision
        return {
            "analyser": self.analyser,
            "target": self.target,
            "summary": self.summary,
            "severity": self.severity,
            "evidence": list(self.evidence),
            "quiet": self.quiet,
            "decision": None
            if decision is None
            else {
                "target": decision.target,
                "detector": decision.detector,
                "reason": decision.reason,
                "duration": decision.duration,
                "evidence": list(decision.evidence),
            },
        }


@dataclass(frozen=True)
class Window:
    """The recent data one run reads (see the module doc)."""

    now: float  # epoch seconds
    events: Sequence[Event] = ()
    flows: Sequence[Mapping[str, Any]] = ()
    span: float = 900.0  # the seconds before now the data covers ([analysis] window)
    quiet: bool = False  # Schedule.quiet(now)
    # the hour of the week of now in the schedule's timezone (None: UTC)
    hour_of_week: int | None = None
    profile: HourOfWeekProfile | None = None  # failed logins per hour of the week
    country: Callable[[str], str | None] | None = None  # an address's country code
    known_countries: frozenset[str] | None = None  # countries seen before this window

    def __post_init__(self) -> None:
        if not self.span > 0:
            raise ValueError("span: seconds, more than 0")

    @cached_property
    def bans(self) -> BansInWindow:
        """The targets the window's ban and unban events leave banned."""
        return BansInWindow.of(self.events)


def weight(event: Event) -> int:
    """How many events ``event`` stands for (see the module doc)."""
    for name, value in event.fields:
        if name == "repeated" and isinstance(value, int) and value > 0:
            return value
    return 1


def field_of(event: Event, name: str) -> Any:
    """An event's field, or None."""
    for key, value in event.fields:
        if key == name:
            return value
    return None


def network_of(host: str, prefix_v4: int, prefix_v6: int) -> str | None:
    """The canonical network of ``prefix_v4``/``prefix_v6`` holding ``host``
    (an IPv4-mapped address as its IPv4 network; a /32 or /128 as the
    address), as ``values.canonical`` writes it; None if not an address.
    inet_pton and a mask: a tenth of ipaddress's time, per source."""
    try:
        packed = inet_pton(AF_INET, host)
    except (OSError, ValueError):
        try:
            packed = inet_pton(AF_INET6, host.partition("%")[0])
        except (OSError, ValueError):
            return None
        if packed[:12] == _MAPPED:
            packed = packed[12:]
    bits = len(packed) * 8
    prefix = prefix_v4 if bits == 32 else prefix_v6
    masked = (int.from_bytes(packed) & ((1 << bits) - (1 << (bits - prefix)))).to_bytes(len(packed))
    if bits == 128 and masked[:10] == bytes(10):
        return canonical(f"{ipaddress.IPv6Address(masked)}/{prefix}")  # inet_ntop may write dots
    text = inet_ntop(AF_INET if bits == 32 else AF_INET6, masked)
    return text if prefix == bits else f"{text}/{prefix}"


_MAPPED: Final = bytes(10) + b"\xff\xff"


@dataclass
class BansInWindow:
    """What the window's ``ban``/``unban`` events say is banned (their
    source is the target), so an analyser does not ask again for a ban the
    book already made at an earlier run."""

    targets: set[str] = field(default_factory=set)
    networks: list[Network] = field(default_factory=list)

    @classmethod
    def of(cls, events: Iterable[Event]) -> BansInWindow:
        state: dict[str, bool] = {}
        for event in sorted((e for e in events if e.kind in (BAN, UNBAN)), key=lambda e: e.time):
            try:
                state[canonical(event.source)] = event.kind == BAN
            except ValueError:
                continue
        targets = {t for t, banned in state.items() if banned}
        networks = [ipaddress.ip_network(t) for t in targets if "/" in t]
        return cls(targets, networks)

    def covers(self, target: str) -> bool:
        """Whether ``target`` (an address or network) is banned, itself or
        inside a banned network."""
        try:
            key = canonical(target)
        except ValueError:
            return False
        if key in self.targets:
            return True
        if not self.networks:
            return False
        net = ipaddress.ip_network(key)
        return any(
            net.version == banned.version and net.subnet_of(banned)  # type: ignore[arg-type]
            for banned in self.networks
        )


class Analyser(Protocol):
    """One behaviour: ``run`` reads a window and says what it saw."""

    @property
    def name(self) -> str: ...

    def run(self, window: Window) -> list[Finding]: ...


def clock(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def span_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h".replace(".0 h", " h")


def flows_by_source(flows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The flow records merged per source address (over ports, destinations
    and minutes): messages, methods, answers and verdicts summed. Records
    without a source or with the overflow source ``*`` are left out; a field
    missing or of the wrong type counts as empty (bad input loses nothing
    else)."""
    merged: dict[str, dict[str, Any]] = {}
    for record in flows:
        source = record.get("source")
        if not isinstance(source, str) or not source or source == "*":
            continue
        into = merged.get(source)
        if into is None:
            into = merged[source] = {"packets": 0, "methods": {}, "answers": {}, "verdicts": {}}
        packets = record.get("packets")
        if isinstance(packets, int):
            into["packets"] += packets
        for name in ("methods", "answers", "verdicts"):
            counts = record.get(name)
            if isinstance(counts, Mapping):
                target = into[name]
                for item, n in counts.items():
                    if isinstance(n, int):
                        target[str(item)] = target.get(str(item), 0) + n
    return merged


def succeeded(answers: Mapping[str, int]) -> bool:
    """Whether any answer is a 2xx."""
    return any(status.startswith("2") and n > 0 for status, n in answers.items())
