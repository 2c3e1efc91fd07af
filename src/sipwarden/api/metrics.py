"""``GET /metrics``: the daemon's counters in Prometheus' text format.

Each scrape asks the daemon for its stats summed over every worker (the
``stats`` command, as ``sipwarden status`` does), maps them to metric
families (``observe.metrics``: the names, types and labels) and renders
those with prometheus_client, through a collector of its own on a private
registry: the process-wide default registry (and its process metrics of
one worker alone) is never exposed. The format follows the scraper's
Accept header (Prometheus text, or OpenMetrics when asked for).

Like every route it passes the guard first (``guard.py``): a read, open on
a loopback listener with the made token, and needing the token otherwise
(Prometheus sends it with ``authorization: {credentials: ...}`` or
``bearer_token_file`` in its scrape config).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from .. import __version__
from ..daemon.commands import run_command
from ..observe.metrics import Buckets, Family, metric_families

if TYPE_CHECKING:
    from ..daemon.core import Daemon


class FamiliesCollector(Collector):
    """One scrape's families (plain values) as prometheus_client's."""

    def __init__(self, families: Sequence[Family]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield as_metric(family)


def as_metric(family: Family) -> Metric:
    labels = list(family.labels)
    metric: CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily
    if family.kind == "histogram":
        histogram = HistogramMetricFamily(family.name, family.help, labels=labels)
        for sample in family.samples:
            if isinstance(sample.value, Buckets):
                buckets = [(_le(bound), count) for bound, count in sample.value.bounds]
                histogram.add_metric(list(sample.labels), buckets, sample.value.sum)
        return histogram
    if family.kind == "counter":
        metric = CounterMetricFamily(family.name, family.help, labels=labels)
    else:
        metric = GaugeMetricFamily(family.name, family.help, labels=labels)
    for sample in family.samples:
        if not isinstance(sample.value, Buckets):
            metric.add_metric(list(sample.labels), sample.value)
    return metric


def _le(bound: float) -> str:
    """A bucket's bound as prometheus_client writes its own (``0.5``, ``1.0``, ``+Inf``)."""
    return "+Inf" if math.isinf(bound) else repr(bound)


def render(families: Iterable[Family], accept: str | None) -> tuple[bytes, str]:
    """``families`` in the format ``accept`` asks for: (body, content type)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FamiliesCollector(list(families)))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


async def metrics(daemon: Daemon, accept: str | None) -> tuple[bytes, str]:
    """The daemon's stats (summed over its workers) rendered for a scrape."""
    stats = await run_command(daemon, {"cmd": "stats"})
    return render(metric_families(stats, __version__), accept)
