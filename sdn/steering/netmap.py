"""The controller's map of the testbed, read from the config the testbed writes.

Which switch is each domain's service function forwarder (SFF), which of its ports are
trunks to which neighbour domain, and for every host the SFF port, MAC and address it is
reached by.  Plain data: the flow compiler and the chain manager are tested on it alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Attachment:
    """A host's interface on its domain's SFF."""

    port: str  # the SFF's port name (root namespace)
    interface: str  # inside the host
    ip: str
    mac: str


@dataclass(frozen=True)
class HostInfo:
    name: str
    domain: str
    role: str
    addresses: tuple[str, ...]
    sff: Attachment | None


@dataclass(frozen=True)
class DomainSff:
    domain: str
    sff: str  # bridge name
    dpid: int
    ibe: str  # the domain's IBE socket
    trunks: dict[str, str]  # SFF port name -> neighbour domain
    switches: dict[str, int]  # every switch of the domain -> dpid

    def trunk_to(self, neighbour: str) -> str | None:
        ports = sorted(p for p, d in self.trunks.items() if d == neighbour)
        return ports[0] if ports else None


@dataclass(frozen=True)
class ChainSpec:
    name: str
    spi: int
    classifier: str
    destination: str
    functions: tuple[str, ...]
    protocol: str = "udp"
    port: int = 5000


@dataclass
class NetMap:
    domains: dict[str, DomainSff]
    hosts: dict[str, HostInfo]
    gateways: dict[str, str]  # domain -> its gateway host
    chains: list[ChainSpec] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NetMap:
        domains = {name: DomainSff(name, d["sff"], int(d["dpid"]), d.get("ibe", ""), dict(d.get("trunks", {})),
                                   {k: int(v) for k, v in d.get("switches", {d["sff"]: d["dpid"]}).items()})
                   for name, d in config["domains"].items()}  # fmt: skip
        hosts = {}
        for name, h in config["hosts"].items():
            sff = h.get("sff")
            attachment = Attachment(sff["port"], sff["interface"], sff["ip"], sff["mac"]) if sff else None
            hosts[name] = HostInfo(name, h["domain"], h.get("role", "host"), tuple(h.get("addresses", [])), attachment)
        chains = [ChainSpec(c["name"], int(c["spi"]), c["classifier"], c["destination"], tuple(c["functions"]),
                            c.get("match", {}).get("protocol", "udp"), int(c.get("match", {}).get("port", 5000)))
                  for c in config.get("chains", [])]  # fmt: skip
        return cls(domains, hosts, dict(config.get("gateways", {})), chains)

    def host_by_address(self, addresses: list[str] | tuple[str, ...]) -> HostInfo | None:
        """The host owning any of these addresses (a pool element's transport addresses)."""
        wanted = set(addresses)
        for host in self.hosts.values():
            if wanted & set(host.addresses):
                return host
        return None

    def all_dpids(self) -> set[int]:
        return {dpid for d in self.domains.values() for dpid in d.switches.values()}

    def sff_by_dpid(self, dpid: int) -> DomainSff | None:
        return next((d for d in self.domains.values() if d.dpid == dpid), None)
