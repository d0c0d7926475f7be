"""The GET documents of the ALTO server, as pure functions of a `sdn.view.View`.

Every function returns the JSON document (a dict) that the server sends, so the path
computation can read the same maps without HTTP, and the unit tests check the RFC structure
without a network.  `base` in the functions below is the URL that precedes "/<resource-id>",
e.g. "http://127.0.0.1:8181/alto".

Version tags (RFC 7285 §10.3) are hashes of the document a tag belongs to (without the tag
itself): a cost map's tag moves when its numbers (or the network map it depends on) move, not
when a CPU figure does.  Cost maps and property maps carry a `vtag` too (RFC 7285 requires it
only of network maps; RFC 9275 and the incremental-update extensions use it on cost maps).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from typing import Any

from sdn.alto import catalog as c
from sdn.alto.catalog import CostType
from sdn.view import Costs, DomainInfo, View

Doc = dict[str, Any]
CostData = dict[str, dict[str, Any]]

#: The full cost maps over `networkmap`, by resource id.
COSTMAPS: dict[str, CostType] = {
    c.COSTMAP_ROUTINGCOST: c.NUM_ROUTINGCOST,
    c.COSTMAP_ROUTINGCOST_ORDINAL: c.ORD_ROUTINGCOST,
    c.COSTMAP_HOPCOUNT: c.NUM_HOPCOUNT,
    c.COSTMAP_DELAY: c.NUM_DELAY_OW,
}


# --- version tags -------------------------------------------------------------------------


def tag_of(content: Any) -> str:
    """A content hash: 40 hex characters, within the 64 printable characters of RFC 7285 §10.3."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def vtag(resource_id: str, content: Any) -> dict[str, str]:
    return {"resource-id": resource_id, "tag": tag_of(content)}


# --- network maps -------------------------------------------------------------------------


def address_group(prefixes: list[str]) -> dict[str, list[str]]:
    """EndpointAddrGroup (RFC 7285 §10.4.5): prefixes by address type, normalised and sorted."""
    group: dict[str, list[str]] = {}
    for prefix in prefixes:
        net = ipaddress.ip_network(prefix, strict=False)
        group.setdefault(f"ipv{net.version}", []).append(str(net))
    return {t: sorted(v, key=lambda p: ipaddress.ip_network(p)) for t, v in sorted(group.items())}


def _with_default(data: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
    """Adds the catch-all PID: a network map must map every address (RFC 7285 §11.2.2)."""
    types = {t for group in data.values() for t in group} or {"ipv4"}
    everything = {"ipv4": "0.0.0.0/0", "ipv6": "::/0"}
    return {**data, c.DEFAULT_PID: {t: [everything[t]] for t in sorted(types)}}


def network_map_data(view: View) -> dict[str, dict[str, list[str]]]:
    """A PID per domain (named as the domain, holding its subnets), plus `_default`."""
    data = {name: address_group(list(d.subnets.values())) for name, d in sorted(view.domains.items())}
    return _with_default(data)


def subnet_pids(view: View) -> dict[str, tuple[str, str]]:
    """Subnet PID name (`<domain>-<network>`) -> (domain, prefix)."""
    pids = {}
    for name, domain in sorted(view.domains.items()):
        for net, prefix in sorted(domain.subnets.items()):
            pids[f"{name}-{net}"] = (name, prefix)
    return pids


def subnet_map_data(view: View) -> dict[str, dict[str, list[str]]]:
    return _with_default({pid: address_group([prefix]) for pid, (_, prefix) in subnet_pids(view).items()})


def network_map(view: View) -> Doc:
    data = network_map_data(view)
    return {"meta": {"vtag": vtag(c.NETWORKMAP, data)}, "network-map": data}


def subnet_map(view: View) -> Doc:
    data = subnet_map_data(view)
    return {"meta": {"vtag": vtag(c.SUBNETMAP, data)}, "network-map": data}


def lookup_pid(data: dict[str, dict[str, list[str]]], address: str) -> str | None:
    """Longest-prefix match of an address over a network map (RFC 7285 §11.2.2)."""
    ip = ipaddress.ip_address(address)
    best: tuple[int, str] | None = None
    for pid, group in data.items():
        for prefix in group.get(f"ipv{ip.version}", []):
            net = ipaddress.ip_network(prefix)
            if ip in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, pid)
    return best[1] if best else None


# --- costs --------------------------------------------------------------------------------


class CostTable:
    """The costs of one view for every cost type, computing each metric once.

    Values are in wire units: hopcount an integer, delay-ow in microseconds, ordinal a rank
    over the whole domain cost map, ane-path the list of domains on the routingcost route."""

    def __init__(self, view: View) -> None:
        self.view = view
        self._costs: dict[str, Costs] = {}
        self._maps: dict[CostType, CostData] = {}

    def costs(self, metric: str) -> Costs:
        if metric not in self._costs:
            self._costs[metric] = self.view.costs(metric)
        return self._costs[metric]

    def domain_map(self, cost_type: CostType) -> CostData:
        """src domain -> dst domain -> value, reachable pairs only."""
        if cost_type not in self._maps:
            self._maps[cost_type] = self._compute(cost_type)
        return self._maps[cost_type]

    def value(self, cost_type: CostType, src: str, dst: str) -> Any:
        return self.domain_map(cost_type).get(src, {}).get(dst)

    def _compute(self, cost_type: CostType) -> CostData:
        if cost_type.mode == "array":
            return {
                s: {d: list(r) for d, r in row.items()} for s, row in self.costs("routingcost").route.items()
            }
        numerical = {s: {d: wire_value(cost_type.metric, v) for d, v in row.items()}
                     for s, row in self.costs(cost_type.metric).value.items()}  # fmt: skip
        return ordinal(numerical) if cost_type.mode == "ordinal" else numerical


def wire_value(metric: str, value: float) -> float | int:
    """A View cost in the unit its ALTO metric is defined in."""
    if metric == "hopcount":
        return int(round(value))
    if metric == "delay-ow":
        return value * c.DELAY_OW_PER_MS
    return value


def ordinal(data: CostData) -> CostData:
    """Ranks (RFC 7285 §6.1.2.2): 1 for the lowest cost, equal costs share a rank, ranks dense."""
    ranks = {v: i for i, v in enumerate(sorted({v for row in data.values() for v in row.values()}), start=1)}
    return {s: {d: ranks[v] for d, v in row.items()} for s, row in data.items()}


def cost_map_doc(
    resource_id: str, data: CostData, cost_meta: dict[str, Any], dependent: dict[str, str]
) -> Doc:
    """A cost map document; `cost_meta` is {"cost-type": ...} or the RFC 8189 multi-cost form."""
    meta: dict[str, Any] = {"dependent-vtags": [dependent], **cost_meta}
    meta["vtag"] = vtag(resource_id, {"meta": meta, "cost-map": data})
    return {"meta": meta, "cost-map": data}


def cost_map(view: View, resource_id: str) -> Doc:
    """One of the full cost maps over `networkmap` (ids in COSTMAPS)."""
    cost_type = COSTMAPS[resource_id]
    data = CostTable(view).domain_map(cost_type)
    return cost_map_doc(
        resource_id, data, {"cost-type": cost_type.to_json()}, network_map(view)["meta"]["vtag"]
    )


def subnet_cost_map(view: View) -> Doc:
    """routingcost between subnet PIDs: the cost between the subnets' domains."""
    domains = CostTable(view).domain_map(c.NUM_ROUTINGCOST)
    pids = subnet_pids(view)
    data: CostData = {}
    for src, (src_domain, _) in pids.items():
        reachable = domains.get(src_domain, {})
        row = {dst: reachable[dst_domain] for dst, (dst_domain, _) in pids.items() if dst_domain in reachable}
        if row:
            data[src] = row
    meta = {"cost-type": c.NUM_ROUTINGCOST.to_json()}
    return cost_map_doc(c.SUBNET_COSTMAP_ROUTINGCOST, data, meta, subnet_map(view)["meta"]["vtag"])


# --- property map -------------------------------------------------------------------------


def domain_properties(domain: DomainInfo) -> dict[str, Any]:
    """The properties of one domain; an unknown entry point is left out (not defined)."""
    props: dict[str, Any] = {
        c.PROP_CAPABILITIES: domain.capabilities,
        c.PROP_ENTRY_POINT: domain.entry_point,
        c.PROP_CPU_UTILIZATION: domain.cpu_utilization,
        c.PROP_CPU_CORES: domain.cpu_cores,
        c.PROP_MEMORY_MB: domain.memory_mb,
        c.PROP_SF_INSTANCES: dict(sorted(domain.functions.items())),
    }
    if not domain.entry_point:
        del props[c.PROP_ENTRY_POINT]
    return props


def property_map_data(view: View) -> dict[str, dict[str, Any]]:
    """Entity id -> properties, for each domain's PID and for its persistent ANE."""
    data: dict[str, dict[str, Any]] = {}
    for name, domain in sorted(view.domains.items()):
        props = domain_properties(domain)
        data[c.pid_entity(name)] = props
        data[c.ane_entity(name)] = dict(props)
    return data


def property_map_doc(data: dict[str, dict[str, Any]], full: dict[str, dict[str, Any]], view: View) -> Doc:
    """A property map document; the vtag is always that of the full map (like RFC 7285 §11.3.1.6)."""
    meta: dict[str, Any] = {"dependent-vtags": [network_map(view)["meta"]["vtag"]]}
    meta["vtag"] = vtag(c.DOMAIN_PROPS, {"meta": dict(meta), "property-map": full})
    return {"meta": meta, "property-map": data}


def property_map(view: View) -> Doc:
    data = property_map_data(view)
    return property_map_doc(data, data, view)


# --- information resource directory ------------------------------------------------------


def _entry(base: str, rid: str, media: str, accepts: str = "", capabilities: dict[str, Any] | None = None,
           uses: tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    entry: dict[str, Any] = {"uri": f"{base}/{rid}", "media-type": media}
    if accepts:
        entry["accepts"] = accepts
    if capabilities:
        entry["capabilities"] = capabilities
    if uses:
        entry["uses"] = list(uses)
    return entry


def _names(*types: CostType) -> dict[str, Any]:
    return {"cost-type-names": [c.TYPE_NAMES[t] for t in types]}


def filter_capabilities() -> dict[str, Any]:
    """Filtered cost map and ECS: every type testable, so cost-constraints and not
    testable-cost-type-names (RFC 8189 §4.1.1: the two MUST NOT be both present)."""
    names = list(c.FILTER_TYPE_NAMES)
    return {"cost-type-names": names, "cost-constraints": True, "max-cost-types": len(names)}


def pathvector_capabilities() -> dict[str, Any]:
    """RFC 9275 §7.2.4: no constraints on the path vector type."""
    return {"cost-type-names": [c.TYPE_NAMES[c.PATH_VECTOR]], "ane-property-names": list(c.ANE_PROPERTIES)}


def mappings() -> dict[str, list[str]]:
    """PropertyMapCapabilities.mappings (RFC 9240 §7.4): entity domain -> property names."""
    return {c.PID_DOMAIN: list(c.DOMAIN_PROPERTIES), c.ANE_DOMAIN: list(c.DOMAIN_PROPERTIES)}


def resource_entries(base: str) -> dict[str, dict[str, Any]]:
    net = (c.NETWORKMAP,)
    entries = {
        c.NETWORKMAP: _entry(base, c.NETWORKMAP, c.NETWORKMAP_MT),
        c.FILTERED_NETWORKMAP: _entry(
            base, c.FILTERED_NETWORKMAP, c.NETWORKMAP_MT, c.NETWORKMAPFILTER_MT, uses=net
        ),
        c.SUBNETMAP: _entry(base, c.SUBNETMAP, c.NETWORKMAP_MT),
    }
    for rid, cost_type in COSTMAPS.items():
        entries[rid] = _entry(base, rid, c.COSTMAP_MT, capabilities=_names(cost_type), uses=net)
    subnet_caps = _names(c.NUM_ROUTINGCOST)
    entries[c.SUBNET_COSTMAP_ROUTINGCOST] = _entry(
        base, c.SUBNET_COSTMAP_ROUTINGCOST, c.COSTMAP_MT, capabilities=subnet_caps, uses=(c.SUBNETMAP,)
    )
    entries[c.FILTERED_COSTMAP] = _entry(base, c.FILTERED_COSTMAP, c.COSTMAP_MT, c.COSTMAPFILTER_MT,
                                         filter_capabilities(), net)  # fmt: skip
    # RFC 7285 §11.5.1.5: the endpoint cost service MUST NOT have "uses".
    entries[c.ENDPOINTCOST] = _entry(base, c.ENDPOINTCOST, c.ENDPOINTCOST_MT, c.ENDPOINTCOSTPARAMS_MT,
                                     filter_capabilities())  # fmt: skip
    entries[c.PATHVECTOR] = _entry(base, c.PATHVECTOR, c.MULTIPART_COSTMAP_MT, c.COSTMAPFILTER_MT,
                                   pathvector_capabilities(), (c.NETWORKMAP, c.DOMAIN_PROPS))  # fmt: skip
    props = {"mappings": mappings()}
    entries[c.DOMAIN_PROPS] = _entry(base, c.DOMAIN_PROPS, c.PROPMAP_MT, capabilities=props, uses=net)
    entries[c.FILTERED_DOMAIN_PROPS] = _entry(base, c.FILTERED_DOMAIN_PROPS, c.PROPMAP_MT, c.PROPMAPPARAMS_MT,
                                              props, net)  # fmt: skip
    return entries


def directory(view: View | None, base: str) -> Doc:
    """The root IRD (RFC 7285 §9.2).  It does not depend on the view today; the parameter keeps
    every document builder of the same shape should it ever do (e.g. per-view resources)."""
    cost_types = {name: {**t.to_json(), "description": text} for name, (t, text) in c.COST_TYPES.items()}
    meta = {"cost-types": cost_types, "default-alto-network-map": c.NETWORKMAP}
    return {"meta": meta, "resources": resource_entries(base.rstrip("/"))}


def get_document(view: View, resource_id: str, base: str) -> Doc:
    """The document of a GET resource by id (KeyError for POST-only or unknown ids)."""
    builders = {
        c.DIRECTORY: lambda: directory(view, base),
        c.NETWORKMAP: lambda: network_map(view),
        c.SUBNETMAP: lambda: subnet_map(view),
        c.SUBNET_COSTMAP_ROUTINGCOST: lambda: subnet_cost_map(view),
        c.DOMAIN_PROPS: lambda: property_map(view),
        **{rid: (lambda rid=rid: cost_map(view, rid)) for rid in COSTMAPS},
    }
    return builders[resource_id]()


#: GET resources and the media type each one answers with.
GET_MEDIA: dict[str, str] = {
    c.DIRECTORY: c.DIRECTORY_MT, c.NETWORKMAP: c.NETWORKMAP_MT, c.SUBNETMAP: c.NETWORKMAP_MT,
    c.SUBNET_COSTMAP_ROUTINGCOST: c.COSTMAP_MT, c.DOMAIN_PROPS: c.PROPMAP_MT,
    **{rid: c.COSTMAP_MT for rid in COSTMAPS},
}  # fmt: skip
