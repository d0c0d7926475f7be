"""The names the ALTO server publishes: media types, resource ids, cost types, property names.

Kept apart from the documents so that the request validation (`requests`), the documents
(`resources`, `queries`) and the HTTP layer (`server`) agree on one set of names, and so that a
client in this project (the path computation) can import them instead of spelling strings.

RFC points that shaped these names:
- RFC 7285 §9.2.2: a resource offered by both GET and POST needs two IRD entries, hence
  `networkmap` / `filtered-networkmap` and `domain-props` / `filtered-domain-props`.
- RFC 9439 §4.1.2: `delay-ow` is in microseconds (the View holds milliseconds; we convert).
- RFC 9240 §5.2.1: an entity property type is IANA-registered or starts with "priv:"; ours are
  not registered, so they are private-use types.  §5.2.2: a property defined by the property
  map itself is named with the resource id omitted, i.e. with a leading "." (".priv:...").
- RFC 9275 §6.4: `persistent-entity-id` is registered and takes no resource prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Media types (RFC 7285 §8.5.1, 9.2.1, 11; RFC 9240 §7.1, 8.3; RFC 9275 §7.2.1).
DIRECTORY_MT = "application/alto-directory+json"
NETWORKMAP_MT = "application/alto-networkmap+json"
NETWORKMAPFILTER_MT = "application/alto-networkmapfilter+json"
COSTMAP_MT = "application/alto-costmap+json"
COSTMAPFILTER_MT = "application/alto-costmapfilter+json"
ENDPOINTCOST_MT = "application/alto-endpointcost+json"
ENDPOINTCOSTPARAMS_MT = "application/alto-endpointcostparams+json"
PROPMAP_MT = "application/alto-propmap+json"
PROPMAPPARAMS_MT = "application/alto-propmapparams+json"
ERROR_MT = "application/alto-error+json"
MULTIPART_COSTMAP_MT = "multipart/related;type=application/alto-costmap+json"

# Resource ids; each is served at {prefix}/{resource id}.
DIRECTORY = "directory"
NETWORKMAP = "networkmap"
FILTERED_NETWORKMAP = "filtered-networkmap"
SUBNETMAP = "subnetmap"
COSTMAP_ROUTINGCOST = "costmap-routingcost"
COSTMAP_ROUTINGCOST_ORDINAL = "costmap-routingcost-ordinal"
COSTMAP_HOPCOUNT = "costmap-hopcount"
COSTMAP_DELAY = "costmap-delay"
SUBNET_COSTMAP_ROUTINGCOST = "subnetmap-costmap-routingcost"
FILTERED_COSTMAP = "filtered-costmap"
ENDPOINTCOST = "endpointcost"
PATHVECTOR = "pathvector"
DOMAIN_PROPS = "domain-props"
FILTERED_DOMAIN_PROPS = "filtered-domain-props"

#: The PID that makes the network maps complete (RFC 7285 §11.2.2: every address maps to a
#: PID).  It cannot collide with a domain: domain names start with a letter.  It has no costs.
DEFAULT_PID = "_default"

#: Micro-seconds per millisecond: delay-ow values are µs on the wire (RFC 9439 §4.1.2).
DELAY_OW_PER_MS = 1000.0


@dataclass(frozen=True)
class CostType:
    """A cost metric with a cost mode (RFC 7285 §10.7)."""

    metric: str
    mode: str

    def to_json(self) -> dict[str, str]:
        return {"cost-mode": self.mode, "cost-metric": self.metric}


NUM_ROUTINGCOST = CostType("routingcost", "numerical")
ORD_ROUTINGCOST = CostType("routingcost", "ordinal")
NUM_HOPCOUNT = CostType("hopcount", "numerical")
NUM_DELAY_OW = CostType("delay-ow", "numerical")
PATH_VECTOR = CostType("ane-path", "array")

#: IRD meta.cost-types: name -> (cost type, description).
COST_TYPES: dict[str, tuple[CostType, str]] = {
    "num-routingcost": (NUM_ROUTINGCOST, "administrative cost summed over the domain route"),
    "ord-routingcost": (ORD_ROUTINGCOST, "rank of the routingcost, 1 = cheapest, ties share a rank"),
    "num-hopcount": (NUM_HOPCOUNT, "inter-domain links on the fewest-hop route"),
    "num-delay-ow": (NUM_DELAY_OW, "one-way delay in microseconds (RFC 9439), measured where known"),
    "path-vector": (PATH_VECTOR, "the domains on the routingcost route, as ANEs (RFC 9275)"),
}
TYPE_NAMES: dict[CostType, str] = {t: name for name, (t, _) in COST_TYPES.items()}

#: Cost type names offered by the filtered cost map and the endpoint cost service.
FILTER_TYPE_NAMES = ("num-routingcost", "ord-routingcost", "num-hopcount", "num-delay-ow")

# Entity domains of the property map (RFC 9240 §5.1.2): PIDs of the network map
# (resource-specific) and the property map's own persistent ANEs, one per domain (self-defined).
PID_DOMAIN = f"{NETWORKMAP}.pid"
ANE_DOMAIN = ".ane"

# Domain properties (self-defined private-use types, see the module docstring).
PROP_CAPABILITIES = ".priv:capabilities"  # sorted SF names with at least one live instance
PROP_ENTRY_POINT = ".priv:entry-point"  # URL of the domain's control plane
PROP_CPU_UTILIZATION = ".priv:cpu-utilization"  # mean over hosts, fraction of one CPU
PROP_CPU_CORES = ".priv:cpu-cores"
PROP_MEMORY_MB = ".priv:memory-mb"
PROP_SF_INSTANCES = ".priv:sf-instances"  # {SF: live instances}
DOMAIN_PROPERTIES = (PROP_CAPABILITIES, PROP_ENTRY_POINT, PROP_CPU_UTILIZATION, PROP_CPU_CORES,
                     PROP_MEMORY_MB, PROP_SF_INSTANCES)  # fmt: skip

#: ANE property of RFC 9275 §6.4.2: the ephemeral ANE's persistent twin in `domain-props`.
PROP_PERSISTENT_ENTITY_ID = "persistent-entity-id"
ANE_PROPERTIES = (PROP_PERSISTENT_ENTITY_ID, *DOMAIN_PROPERTIES)

# Identifier syntax: PIDName and ResourceID (RFC 7285 §10.1-10.2; '.' is reserved there),
# AddressType (§10.4.2), EntityDomainType (RFC 9240 §5.1.1).
PID_NAME = re.compile(r"^[A-Za-z0-9:@_-]{1,64}$")
ADDRESS_TYPE = re.compile(r"^[A-Za-z0-9]+$")
ADDRESS_TYPES = ("ipv4", "ipv6")


def pid_entity(pid: str) -> str:
    """The RFC 9240 entity id of a network-map PID, e.g. "networkmap.pid:AS1"."""
    return f"{PID_DOMAIN}:{pid}"


def ane_entity(domain: str) -> str:
    """The self-defined entity id of a domain's ANE, as written inside its property map."""
    return f"{ANE_DOMAIN}:{domain}"


def persistent_ane(domain: str) -> str:
    """The persistent entity id of a domain's ANE seen from outside `domain-props`."""
    return f"{DOMAIN_PROPS}.ane:{domain}"
