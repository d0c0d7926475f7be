"""What the SFC services need to know about the built network, written into their configs.

The platform (`sxp`), the controller and each domain's Information Base Element (`ibe`) get
their view of the testbed from here, computed from the plan and the built network (MAC
addresses, namespace PIDs, ports): domains, subnets, links, switches and their trunks, the
hosts' switch ports.  Nothing is hand-written: what the ALTO maps say comes from this and
from what the IBEs measure at run time.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field
from typing import Any

from .plan import Plan, Process, gateway_name

VXLAN_PORT = 4789
TRUNK_TAG_BASE = 4000  #: OVS access tag of trunk k: NORMAL never floods onto a trunk


@dataclass
class Facts:
    """What only the built network knows."""

    pids: dict[str, int] = field(default_factory=dict)  # host -> PID in its namespace
    macs: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> interface -> MAC
    ports: dict[str, int] = field(default_factory=dict)  # "sxp", "openflow", "rest" -> port


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def allocate_ports(plan: Plan) -> dict[str, int]:
    """The loopback ports of the root-namespace services; 0 in the topology: a free one."""
    topo = plan.topology
    wanted = {"openflow": topo.controller.port, "rest": topo.controller.rest_port,
              "sxp": topo.sfc.port if topo.sfc else 0}  # fmt: skip
    return {name: port or free_port() for name, port in wanted.items()}


def trunk_port(plan: Plan, index: int, domain: str) -> str:
    """The SFF port of domain link `index` (from 1) at `domain`'s end."""
    return f"{plan.sff(domain).name}t{index}"


def trunks(plan: Plan) -> list[dict[str, Any]]:
    """One VXLAN trunk per domain link between the two domains' SFFs, through the gateways."""
    out = []
    for k, (gw_a, if_a, gw_b, if_b, spec) in enumerate(plan.domain_links, start=1):
        da, db = spec.between
        a_ip = str(plan.hosts[gw_a].intf(if_a).address.ip)
        b_ip = str(plan.hosts[gw_b].intf(if_b).address.ip)
        out.append({"index": k, "tag": TRUNK_TAG_BASE + k, "ends": [
            {"domain": da, "gateway": gw_a, "dev": if_a, "local": a_ip, "remote": b_ip, "port": trunk_port(plan, k, da)},
            {"domain": db, "gateway": gw_b, "dev": if_b, "local": b_ip, "remote": a_ip, "port": trunk_port(plan, k, db)},
        ]})  # fmt: skip
    return out


def ibe_socket(plan: Plan, domain: str) -> str:
    from . import runs

    return str(runs.service_socket(plan.run_id, "ibe", domain.lower()))


def _handles(plan: Plan, domain: str) -> list[str]:
    """The pools an IBE watches: every chain function, and every pool of its domain's PEs."""
    topo = plan.topology
    wanted = {f for chain in (topo.sfc.chains if topo.sfc else []) for f in chain.functions}
    wanted |= {p.spec.handle for h in plan.hosts.values() if h.domain == domain
               for p in h.processes if p.kind == "pool-element"}  # fmt: skip
    return sorted(wanted)


def ibe_context(plan: Plan, proc: Process, facts: Facts) -> dict[str, Any]:
    assert proc.host is not None
    domain = plan.hosts[proc.host].domain
    neighbours = {}
    for gw_a, if_a, gw_b, if_b, spec in plan.domain_links:
        if gw_a == proc.host:
            neighbours[spec.between[1]] = str(plan.hosts[gw_b].intf(if_b).address.ip)
        elif gw_b == proc.host:
            neighbours[spec.between[0]] = str(plan.hosts[gw_a].intf(if_a).address.ip)
    sfc = plan.topology.sfc
    return {"ibe": {
        "socket": ibe_socket(plan, domain),
        "handles": _handles(plan, domain),
        "hosts": {h.name: facts.pids.get(h.name) for h in plan.hosts.values() if h.domain == domain},
        "neighbours": neighbours,
        "poll_interval": sfc.poll_interval if sfc else 1.0,
        "probe_interval": sfc.probe_interval if sfc else 5.0,
    }}  # fmt: skip


def _domains(plan: Plan) -> dict[str, Any]:
    out = {}
    for domain in plan.topology.domains:
        switches = [s for s in plan.switches if s.domain == domain]
        out[domain] = {"subnets": {s.network: str(s.subnet) for s in switches},
                       "ibe": ibe_socket(plan, domain)}  # fmt: skip
    return out


def sxp_context(plan: Plan, facts: Facts) -> dict[str, Any]:
    sfc = plan.topology.sfc
    assert sfc is not None
    defaults = plan.topology.defaults.link
    links = [{"a": spec.between[0], "b": spec.between[1],
              "routingcost": defaults.merged(spec).delay or 1.0, "index": k}
             for k, (_, _, _, _, spec) in enumerate(plan.domain_links, start=1)]  # fmt: skip
    return {"name": "sxp", "kind": "sxp", "port": facts.ports["sxp"], "auth": sfc.auth,
            "poll_interval": sfc.poll_interval, "metric": sfc.metric,
            "domains": _domains(plan), "links": links}  # fmt: skip


def controller_context(plan: Plan, facts: Facts) -> dict[str, Any]:
    """The controller's map of the network: each domain's SFF and trunks, each host's SFF port,
    MAC and addresses, the gateways' MACs (the last hop looks routed), and the chains."""
    domains: dict[str, Any] = {}
    for domain in plan.topology.domains:
        switches = [s for s in plan.switches if s.domain == domain]
        if not switches:
            continue
        sff = switches[0]
        domains[domain] = {"sff": sff.name, "dpid": int(sff.dpid, 16), "ibe": ibe_socket(plan, domain),
                           "trunks": {}, "switches": {s.name: int(s.dpid, 16) for s in switches}}  # fmt: skip
    for trunk in trunks(plan):
        a, b = trunk["ends"]
        domains[a["domain"]]["trunks"][a["port"]] = b["domain"]
        domains[b["domain"]]["trunks"][b["port"]] = a["domain"]
    hosts: dict[str, Any] = {}
    for host in plan.hosts.values():
        if host.domain not in domains:
            continue
        sff = domains[host.domain]["sff"]
        on_sff = [i for i in host.interfaces if i.switch == sff]
        hosts[host.name] = {
            "domain": host.domain, "role": host.role,
            "addresses": [str(i.address.ip) for i in host.interfaces],
            "sff": ({"port": on_sff[0].port, "interface": on_sff[0].name, "ip": str(on_sff[0].address.ip),
                     "mac": facts.macs.get(host.name, {}).get(on_sff[0].name)} if on_sff else None),
        }  # fmt: skip
    sfc = plan.topology.sfc
    chains = [{"name": c.name, "spi": i, "classifier": c.classifier, "destination": c.destination,
               "functions": list(c.functions), "match": c.match.model_dump()}
              for i, c in enumerate(sfc.chains if sfc else [], start=1)]  # fmt: skip
    return {"name": "controller", "kind": "controller",
            "openflow": {"host": "127.0.0.1", "port": facts.ports["openflow"]}, "rest_port": facts.ports["rest"],
            "sxp": f"http://127.0.0.1:{facts.ports['sxp']}" if sfc else None,
            "gateways": {d: gateway_name(d) for d in domains if gateway_name(d) in plan.hosts},
            "domains": domains, "hosts": hosts, "chains": chains}  # fmt: skip


def service_config(plan: Plan, proc: Process, facts: Facts) -> dict[str, Any]:
    if proc.kind == "sxp":
        return sxp_context(plan, facts)
    if proc.kind == "controller":
        return controller_context(plan, facts)
    raise ValueError(proc.kind)
