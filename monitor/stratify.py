"""Static analysis of a program: the engine's normal form of rules, arities, the predicate
dependency graph with its strongly connected components and strata, and safety.

Normal form (`NRule`).  Rules are rewritten once so that evaluation never meets a special case:
each `_` becomes a fresh variable; a call used as an atom argument (`p(X, fn_add(X, 1))`) becomes
a fresh variable V plus `V == call` in the body; calls become `FnCall`, whose relation arguments
(`RelArg`) carry the group variables that fix their meaning (see `monitor.builtins`).

Stratification.  An edge goes from a rule's head predicate to each predicate of its body: positive
for a positive literal, negative for a negated one and for a relation used inside a call (an
aggregation needs the whole relation).  A cycle through a negative edge has no stratified meaning
and raises `StratificationError` naming the cycle and the rule.

Safety.  Every head variable must be bound by a positive body literal or by an assignment
`V == <call or term>`; the variables of a comparison other than the assigned one must be bound; a
variable of a negated literal that occurs nowhere else in the rule is existential (`~sub(Y, Z)`:
no Z with sub(Y, Z), as the draft's R3 needs), any other must be bound first.  The same greedy
ordering that proves a rule safe is the engine's join order (`plan_body`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import count

from monitor.ast import Atom, Call, Comparison, Const, Fact, Literal, Rule, Term, Var
from monitor.builtins import AGGREGATES, CallError, EngineError, Expr, FnCall, RelArg, check_aggregate, expr_vars

# ------------------------------------------------------------------------------------------ errors


class ProgramError(EngineError):
    """A program the engine cannot give a meaning to; `code` is a stable machine-readable name."""

    code = "program_error"


class StratificationError(ProgramError):
    code = "cyclic_negation"


class SafetyError(ProgramError):
    code = "unbound_variable"


class ArityError(ProgramError):
    code = "arity_mismatch"


# ----------------------------------------------------------------------------------- normal form


@dataclass(frozen=True, slots=True)
class Cmp:
    """A comparison in normal form: its calls are `FnCall`s."""

    op: str
    left: Expr
    right: Expr

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


Item = Literal | Cmp


@dataclass(frozen=True, slots=True)
class NRule:
    """A rule in normal form; `origin` is the source rule, named in every error about it."""

    head: Atom
    body: tuple[Item, ...]
    origin: Rule | None = field(default=None, compare=False)

    def where(self) -> str:
        return rule_ref(self.origin) if self.origin is not None else f"rule '{self}'"

    def __str__(self) -> str:
        return f"{self.head} <= {', '.join(map(str, self.body))}"


def rule_ref(rule: Rule) -> str:
    """How errors name a rule: `rule R2 at line 4`, or its text when it has no label."""
    name = f"rule {rule.label}" if rule.label else f"rule '{rule}'"
    return f"{name} at line {rule.position.line}" if rule.position else name


def normalize(rules: Iterable[Rule]) -> list[NRule]:
    """Every rule in normal form, with aggregate calls checked for shape."""
    return [normalize_rule(r) for r in rules]


def normalize_rule(rule: Rule) -> NRule:
    fresh = (f"_#{i}" for i in count())
    lifted: list[Cmp] = []
    head_args: list[Term] = []
    for arg in rule.head.args:
        if isinstance(arg, Call):
            head_args.append(Var(next(fresh)))
            lifted.append(Cmp("==", head_args[-1], arg))  # converted below, once the head is known
        else:
            head_args.append(_anon(arg, fresh))
    head = Atom(rule.head.predicate, tuple(head_args))
    head_vars = head.variables()
    where = rule_ref(rule)
    body: list[Item] = [_convert_cmp(c.op, c.left, c.right, head_vars, fresh, where) for c in lifted]
    for item in rule.body:
        if isinstance(item, Comparison):
            body.append(_convert_cmp(item.op, item.left, item.right, head_vars, fresh, where))
            continue
        args: list[Term] = []
        for arg in item.atom.args:
            if isinstance(arg, Call):
                args.append(Var(next(fresh)))
                body.append(_convert_cmp("==", args[-1], arg, head_vars, fresh, where))
            else:
                args.append(_anon(arg, fresh))
        body.append(Literal(Atom(item.atom.predicate, tuple(args)), item.negated))
    return NRule(head, tuple(body), rule)


def _anon(term: Term, fresh: Iterator[str]) -> Term:
    return Var(next(fresh)) if isinstance(term, Var) and term.name == "_" else term


def _convert_cmp(op: str, left: Term | Expr, right: Term | Expr, head_vars: set[str],
                 fresh: Iterator[str], where: str) -> Cmp:
    assigned = None
    if op == "==" and isinstance(left, Var) and isinstance(right, Call):
        assigned = left.name
    elif op == "==" and isinstance(right, Var) and isinstance(left, Call):
        assigned = right.name
    group = frozenset(head_vars - {assigned} if assigned else head_vars)
    return Cmp(op, _expr(left, group, fresh, where), _expr(right, group, fresh, where))


def _expr(term: Term | Expr, group: frozenset[str], fresh: Iterator[str], where: str) -> Expr:
    if isinstance(term, Call):
        args = tuple(_call_arg(a, group, fresh, where) for a in term.args)
        call = FnCall(term.name, args)
        if call.name in AGGREGATES:
            check_aggregate(call, where)
        return call
    if isinstance(term, Var) and term.name == "_":
        raise SafetyError(f"unsafe {where}: `_` cannot be a comparison operand")
    return term  # type: ignore[return-value]  # Var or Const (or already an Expr)


def _call_arg(arg: Term | Atom, group: frozenset[str], fresh: Iterator[str], where: str) -> Expr:
    if not isinstance(arg, Atom):
        return _expr(arg, group, fresh, where)
    if any(isinstance(a, Call) for a in arg.args):
        raise CallError(f"relation argument {arg} in {where} may hold only variables and constants")
    return RelArg(Atom(arg.predicate, tuple(_anon(a, fresh) for a in arg.args)), group)


# ---------------------------------------------------------------------------------------- arities


def check_arities(rules: Iterable[NRule], known: Mapping[str, tuple[int, str]] | None = None) -> dict[str, int]:
    """Each predicate's arity; `ArityError` if it is used with two.  `known`: arities already
    fixed (by facts), with where they were seen."""
    arity: dict[str, tuple[int, str]] = dict(known or {})

    def note(atom: Atom, where: str) -> None:
        seen = arity.setdefault(atom.predicate, (atom.arity, where))
        if seen[0] != atom.arity:
            raise ArityError(f"predicate {atom.predicate} has arity {seen[0]} in {seen[1]} "
                             f"but {atom.arity} in {where}")

    for rule in rules:
        note(rule.head, rule.where())
        for item in rule.body:
            for atom in item_atoms(item):
                note(atom, rule.where())
    return {p: a for p, (a, _) in arity.items()}


def item_atoms(item: Item) -> list[Atom]:
    """The atoms an item reads: its literal's, or its calls' relation arguments."""
    if isinstance(item, Literal):
        return [item.atom]
    return [r.atom for side in (item.left, item.right) for _, r in _call_relations(side)]


def _call_relations(expr: Expr, name: str = "") -> Iterator[tuple[str, RelArg]]:
    if isinstance(expr, RelArg):
        yield name, expr
    elif isinstance(expr, FnCall):
        for arg in expr.args:
            yield from _call_relations(arg, expr.name)


def fact_atom(fact: Fact | Atom) -> Atom:
    atom = fact.atom if isinstance(fact, Fact) else fact
    if not all(isinstance(a, Const) for a in atom.args):
        raise ProgramError(f"fact {atom} is not ground: every argument must be a constant")
    return atom


# ------------------------------------------------------------------------------ stratification


@dataclass(frozen=True, slots=True)
class Edge:
    negative: bool
    label: str  #: how the body predicate appears: `q`, `~q`, `count(q)`
    rule: NRule


def dependencies(rules: Iterable[NRule]) -> dict[str, dict[str, Edge]]:
    """head -> body predicate -> edge; a negative edge wins over a positive one (it matters)."""
    graph: dict[str, dict[str, Edge]] = {}
    for rule in rules:
        out = graph.setdefault(rule.head.predicate, {})
        for item in rule.body:
            for pred, edge in _item_edges(item, rule):
                graph.setdefault(pred, {})
                if pred not in out or (edge.negative and not out[pred].negative):
                    out[pred] = edge
    return graph


def _item_edges(item: Item, rule: NRule) -> Iterator[tuple[str, Edge]]:
    if isinstance(item, Literal):
        p = item.atom.predicate
        yield p, Edge(item.negated, f"~{p}" if item.negated else p, rule)
        return
    for side in (item.left, item.right):
        for name, rel in _call_relations(side):
            yield rel.atom.predicate, Edge(True, f"{name}({rel.atom.predicate})", rule)


def strongly_connected(graph: Mapping[str, Mapping[str, object]]) -> list[list[str]]:
    """Tarjan's algorithm without recursion (deep recursive programs exist); each component comes
    after every component it depends on, which is the evaluation order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    result.append(sorted(component))
    return result


@dataclass(frozen=True)
class Stratification:
    components: tuple[tuple[str, ...], ...]  #: dependencies first
    recursive: tuple[bool, ...]  #: per component: does it depend on itself?
    stratum: Mapping[str, int]  #: 0 for base relations; +1 across each negative edge

    def strata(self) -> list[list[str]]:
        levels: dict[int, list[str]] = {}
        for pred, level in self.stratum.items():
            levels.setdefault(level, []).append(pred)
        return [sorted(levels[k]) for k in sorted(levels)]


def stratify(rules: Iterable[NRule]) -> Stratification:
    """Components in evaluation order and strata; `StratificationError` for a negative cycle."""
    graph = dependencies(rules)
    components = strongly_connected(graph)
    member = {p: i for i, comp in enumerate(components) for p in comp}
    stratum: dict[str, int] = {}
    recursive = []
    for i, comp in enumerate(components):
        level = 0
        for head in comp:
            for body, edge in graph[head].items():
                if member[body] == i and edge.negative:
                    raise StratificationError(_cycle_message(graph, set(comp), head, body, edge))
                if member[body] != i:
                    level = max(level, stratum[body] + edge.negative)
        stratum.update((p, level) for p in comp)
        recursive.append(len(comp) > 1 or comp[0] in graph[comp[0]])
    return Stratification(tuple(map(tuple, components)), tuple(recursive), stratum)


def _cycle_message(graph: dict[str, dict[str, Edge]], comp: set[str], head: str, body: str,
                   edge: Edge) -> str:
    """`not stratifiable: p -> ~q -> p (rule R2 at line 4)`: a shortest way back to the head."""
    back: dict[str, tuple[str, Edge] | None] = {body: None}
    frontier = [body]
    while frontier and head not in back:
        nxt = []
        for node in frontier:
            for succ, e in graph[node].items():
                if succ in comp and succ not in back:
                    back[succ] = (node, e)
                    nxt.append(succ)
        frontier = nxt
    tail: list[str] = []
    node = head
    while node != body:
        prev, e = back[node]  # type: ignore[misc]
        tail.append(e.label)
        node = prev
    return f"not stratifiable: {' -> '.join([head, edge.label, *reversed(tail)])} ({edge.rule.where()})"


# ---------------------------------------------------------------------------------- safety, order


@dataclass(frozen=True)
class _Shape:
    """Per-item facts the planner needs, computed once per rule."""

    needs: tuple[frozenset[str], ...]  #: variables an item needs bound before it runs
    binds: tuple[frozenset[str], ...]  #: variables a positive literal binds
    assigns: tuple[tuple[tuple[str, frozenset[str]], ...], ...]  #: (var, needs) per way to assign


@lru_cache(maxsize=4096)
def _shape(rule: NRule) -> _Shape:
    seen: dict[str, list[int]] = {}
    for i, item in enumerate(rule.body):
        visible = item.atom.variables() if isinstance(item, Literal) else (
            expr_vars(item.left) | expr_vars(item.right))
        for v in visible:
            seen.setdefault(v, []).append(i)
    head_vars = rule.head.variables()
    needs, binds, assigns = [], [], []
    for i, item in enumerate(rule.body):
        if isinstance(item, Literal):
            names = frozenset(item.atom.variables())
            binds.append(frozenset() if item.negated else names)
            assigns.append(())
            if not item.negated:
                needs.append(frozenset())
                continue
            for v in names:
                only_neg = v not in head_vars and all(
                    isinstance(rule.body[j], Literal) and rule.body[j].negated for j in seen[v])
                if only_neg and len(seen[v]) > 1:
                    raise SafetyError(f"unsafe {rule.where()}: variable {v} occurs only in negated "
                                      "literals, in more than one")
            needs.append(frozenset(v for v in names if v in head_vars or len(seen[v]) > 1))
            continue
        binds.append(frozenset())
        needs.append(expr_vars(item.left) | expr_vars(item.right))
        ways = []
        if item.op == "==":
            if isinstance(item.left, Var):
                ways.append((item.left.name, expr_vars(item.right)))
            if isinstance(item.right, Var):
                ways.append((item.right.name, expr_vars(item.left)))
        assigns.append(tuple(ways))
    return _Shape(tuple(needs), tuple(binds), tuple(assigns))


Step = tuple[int, str | None]
"""A planned body item: its index, and the variable it assigns (None: a test or a join)."""


def plan_body(rule: NRule, bound: Iterable[str] = (), *, first: int | None = None,
              cost: Callable[[str], float] | None = None,
              late: Callable[[Item], bool] | None = None) -> tuple[Step, ...]:
    """Order the body greedily: tests and negations as soon as their variables are bound, then
    assignments, then the positive literal with the most bound arguments (ties: the cheaper
    relation by `cost`, then the earlier literal).  `first` pins a literal (a semi-naive delta);
    items for which `late` holds wait until nothing else can run (the magic rewrite's choice)."""
    shape = _shape(rule)
    bound = set(bound)
    todo = list(range(len(rule.body)))
    plan: list[Step] = []
    if first is not None:
        todo.remove(first)
        plan.append((first, None))
        bound |= shape.binds[first]
    while todo:
        early = [i for i in todo if not late(rule.body[i])] if late else todo
        step = _pick(rule, shape, early, bound, cost) or (_pick(rule, shape, todo, bound, cost)
                                                          if early != todo else None)
        if step is None:
            raise SafetyError(_stuck(rule, shape, todo, bound))
        todo.remove(step[0])
        plan.append(step)
        bound |= shape.binds[step[0]] | ({step[1]} if step[1] else set())
    missing = sorted(rule.head.variables() - bound)
    if missing:
        raise SafetyError(f"unsafe {rule.where()}: head variable {', '.join(missing)} is not bound "
                          "by a positive body literal or an assignment")
    return tuple(plan)


def _pick(rule: NRule, shape: _Shape, todo: list[int], bound: set[str],
          cost: Callable[[str], float] | None) -> Step | None:
    best: tuple[tuple[int, float, int], int] | None = None
    assign: Step | None = None
    for i in todo:
        item = rule.body[i]
        if isinstance(item, Literal) and not item.negated:
            args = item.atom.args
            nbound = sum(1 for a in args if not isinstance(a, Var) or a.name in bound)
            if nbound == len(args):
                return (i, None)  # a membership test
            score = (nbound, -(cost(item.atom.predicate) if cost else 0.0), -i)
            if best is None or score > best[0]:
                best = (score, i)
        elif shape.needs[i] <= bound:
            return (i, None)  # a test or a negation, ready: run it now
        elif assign is None:
            assign = next(((i, v) for v, needs in shape.assigns[i] if v not in bound and needs <= bound), None)
    if assign is not None:
        return assign
    return (best[1], None) if best else None


def _stuck(rule: NRule, shape: _Shape, todo: list[int], bound: set[str]) -> str:
    """Why the first waiting item cannot run: the variables nothing binds (for an assignment,
    those its value needs)."""
    i = todo[0]
    missing = shape.needs[i] - bound
    for _, needs in shape.assigns[i]:
        if needs - bound and len(needs - bound) < len(missing):
            missing = needs - bound
    names = ", ".join(sorted(missing))
    verb = "is" if len(missing) == 1 else "are"
    return (f"unsafe {rule.where()}: variable{'s' if len(missing) > 1 else ''} {names} in "
            f"`{rule.body[i]}` {verb} not bound by a positive literal or an assignment")


def check_safety(rules: Iterable[NRule]) -> None:
    """`SafetyError` for the first rule that cannot be ordered with nothing bound."""
    for rule in rules:
        plan_body(rule)
