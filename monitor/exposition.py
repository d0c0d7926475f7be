"""The store's latest measurements in Prometheus' text format (version 0.0.4).

    # HELP vnfpool_host_cpu_ratio CPU time used by the host's processes per second of wall time ...
    # TYPE vnfpool_host_cpu_ratio gauge
    vnfpool_host_cpu_ratio{host="vm1"} 0.12 1718000000123
    vnfpool_host_delay_ms{src="vm7",dst="vm10"} 20.4 1718000000456

prometheus_client writes the text (escaping, number formatting, millisecond timestamps), fed by
a custom collector that reads the store at scrape time.  Only fresh samples are exposed: a stale
value must no more answer a scrape than a query (a scraper would otherwise keep re-ingesting a
dead host's last CPU figure).  Each sample carries its measurement time, so a scrape reports when
the value was measured, not when it was scraped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .collectors import CPU_METRIC, DELAY_METRIC, LOSS_METRIC
from .tsdb import Store

PREFIX = "vnfpool_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Family:
    """How a store metric is exposed: its label names (in the order of the store's label tuple)
    and its help text."""

    labels: tuple[str, ...]
    help: str


FAMILIES: dict[str, Family] = {
    CPU_METRIC: Family(
        ("host",),
        "CPU time used by the host's processes per second of wall time "
        "(fraction of one CPU: 2 busy loops = 2.0)",
    ),
    DELAY_METRIC: Family(
        ("src", "dst"), "One-way delay estimate from src to dst: median ICMP RTT / 2, in ms"
    ),
    LOSS_METRIC: Family(("src", "dst"), "Fraction of the last probe burst from src to dst left unanswered"),
}


def family_of(metric: str, arity: int) -> Family:
    """A known metric's family, or a generic one (labels l1..ln) so that nothing is hidden."""
    known = FAMILIES.get(metric)
    if known is not None and len(known.labels) == arity:
        return known
    return Family(tuple(f"l{i}" for i in range(1, arity + 1)), metric.replace("_", " "))


class StoreCollector(Collector):
    """A prometheus_client collector over a store: one gauge family per metric and label arity."""

    def __init__(self, store: Store, include_stale: bool = False) -> None:
        self.store = store
        self.include_stale = include_stale

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.store.clock()
        for metric in self.store.metrics():
            by_arity: dict[int, GaugeMetricFamily] = {}
            for labels in self.store.labels(metric):
                sample = (self.store.latest_any(metric, labels) if self.include_stale
                          else self.store.latest(metric, labels, now))  # fmt: skip
                if sample is None:
                    continue
                gauge = by_arity.get(len(labels))
                if gauge is None:
                    family = family_of(metric, len(labels))
                    name = PREFIX + metric + ("" if len(by_arity) == 0 else f"_{len(labels)}")
                    gauge = by_arity[len(labels)] = GaugeMetricFamily(name, family.help, labels=family.labels)
                gauge.add_metric(list(labels), sample.value, timestamp=sample.t)
            yield from by_arity.values()


def registry_for(store: Store, include_stale: bool = False) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, include_stale))
    return registry


def render(store: Store, include_stale: bool = False) -> str:
    """The text exposition of the store's latest (by default: fresh) samples."""
    return generate_latest(registry_for(store, include_stale)).decode()


def serve(store: Store, port: int, address: str = "0.0.0.0") -> None:
    """http://address:port/metrics in a daemon thread (prometheus_client's server)."""
    start_http_server(port, addr=address, registry=registry_for(store))
