"""TOSCA NFV descriptors as Datalog facts: the draft's node(id, type), sub, vbind, vlink, paths.

draft-cai-nfvrg-recursive-monitor-03 (section 4) proposes keywords for the TOSCA Simple Profile
for NFV 1.0; this module reads such descriptors and produces them, so that the recursive rules
of section 7 run on a TOSCA-described service as on the plain YAML of `monitor.vnffg`.

**Input**: one YAML stream of service templates, one per document (`---`), each a normal TOSCA
service template (`tosca_definitions_version`, `metadata.template_name`, `node_types`,
`topology_template` with `node_templates` and an optional `substitution_mappings`).  A node whose
type is some template's `substitution_mappings.node_type` is *implemented by* that template
(nesting); the one template that implements no node is the network service (the NSD).  Node
types declared in any document are visible in all (as if imported); a declared type must derive
(`derived_from`) from a normative one: tosca.nodes.nfv.VNF, PNF, VDU, CP, VL (and VL.ELine,
VL.ELAN, VL.ETree) or FP.  `monitor/examples/figure1-tosca.yaml` is the draft's Figure 1.

**Facts**:

* `node(id, type)` for every node template, `type` the normative type it derives from (so that
  a query tests `node(Y, 'tosca.nodes.nfv.VDU')` without knowing vendor types);
* `sub(x, y)` for every VNF, PNF or VDU node y of the template implementing x.  The draft's
  example also writes `sub(vnf1, cp11)`; that is what `facts(connectivity=True)` adds (CPs, VLs
  and FPs of the template too).  It is not the default because R3 (`leaf(X, Y) <= child(X, Y),
  ~sub(Y, Z)`) would then return CPs and VLs as leaves, and max_cpu would ask a CP for its CPU;
  by default `sub` gives the same leaves as the plain YAML;
* `vbind(x, y)`: CP y's `virtualBinding` requirement names x (a VDU, or a nested VNF whose
  interface the CP is);  `vlink(x, y)`: CP y's `virtualLink` requirement names VL x;
* `forwarding_path(fp, i, cp)`: the i-th (from 1) `forwarder` requirement of FP node fp names
  cp.  Datalog relations have one arity, so the draft's variadic `forwarding path(p1, ..., pn)`
  becomes n facts, one per position; `forwarding_path(P, I, A), forwarding_path(P, J, B), J ==
  fn_add(I, 1)` is a hop, and the path's identity is the FP node (an FP may list its CPs in
  any template: a network-service path crosses its VNFs' CPs, as in the NFV profile's example);
* `link(a, b)` derived along every forwarding path: for consecutive CPs c_i, c_i+1 bound
  (vbind) to a and b, a != b, the link a -> b, once however many paths take it.  Two CPs of one
  element in a row are a traversal of that element (its ingress then egress), not a link.

Node names are global (the facts have no scope): a name defined twice is an error, and hence a
template implements one node.  The checks name the file, line, template and path, as
`monitor.vnffg` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from monitor.ast import Atom, Const, Fact
from monitor.vnffg import Document, Name, Problem, Vnffg, VnffgError, parse_vnffg
from monitor.vnffg import path_text, paused_gc, pydantic_problems, read_documents, source_text

NFV = "tosca.nodes.nfv."
VNF, PNF, VDU, CP, VL, FP = (NFV + k for k in ("VNF", "PNF", "VDU", "CP", "VL", "FP"))
NORMATIVE = {VNF: VNF, PNF: PNF, VDU: VDU, CP: CP, VL: VL, FP: FP,
             VL + ".ELine": VL, VL + ".ELAN": VL, VL + ".ETree": VL}  # fmt: skip
"""Each normative node type and the base type its nodes are given in `node(id, type)`."""
COMPOSITION = (VNF, PNF, VDU)  # what `sub` relates by default: functions and their compute
VERSIONS = ("tosca_simple_profile_for_nfv_1_0_0", "tosca_simple_yaml_1_0", "tosca_simple_yaml_1_1",
            "tosca_simple_yaml_1_2", "tosca_simple_yaml_1_3")  # fmt: skip
REQUIREMENTS = {CP: ("virtualBinding", "virtualLink"), FP: ("forwarder",)}
NODE_TEMPLATES = ("topology_template", "node_templates")


class ToscaError(VnffgError):
    """Descriptors that cannot be used; `str()` names file, line, template and path."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeType(_Model):
    model_config = ConfigDict(extra="allow", frozen=True)  # properties, capabilities, ...: not read
    derived_from: str


class SubstitutionMappings(_Model):
    node_type: str
    properties: dict[str, Any] = {}
    requirements: dict[str, Any] = {}
    capabilities: dict[str, Any] = {}


class Requirement(_Model):
    """`- virtualLink: VL1`, or the extended `- virtualLink: {node: VL1, relationship: ...}`."""

    name: str
    node: Name
    capability: str | None = None
    relationship: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, value: Any) -> Any:
        if not (isinstance(value, dict) and len(value) == 1):
            raise ValueError("a requirement is a one-key mapping, such as `- virtualLink: VL1`")
        (name, target), = value.items()
        return {"name": name, **target} if isinstance(target, dict) else {"name": name, "node": target}


class NodeTemplate(_Model):
    type: str
    description: str = ""
    metadata: dict[str, Any] = {}
    directives: list[str] = []
    properties: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    capabilities: dict[str, Any] = {}
    interfaces: dict[str, Any] = {}
    artifacts: dict[str, Any] = {}
    requirements: list[Requirement] = []


class TopologyTemplate(_Model):
    description: str = ""
    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    substitution_mappings: SubstitutionMappings | None = None
    node_templates: dict[Name, NodeTemplate] = Field(min_length=1)
    groups: dict[str, Any] = {}
    policies: Any = None


class ServiceTemplate(_Model):
    tosca_definitions_version: Literal[VERSIONS]  # type: ignore[valid-type]
    description: str = ""
    metadata: dict[str, Any] = {}
    imports: list[Any] = []
    node_types: dict[str, NodeType] = {}
    topology_template: TopologyTemplate


@dataclass(frozen=True)
class Node:
    name: str
    type: str  #: as declared
    base: str  #: the normative type it derives from (NORMATIVE's values)
    template: str
    spec: NodeTemplate


@dataclass(frozen=True)
class Template:
    name: str
    index: int  #: its document's position in the stream
    spec: ServiceTemplate


class _Checker:
    """Builds the service from validated templates, collecting every problem on the way."""

    def __init__(self, docs: list[Document], specs: list[ServiceTemplate]):
        self.docs = docs
        self.problems: list[tuple[int, Problem]] = []  # (document index, problem)
        self.templates = self._templates(specs)
        self.bases = self._types()
        self.nodes = self._nodes()
        self.implementation = self._substitutions()
        self.root = self._root()
        for node in self.nodes.values():
            self._requirements(node)

    def problem(self, index: int, path: tuple[Any, ...], message: str) -> None:
        self.problems.append((index, (path, message)))

    def _templates(self, specs: list[ServiceTemplate]) -> dict[str, Template]:
        out: dict[str, Template] = {}
        for i, spec in enumerate(specs):
            name = str(spec.metadata.get("template_name") or f"document-{i + 1}")
            if name in out:
                self.problem(i, ("metadata", "template_name"), f"template {name} is defined twice")
            out.setdefault(name, Template(name, i, spec))
        return out

    def _types(self) -> dict[str, str]:
        """Every declared or normative type -> its normative base type."""
        declared: dict[str, tuple[str, Template]] = {}
        for t in self.templates.values():
            for name, ntype in t.spec.node_types.items():
                if name in NORMATIVE or name in declared:
                    self.problem(t.index, ("node_types", name), f"node type {name} is already defined")
                    continue
                declared[name] = (ntype.derived_from, t)
        bases = dict(NORMATIVE)
        for name, (parent, t) in declared.items():
            seen = [name]
            while parent in declared and parent not in seen:
                seen.append(parent)
                parent = declared[parent][0]
            if parent in NORMATIVE:
                bases[name] = NORMATIVE[parent]
            else:
                why = "derives from itself" if parent in seen else f"derives from unknown type {parent!r}"
                self.problem(t.index, ("node_types", name, "derived_from"),
                             f"{name} {why}: a type must derive from a tosca.nodes.nfv type")
        return bases

    def _nodes(self) -> dict[str, Node]:
        nodes: dict[str, Node] = {}
        for t in self.templates.values():
            for name, spec in t.spec.topology_template.node_templates.items():
                where = (*NODE_TEMPLATES, name)
                if name in nodes:
                    first = self.templates[nodes[name].template]
                    self.problem(t.index, where, f"node {name} is already defined in template {first.name} "
                                 f"(line {self._line(first.index, (*NODE_TEMPLATES, name))}); names are global")
                elif spec.type not in self.bases:
                    self.problem(t.index, (*where, "type"), f"unknown type {spec.type!r}: declare it in "
                                 "node_types, derived from a tosca.nodes.nfv type")
                else:
                    nodes[name] = Node(name, spec.type, self.bases[spec.type], t.name, spec)
        return nodes

    def _substitutions(self) -> dict[str, str]:
        """node -> the template implementing it."""
        by_type = {}
        for t in self.templates.values():
            mapping = t.spec.topology_template.substitution_mappings
            if mapping is None:
                continue
            where = ("topology_template", "substitution_mappings", "node_type")
            if mapping.node_type in by_type:
                self.problem(t.index, where, f"type {mapping.node_type} is already implemented by "
                                             f"template {by_type[mapping.node_type]}")
            elif self.bases.get(mapping.node_type) not in (VNF, PNF):
                self.problem(t.index, where, f"{mapping.node_type!r} is not a VNF type: only VNFs "
                                             "are implemented by templates")
            else:
                by_type[mapping.node_type] = t.name
        implementation: dict[str, str] = {}
        users: dict[str, str] = {}
        for node in self.nodes.values():
            template = by_type.get(node.type)
            if template is None:
                continue
            if template in users:
                self.problem(self.templates[node.template].index, (*NODE_TEMPLATES, node.name, "type"),
                             f"template {template} already implements node {users[template]}; names are "
                             "global, so a template implements one node")
                continue
            users[template] = node.name
            implementation[node.name] = template
        return implementation

    def _root(self) -> str:
        """The network service: the one template implementing no node; nesting must be acyclic."""
        parent = {t: self.nodes[n].template for n, t in self.implementation.items()}
        roots = [t for t in self.templates if t not in parent]
        reported: set[str] = set()
        for t in self.templates.values():
            seen, x = [t.name], parent.get(t.name)  # t, the template holding t's node, ...
            while x is not None and x not in seen:
                seen.append(x)
                x = parent.get(x)
            if x == t.name and t.name not in reported:
                reported.update(seen)
                self.problem(t.index, ("topology_template", "substitution_mappings"), "templates implement "
                             "each other: " + " -> ".join([t.name, *seen[:0:-1], t.name]))
        if len(roots) > 1 and not self.problems:  # else likely a consequence (a node's bad type)
            self.problem(self.templates[roots[1]].index, (), f"templates {', '.join(roots)} implement no "
                         "node: only one, the network service, may be at the top")
        return roots[0] if roots else ""

    def _requirements(self, node: Node) -> None:
        index = self.templates[node.template].index
        allowed = REQUIREMENTS.get(node.base)
        seen: set[str] = set()
        for i, req in enumerate(node.spec.requirements):
            where = (*NODE_TEMPLATES, node.name, "requirements", i)
            target = self.nodes.get(req.node)
            if allowed is not None and req.name not in allowed:
                self.problem(index, where, f"a {node.base.removeprefix(NFV)} has requirements "
                                           f"{' and '.join(allowed)}, not {req.name!r}")
            elif target is None or (req.name != "forwarder" and target.template != node.template):
                self.problem(index, where, f"no node {req.node!r} in "
                             + ("any template" if req.name == "forwarder" else f"template {node.template}"))
            elif req.name in seen and node.base == CP:
                self.problem(index, where, f"a CP has one {req.name}")
            else:
                self._target_kind(index, where, req, target)
            seen.add(req.name)
        if node.base == FP and not node.spec.requirements:
            self.problem(index, (*NODE_TEMPLATES, node.name), "a forwarding path lists its CPs as "
                                                              "`forwarder` requirements")

    def _target_kind(self, index: int, where: tuple[Any, ...], req: Requirement, target: Node) -> None:
        wanted = {"virtualBinding": COMPOSITION, "virtualLink": (VL,), "forwarder": (CP,)}.get(req.name)
        if wanted and target.base not in wanted:
            self.problem(index, where, f"{req.name} names {target.name}, a {target.base.removeprefix(NFV)};"
                         f" expected a {' or '.join(w.removeprefix(NFV) for w in wanted)}")

    def _line(self, index: int, path: tuple[Any, ...]) -> int:
        return self.docs[index].line(path)


class ToscaService:
    """A checked set of NFV service templates and what the monitor reads from it."""

    def __init__(self, docs: list[Document], checker: _Checker):
        self.docs, self.templates, self.nodes = docs, checker.templates, checker.nodes
        self.implementation, self.root = checker.implementation, checker.root
        self.binding = {cp: r.node for cp, n in self.nodes.items() if n.base == CP
                        for r in n.spec.requirements if r.name == "virtualBinding"}  # fmt: skip
        self.paths = {fp: tuple(r.node for r in n.spec.requirements)
                      for fp, n in self.nodes.items() if n.base == FP}  # fmt: skip
        self.graph = self._vnffg()

    def members(self, node: str, connectivity: bool = False) -> tuple[str, ...]:
        """The nodes `sub(node, y)` relates it to: those of the template implementing it."""
        template = self.implementation.get(node)
        if template is None:
            return ()
        names = self.templates[template].spec.topology_template.node_templates
        return tuple(n for n in names if connectivity or self.nodes[n].base in COMPOSITION)

    def links(self) -> list[tuple[str, str]]:
        """link(a, b) along the forwarding paths: a and b bound to consecutive CPs, a != b."""
        return list(self._hops())

    def _hops(self) -> dict[tuple[str, str], tuple[str, int]]:
        """Each derived link -> the FP and requirement index of its first hop."""
        out: dict[tuple[str, str], tuple[str, int]] = {}
        for fp, cps in self.paths.items():
            for i, (x, y) in enumerate(zip(cps, cps[1:]), start=1):
                a, b = self.binding[x], self.binding[y]
                if a != b:
                    out.setdefault((a, b), (fp, i))
        return out

    def facts(self, connectivity: bool = False) -> list[Fact]:
        """node/2, sub, vbind, vlink, forwarding_path and link facts (see the module's text)."""
        with paused_gc():
            return self._facts(connectivity)

    def _facts(self, connectivity: bool) -> list[Fact]:
        c = {name: Const(name) for name in self.nodes}

        def fact(predicate: str, *args: Const, path: tuple[Any, ...] = (), node: str = "") -> Fact:
            doc = self.docs[self.templates[self.nodes[node].template].index] if node else None
            return Fact(Atom(predicate, args), None, doc.position((*NODE_TEMPLATES, node, *path)) if doc else None)

        out = [fact("node", c[n], Const(v.base), node=n) for n, v in self.nodes.items()]
        out += [fact("sub", c[n], c[m], node=m) for n in self.implementation for m in self.members(n, connectivity)]
        for n, v in self.nodes.items():
            for i, r in enumerate(v.spec.requirements if v.base == CP else ()):
                predicate = {"virtualBinding": "vbind", "virtualLink": "vlink"}[r.name]
                out.append(fact(predicate, c[r.node], c[n], path=("requirements", i), node=n))
        for fp, cps in self.paths.items():
            out += [fact("forwarding_path", c[fp], Const(i), c[cp], path=("requirements", i - 1), node=fp)
                    for i, cp in enumerate(cps, start=1)]  # fmt: skip
        return out + [fact("link", c[a], c[b], path=("requirements", i), node=fp)
                      for (a, b), (fp, i) in self._hops().items()]  # fmt: skip

    def _vnffg(self) -> Vnffg:
        """The composition (VNF, PNF, VDU nodes) and derived links as a plain `Vnffg`."""
        top = self.templates[self.root].spec.topology_template.node_templates if self.root else {}
        members = {n: self.members(n) for n, v in self.nodes.items() if v.base in COMPOSITION}
        service = tuple(n for n in top if n in members)
        return Vnffg(self.root or "tosca", service, members, tuple(self.links()))

    def leaves(self, element: str) -> tuple[str, ...]:
        return self.graph.leaves(element)

    def host_of(self, leaf: str) -> str:
        return self.graph.host_of(leaf)


def _unbound_forwarders(checker: _Checker) -> None:
    """A path's CP must be bound to an element, or its links cannot be derived."""
    bound = {n for n, v in checker.nodes.items() if v.base == CP
             and any(r.name == "virtualBinding" for r in v.spec.requirements)}  # fmt: skip
    for node in checker.nodes.values():
        for i, req in enumerate(node.spec.requirements if node.base == FP else ()):
            if req.node in checker.nodes and checker.nodes[req.node].base == CP and req.node not in bound:
                checker.problem(checker.templates[node.template].index,
                                (*NODE_TEMPLATES, node.name, "requirements", i),
                                f"{req.node} has no virtualBinding: no element to link from or to")


def parse_tosca(text: str, source: str = "<tosca>") -> ToscaService:
    docs, messages = read_documents(text, source)
    docs = [d for d in docs if d.data is not None]  # an empty document after a final `---`
    specs: list[ServiceTemplate] = []
    for i, doc in enumerate(docs):
        try:
            specs.append(ServiceTemplate.model_validate(doc.data))
        except ValidationError as exc:
            messages += [f"{source}:{doc.line(p)}: document {i + 1}: {path_text(p)}: {m}"
                         for p, m in pydantic_problems(exc)]  # fmt: skip
    if not docs and not messages:
        messages.append(f"{source}:1: no service template")
    if messages:
        raise ToscaError(messages)
    checker = _Checker(docs, specs)
    if not checker.problems:
        _unbound_forwarders(checker)
    if checker.problems:
        names = {t.index: t.name for t in checker.templates.values()}
        raise ToscaError([f"{source}:{docs[i].line(p)}: {names.get(i, i + 1)}: {path_text(p)}: {m}"
                          for i, (p, m) in checker.problems])  # fmt: skip
    return ToscaService(docs, checker)


def load_tosca(source: str | Path) -> ToscaService:
    """Read and check TOSCA NFV service templates (a path, or YAML text with a newline in it)."""
    text, name = source_text(source)
    return parse_tosca(text, name)


def load_any(source: str | Path) -> Vnffg | ToscaService:
    """Either format, told apart by `tosca_definitions_version`; both have facts(), leaves(),
    host_of()."""
    text, name = source_text(source)
    if re.search(r"^tosca_definitions_version\s*:", text, re.MULTILINE):
        return parse_tosca(text, name)
    return parse_vnffg(text, name)


__all__ = ["ToscaError", "ToscaService", "load_any", "load_tosca", "parse_tosca"]
