"""The topology file: a YAML description of domains, hosts, links and processes.

Validation is pydantic's; what this module adds is the place of an error.  The YAML is
composed into nodes that keep their line numbers, so that an error reads
`multi-domain.yaml:42: domains.AS1.hosts.pe1.interfaces[0]: no network 'c' in domain AS1`
instead of a bare pydantic dump.

A process is written as a one-key mapping (`- pool-element: {handle: SF1}`); it is turned
into a tagged model (`kind: pool-element`) before validation, and pydantic's location for a
tagged union (`processes, 0, pool-element, handle`) is then the YAML path itself.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from nodes.pe.policy import POLICY_NAMES
from pydantic import (
    BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator,
)  # fmt: skip

NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,30}$"
#: Every pool policy with a wire encoding, by the names the pool element program takes.
POLICIES = tuple(POLICY_NAMES)


class TopologyError(ValueError):
    """A topology file that cannot be used; `str()` names file, line and field."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


# -- quantities ---------------------------------------------------------------------------

_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([A-Za-z%/]*)\s*$")
_TIME = {"": 1.0, "ms": 1.0, "us": 0.001, "s": 1000.0}
_RATE = {"": 1.0, "mbit": 1.0, "mbps": 1.0, "kbit": 0.001, "kbps": 0.001, "gbit": 1000.0, "gbps": 1000.0}


def _quantity(value: Any, units: dict[str, float], what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected {what}, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    match = _UNIT.match(str(value))
    if not match or match.group(2).lower() not in units:
        raise ValueError(f"expected {what}, got {value!r}")
    return float(match.group(1)) * units[match.group(2).lower()]


class LinkParams(Model):
    """Shaping of a link, in each direction: `delay: 20ms` adds 20 ms each way (40 ms RTT)."""

    delay: float = Field(0.0, description="one-way delay, ms ('20ms', '0.5s' or a number of ms)")
    jitter: float = Field(0.0, description="uniform jitter, ms")
    loss: float = Field(0.0, description="random loss, percent ('10%' or 10)")
    bandwidth: float | None = Field(None, description="rate limit, Mbit/s ('100Mbit', '512kbit')")

    @field_validator("delay", "jitter", mode="before")
    @classmethod
    def _time(cls, v: Any) -> float:
        ms = _quantity(v, _TIME, "a duration such as 20ms")
        if ms < 0 or ms > 60_000:
            raise ValueError("must be between 0 and 60s")
        return ms

    @field_validator("loss", mode="before")
    @classmethod
    def _loss(cls, v: Any) -> float:
        pct = _quantity(v, {"": 1.0, "%": 1.0}, "a percentage such as 10%")
        if not 0 <= pct <= 100:
            raise ValueError("must be between 0% and 100%")
        return pct

    @field_validator("bandwidth", mode="before")
    @classmethod
    def _rate(cls, v: Any) -> float | None:
        if v is None:
            return None
        mbit = _quantity(v, _RATE, "a rate such as 100Mbit")
        if mbit <= 0:
            raise ValueError("must be positive")
        return mbit

    def merged(self, override: LinkParams | None) -> LinkParams:
        """These values, with the fields that `override` sets explicitly taking precedence."""
        if override is None:
            return self
        fields = override.model_fields_set & set(LinkParams.model_fields)
        return self.model_copy(update={k: getattr(override, k) for k in fields})


# -- processes ----------------------------------------------------------------------------


class ProcessBase(Model):
    name: str | None = Field(None, pattern=NAME, description="default: <kind>-<host>")
    restart: Literal["no", "on-failure", "always"] = "no"
    start: Literal["auto", "manual"] = Field(
        "auto", description="manual: not started by `up`; start it later (`testbed start NAME`, Testbed.start)"
    )
    env: dict[str, str] = {}
    args: list[str] = Field([], description="extra command-line arguments")


class Registrar(ProcessBase):
    kind: Literal["registrar"]
    options: dict[str, str | int | float | bool] = {}


class PoolElement(ProcessBase):
    kind: Literal["pool-element"]
    handle: str = Field(min_length=1, max_length=255)
    policy: Literal[POLICIES] = "round-robin"  # type: ignore[valid-type]
    weight: int | None = Field(None, ge=0)
    service: Literal["echo", "calc", "discard", "forwarder"] = "echo"
    options: dict[str, str | int | float | bool] = {}


class Workload(Model):
    service: Literal["echo", "calc"] = "echo"
    rate: float = Field(1.0, gt=0, description="requests per second")
    size: int = Field(64, ge=1, le=65536, description="request size, bytes")


class PoolUser(ProcessBase):
    kind: Literal["pool-user"]
    handle: str = Field(min_length=1, max_length=255)
    workload: Workload = Workload()
    options: dict[str, str | int | float | bool] = {}



class Monitor(ProcessBase):
    kind: Literal["monitor"]
    port: int = Field(9100, ge=1, le=65535, description="HTTP API port inside its host")
    vnffg: str | None = Field(None, description="nested VNFFG (YAML or TOSCA); relative paths: to the repository")
    options: dict[str, str | int | float | bool] = {}


class Command(ProcessBase):
    kind: Literal["command"]
    command: str | list[str] = Field(description="a shell command line, or an argv list")


Process = Annotated[
    Registrar | PoolElement | PoolUser | Monitor | Command, Field(discriminator="kind")
]
PROCESS_KINDS = ("registrar", "pool-element", "pool-user", "monitor", "command")


class Service(ProcessBase):
    """A process the testbed adds itself for SFC (not written in a topology): a domain's
    Information Base Element (`ibe`, in its gateway), the platform (`sxp`) and the controller
    (`controller`), the last two in the root namespace."""

    kind: Literal["ibe", "sxp", "controller"]
    restart: Literal["no", "on-failure", "always"] = "on-failure"


# -- hosts, domains, links ----------------------------------------------------------------


class Interface(LinkParams):
    """A host's attachment to one network of its domain, with that link's shaping."""

    network: str
    address: ipaddress.IPv4Interface | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"network": value} if isinstance(value, str) else value


class Host(Model):
    interfaces: list[Interface] | None = Field(None, description="default: one per network")
    processes: list[Process] = []


class Network(Model):
    subnet: ipaddress.IPv4Network | None = None
    link: LinkParams | None = Field(None, description="shaping of every host link on this network")


class Domain(Model):
    subnet: ipaddress.IPv4Network | None = Field(None, description="default 10.<n>.0.0/16")
    networks: dict[str, Network] = Field(default_factory=lambda: {"a": Network()})
    hosts: dict[str, Host] = {}

    @field_validator("networks", mode="before")
    @classmethod
    def _network_list(cls, value: Any) -> Any:
        if isinstance(value, list):  # `networks: [a, b]`
            return {str(name): {} for name in value}
        return value


class DomainLink(LinkParams):
    between: tuple[str, str]
    subnet: ipaddress.IPv4Network | None = Field(None, description="default 10.255.<n>.0/30")


class SwitchOptions(Model):
    kind: Literal["ovs", "linux-bridge"] = "ovs"
    datapath: Literal["auto", "kernel", "user"] = Field(
        "auto", description="OVS datapath: kernel where the openvswitch module exists"
    )


class Controller(Model):
    """`os-ken`: the testbed runs the SFC steering application (`sdn.steering`) in the root
    namespace; `remote`: switches connect to a controller you run; `none`: standalone switches."""

    kind: Literal["none", "os-ken", "remote"] = "none"
    address: str = "127.0.0.1"
    port: int = Field(6653, ge=0, le=65535, description="OpenFlow port (0: a free one)")
    rest_port: int = Field(8080, ge=0, le=65535, description="os-ken: the REST view of chains (0: a free one)")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value


class ChainMatch(Model):
    """Which packets from the classifier to the destination enter the chain."""

    protocol: Literal["udp", "tcp"] = "udp"
    port: int = Field(5000, ge=1, le=65535, description="destination port")


class Chain(Model):
    """A service function chain: traffic from `classifier` to `destination` passes one instance
    of each function, in order (the functions are RSerPool pool handles)."""

    name: str = Field(pattern=NAME)
    classifier: str = Field(description="host that sends the chain's traffic (its switch classifies)")
    destination: str = Field(description="host the traffic is for")
    functions: list[str] = Field(min_length=1, max_length=32)
    match: ChainMatch = ChainMatch()


class Sfc(Model):
    """The SFC eXchange Platform (ALTO server and path computation), one Information Base
    Element per domain, and the chains the controller installs."""

    port: int = Field(8181, ge=0, le=65535, description="HTTP port of ALTO and the platform API on 127.0.0.1 (0: free)")
    auth: str | None = Field(None, pattern=r"^[^:]+:.+$", description="user:password for ALTO (HTTP Basic)")
    poll_interval: float = Field(1.0, gt=0, le=60, description="s between the platform's polls of the domains")
    probe_interval: float = Field(5.0, gt=0, le=600, description="s between delay probes of the domain links")
    metric: Literal["routingcost", "hopcount", "delay-ow"] = "routingcost"
    chains: list[Chain] = []


class Defaults(Model):
    link: LinkParams = LinkParams()


class Topology(Model):
    name: str = Field(pattern=NAME)
    description: str = ""
    switch: SwitchOptions = SwitchOptions()
    controller: Controller = Controller()
    defaults: Defaults = Defaults()
    domains: dict[str, Domain] = Field(min_length=1)
    links: list[DomainLink] = []
    sfc: Sfc | None = None

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> Topology:
        if not (info.context or {}).get("defer_references"):
            problems = reference_problems(self)
            if problems:
                raise ValueError("; ".join(f"{_path_text(p)}: {m}" for p, m in problems))
        return self

    def process_name(self, host: str, process: Any) -> str:
        return process.name or f"{process.kind}-{host}"


def reference_problems(topo: Topology) -> list[tuple[tuple[Any, ...], str]]:
    """Cross-references pydantic cannot see: names that must exist or be unique."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    owner: dict[str, str] = {}
    processes: dict[str, str] = {}
    for dname, domain in topo.domains.items():
        if not re.match(NAME, dname):
            problems.append((("domains", dname), f"a domain name must match {NAME}"))
        for hname, host in domain.hosts.items():
            where = ("domains", dname, "hosts", hname)
            if not re.match(NAME, hname):
                problems.append((where, f"a host name must match {NAME}"))
            if hname.lower().startswith("gw-"):
                problems.append((where, "host names gw-<domain> are reserved for domain gateways"))
            if hname in owner:
                problems.append((where, f"host {hname} is already in domain {owner[hname]}"))
            owner[hname] = dname
            for i, intf in enumerate(host.interfaces or []):
                if intf.network not in domain.networks:
                    problems.append(((*where, "interfaces", i), f"no network {intf.network!r} in domain "
                                     f"{dname} (it has: {', '.join(domain.networks)})"))
            for i, proc in enumerate(host.processes):
                name = topo.process_name(hname, proc)
                if name in processes:
                    problems.append(((*where, "processes", i), f"process name {name} is already used "
                                     f"on host {processes[name]}; give one a `name`"))
                processes[name] = hname
    problems += _sfc_problems(topo, owner)
    for i, link in enumerate(topo.links):
        for end in link.between:
            if end not in topo.domains:
                problems.append((("links", i, "between"), f"no domain {end!r} "
                                 f"(domains: {', '.join(topo.domains)})"))
        if link.between[0] == link.between[1]:
            problems.append((("links", i, "between"), "a domain link joins two different domains"))
    return problems


def _sfc_problems(topo: Topology, owner: dict[str, str]) -> list[tuple[tuple[Any, ...], str]]:
    problems: list[tuple[tuple[Any, ...], str]] = []
    if topo.sfc is None:
        return problems
    if topo.sfc.chains and topo.controller.kind != "os-ken":
        problems.append((("sfc", "chains"), "chains need `controller: os-ken` (the testbed's steering application)"))
    reserved = {"sxp", "controller", *(f"ibe-{d.lower()}" for d in topo.domains)}
    for dname, domain in topo.domains.items():
        for hname, host in domain.hosts.items():
            for i, proc in enumerate(host.processes):
                if topo.process_name(hname, proc) in reserved:
                    problems.append((("domains", dname, "hosts", hname, "processes", i),
                                     f"process name {topo.process_name(hname, proc)} is reserved for the SFC services"))
    names: set[str] = set()
    for i, chain in enumerate(topo.sfc.chains):
        where = ("sfc", "chains", i)
        if chain.name in names:
            problems.append(((*where, "name"), f"chain name {chain.name} is used twice"))
        names.add(chain.name)
        for end in ("classifier", "destination"):
            host = getattr(chain, end)
            if host not in owner:
                problems.append(((*where, end), f"no host {host!r}"))
        if chain.classifier == chain.destination:
            problems.append(((*where, "destination"), "the destination must differ from the classifier"))
    return problems


# -- loading with line numbers ------------------------------------------------------------


class _LineIndex:
    """Maps a path of keys and indexes in the document to the line it starts on."""

    def __init__(self) -> None:
        self.lines: dict[tuple[Any, ...], int] = {}

    def build(self, node: yaml.Node, path: tuple[Any, ...] = ()) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out = {}
            for key_node, value_node in node.value:
                key = yaml.safe_load(yaml.serialize(key_node))
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, (*path, key))
                self.lines[(*path, key)] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return yaml.safe_load(yaml.serialize(node))

    def line(self, path: tuple[Any, ...]) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


def _tag_processes(doc: Any) -> Any:
    """`- registrar: {...}` becomes `- {kind: registrar, ...}` before validation."""
    domains = doc.get("domains") if isinstance(doc, dict) else None
    for domain in (domains or {}).values() if isinstance(domains, dict) else ():
        hosts = domain.get("hosts") if isinstance(domain, dict) else None
        for host in (hosts or {}).values() if isinstance(hosts, dict) else ():
            procs = host.get("processes") if isinstance(host, dict) else None
            if isinstance(procs, list):
                host["processes"] = [_tag_one(p) for p in procs]
    return doc


def _tag_one(item: Any) -> Any:
    if isinstance(item, str):
        item = {item: {}}
    if isinstance(item, dict) and len(item) == 1:
        (kind, params), = item.items()
        if params is None:
            params = {}
        if kind == "command" and not isinstance(params, dict):
            params = {"command": params}
        if isinstance(params, dict):
            return {"kind": kind, **params}
    return item  # let pydantic say what is wrong with it


def _path_text(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def load(path: str | Path) -> Topology:
    """Read and validate a topology file; TopologyError lists every problem with its line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TopologyError([f"{path}: cannot read: {exc.strerror}"]) from None
    return parse(text, str(path))


def parse(text: str, source: str = "<topology>") -> Topology:
    index = _LineIndex()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise TopologyError([f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if node is None or not isinstance(node, yaml.MappingNode):
        raise TopologyError([f"{source}:1: a topology is a mapping with at least `name` and `domains`"])
    doc = _tag_processes(index.build(node))
    try:
        topo = Topology.model_validate(doc, context={"defer_references": True})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = index.line(loc)
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "union_tag_invalid":
                message = f"unknown process kind; expected one of: {', '.join(PROCESS_KINDS)}"
            elif err["type"] == "extra_forbidden":
                message = "unknown field"
            problems.append(f"{source}:{line}: {_path_text(loc)}: {message}")
        raise TopologyError(problems) from None
    problems = reference_problems(topo)
    if problems:
        raise TopologyError([f"{source}:{index.line(p)}: {_path_text(p)}: {m}" for p, m in problems])
    return topo
