"""The metric-backed functions of the language: f_max_cpu, f_mean_cpu, f_e2e_delay, ...

They turn the sets of VNFFG leaves that the rules compute into measurements.  A leaf is
measured at its testbed host (`Vnffg.host_of`, by default the leaf's own name); the numbers come
from a `Metrics` source: the live store of the monitor (`monitor.tsdb`, filled by
`monitor.collectors`), or fixed values from a file for offline queries.

Units: CPU as the fraction of one CPU used by the host's processes (2.0 = two busy cores); delay
in milliseconds, one way.  A leaf without a fresh measurement makes the function return None,
so the rule does not fire and the query has no answer rather than a wrong one; `missing` in
the answer's explanation says which.

f_e2e_delay(ingress, egress): the rules may give several ingress leaves (Figure 1 by its own
rules: vm2 and vm7) and egress leaves; the function reports the largest one-way delay over all
(ingress, egress) pairs: the worst end-to-end delay a packet entering the source function at
any of its ingress nodes can see.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any, Protocol


class Metrics(Protocol):
    def cpu(self, host: str) -> float | None: ...
    def delay(self, src: str, dst: str) -> float | None: ...


class FixedMetrics:
    """Measurements given as data (`--metrics FILE`): {"cpu": {host: value}, "delay": {src: {dst: ms}}}."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.cpu_values = {str(k): float(v) for k, v in (data.get("cpu") or {}).items()}
        self.delays = {(str(s), str(d)): float(v) for s, row in (data.get("delay") or {}).items() for d, v in row.items()}

    def cpu(self, host: str) -> float | None:
        return self.cpu_values.get(host)

    def delay(self, src: str, dst: str) -> float | None:
        if src == dst:
            return 0.0
        return self.delays.get((src, dst), self.delays.get((dst, src)))


def _names(values: Iterable[Any]) -> list[str]:
    """A relation argument of one variable arrives as a set of values, of several as tuples:
    take the last element (the leaf) of each."""
    return sorted(str(v[-1] if isinstance(v, tuple) else v) for v in values)


class MetricFunctions:
    """The functions, bound to a metrics source and a leaf -> host mapping."""

    def __init__(self, metrics: Metrics, host_of: Callable[[str], str] = lambda leaf: leaf) -> None:
        self.metrics, self.host_of = metrics, host_of
        self.missing: set[str] = set()  # what had no measurement during the last evaluation

    def table(self) -> dict[str, Callable[..., Any]]:
        return {
            "f_max_cpu": lambda leaves: self._cpu_aggregate(leaves, max),
            "f_min_cpu": lambda leaves: self._cpu_aggregate(leaves, min),
            "f_mean_cpu": lambda leaves: self._cpu_aggregate(leaves, statistics.fmean),
            "f_cpu": self._cpu,
            "f_delay": self._delay,
            "f_e2e_delay": self._e2e_delay,
        }

    def _host(self, element: str) -> str | None:
        try:
            return self.host_of(element)
        except (KeyError, ValueError):  # not a leaf: nothing measures it
            return None

    def _cpu(self, leaf: Any) -> float | None:
        host = self._host(str(leaf))
        value = self.metrics.cpu(host) if host is not None else None
        if value is None:
            self.missing.add(f"cpu of {leaf}")
        return value

    def _cpu_aggregate(self, leaves: Iterable[Any], combine: Callable[[list[float]], float]) -> float | None:
        names = _names(leaves)
        values = [self._cpu(n) for n in names]
        if not names or any(v is None for v in values):
            return None
        return round(combine([v for v in values if v is not None]), 6)

    def _delay(self, src: Any, dst: Any) -> float | None:
        s, d = str(src), str(dst)
        hs, hd = self._host(s), self._host(d)
        value = self.metrics.delay(hs, hd) if hs is not None and hd is not None else None
        if value is None:
            self.missing.add(f"delay {s} -> {d}")
        return value

    def _e2e_delay(self, ingress: Iterable[Any], egress: Iterable[Any]) -> float | None:
        pairs = [(s, d) for s in _names(ingress) for d in _names(egress)]
        delays = [self._delay(s, d) for s, d in pairs]
        if not pairs or any(v is None for v in delays):
            return None
        return round(max(v for v in delays if v is not None), 3)
