"""A small in-memory time-series store for the monitor's live measurements.

Collectors (`monitor.collectors`) write host CPU ratios and inter-host delays here from their
threads; the query engine reads the latest value of a series to answer `max_cpu(NF1)` or
`e2e_delay(NF1, NF2)`, and the exposition (`monitor.exposition`) publishes it.

Two rules make a measurement safe to answer a query with:
- freshness: `latest()` returns None when the newest sample is older than the freshness window,
  so a collector that stopped (or a host that vanished) never answers with an old value;
  `latest_any()` still returns it, so a caller can tell "stale" from "no data at all";
- boundedness: samples older than the retention are dropped, and a series keeps at most
  `max_samples` samples, so a long run cannot grow the store without limit.

Times are explicit floats (seconds, wall-clock by default: the exposition's timestamps are
epoch milliseconds), so the store is pure and unit-testable; `clock` is only the default for
`now` and `t` when the caller does not give them.  One lock guards everything: the store is
small and the operations are short, so finer locking would buy nothing.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

Labels = tuple[str, ...]


@dataclass(frozen=True, slots=True, order=True)
class Sample:
    """One measurement: when (`t`, seconds) and what (`value`)."""

    t: float
    value: float


def as_labels(labels: Labels | str) -> Labels:
    """A single label may be given as a plain string: `"vm1"` is `("vm1",)`."""
    return (labels,) if isinstance(labels, str) else tuple(labels)


class Store:
    """Series keyed by (metric, labels), each a time-ordered list of samples."""

    def __init__(self, freshness: float = 10.0, retention: float = 300.0, max_samples: int = 1000,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        if freshness <= 0 or retention <= 0 or max_samples < 1:
            raise ValueError("freshness and retention must be positive, max_samples at least 1")
        self.freshness = freshness
        self.retention = max(retention, freshness)  # a fresh sample must never be pruned
        self.max_samples = max_samples
        self.clock = clock
        self._series: dict[tuple[str, Labels], list[Sample]] = {}
        self._lock = threading.Lock()

    # -- writing ------------------------------------------------------------------------------

    def add(self, metric: str, labels: Labels | str, value: float, t: float | None = None) -> Sample:
        """Record a sample (at `t`, default now).  Samples may arrive slightly out of order (a
        probe thread finishing after a later CPU tick): they are inserted in time order."""
        sample = Sample(self.clock() if t is None else float(t), float(value))
        key = (metric, as_labels(labels))
        with self._lock:
            series = self._series.setdefault(key, [])
            if not series or sample.t >= series[-1].t:
                series.append(sample)
            else:
                bisect.insort(series, sample)
            self._trim(series, series[-1].t)
        return sample

    def _trim(self, series: list[Sample], now: float) -> None:
        """Drop what is past the retention or beyond the per-series bound (oldest first)."""
        cut = bisect.bisect_left(series, Sample(now - self.retention, float("-inf")))
        cut = max(cut, len(series) - self.max_samples)
        if cut > 0:
            del series[:cut]

    def prune(self, now: float | None = None) -> int:
        """Apply the retention to every series at `now` and forget the empty ones (a series no
        collector writes any more); returns how many series were removed."""
        now = self.clock() if now is None else now
        with self._lock:
            for series in self._series.values():
                self._trim(series, now)
            empty = [key for key, series in self._series.items() if not series]
            for key in empty:
                del self._series[key]
        return len(empty)

    # -- reading ------------------------------------------------------------------------------

    def latest(self, metric: str, labels: Labels | str, now: float | None = None) -> Sample | None:
        """The newest sample if it is within the freshness window at `now`, else None."""
        sample = self.latest_any(metric, labels)
        if sample is None:
            return None
        now = self.clock() if now is None else now
        return sample if now - sample.t <= self.freshness else None

    def latest_any(self, metric: str, labels: Labels | str) -> Sample | None:
        """The newest sample whatever its age (None only if there is no data at all)."""
        with self._lock:
            series = self._series.get((metric, as_labels(labels)))
            return series[-1] if series else None

    def series(self, metric: str, labels: Labels | str, since: float = float("-inf")) -> list[Sample]:
        """The samples at or after `since`, oldest first (a copy)."""
        with self._lock:
            series = self._series.get((metric, as_labels(labels)), [])
            return series[bisect.bisect_left(series, Sample(since, float("-inf"))) :]

    def metrics(self) -> list[str]:
        """The metric names that have at least one series, sorted."""
        with self._lock:
            return sorted({metric for metric, _ in self._series})

    def labels(self, metric: str) -> list[Labels]:
        """The label tuples of a metric's series, sorted."""
        with self._lock:
            return sorted(labels for m, labels in self._series if m == metric)

    def __len__(self) -> int:
        """The number of samples held (what the bounds limit)."""
        with self._lock:
            return sum(len(series) for series in self._series.values())
