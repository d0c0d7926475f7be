"""From a validated topology to a concrete plan: names, addresses, routes and shaping.

Everything here is pure, so the address plan and the routing can be unit-tested and shown
(`testbed graph`, `status`) without building anything.

Naming: what lives in a host's own namespace keeps a friendly name (`eth0`), because it
cannot collide with anything; what lives in the root namespace (switches and their ports)
is named `vtb<run id>...`, so that `testbed clean` removes exactly one run's leftovers and
never another program's bridges or links (`mn -c` deletes every `*-ethN`).

Addressing, when not given: domain n (in file order, from 1) gets 10.n.0.0/16, its k-th
network 10.n.k.0/24, with the domain gateway at .1 and hosts from .10; the k-th domain link
gets 10.255.k.0/30.  Each domain with domain links has a gateway router `gw-<domain>`;
gateways route between domains along least-delay paths; multicast is never forwarded, so
RSerPool's announces stay inside their domain (its operation scope).
"""

from __future__ import annotations

import heapq
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from .netns import PREFIX
from .schema import DomainLink, LinkParams, Topology

IPv4If = ipaddress.IPv4Interface
IPv4Net = ipaddress.IPv4Network


@dataclass
class Switch:
    name: str  # bridge name in the root namespace
    domain: str
    network: str
    subnet: IPv4Net
    dpid: str
    ports: int = 0

    @property
    def label(self) -> str:
        return f"{self.domain}/{self.network}"


@dataclass
class Interface:
    name: str  # inside the host's namespace
    address: IPv4If
    shape: LinkParams
    switch: str | None = None  # the switch it plugs into, or None for a domain link
    port: str | None = None  # the switch-side veth (root namespace)
    network: str | None = None
    peer_host: str | None = None  # for a domain link: the gateway at the other end
    peer_intf: str | None = None


@dataclass
class Route:
    destination: str  # "default" or a prefix
    via: str
    dev: str
    metric: int = 0


@dataclass
class Process:
    name: str
    host: str | None  # None: the root namespace (the SFC platform and the controller)
    kind: str
    spec: Any  # the schema model of the process


@dataclass
class Host:
    name: str
    domain: str
    role: str  # "host" or "gateway"
    interfaces: list[Interface] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)

    def intf(self, name: str) -> Interface:
        for intf in self.interfaces:
            if intf.name == name or intf.network == name:
                return intf
        raise KeyError(f"{self.name} has no interface {name!r} (has: {[i.name for i in self.interfaces]})")


@dataclass
class Plan:
    topology: Topology
    run_id: str
    switches: list[Switch]
    hosts: dict[str, Host]
    domain_links: list[tuple[str, str, str, str, DomainLink]]  # (gw a, intf a, gw b, intf b, spec)
    services: list[Process] = field(default_factory=list)  # root-namespace SFC services
    ports: dict[str, int] = field(default_factory=dict)  # their loopback ports, chosen at `up`

    def processes(self) -> dict[str, Process]:
        """Every process, the SFC services first: the controller must be up before the nodes."""
        hosted = {p.name: p for h in self.hosts.values() for p in h.processes}
        return {p.name: p for p in self.services} | hosted

    def sff(self, domain: str) -> Switch:
        """The domain's service function forwarder: the switch of its first network."""
        return next(s for s in self.switches if s.domain == domain)

    def domain_subnets(self, domain: str) -> list[IPv4Net]:
        return [s.subnet for s in self.switches if s.domain == domain]


def gateway_name(domain: str) -> str:
    return f"gw-{domain.lower()}"


def resource_prefix(run_id: str) -> str:
    """The prefix of every root-namespace name of one run (at most 15 chars with a suffix)."""
    return f"{PREFIX}{run_id}"


def build_plan(topo: Topology, run_id: str) -> Plan:
    switches: list[Switch] = []
    hosts: dict[str, Host] = {}
    linked = {d for link in topo.links for d in link.between}
    prefix = resource_prefix(run_id)
    for d_index, (dname, domain) in enumerate(topo.domains.items(), start=1):
        dsubnet = domain.subnet or IPv4Net(f"10.{d_index}.0.0/16")
        subnets = _network_subnets(dsubnet, domain.networks)
        by_net = {}
        for net in domain.networks:
            sw = Switch(f"{prefix}s{len(switches) + 1}", dname, net, subnets[net],
                        f"{int(run_id, 16):08x}{len(switches) + 1:08x}")  # fmt: skip
            switches.append(sw)
            by_net[net] = sw
        next_host = dict.fromkeys(domain.networks, 10)
        if dname in linked:
            gw = Host(gateway_name(dname), dname, "gateway")
            for net, sw in by_net.items():
                gw.interfaces.append(_attach(gw, sw, IPv4If(f"{sw.subnet[1]}/{sw.subnet.prefixlen}"),
                                             topo.defaults.link, domain.networks[net].link, None))  # fmt: skip
            hosts[gw.name] = gw
        for hname, hspec in domain.hosts.items():
            host = Host(hname, dname, "host")
            for ispec in hspec.interfaces or [None]:
                nets = [ispec.network] if ispec else list(domain.networks)
                for net in nets:
                    sw = by_net[net]
                    address = ispec.address if ispec and ispec.address else None
                    if address is None:
                        address = IPv4If(f"{sw.subnet[next_host[net]]}/{sw.subnet.prefixlen}")
                        next_host[net] += 1
                    host.interfaces.append(
                        _attach(host, sw, address, topo.defaults.link, domain.networks[net].link, ispec)
                    )
            if dname in linked:
                gw = hosts[gateway_name(dname)]
                for i, intf in enumerate(host.interfaces):
                    via = str(gw.intf(intf.network or "").address.ip)
                    host.routes.append(Route("default", via, intf.name, 100 + i))
            host.processes = [Process(topo.process_name(hname, p), hname, p.kind, p) for p in hspec.processes]
            hosts[hname] = host
    links = _domain_links(topo, hosts)
    _route_between_domains(topo, hosts, switches, links)
    return Plan(topo, run_id, switches, hosts, links, _sfc_services(topo, hosts))


def ibe_host(topo: Topology, hosts: dict[str, Host], domain: str) -> str | None:
    """Where a domain's Information Base Element runs: its gateway, else its first registrar's
    host, else its first host (None for an empty domain)."""
    if gateway_name(domain) in hosts:
        return gateway_name(domain)
    mine = [h for h in hosts.values() if h.domain == domain]
    for host in mine:
        if any(p.kind == "registrar" for p in host.processes):
            return host.name
    return mine[0].name if mine else None


def _sfc_services(topo: Topology, hosts: dict[str, Host]) -> list[Process]:
    from .schema import Service

    services: list[Process] = []
    if topo.controller.kind == "os-ken":
        services.append(Process("controller", None, "controller", Service(kind="controller")))
    if topo.sfc is None:
        return services
    services.append(Process("sxp", None, "sxp", Service(kind="sxp")))
    for domain in topo.domains:
        host = ibe_host(topo, hosts, domain)
        if host is not None:
            name = f"ibe-{domain.lower()}"
            proc = Process(name, host, "ibe", Service(kind="ibe"))
            hosts[host].processes.append(proc)
    return services


def _network_subnets(dsubnet: IPv4Net, networks: dict) -> dict[str, IPv4Net]:
    carved = iter(dsubnet.subnets(new_prefix=max(24, dsubnet.prefixlen + 1)))
    next(carved)  # .0.0/24 stays free: 10.n.k.0/24 then numbers network k
    return {name: spec.subnet or next(carved) for name, spec in networks.items()}


def _attach(host: Host, sw: Switch, address: IPv4If, default: LinkParams, network: LinkParams | None,
            ispec: Any) -> Interface:  # fmt: skip
    shape = default.merged(network).merged(ispec)
    index = len(host.interfaces)
    sw.ports += 1
    port = f"{sw.name}p{sw.ports}"
    return Interface(f"eth{index}", address, shape, switch=sw.name, port=port, network=sw.network)


def _domain_links(topo: Topology, hosts: dict[str, Host]) -> list[tuple[str, str, str, str, DomainLink]]:
    links = []
    for k, spec in enumerate(topo.links, start=1):
        subnet = spec.subnet or IPv4Net(f"10.255.{k}.0/30")
        a, b = (hosts[gateway_name(d)] for d in spec.between)
        shape = topo.defaults.link.merged(spec)
        ia = Interface(f"eth{len(a.interfaces)}", IPv4If(f"{subnet[1]}/{subnet.prefixlen}"), shape,
                       peer_host=b.name)  # fmt: skip
        a.interfaces.append(ia)
        ib = Interface(f"eth{len(b.interfaces)}", IPv4If(f"{subnet[2]}/{subnet.prefixlen}"), shape,
                       peer_host=a.name, peer_intf=ia.name)  # fmt: skip
        b.interfaces.append(ib)
        ia.peer_intf = ib.name
        links.append((a.name, ia.name, b.name, ib.name, spec))
    return links


def _route_between_domains(topo: Topology, hosts: dict[str, Host], switches: list[Switch],
                           links: list[tuple[str, str, str, str, DomainLink]]) -> None:  # fmt: skip
    """Static routes on every gateway along least-delay domain paths (Dijkstra; 1 ms per hop
    breaks ties towards fewer hops)."""
    adjacency: dict[str, list[tuple[float, str, str, str]]] = {d: [] for d in topo.domains}
    for gw_a, if_a, gw_b, if_b, spec in links:
        da, db = spec.between
        cost = topo.defaults.link.merged(spec).delay + 1.0
        a_addr = str(hosts[gw_a].intf(if_a).address.ip)
        b_addr = str(hosts[gw_b].intf(if_b).address.ip)
        adjacency[da].append((cost, db, b_addr, if_a))
        adjacency[db].append((cost, da, a_addr, if_b))
    for source in topo.domains:
        if not adjacency[source]:
            continue
        gw = hosts[gateway_name(source)]
        for dest, (via, dev) in _first_hops(adjacency, source).items():
            for sw in switches:
                if sw.domain == dest:
                    gw.routes.append(Route(str(sw.subnet), via, dev))


def _first_hops(adjacency: dict[str, list[tuple[float, str, str, str]]], source: str) -> dict[str, tuple[str, str]]:
    best: dict[str, float] = {source: 0.0}
    first: dict[str, tuple[str, str]] = {}
    queue: list[tuple[float, str, tuple[str, str] | None]] = [(0.0, source, None)]
    while queue:
        cost, node, hop = heapq.heappop(queue)
        if cost > best.get(node, float("inf")):
            continue
        if hop is not None and node not in first:
            first[node] = hop
        for weight, nxt, via, dev in sorted(adjacency[node]):
            new = cost + weight
            if new < best.get(nxt, float("inf")):
                best[nxt] = new
                heapq.heappush(queue, (new, nxt, hop or (via, dev)))
    return first
