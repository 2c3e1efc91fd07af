"""Offline replay: judge every SIP message of a packet capture as the edge would.

``replay(path, policy)`` reads a capture, finds the messages that arrive at
the edge (destination port in ``ports``), gives each to
``Policy.judge_bytes`` -- the call the live edge makes -- in capture order,
and sums the verdicts up per source address (``report``).

What captures, link layers and transports are read, and the bounds, are the
packet layer's (``sipwarden.packet``): pcap and pcapng, gzip or not, pipes
too; Ethernet, Linux cooked SLL/SLL2, NULL/loopback, raw IP; IPv4 and IPv6
with fragments; UDP, and TCP reassembled and framed by the edge's framer.
TLS connections are counted as ``encrypted`` and skipped. Memory otherwise
grows with the number of sources, which is what the report lists.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Collection, Iterator
from io import BufferedReader
from pathlib import Path
from typing import Final

from rich.console import Console

from ..packet import SUPPORTED_LINKS, Arrival, CaptureError, Dissector, link_decoder, open_capture
from ..policy import Policy
from .report import ReplayReport, SourceStats

__all__ = ["ReplayError", "replay"]

_PROGRESS_EVERY: Final = 0.25  # seconds between progress bar refreshes


class ReplayError(ValueError):
    """The file is not a capture replay can read (the message says why)."""


def replay(
    path: Path, policy: Policy, *, ports: Collection[int] = (5060,), progress: bool = False
) -> ReplayReport:
    """Judge every SIP message sent to ``ports`` in the capture at ``path``
    (see the module doc). Raises ReplayError for a file that is not a
    capture or has an unsupported link type, OSError when it cannot be read."""
    report = ReplayReport()
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(open(path, "rb"))
        try:
            capture = open_capture(raw, stack)
        except CaptureError as exc:
            raise ReplayError(str(exc)) from None
        decode = link_decoder(capture.linktype)
        if decode is None:
            raise ReplayError(
                f"{path}: link type {capture.linktype} is not supported ({SUPPORTED_LINKS} are)"
            )
        dissector = Dissector(decode, ports, report.totals)
        judge = _judge(policy, report)
        tick = stack.enter_context(_progress_bar(raw, path)) if progress else None
        totals = report.totals
        next_tick = time.monotonic() + _PROGRESS_EVERY
        for ts, buf in capture:
            for arrival in dissector.feed(ts, buf):
                judge(arrival)
            if tick is not None and not totals.packets & 255:
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + _PROGRESS_EVERY
                    tick()
        totals.truncated_file = capture.truncated
        for arrival in dissector.finish():
            judge(arrival)
    return report


def _judge(policy: Policy, report: ReplayReport) -> Callable[[Arrival], None]:
    """Judge one message as the edge does and note it under its source."""
    sources = report.sources

    def judge(arrival: Arrival) -> None:
        source = arrival.source
        verdict, view = policy.judge_bytes(arrival.data, source, arrival.local_port)
        stats = sources.get(source.host)
        if stats is None:
            stats = sources[source.host] = SourceStats(source.host)
        stats.record(arrival.ts, verdict, view)

    return judge


@contextlib.contextmanager
def _progress_bar(raw: BufferedReader, path: Path) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr driven by the position in the file (the
    compressed file for .gz), refreshed by hand so a long capture pays for
    a redraw a few times a second, not per packet."""
    from rich.markup import escape
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    seekable = raw.seekable()  # a pipe has no position, nor size: the bar only pulses
    size: int | None = os.fstat(raw.fileno()).st_size if seekable else None
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        auto_refresh=False,
        transient=True,
    )
    task = bar.add_task(escape(Path(path).name), total=size or None)

    def tick() -> None:
        if seekable:
            bar.update(task, completed=raw.tell())
        bar.refresh()

    with bar:
        yield tick
        tick()
