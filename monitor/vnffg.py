"""Nested VNF forwarding graphs (VNFFGs) and their Datalog facts: the draft's `node`, `sub`, `link`.

The recursive monitor needs the VNFFG as ground facts (draft-cai-nfvrg-recursive-monitor-03,
section 4): `sub(x, y)`, y is in the direct sub-layer of x; `link(x, y)`, a direct link from x to
y; `node(z)`.  This module reads a YAML description of such a graph, checks it and produces those
facts (`Vnffg.facts()`), plus what the monitor needs besides the rules: the leaves of an element
and the testbed host that measures each leaf.  `monitor/examples/figure1.yaml` is Figure 1:

    name: figure1
    service: [NF1, NF2]          # the service graph's functions (optional: the elements with no parent)
    elements:                    # EVERY element once, with its direct sub-layer members in order
      NF1: [VNF1-1, VNF1-2]
      vm1: []                    # a leaf: no members ([] or nothing after the colon)
    links:                       # directed: [a, b] is link(a, b), a -> b in the forwarding direction
      - [NF1, NF2]
    hosts: {vm1: vm1}            # optional: leaf -> testbed host measuring it (default: its name)

Decisions, and why:

* Leaves are declared (`vm1: []`), not implied by being members, so that a misspelt member is an
  error ("unknown element 'vm11'"), not a silent new leaf.
* Membership is a *tree* (a forest rooted at the service functions), not a DAG: the draft builds
  "a multi-rooted tree", and a shared element would put one VM in two functions (a mean CPU would
  weigh it twice, one leaf could be the ingress of both ends of an e2e query).  A VM really
  shared by two VNFs is two instances: give them two names.
* Links are directed and may join any two elements: F2 has `link(VNF1-3, vm1)` (across layers)
  and `link(vm3, vm4)` (across NF1 and NF2), and R4/R5 read the direction.
* Names are the query language's identifiers (`VNF1-1`, `vm_1`; `monitor/grammar.lark`, IDENT),
  so that every fact can be written back as text and named in a query.
* Errors name file, line and path (`figure1.yaml:7: elements.NF1[2]: unknown element 'vm99'`),
  like the topology files' (`testbed.schema`), all problems at once.

`generate()` builds large synthetic graphs (benchmarks of 10^3..10^5 elements) directly, without
YAML or checks; `Vnffg.problems()` runs the checks when a test wants them.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from monitor.ast import Atom, Const, Fact, Position

NAME = r"^[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*$"
"""An element name: an identifier of the query language (`monitor/grammar.lark`, IDENT)."""

Problem = tuple[tuple[Any, ...], str]  # (path in the document, message)


class VnffgError(ValueError):
    """A VNFFG description that cannot be used; `str()` lists every problem with file and line."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


# -- YAML with positions (shared with monitor.tosca) ---------------------------------------


@dataclass
class Document:
    """One YAML document as plain data, and where each path of keys and indexes starts."""

    data: Any
    marks: dict[tuple[Any, ...], tuple[int, int]] = field(default_factory=dict)

    def line(self, path: tuple[Any, ...]) -> int:
        """The line of `path`, or of its nearest enclosing path that has one."""
        while path and path not in self.marks:
            path = path[:-1]
        return self.marks.get(path, (1, 1))[0]

    def position(self, path: tuple[Any, ...]) -> Position | None:
        mark = self.marks.get(path)
        return Position(*mark) if mark else None


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where present: 100k-node files
_STR = "tag:yaml.org,2002:str"


class _Builder:
    """Turns composed nodes into data, recording marks and refusing duplicate keys (PyYAML would
    keep the last silently: a second `vm1:` would replace the first)."""

    def __init__(self, doc: Document):
        self.doc = doc
        self.problems: list[str] = []  # "line: path: message"
        self.scalars = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: tuple[Any, ...] = ()) -> Any:
        self.doc.marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.scalar(key_node)
                key = key if isinstance(key, str | int | float | bool) or key is None else str(key)
                where = (*path, key)
                if key in out:
                    self.problems.append(f"{key_node.start_mark.line + 1}: {path_text(where)}: {key!r} is "
                                         f"given twice (first on line {self.doc.marks[where][0]})")
                    continue
                self.doc.marks[where] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = self.build(value_node, where)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.scalar(node)

    def scalar(self, node: yaml.Node) -> Any:
        if node.tag == _STR:  # most of them: no need for the constructor's machinery
            return node.value
        return self.scalars.construct_object(node, deep=True)


def read_documents(text: str, source: str) -> tuple[list[Document], list[str]]:
    """Every document of a YAML stream with its marks; problems as "source:line: message"."""
    try:
        with paused_gc():
            nodes = list(yaml.compose_all(text, Loader=_LOADER))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        return [], [f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}"]
    docs, messages = [], []
    for node in nodes:
        doc = Document(None)
        builder = _Builder(doc)
        with paused_gc():
            doc.data = builder.build(node)
        docs.append(doc)
        messages += [f"{source}:{problem}" for problem in builder.problems]
    return docs, messages


def path_text(loc: tuple[Any, ...]) -> str:
    """`('elements', 'NF1', 2)` -> `elements.NF1[2]`, as in testbed.schema's messages."""
    text = ""
    for part in loc:
        if part == "[key]":
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def pydantic_problems(exc: ValidationError) -> list[Problem]:
    """pydantic's errors as (path, message), in words a YAML author reads."""
    problems = []
    for err in exc.errors():
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "string_pattern_mismatch":
            message = (f"{err['input']!r} is not a name (letters, digits and '_', with single "
                       "hyphens inside, as in VNF1-1)")
        problems.append((tuple(err["loc"]), message))
    return problems


def source_text(source: str | Path) -> tuple[str, str]:
    """(text, name for messages): a Path or a one-line string is a file, else YAML text."""
    if isinstance(source, str) and "\n" in source:
        return source, "<vnffg>"
    try:
        return Path(source).read_text(), str(source)
    except OSError as exc:
        raise VnffgError([f"{source}: cannot read: {exc.strerror}"]) from None


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while building many objects that form no cycles: the
    collector's passes over a growing heap were a third of the time of 300,000 facts."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- the model ----------------------------------------------------------------------------

Name = Annotated[str, StringConstraints(pattern=NAME, max_length=128)]
Members = Annotated[list[Name], BeforeValidator(lambda v: [] if v is None else v)]


class Spec(BaseModel):
    """The YAML file's shape; references between names are checked by `structure_problems`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    description: str = ""
    service: list[Name] | None = Field(None, description="default: the elements with no parent")
    elements: dict[Name, Members] = Field(min_length=1)
    links: list[tuple[Name, Name]] = []
    hosts: dict[Name, Name] = {}


def _hint(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=1) if len(known) < 5000 else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _membership(elements: dict[str, Any]) -> tuple[dict[str, str], list[Problem]]:
    """Each element's parent; unknown, repeated and second-parent members are problems."""
    parent: dict[str, str] = {}
    problems: list[Problem] = []
    for owner, members in elements.items():
        seen: set[str] = set()
        for i, member in enumerate(members or ()):
            where = ("elements", owner, i)
            if member not in elements:
                problems.append((where, f"unknown element {member!r}{_hint(member, elements)}"))
            elif member in seen:
                problems.append((where, f"{member} is listed twice in {owner}"))
            elif member in parent:
                problems.append((where, f"{member} is already a member of {parent[member]}: an element "
                                        "has one parent (the VNFFG is a tree)"))
            else:
                parent[member] = owner
            seen.add(member)
    return parent, problems


def _cycles(elements: dict[str, Any], parent: dict[str, str]) -> list[Problem]:
    """Membership cycles, found by walking up the parent links once per element."""
    state: dict[str, int] = {}  # 1: on the walk in progress, 2: done
    problems: list[Problem] = []
    for start in elements:
        walk, x = [], start
        while x is not None and x not in state:
            state[x] = 1
            walk.append(x)
            x = parent.get(x)
        if x is not None and state[x] == 1:
            ring = walk[walk.index(x):][::-1]  # each contains the next ...
            ring = ring[-1:] + ring[:-1]  # ... from x, so that the last closes the cycle
            where = ("elements", ring[-1], list(elements[ring[-1]]).index(ring[0]))
            problems.append((where, "membership cycle: " + " -> ".join([*ring, ring[0]])
                             + " (each contains the next)"))
        for y in walk:
            state[y] = 2
    return problems


def _service(service: list[str] | None, elements: dict[str, Any], parent: dict[str, str]) -> list[Problem]:
    if service is None:
        return []
    problems: list[Problem] = []
    for i, name in enumerate(service):
        if name not in elements:
            problems.append((("service", i), f"unknown element {name!r}{_hint(name, elements)}"))
        elif name in parent:
            problems.append((("service", i), f"{name} is a member of {parent[name]}; the service "
                                             "lists the top layer only"))
        elif name in service[:i]:
            problems.append((("service", i), f"{name} is listed twice"))
    for name in elements:
        if name not in parent and name not in service:
            problems.append((("elements", name), f"{name} is neither in the service nor a member of "
                                                 "any element"))
    return problems


def _links_and_hosts(links: list, hosts: dict, elements: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for i, (a, b) in enumerate(links):
        for end, name in enumerate((a, b)):
            if name not in elements:
                problems.append((("links", i, end), f"unknown element {name!r}{_hint(name, elements)}"))
        if a == b:
            problems.append((("links", i), f"a link joins two elements ({a} to itself)"))
        elif (a, b) in seen:
            problems.append((("links", i), f"link {a} -> {b} is listed twice"))
        seen.add((a, b))
    for leaf in hosts:
        if leaf not in elements:
            problems.append((("hosts", leaf), f"unknown element {leaf!r}{_hint(leaf, elements)}"))
        elif elements[leaf]:
            problems.append((("hosts", leaf), f"{leaf} is not a leaf (members: "
                                              f"{', '.join(elements[leaf])}); only leaves are measured"))
    return problems


def structure_problems(service: list[str] | None, elements: dict[str, Any], links: list,
                       hosts: dict) -> list[Problem]:  # fmt: skip
    """Every reference problem of a graph given as plain data (from YAML, TOSCA or generate)."""
    parent, problems = _membership(elements)
    problems += _cycles(elements, parent)
    problems += _service(service, elements, parent)
    return problems + _links_and_hosts(links, hosts, elements)


@dataclass(frozen=True, eq=False)
class Vnffg:
    """A checked nested VNFFG: every element with its members in order (`()` for a leaf)."""

    name: str
    service: tuple[str, ...]
    members: dict[str, tuple[str, ...]]
    links: tuple[tuple[str, str], ...] = ()
    hosts: dict[str, str] = field(default_factory=dict)
    doc: Document | None = field(default=None, repr=False)  # where facts came from, if a file
    parents: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parents", {c: p for p, cs in self.members.items() for c in cs})

    def is_leaf(self, element: str) -> bool:
        return not self.members[element]

    def leaves(self, element: str) -> tuple[str, ...]:
        """The leaf descendants of `element`, depth first in member order.  Like the draft's R3
        (`leaf(X, Y) <= child(X, Y), ~sub(Y, Z)`), a leaf has no leaves of its own."""
        return _leaves(self.members, self._known(element))

    def _known(self, element: str) -> str:
        if element not in self.members:
            raise KeyError(f"no element {element!r} in VNFFG {self.name}")
        return element

    def host_of(self, leaf: str) -> str:
        """The testbed host that measures `leaf`: from `hosts`, else the leaf's own name."""
        if self.members[self._known(leaf)]:
            raise ValueError(f"{leaf} is not a leaf: its metrics are its leaves' ({', '.join(self.leaves(leaf))})")
        return self.hosts.get(leaf, leaf)

    def facts(self) -> list[Fact]:
        """node(x) for every element, sub(parent, child) for every membership, link(a, b) for
        every link; each with its YAML position when the graph came from a file."""
        with paused_gc():
            return self._facts()

    def _facts(self) -> list[Fact]:
        const = {name: Const(name) for name in self.members}  # one Const per name, shared
        pos = self.doc.position if self.doc else (lambda _path: None)
        out = [Fact(Atom("node", (const[x],)), None, pos(("elements", x))) for x in self.members]
        out += [Fact(Atom("sub", (const[p], const[c])), None, pos(("elements", p, i)))
                for p, cs in self.members.items() for i, c in enumerate(cs)]  # fmt: skip
        out += [Fact(Atom("link", (const[a], const[b])), None, pos(("links", i)))
                for i, (a, b) in enumerate(self.links)]  # fmt: skip
        return out

    def problems(self) -> list[str]:
        """What `load_vnffg` would refuse in this graph (for graphs built in code)."""
        found = structure_problems(list(self.service), self.members, list(self.links), self.hosts)
        return [f"{path_text(p)}: {m}" for p, m in found]

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (`yaml.safe_dump(g.to_dict())` writes a file `load_vnffg` reads)."""
        return {"name": self.name, "service": list(self.service),
                "elements": {k: list(v) for k, v in self.members.items()},
                "links": [list(link) for link in self.links], "hosts": dict(self.hosts)}  # fmt: skip


def _leaves(members: dict[str, tuple[str, ...]], element: str) -> tuple[str, ...]:
    out: list[str] = []
    stack = list(reversed(members[element]))
    while stack:
        x = stack.pop()
        if members[x]:
            stack.extend(reversed(members[x]))
        else:
            out.append(x)
    return tuple(out)


def load_vnffg(source: str | Path) -> Vnffg:
    """Read and check a VNFFG description (a path, or YAML text with a newline in it)."""
    text, name = source_text(source)
    return parse_vnffg(text, name)


def parse_vnffg(text: str, source: str = "<vnffg>") -> Vnffg:
    docs, messages = read_documents(text, source)
    if messages:
        raise VnffgError(messages)
    if docs and isinstance(docs[0].data, dict) and "tosca_definitions_version" in docs[0].data:
        raise VnffgError([f"{source}:1: a TOSCA service template: read it with monitor.tosca.load_tosca, "
                          "or monitor.tosca.load_any for either format"])  # fmt: skip
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        raise VnffgError([f"{source}:1: a VNFFG is one mapping with at least `name` and `elements`"])
    doc = docs[0]
    try:
        spec = Spec.model_validate(doc.data)
    except ValidationError as exc:
        raise VnffgError([f"{source}:{doc.line(p)}: {path_text(p)}: {m}"
                          for p, m in pydantic_problems(exc)]) from None  # fmt: skip
    found = structure_problems(spec.service, spec.elements, spec.links, spec.hosts)
    if found:
        raise VnffgError([f"{source}:{doc.line(p)}: {path_text(p)}: {m}" for p, m in found])
    members = {k: tuple(v) for k, v in spec.elements.items()}
    roots = tuple(spec.service) if spec.service is not None else tuple(
        x for x in members if x not in {c for cs in members.values() for c in cs})
    return Vnffg(spec.name, roots, members, tuple(spec.links), dict(spec.hosts), doc)


# -- synthetic graphs ---------------------------------------------------------------------


def _grow(n_nodes: int, fanout: int, depth: int, rng: random.Random, p_leaf: float) -> list[list[int]]:
    """Children lists of exactly `n_nodes` ids, breadth first; ids of level 0 are the network
    functions.  A function gets a new sibling only when the previous ones cannot grow deeper."""
    children: list[list[int]] = []
    level: list[int] = []
    queue: deque[int] = deque()

    def new(lv: int) -> int:
        children.append([])
        level.append(lv)
        if lv < depth - 1 and (lv == 0 or rng.random() >= p_leaf):
            queue.append(len(level) - 1)
        return len(level) - 1

    # one function's mean size: 1 + f + f.f(1-p) + ... (below the top, a member grows with 1-p)
    size = 1 + sum(fanout * (fanout * (1 - p_leaf)) ** (k - 1) for k in range(1, depth))
    for _ in range(min(n_nodes, max(1, round(n_nodes / size)))):
        new(0)
    while len(level) < n_nodes:
        if not queue:
            new(0)
            continue
        x = queue.popleft()
        k = min(rng.randint(1, 2 * fanout - 1), n_nodes - len(level))
        children[x] = [new(level[x] + 1) for _ in range(k)]
    return children


def _names(children: list[list[int]], roots: list[int]) -> list[str]:
    """NF<i> for the functions, VNF<i>-<j>-... for nested elements, vm<k> for the other leaves."""
    names = [""] * len(children)
    paths = [""] * len(children)
    leaves = 0
    for i, r in enumerate(roots, start=1):
        paths[r], names[r] = str(i), f"NF{i}"
    for x in range(len(children)):  # ids are breadth first: a parent precedes its children
        for j, c in enumerate(children[x], start=1):
            paths[c] = f"{paths[x]}-{j}"
            if children[c]:
                names[c] = f"VNF{paths[c]}"
            else:
                leaves += 1
                names[c] = f"vm{leaves}"
    return names


def generate(n_nodes: int, fanout: int = 4, depth: int = 4, seed: int = 0, p_leaf: float = 0.25) -> Vnffg:
    """A synthetic nested VNFFG of exactly `n_nodes` elements, deterministic for a seed.

    Network functions NF1..NFm (m chosen so that `n_nodes` fill trees of `depth` layers) have
    on average `fanout` members each (uniform 1..2*fanout-1); below the top a member stays a
    leaf with probability `p_leaf` even above the last layer, as VNF1-1 holds both VNF1-3 and
    vm1 in Figure 1.  Links: NF1 -> NF2 -> ... -> NFm, and within each function its leaves in
    depth-first order, one after the other (so each function has exactly one ingress leaf, its
    first, and one egress leaf, its last, for R4/R5; unlike Figure 1 no link crosses functions,
    which would leave the next function without an ingress leaf).
    """
    if n_nodes < 1 or fanout < 1 or depth < 1 or not 0 <= p_leaf < 1:
        raise ValueError("need n_nodes >= 1, fanout >= 1, depth >= 1 and 0 <= p_leaf < 1")
    with paused_gc():
        return _generate(n_nodes, fanout, depth, seed, p_leaf)


def _generate(n_nodes: int, fanout: int, depth: int, seed: int, p_leaf: float) -> Vnffg:
    children = _grow(n_nodes, fanout, depth, random.Random(seed), p_leaf)
    has_parent = {c for cs in children for c in cs}
    roots = [x for x in range(len(children)) if x not in has_parent]
    names = _names(children, roots)
    members = {names[x]: tuple(names[c] for c in children[x]) for x in range(len(children))}
    service = tuple(names[r] for r in roots)
    links = list(zip(service, service[1:]))
    for nf in service:
        chain = _leaves(members, nf)
        links += zip(chain, chain[1:])
    return Vnffg(f"generated-{n_nodes}-{fanout}-{depth}-{seed}", service, members, tuple(links))
