"""What the SFC eXchange Platform knows about the domains: the input of every ALTO map.

A `View` is a snapshot built from the running testbed (the plan's domains, subnets and links;
each domain's Information Base Element for its pools, resources and measured delays).  It is
plain data, so the ALTO resources and the path computation are pure functions of it and are
unit-tested without a network.  `costs()` is the one place where link costs are chosen and
summed along domain routes, so every cost map, path vector and endpoint cost agrees.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

#: Cost metrics served, by their ALTO names (RFC 7285 routingcost, hopcount, RFC 9439 delay-ow).
METRICS = ("routingcost", "hopcount", "delay-ow")


@dataclass(frozen=True)
class DomainInfo:
    name: str  # also its PID in the network map
    subnets: dict[str, str]  # network name -> prefix ("a" -> "10.1.1.0/24")
    functions: dict[str, int] = field(default_factory=dict)  # SF pool handle -> live instances (PEs)
    entry_point: str = ""  # URL of the domain's control plane (its IBE)
    cpu_utilization: float = 0.0  # mean over the domain's hosts, fraction of one CPU
    cpu_cores: int = 0
    memory_mb: float = 0.0  # resident memory of the domain's processes
    intra_cost: float = 0.0  # routingcost from the domain to itself (administrative, `testbed sfc cost`)

    @property
    def capabilities(self) -> list[str]:
        """The SFs the domain offers now: pools with at least one live instance."""
        return sorted(sf for sf, n in self.functions.items() if n > 0)


@dataclass(frozen=True)
class LinkInfo:
    a: str
    b: str
    routingcost: float  # administrative cost: the configured one-way delay in ms, unless overridden
    delay_ms: float | None = None  # measured one-way delay, None while unmeasured
    up: bool = True

    def key(self) -> tuple[str, str]:
        return tuple(sorted((self.a, self.b)))  # type: ignore[return-value]


@dataclass(frozen=True)
class Costs:
    """All-pairs costs of one metric between domains, with the domain route behind each."""

    value: dict[str, dict[str, float]]
    route: dict[str, dict[str, list[str]]]  # [src, ..., dst]; [d] from d to itself


@dataclass(frozen=True)
class View:
    domains: dict[str, DomainInfo]
    links: list[LinkInfo]

    def costs(self, metric: str = "routingcost") -> Costs:
        """Least-cost domain routes over the links that are up (Dijkstra from every domain).

        routingcost and delay-ow add the links' values (an unmeasured delay counts as its
        configured routingcost) and the intra-domain cost at neither end; hopcount counts
        links.  Ties go to fewer hops, then to the smaller route in name order, so the answer
        is deterministic.  Unreachable pairs are absent."""
        if metric not in METRICS:
            raise ValueError(f"unknown cost metric {metric!r} (metrics: {', '.join(METRICS)})")
        adjacency: dict[str, list[tuple[float, str]]] = {d: [] for d in self.domains}
        for link in self.links:
            if not link.up or link.a not in adjacency or link.b not in adjacency:
                continue
            weight = {"routingcost": link.routingcost, "hopcount": 1.0,
                      "delay-ow": link.delay_ms if link.delay_ms is not None else link.routingcost}[metric]
            adjacency[link.a].append((weight, link.b))
            adjacency[link.b].append((weight, link.a))
        value: dict[str, dict[str, float]] = {}
        route: dict[str, dict[str, list[str]]] = {}
        for src in sorted(self.domains):
            best: dict[str, tuple[float, int, list[str]]] = {}
            queue: list[tuple[float, int, list[str]]] = [(0.0, 0, [src])]
            while queue:
                cost, hops, path = heapq.heappop(queue)
                node = path[-1]
                if node in best:
                    continue
                best[node] = (cost, hops, path)
                for weight, nxt in adjacency[node]:
                    if nxt not in best:
                        heapq.heappush(queue, (cost + weight, hops + 1, [*path, nxt]))
            value[src] = {d: (self.domains[d].intra_cost if d == src and metric == "routingcost" else c)
                          for d, (c, _, _) in best.items()}  # fmt: skip
            route[src] = {d: p for d, (_, _, p) in best.items()}
        return Costs(value, route)
