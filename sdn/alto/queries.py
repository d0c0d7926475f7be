"""The POST services of the ALTO server, as pure functions of a View and a validated request.

Filtered network map (RFC 7285 §11.3.1), filtered cost map with multi-cost and constraints
(RFC 7285 §11.3.2, RFC 8189 §4.1), endpoint cost service (RFC 7285 §11.5.1, RFC 8189 §4.2),
path vector (RFC 9275 §7.2, a multipart/related body) and filtered property map (RFC 9240 §8).

Ordinal costs: in the filtered cost map they are the ranks of the full ordinal cost map (a
filtered map is a filter of that map, so the numbers agree with GET); in the endpoint cost
service, which has no full map, they rank the requested endpoint pairs (as RFC 7285's
§11.5.1.7 example does).  Constraints test the values as returned, ranks included.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sdn.alto import catalog as c
from sdn.alto import resources as r
from sdn.alto.catalog import CostType
from sdn.alto.requests import CostQuery, Endpoint, EndpointQuery, NetworkMapFilter, PropertyMapFilter
from sdn.view import View

Doc = dict[str, Any]
Pair = tuple[str, str]


def filtered_network_map(view: View, query: NetworkMapFilter) -> Doc:
    """Only the PIDs and address types asked for; unknown ones are ignored; the full map's vtag."""
    full = r.network_map(view)
    data = full["network-map"]
    pids = [p for p in (query.pids or data) if p in data]
    chosen = {p: {t: v for t, v in data[p].items() if query.address_types is None or t in query.address_types}
              for p in pids}  # fmt: skip
    return {"meta": full["meta"], "network-map": chosen}


def _select(requested: tuple[str, ...] | None, defined: Iterable[str]) -> list[str]:
    """Requested PIDs that are defined (undefined ones are left out), or all of them."""
    known = list(defined)
    if requested is None:
        return known
    defined_set = set(known)
    return [p for p in requested if p in defined_set]


def _assemble(
    query: CostQuery, pairs: Iterable[Pair], value: Callable[[CostType, Pair], Any]
) -> dict[str, dict[str, Any]]:
    """The cost map rows of the pairs that have a cost and pass the constraints."""
    rows: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        values = [value(t, pair) for t in query.cost_types]
        if all(v is None for v in values):
            continue  # no cost defined for the pair: omitted
        if not query.accepts([value(t, pair) for t in query.tested]):
            continue
        rows.setdefault(pair[0], {})[pair[1]] = values if query.multi else values[0]
    return rows


def filtered_cost_map(view: View, query: CostQuery) -> Doc:
    table = r.CostTable(view)
    pids = list(r.network_map_data(view))
    pairs = [(s, d) for s in _select(query.srcs, pids) for d in _select(query.dsts, pids)]
    rows = _assemble(query, pairs, lambda t, p: table.value(t, *p))
    return r.cost_map_doc(c.FILTERED_COSTMAP, rows, query.cost_meta(), r.network_map(view)["meta"]["vtag"])


# --- endpoint cost service ----------------------------------------------------------------


def _endpoint_values(
    table: r.CostTable, cost_type: CostType, pairs: dict[Pair, Pair | None]
) -> dict[Pair, Any]:
    """Costs of endpoint pairs through their PIDs; ordinal ranks over these pairs."""
    base = CostType(cost_type.metric, "numerical") if cost_type.mode == "ordinal" else cost_type
    values = {pair: (table.value(base, *pids) if pids else None) for pair, pids in pairs.items()}
    if cost_type.mode != "ordinal":
        return values
    ranks = {v: i for i, v in enumerate(sorted({v for v in values.values() if v is not None}), start=1)}
    return {pair: (None if v is None else ranks[v]) for pair, v in values.items()}


def endpoint_cost(view: View, query: EndpointQuery) -> Doc:
    """Endpoint costs are the costs between the endpoints' PIDs (longest-prefix match);
    endpoints outside every domain (the `_default` PID) have no cost and are left out."""
    table = r.CostTable(view)
    data = r.network_map_data(view)

    def pid(endpoint: Endpoint) -> str | None:
        found = r.lookup_pid(data, endpoint.address)
        return None if found in (None, c.DEFAULT_PID) else found

    pairs: dict[Pair, Pair | None] = {}
    for s in query.srcs:
        for d in query.dsts:
            ps, pd = pid(s), pid(d)
            pairs[(s.text, d.text)] = (ps, pd) if ps and pd else None
    types = set(query.cost.cost_types) | set(query.cost.tested)
    values = {t: _endpoint_values(table, t, pairs) for t in types}
    rows = _assemble(query.cost, pairs, lambda t, p: values[t][p])
    return {"meta": query.cost.cost_meta(), "endpoint-cost-map": rows}


# --- path vector --------------------------------------------------------------------------

_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


@dataclass(frozen=True)
class Multipart:
    """A multipart/related answer: the Content-Type header, the body, and the parts' documents."""

    content_type: str
    body: bytes
    parts: tuple[Doc, ...]


def content_id(part: str, base: str) -> str:
    """RFC 9275 §6.6: "<" part-resource-id "@" the server's domain name ">"."""
    host = urlsplit(base).hostname or ""
    return f"<{part}@{host if _DOT_ATOM.match(host) else 'localhost'}>"


def multipart_related(root_type: str, parts: list[tuple[str, str, Doc]]) -> tuple[str, bytes]:
    """RFC 2387 encoding, root part first (so no "start" parameter is needed)."""
    encoded = [json.dumps(doc, separators=(",", ":")).encode() for _, _, doc in parts]
    boundary = "alto-" + r.tag_of([e.decode() for e in encoded])
    chunks = []
    for (cid, media, _), body in zip(parts, encoded, strict=True):
        head = f"--{boundary}\r\nContent-ID: {cid}\r\nContent-Type: {media}\r\n\r\n".encode()
        chunks.append(head + body + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return f'multipart/related; boundary={boundary}; type="{root_type}"', body


def _ane_properties(view: View, anes: Iterable[str], names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Each ANE (a domain) with the requested properties it has."""
    result = {}
    for ane in sorted(anes):
        props = {**r.domain_properties(view.domains[ane]), c.PROP_PERSISTENT_ENTITY_ID: c.persistent_ane(ane)}
        result[c.ane_entity(ane)] = {n: props[n] for n in names if n in props}
    return result


def path_vector(view: View, query: CostQuery, base: str) -> Multipart:
    """The domains on each routingcost route as ANE names (the draft's "array of ASes"), and a
    property map of those ANEs; persistent-entity-id points to the ANE in `domain-props`."""
    table = r.CostTable(view)
    pids = list(r.network_map_data(view))
    pairs = [(s, d) for s in _select(query.srcs, pids) for d in _select(query.dsts, pids)]
    rows = _assemble(query, pairs, lambda t, p: table.value(t, *p))
    meta: Doc = {"dependent-vtags": [r.network_map(view)["meta"]["vtag"]], **query.cost_meta()}
    meta = {"vtag": r.vtag(f"{c.PATHVECTOR}.costmap", {"meta": meta, "cost-map": rows}), **meta}
    costmap = {"meta": meta, "cost-map": rows}
    dependent = [meta["vtag"]]
    if c.PROP_PERSISTENT_ENTITY_ID in query.ane_properties:
        dependent.append(r.property_map(view)["meta"]["vtag"])
    anes = {ane for row in rows.values() for route in row.values() for ane in route}
    propmap = {"meta": {"dependent-vtags": dependent},
               "property-map": _ane_properties(view, anes, query.ane_properties)}  # fmt: skip
    parts = [
        (content_id("costmap", base), c.COSTMAP_MT, costmap),
        (content_id("propmap", base), c.PROPMAP_MT, propmap),
    ]
    content_type, body = multipart_related(c.COSTMAP_MT, parts)
    return Multipart(content_type, body, (costmap, propmap))


# --- filtered property map ----------------------------------------------------------------


def filtered_property_map(view: View, query: PropertyMapFilter) -> Doc:
    """The requested properties of the requested entities.  Without "properties", each entity
    that has some property maps to {} (RFC 9240 §8.6); entities with none are left out."""
    full = r.property_map_data(view)
    data: dict[str, dict[str, Any]] = {}
    for entity in query.entities or full:
        props = full.get(entity)
        if not props:
            continue
        chosen = {} if query.properties is None else {p: props[p] for p in query.properties if p in props}
        if chosen or query.properties is None:
            data[entity] = chosen
    return r.property_map_doc(data, full, view)
