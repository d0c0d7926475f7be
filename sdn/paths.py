"""Multi-domain service function paths: the SFC eXchange Platform's path computation.

draft-lachos-multi-domain-sfc-alto-00 section 5.1: a service request is a chain of SFs
(`SF1->SF2->SF3`); the domains offering each SF come from the ALTO property map
(`capabilities`), the costs between domains from an ALTO cost map; the answer is a ranked list
of service function paths in the draft's notation (`1:{AS1:SF1->AS2:SF2->AS2:SF3}`, Table 2).

`rank()` picks a domain d_i for every SF chain[i].  The cost of a path is the sum of
`cost[a][b]` over consecutive elements of `[ingress?, d1, ..., dn, egress?]`; consecutive SFs in
one domain add `cost[d][d]`, the domain's intra-domain cost (0 when the map has no entry for it).
A missing `cost[a][b]` (a != b) or an infinite one means b is unreachable from a.

Order: by cost, then by the number of distinct SF domains (fewer first: fewer hand-overs between
domains), then by the tuple (d1, ..., dn) in name order.  The key is total (no two paths have the
same domain tuple), so the answer is deterministic, and it is exactly the order of enumerating
every combination and sorting by that key (the unit tests check this against brute force).

Costs are summed exactly: every cost is converted to an integer multiple of one common fraction
(floats are binary fractions, so this is lossless), paths are compared on those exact sums, and
`ServicePath.cost` is the exact sum rounded once to a float (= `math.fsum` of the terms).  So the
order never depends on how the float additions happen to be associated; with integer costs (the
usual case) it is of course the same as summing floats.

Constraints:
- `exclude`: an excluded domain hosts no SF, and when `route` is given a path whose domain route
  transits an excluded domain is invalid (the routes are the cost map's: no detour around the
  excluded domain is searched for; to allow one, compute the costs on a `View` without it).
  The ingress and egress domains are where the traffic enters and leaves: they are not checked
  against `exclude` themselves (a route transiting them elsewhere is).  Without `route`, hops
  are direct and only SF hosting is restricted.
- `max_cost`: paths costing more are dropped (a path costing exactly max_cost is kept).

Algorithm: a layered graph (layer i = the usable domains of chain[i]; ingress and egress fixed
ends).  A backward dynamic program gives h[i][d], the exact least cost from domain d at layer i
to the end (O(n * D^2), each distinct (layer, next layer) pair of domain lists looked up once).
Then a best-first search over path prefixes, each keyed by a lower bound of the final key of
all its completions: (g + h, a lower bound on distinct domains, the prefix tuple).  Complete
paths therefore leave the queue in exactly the final order, and the first k are the answer.
The distinct-domain bound only has to hold for the prefix's least-cost completions (dearer ones
come later on cost anyway): the prefix's domains plus one per later layer whose domains on those
least-cost completions avoid the prefix's and each other's (greedy).  Because h is exact, at
most n * k prefixes beat the k-th path on cost alone; prefixes that tie it on cost are expanded
only while the distinct bound and the names do not rule them out.  A prefix's successors come
from one sorted list per (layer, domain), cheapest completion first, taken lazily, so an
expansion pushes O(n) queue entries, not D.  Typical cost: O(n * D^2) for h plus
O(n^2 * k * log) for the search (50 domains, 5 SFs, every domain offering every SF: a few ms).
Worst case: with many exactly equal costs, finding the equal-cost path of fewest distinct
domains is a minimum-label-path problem (NP-hard for unbounded n); exactness is kept, and only
contrived tie structures that defeat the bound cost more (at worst about as much as
enumerating).

Why not "keep the k best partial paths per (layer, domain)": the tie-break on distinct domains
is not decided by a prefix alone.  With equal costs, whether (x, y, d) beats (d, d, d) depends
on whether the rest of the path comes back to x and y, so an exact per-(layer, domain) pruning
must keep every prefix that is among the k best for *some* suffix: with many equal costs (a
hop-count map, zero intra-domain costs) that is almost all of them, D^(i-1) at layer i.  The
search above needs no such pruning.

Adapters from ALTO JSON documents: `candidates_from_propmap` (RFC 9240 property map, property
`capabilities`) and `costs_from_costmap` (RFC 7285 cost map, numerical mode).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sdn.alto.catalog import PROP_CAPABILITIES

__all__ = ["NoPath", "ServicePath", "candidates_from_propmap", "costs_from_costmap", "rank"]


class NoPath(ValueError):
    """No service function path satisfies the request; the message says why."""


@dataclass(frozen=True)
class ServicePath:
    hops: tuple[tuple[str, str], ...]  # (SF, domain hosting it), in chain order
    cost: float
    domains: tuple[str, ...]  # full domain route, ingress (or d1) to egress (or dn), transit included
    rank: int  # 1 = best

    @property
    def sf_domains(self) -> tuple[str, ...]:
        """The domain chosen for each SF, in chain order."""
        return tuple(d for _, d in self.hops)

    def describe(self) -> str:
        """The draft's notation: `AS1:SF1->AS2:SF2->AS2:SF3`."""
        return "->".join(f"{d}:{sf}" for sf, d in self.hops)

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "path": self.describe(), "cost": self.cost,
                "hops": [{"sf": sf, "domain": d} for sf, d in self.hops],
                "domains": list(self.domains)}  # fmt: skip


def _names(names: Collection[str]) -> str:
    return ", ".join(sorted(names))


def _num(x: float | Fraction | int) -> str:
    """A cost for a message: 20, 25.5 (no trailing .0, no exponent for ordinary values)."""
    f = float(x)
    return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)


def _ratio(value: Any, a: str, b: str) -> tuple[int, int] | None:
    """cost[a][b] as an exact (numerator, denominator); None for +inf (unreachable)."""
    if type(value) is float and value - value == 0.0:  # finite float: the usual case, first
        return value.as_integer_ratio()
    if isinstance(value, bool) or not hasattr(value, "as_integer_ratio"):
        raise ValueError(f"cost from {a} to {b} is not a number: {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        if value == math.inf:
            return None
        raise ValueError(f"cost from {a} to {b} is {value!r}")
    return value.as_integer_ratio()


def _unreachable(chain: list[str], layers: list[list[str]], w: Mapping[str, Mapping[str, int]],
                 ingress: str | None, egress: str | None, blocked: set[tuple[str, str]],
                 excluded: frozenset[str]) -> None:  # fmt: skip
    """Raise NoPath for the first SF (or the egress) that nothing before it reaches."""
    reach: list[str] = [ingress] if ingress is not None else []
    for i, layer in enumerate([*layers, *([[egress]] if egress is not None else [])]):
        here = (
            layer
            if i == 0 and ingress is None
            else [b for b in layer if any(b in w.get(a, {}) for a in reach)]
        )
        if not here:
            note = ""
            if any((a, b) in blocked for a in reach for b in layer):
                note = f" (routes through excluded domains are not allowed: {_names(excluded)})"
            if i == len(layers):
                raise NoPath(f"egress {egress} is not reachable from the domains that can host "
                             f"{chain[-1]} ({_names(reach)}){note}")  # fmt: skip
            if i == 0:
                raise NoPath(f"no domain offering {chain[0]} ({_names(layer)}) is reachable "
                             f"from ingress {ingress}{note}")  # fmt: skip
            raise NoPath(f"no domain offering {chain[i]} ({_names(layer)}) is reachable from the domains "
                         f"that can host {chain[i - 1]} ({_names(reach)}){note}")  # fmt: skip
        reach = here
    raise AssertionError("a path exists")  # pragma: no cover


def rank(
    chain: Sequence[str],
    candidates: Mapping[str, Sequence[str]],
    cost: Mapping[str, Mapping[str, float]],
    route: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    *,
    ingress: str | None = None,
    egress: str | None = None,
    exclude: Collection[str] = (),
    max_cost: float | None = None,
    k: int = 10,
) -> list[ServicePath]:
    """The k best service function paths for `chain`, best first (see the module docstring).

    Returns between 1 and k paths; raises NoPath when there is none (the message says why) and
    ValueError for malformed input (a cost that is not a number, a route not from a to b)."""
    chain = list(chain)
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, not {k!r}")
    if k < 1:
        raise NoPath(f"k must be at least 1 (got {k})")
    if not chain:
        raise NoPath("empty chain: there is no SF to place")
    if isinstance(exclude, str):
        raise TypeError(f"exclude must be a collection of domain names, not the string {exclude!r}")
    excluded = frozenset(exclude)
    limit: int | None = None  # max_cost in the exact integer units below, set once they are known
    if max_cost is not None and math.isnan(max_cost):
        raise ValueError("max_cost is NaN")

    known = set(cost) | {y for row in cost.values() for y in row} | set(route or ())
    known |= {d for ds in candidates.values() for d in ds}
    for what, end in (("ingress", ingress), ("egress", egress)):
        if end is not None and end not in known:
            raise NoPath(f"unknown {what} domain {end} (domains: {_names(known)})")

    offered = [sf for sf, ds in candidates.items() if ds]
    layers: list[list[str]] = []
    for sf in chain:
        ds = sorted(set(candidates.get(sf, ())))
        if not ds:
            raise NoPath(f"no domain offers {sf} (offered: {_names(offered) or 'nothing'})")
        usable = [d for d in ds if d not in excluded]
        if not usable:
            raise NoPath(f"{sf} is offered only by excluded domains: {_names(ds)}")
        layers.append(usable)
    n = len(chain)

    # Hops: exact (num, den) of every pair the layers can use, None if unusable.
    ratio: dict[str, dict[str, tuple[int, int] | None]] = {}
    blocked: set[tuple[str, str]] = set()  # refused: the route transits an excluded domain
    steps = [([ingress], layers[0])] if ingress is not None else []
    steps += [(layers[i], layers[i + 1]) for i in range(n - 1)]
    steps += [(layers[-1], [egress])] if egress is not None else []
    seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    for sources, targets in steps:  # each distinct pair of domain lists once (dense: one)
        key = (tuple(sources), tuple(targets))
        if key in seen:
            continue
        seen.add(key)
        for a in sources:
            row = ratio.setdefault(a, {})
            costs_a = cost.get(a) or {}
            routes_a = (route.get(a) or {}) if route is not None else None
            for b in targets:
                if b in row:
                    continue
                value = costs_a.get(b)
                if value is None:
                    row[b] = (0, 1) if a == b else None
                    continue
                r = row[b] = _ratio(value, a, b)
                if r is not None and routes_a is not None and a != b:
                    path = routes_a.get(b)
                    if path is None:
                        raise ValueError(f"cost from {a} to {b} has no route")
                    if len(path) < 2 or path[0] != a or path[-1] != b:
                        raise ValueError(
                            f"route from {a} to {b} must start at {a} and end at {b}: {list(path)}"
                        )
                    if excluded and not excluded.isdisjoint(path[1:-1]):
                        row[b] = None
                        blocked.add((a, b))

    # Exact integer weights: every usable cost as a multiple of 1/scale.
    scale = 1
    for row in ratio.values():
        for r in row.values():
            if r is not None and r[1] != 1:
                scale = math.lcm(scale, r[1])
    w: dict[str, dict[str, int]] = {
        a: {b: r[0] * (scale // r[1]) for b, r in row.items() if r is not None} for a, row in ratio.items()
    }
    if max_cost is not None and math.isfinite(max_cost):
        limit = math.floor(Fraction(max_cost) * scale)
    empty: dict[str, int] = {}

    # Backward: h[i][d] = least exact cost from d (hosting chain[i]) to the end of the path.
    h: list[dict[str, int]] = [{} for _ in range(n)]
    if egress is None:
        h[-1] = dict.fromkeys(layers[-1], 0)
    else:
        h[-1] = {d: w[d][egress] for d in layers[-1] if egress in w.get(d, empty)}
    for i in range(n - 2, -1, -1):
        nxt, cur = h[i + 1], h[i]
        for d in layers[i]:
            row = w.get(d, empty)
            best = min([wx + nxt[x] for x, wx in row.items() if x in nxt], default=None)
            if best is not None:
                cur[d] = best
    if ingress is None:
        start = dict.fromkeys(h[0], 0)
    else:
        start = {d: wd for d, wd in w.get(ingress, empty).items() if d in h[0]}
    if not start:
        _unreachable(chain, layers, w, ingress, egress, blocked, excluded)
    cheapest = min(start[d] + h[0][d] for d in start)
    if max_cost is not None and Fraction(cheapest, scale) > max_cost:
        raise NoPath(
            f"no path within max cost {_num(max_cost)} (cheapest: {_num(Fraction(cheapest, scale))})"
        )

    # Successors of domain d into layer j, cheapest completion first: (w + h, x, w).
    succ_cache: dict[tuple[int, str], list[tuple[int, str, int]]] = {}

    def successors(j: int, d: str) -> list[tuple[int, str, int]]:
        got = succ_cache.get((j, d))
        if got is None:
            row, hj = w.get(d, empty), h[j]
            got = succ_cache[(j, d)] = sorted((wx + hj[x], x, wx) for x, wx in row.items() if x in hj)
        return got

    # tight(i, d)[m]: the domains at layer i + 1 + m on the least-cost completions from d at layer i.
    tight_cache: dict[tuple[int, str], tuple[frozenset[str], ...]] = {}
    tight_of_set: dict[tuple[int, frozenset[str]], tuple[frozenset[str], ...]] = {}  # equal costs: shared

    def tight(i: int, d: str) -> tuple[frozenset[str], ...]:
        got = tight_cache.get((i, d))
        if got is None:
            if i == n - 1:
                got = ()
            else:
                hj, best = h[i + 1], h[i][d]
                xs = frozenset([x for x, wx in w.get(d, empty).items() if x in hj and wx + hj[x] == best])
                got = tight_of_set.get((i + 1, xs))
                if got is None:
                    rest = [tight(i + 1, x) for x in xs]
                    got = (xs, *(frozenset().union(*(r[m] for r in rest)) for m in range(n - i - 2)))
                    tight_of_set[(i + 1, xs)] = got
            tight_cache[(i, d)] = got
        return got

    # A lower bound on the distinct domains of the least-cost completions of a prefix ending at
    # d (layer i) with domains `used`: layers whose tight domains avoid `used` and one another
    # each need a domain of their own (greedy, so a lower bound).  Completions costing more do
    # not need it: the cost bound already puts them after the prefix.
    extra_cache: dict[tuple[int, str, frozenset[str]], int] = {}

    def distinct_bound(i: int, d: str, used: frozenset[str]) -> int:
        key = (i, d, used)
        got = extra_cache.get(key)
        if got is None:
            chosen: list[frozenset[str]] = []
            for s in tight(i, d):
                if s.isdisjoint(used) and all(s.isdisjoint(c) for c in chosen):
                    chosen.append(s)
            got = extra_cache[key] = len(used) + len(chosen)
        return got

    # Best-first search.  Entries: (cost bound, distinct bound, prefix, kind, tie, payload...).
    # Every entry's key is <= the final key of every path it stands for, so complete paths
    # come out in exactly the final order.  kind 0: a prefix (payload g, used, whether its
    # distinct bound is refined: done on first pop, and if it grows the prefix goes back);
    # kind 1: the rest of a prefix's successor list from position pos on, shown as its head
    # (payload: parent prefix, its g, used, cost bound and distinct bound, the list, pos).
    heap: list[tuple] = []
    tie = itertools.count()
    push = heapq.heappush

    def push_prefix(bound: int, prefix: tuple[str, ...], g: int, used: frozenset[str], floor: int) -> None:
        if limit is None or bound <= limit:  # floor: a distinct bound known from the parent
            push(heap, (bound, max(floor, len(used)), prefix, 0, next(tie), g, used, len(prefix) == n))

    def push_stream(parent: tuple[str, ...], g: int, used: frozenset[str], pbound: int, pm: int,
                    lst: list[tuple[int, str, int]], pos: int) -> None:  # fmt: skip
        while pos < len(lst) and lst[pos][1] in used:
            pos += 1
        if pos < len(lst):
            bound = g + lst[pos][0]
            if limit is None or bound <= limit:
                # a child as cheap as its parent's bound: its cheapest completions are the
                # parent's, so the parent's distinct bound holds for them too
                m = max(pm, len(used) + 1) if bound == pbound else len(used) + 1
                push(
                    heap,
                    (bound, m, (*parent, lst[pos][1]), 1, next(tie), parent, g, used, pbound, pm, lst, pos),
                )

    for d, g in start.items():
        push_prefix(g + h[0][d], (d,), g, frozenset((d,)), 0)
    found: list[tuple[int, tuple[str, ...]]] = []
    while heap and len(found) < k:
        entry = heapq.heappop(heap)
        bound, m, prefix, kind = entry[:4]
        if kind == 0:
            g, used, refined = entry[5:]
            i = len(prefix) - 1
            if i == n - 1:
                found.append((bound, prefix))
                continue
            d = prefix[-1]
            if not refined:
                better = distinct_bound(i, d, used)
                if better > m:
                    push(heap, (bound, better, prefix, 0, next(tie), g, used, True))
                    continue
            row, hj = w.get(d, empty), h[i + 1]
            for x in used:  # successors staying within the prefix's domains
                wx = row.get(x)
                if wx is not None and x in hj:
                    child = g + wx + hj[x]
                    push_prefix(child, (*prefix, x), g + wx, used, m if child == bound else 0)
            push_stream(prefix, g, used, bound, m, successors(i + 1, d), 0)
        else:
            parent, g, used, pbound, pm, lst, pos = entry[5:]
            _, x, wx = lst[pos]
            push_prefix(bound, prefix, g + wx, used | {x}, m)
            push_stream(parent, g, used, pbound, pm, lst, pos + 1)

    paths = []
    for number, (total, sf_domains) in enumerate(found, 1):
        seq = [
            *([ingress] if ingress is not None else []),
            *sf_domains,
            *([egress] if egress is not None else []),
        ]
        domains = [seq[0]]
        for a, b in zip(seq, seq[1:]):
            if a != b:
                for x in (route[a][b] if route is not None else (a, b))[1:]:
                    if x != domains[-1]:
                        domains.append(x)
        paths.append(ServicePath(hops=tuple(zip(chain, sf_domains)), cost=total / scale,
                                 domains=tuple(domains), rank=number))  # fmt: skip
    return paths


def candidates_from_propmap(propmap: Mapping[str, Any], prop: str = PROP_CAPABILITIES) -> dict[str, list[str]]:
    """SF -> domains offering it, from an ALTO property map (RFC 9240): property `prop`, by
    default the platform's `.priv:capabilities`.

    Entities are `<resource-id>.pid:<PID>` (any resource id, e.g. `networkmap.pid:AS1`; a bare
    `pid:AS1` is accepted too); entities of other entity domains (`ipv4:...`, `ane:...`) and
    entities without `capabilities` are ignored.  Lists are sorted, SFs in name order."""
    props = propmap.get("property-map") if isinstance(propmap, Mapping) else None
    if not isinstance(props, Mapping):
        raise ValueError('not an ALTO property map: no "property-map" object')
    offered: dict[str, set[str]] = {}
    for entity, values in props.items():
        entity_domain, sep, pid = str(entity).partition(":")
        if not sep or not pid or not (entity_domain == "pid" or entity_domain.endswith(".pid")):
            continue
        if not isinstance(values, Mapping):
            raise ValueError(f"property map entity {entity}: properties must be an object, not {values!r}")
        caps = values.get(prop)
        if caps is None:
            continue
        if not isinstance(caps, list) or not all(isinstance(sf, str) for sf in caps):
            raise ValueError(f"property map entity {entity}: capabilities must be a list of SF names, "
                             f"not {caps!r}")  # fmt: skip
        for sf in caps:
            offered.setdefault(sf, set()).add(pid)
    return {sf: sorted(ds) for sf, ds in sorted(offered.items())}


def costs_from_costmap(costmap: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """cost[src][dst] from an ALTO cost map (RFC 7285 section 11.2.3) in numerical mode.

    The mode is read from `meta.cost-type.cost-mode`: ordinal costs are ranks (not additive) and
    array costs (RFC 9275 path vectors) are not numbers, so both raise ValueError, as do
    multi-cost maps (RFC 8189) and a map without a cost type.  Absent pairs stay absent."""
    cmap = costmap.get("cost-map") if isinstance(costmap, Mapping) else None
    if not isinstance(cmap, Mapping):
        raise ValueError('not an ALTO cost map: no "cost-map" object')
    meta = costmap.get("meta") or {}
    if "multi-cost-types" in meta:
        raise ValueError(
            "multi-cost map (RFC 8189): path costs need a map of one cost type in numerical mode"
        )
    ctype = meta.get("cost-type")
    mode = ctype.get("cost-mode") if isinstance(ctype, Mapping) else None
    if mode is None:
        raise ValueError("cost map without meta.cost-type.cost-mode: cannot tell whether its costs add up")
    metric = ctype.get("cost-metric", "?")
    if mode == "ordinal":
        raise ValueError(f"cost map of {metric} is in ordinal mode: ordinal costs are ranks and do not add "
                         "up along a path; use the numerical mode (e.g. costmap-routingcost)")  # fmt: skip
    if mode == "array":
        raise ValueError(f"cost map of {metric} is in array mode (RFC 9275 path vectors): no numerical "
                         "costs to add up; use a numerical cost map")  # fmt: skip
    if mode != "numerical":
        raise ValueError(f"cost map of {metric} has unknown cost mode {mode!r} (expected numerical)")
    out: dict[str, dict[str, float]] = {}
    for src, row in cmap.items():
        if not isinstance(row, Mapping):
            raise ValueError(f"cost map row {src}: must be an object, not {row!r}")
        for dst, value in row.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"cost from {src} to {dst} is not a number: {value!r}")
            out.setdefault(src, {})[dst] = float(value)
    return out
