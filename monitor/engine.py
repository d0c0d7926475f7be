"""The Datalog engine of the recursive monitoring language: stratified, semi-naive, bottom-up,
with hash-indexed joins and goal-directed (magic-sets) queries.

    engine = Engine(program, facts=[("cpu", ("vm1", 80))], library=FunctionLibrary({...}))
    engine.query(Query(Atom("query", (Const("max_cpu"), Const("NF1")))))   # [("NF1", 80)]
    engine.query(Atom("child", (Const("NF1"), Var("Y"))), magic=False)     # the plain path
    engine.relation("leaf")                                                 # the whole relation
    engine.last_stats.rows("child")                                         # rows it derived

Evaluation.  Components of the predicate dependency graph (`monitor.stratify`) are evaluated in
dependency order; a recursive one semi-naively: after a first round over the full relations, each
round joins one body literal's new rows (its delta, placed first in the join) with the full
relations of the others, until a round adds nothing.  A relation keeps hash indexes ("views") for
exactly the access paths the plans use: the bound argument positions, projected on the positions
that bind new variables; they are built on first use and kept up to date as rows arrive.  Join
order is `stratify.plan_body` with the relations' sizes breaking ties.

Goal-directed queries.  A goal with constants (`max_cpu(NF1, C)`) is answered from the magic-sets
rewrite of the program for that goal (`monitor.magic`); derived predicates it reads whole (negated
or aggregated ones, when magic cannot pass through them) are materialized first and kept.  A goal
without constants, `magic=False`, `relation()` and `evaluate_all()` materialize the predicates the
goal depends on in the engine itself; those relations are kept and reused by later queries.

Snapshot.  An engine is a snapshot: facts are fixed at construction, materialized relations are
reused, and calls are memoized within one evaluation (see `monitor.builtins`).  For fresh metric
values, build a new engine or call `reset()`.

Rows are tuples of Python values (str, int, float, tuple).  Predicates named with `#` are the
engine's own (adorned `p#bf`, magic `p#bf#magic`, supplementary, `p#facts` for the facts of a
predicate that also has rules): a program's predicates cannot contain `#`.
"""

from __future__ import annotations

import operator
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import count, repeat
from operator import itemgetter
from typing import Any

from monitor.ast import Atom, Const, Fact, Literal, Program, Query, Var
from monitor.builtins import (
    AGGREGATES,
    CallError,
    EngineError,
    Expr,
    FnCall,
    FunctionLibrary,
    RelArg,
    UnknownFunctionError,
    aggregate,
    expr_vars,
    user_set,
)
from monitor.magic import MagicProgram, magic_program
from monitor.stratify import (
    ArityError,
    NRule,
    ProgramError,
    SafetyError,
    Stratification,
    StratificationError,
    check_arities,
    check_safety,
    dependencies,
    fact_atom,
    normalize,
    plan_body,
    stratify,
)

__all__ = ["ArityError", "CallError", "Engine", "EngineError", "FunctionLibrary", "ProgramError",
           "SafetyError", "Stats", "StratificationError", "UnknownFunctionError"]

Row = tuple
View = tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[int, int], ...]]
"""An access path: (key positions, output positions, pairs of positions that must be equal)."""


def _getter(positions: tuple[int, ...]) -> Callable[[Row], Any]:
    """A row's key: () for none, the value for one position, a tuple for several."""
    if not positions:
        return lambda r: ()
    return itemgetter(*positions)


def _tuple_getter(positions: tuple[int, ...]) -> Callable[[Row], Row]:
    if not positions:
        return lambda r: ()
    if len(positions) == 1:
        (p,) = positions
        return lambda r: (r[p],)
    return itemgetter(*positions)


def _columns(rows: list[Row], positions: tuple[int, ...]) -> Iterable[Any]:
    """`_getter` over many rows at C speed (a view is filled with it)."""
    if not positions:
        return repeat((), len(rows))
    return map(itemgetter(*positions), rows)


def _projections(rows: list[Row], positions: tuple[int, ...]) -> Iterable[Row]:
    """`_tuple_getter` over many rows at C speed."""
    if not positions:
        return repeat((), len(rows))
    if len(positions) == 1:
        return zip(map(itemgetter(positions[0]), rows))
    return map(itemgetter(*positions), rows)


class Relation:
    """A set of rows with the hash indexes (views) its readers asked for."""

    __slots__ = ("rows", "_views")

    def __init__(self, rows: Iterable[Row] = ()):
        self.rows: set[Row] = set(rows)
        self._views: dict[View, defaultdict[Any, list[Row]]] = {}

    def view(self, spec: View) -> Mapping[Any, list[Row]]:
        """The index for `spec`: read it with `get` or `in` only (it is a defaultdict)."""
        found = self._views.get(spec)
        if found is None:
            found = self._views[spec] = defaultdict(list)
            _fill(found, spec, self.rows)
        return found

    def add(self, new: set[Row]) -> None:
        """Add rows known to be new, keeping every view current."""
        self.rows |= new
        for spec, index in self._views.items():
            _fill(index, spec, new)


def _fill(index: defaultdict[Any, list[Row]], spec: View, rows: Iterable[Row]) -> None:
    key, out, checks = spec
    listed = [r for r in rows if all(r[i] == r[j] for i, j in checks)] if checks else list(rows)
    for k, o in zip(_columns(listed, key), _projections(listed, out)):
        index[k].append(o)


@dataclass
class Stats:
    """What one query or materialization did: `derived` rows per (internal) relation."""

    derived: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    iterations: int = 0  #: semi-naive rounds, over all recursive components
    rules: int = 0  #: rule versions compiled
    seconds: float = 0.0
    magic: bool = False
    through_negation: bool | None = None  #: magic only: did magic pass through negation?

    def rows(self, predicate: str) -> int:
        """Rows derived for `predicate`, adorned versions (`p#bf`) included."""
        return sum(n for name, n in self.derived.items()
                   if name == predicate or (name.startswith(predicate + "#") and name.count("#") == 1))


# ------------------------------------------------------------------------------------ compilation


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}

Bindings = list[Row]
StepFn = Callable[[Bindings, Mapping[str, Relation], Mapping[str, Relation]], Bindings]
FinishFn = Callable[[Bindings, Mapping[str, Relation], Mapping[str, Relation]], Iterable[Row]]
Compiled = tuple[list[StepFn], FinishFn]


@dataclass
class _Context:
    """What compiled rules share during one evaluation: the relations, the library, memos."""

    db: dict[str, Relation]
    library: FunctionLibrary
    stats: Stats


def _key_fn(parts: list[tuple[bool, Any]]) -> Callable[[Row], Any]:
    """Key of a binding for a view: parts are (is_slot, slot or constant), in position order."""
    if all(is_slot for is_slot, _ in parts):
        return _getter(tuple(s for _, s in parts))
    if not any(is_slot for is_slot, _ in parts):
        key = parts[0][1] if len(parts) == 1 else tuple(v for _, v in parts)
        return lambda b: key
    return lambda b: tuple(b[v] if is_slot else v for is_slot, v in parts)


def _access(args: tuple, slots: dict[str, int], local: Callable[[str], bool]) -> tuple[View, list, list]:
    """The view an atom is read through: bound positions are the key, the first occurrence of each
    unbound (`local`) variable is an output, and its repetitions must equal it."""
    key, parts, out, checks, first = [], [], [], [], {}
    for pos, arg in enumerate(args):
        if isinstance(arg, Var) and local(arg.name):
            if arg.name in first:
                checks.append((pos, first[arg.name]))
            else:
                first[arg.name] = pos
                out.append(pos)
        else:
            key.append(pos)
            parts.append((False, arg.value) if isinstance(arg, Const) else (True, slots[arg.name]))
    return (tuple(key), tuple(out), tuple(checks)), parts, [args[p].name for p in out]


def _join(atom: Atom, slots: dict[str, int], from_delta: bool) -> StepFn:
    spec, parts, new_vars = _access(atom.args, slots, lambda v: v not in slots)
    for v in new_vars:
        slots[v] = len(slots)
    keyf, name = _key_fn(parts), atom.predicate
    if spec == ((), tuple(range(len(atom.args))), ()):  # a scan of whole rows: no index needed

        def scan(bindings: Bindings, db: Mapping[str, Relation], delta: Mapping[str, Relation]) -> Bindings:
            rows = (delta if from_delta else db)[name].rows
            return list(rows) if bindings == [()] else [b + r for b in bindings for r in rows]

        return scan

    def step(bindings: Bindings, db: Mapping[str, Relation], delta: Mapping[str, Relation]) -> Bindings:
        get = (delta if from_delta else db)[name].view(spec).get
        return [b + o for b in bindings for o in get(keyf(b), ())]

    return step


def _negation(atom: Atom, slots: dict[str, int]) -> StepFn:
    spec, parts, _ = _access(atom.args, slots, lambda v: v not in slots)
    spec = (spec[0], (), spec[2])  # existential variables: only whether some row matches
    keyf, name = _key_fn(parts), atom.predicate

    def step(bindings: Bindings, db: Mapping[str, Relation], delta: Mapping[str, Relation]) -> Bindings:
        index = db[name].view(spec)
        return [b for b in bindings if keyf(b) not in index]

    return step


def _final_join(atom: Atom, slots: dict[str, int], from_delta: bool, head: Atom) -> FinishFn:
    """The last join and the head in one comprehension, generated: it runs once per derivation,
    and building the head row straight from the binding and the matched row saves a tuple and a
    call each time.  Only slot numbers go into the source; constants are passed as names."""
    spec, parts, new_vars = _access(atom.args, slots, lambda v: v not in slots)
    env: dict[str, Any] = {}

    def const(value: Any) -> str:
        env[f"c{len(env)}"] = value
        return f"c{len(env) - 1}"

    def ref(arg: Any) -> str:
        if isinstance(arg, Const):
            return const(arg.value)
        return f"b[{slots[arg.name]}]" if arg.name in slots else f"o[{new_vars.index(arg.name)}]"

    row = "(" + "".join(f"{ref(a)}, " for a in head.args) + ")"
    name = atom.predicate
    if spec == ((), tuple(range(len(atom.args))), ()):
        scan = eval(f"lambda bindings, rows: {{{row} for b in bindings for o in rows}}", env)  # noqa: S307
        return lambda bindings, db, delta: scan(bindings, (delta if from_delta else db)[name].rows)
    keys = [f"b[{v}]" if is_slot else const(v) for is_slot, v in parts]
    key = keys[0] if len(keys) == 1 else "(" + "".join(f"{k}, " for k in keys) + ")"
    probe = eval(f"lambda bindings, get: {{{row} for b in bindings for o in get({key}, ())}}", env)  # noqa: S307
    return lambda bindings, db, delta: probe(bindings, (delta if from_delta else db)[name].view(spec).get)


def _compare(op: str, left: Callable, right: Callable) -> Callable[[Row], bool]:
    test = _OPS[op]

    def check(b: Row) -> bool:
        lv = left(b)
        if lv is None:
            return False
        rv = right(b)
        if rv is None:
            return False
        try:
            return test(lv, rv)
        except TypeError:  # a number against a name: not ordered, so not true
            return False

    return check


def _filter(check: Callable[[Row], bool]) -> StepFn:
    return lambda bindings, db, delta: [b for b in bindings if check(b)]


def _assign(value: Callable[[Row], Any]) -> StepFn:
    def step(bindings: Bindings, db: Mapping[str, Relation], delta: Mapping[str, Relation]) -> Bindings:
        out = []
        for b in bindings:
            v = value(b)
            if v is not None:
                out.append(b + (v,))
        return out

    return step


def item_is_join(item: Any) -> bool:
    return isinstance(item, Literal) and not item.negated


def _needed_later(rule: NRule, plan: tuple[tuple[int, str | None], ...]) -> list[set[str]]:
    """For each step of the plan: the variables the steps after it and the head still read."""
    needed = [set() for _ in plan]
    later = rule.head.variables()
    for n in range(len(plan) - 1, -1, -1):
        needed[n] = set(later)
        item = rule.body[plan[n][0]]
        later |= item.atom.variables() if isinstance(item, Literal) else set(
            expr_vars(item.left) | expr_vars(item.right))
    return needed


class _Compiler:
    """Turns one planned rule version into a list of step functions and a head builder."""

    def __init__(self, rule: NRule, ctx: _Context):
        self.rule, self.ctx = rule, ctx
        self.slots: dict[str, int] = {}

    def compile(self, plan: tuple[tuple[int, str | None], ...], delta_at: int | None) -> Compiled:
        """Step functions for the plan, and the function that turns the bindings left after
        them into head rows (fused with the last join when the plan ends with one)."""
        steps: list[StepFn] = []
        needed = _needed_later(self.rule, plan)
        for n, (i, assigned) in enumerate(plan):
            item = self.rule.body[i]
            if n == len(plan) - 1 and isinstance(item, Literal) and not item.negated:
                return steps, _final_join(item.atom, self.slots, i == delta_at, self.rule.head)
            if n and item_is_join(item) and set(self.slots) - needed[n - 1]:
                steps.append(self.project(needed[n - 1]))
            if isinstance(item, Literal):
                steps.append(_negation(item.atom, self.slots) if item.negated
                             else _join(item.atom, self.slots, i == delta_at))
            elif assigned is not None:
                other = item.right if isinstance(item.left, Var) and item.left.name == assigned else item.left
                steps.append(_assign(self.expr(other)))
                self.slots[assigned] = len(self.slots)
            else:
                steps.append(_filter(_compare(item.op, self.expr(item.left), self.expr(item.right))))
        head = self.head()
        return steps, lambda bindings, db, delta: map(head, bindings)

    def project(self, keep: set[str]) -> StepFn:
        """Drop the variables nothing after needs, and the duplicate bindings that leaves: a join
        then runs once per distinct binding rather than once per way of reaching it."""
        kept = [v for v in self.slots if v in keep]
        getter = _tuple_getter(tuple(self.slots[v] for v in kept))
        self.slots = {v: k for k, v in enumerate(kept)}
        return lambda bindings, db, delta: list(set(map(getter, bindings)))

    def head(self) -> Callable[[Row], Row]:
        args = self.rule.head.args
        if all(isinstance(a, Var) for a in args):
            return _tuple_getter(tuple(self.slots[a.name] for a in args))
        parts = [(isinstance(a, Var), self.slots[a.name] if isinstance(a, Var) else a.value)
                 for a in args]
        return lambda b: tuple(b[v] if is_slot else v for is_slot, v in parts)

    def expr(self, e: Expr) -> Callable[[Row], Any]:
        if isinstance(e, Var):
            return itemgetter(self.slots[e.name])
        if isinstance(e, Const):
            value = e.value
            return lambda b: value
        if isinstance(e, FnCall):
            return self.aggregate(e) if e.name in AGGREGATES else self.call(e)
        raise CallError(f"relation {e} can only be a call's argument, in {self.rule.where()}")

    def relation(self, rel: RelArg) -> tuple[Callable[[Row], Any], dict[Any, list[Row]]]:
        """A relation argument: the key of its group values, and the view from key to bindings."""
        spec, parts, _ = _access(rel.atom.args, self.slots, lambda v: v not in rel.group)
        return _key_fn(parts), self.ctx.db[rel.atom.predicate].view(spec)

    def call(self, e: FnCall) -> Callable[[Row], Any]:
        fn = self.ctx.library.lookup(e.name)
        if fn is None:
            raise UnknownFunctionError(f"unknown function {e.name!r} in {self.rule.where()}: not built "
                                       "in and not registered in the FunctionLibrary")
        inputs, makers = [], []
        for a in e.args:
            if isinstance(a, RelArg):
                keyf, index = self.relation(a)
                width = len(a.local_vars)
                inputs.append(keyf)
                makers.append(lambda k, index=index, width=width: user_set(index.get(k, ()), width))
            else:
                inputs.append(self.expr(a))
                makers.append(None)
        memo: dict | None = None if e.name.startswith("fn_") and not any(makers) else {}
        where = self.rule.where()

        def value(b: Row) -> Any:
            key = tuple(f(b) for f in inputs)
            if None in key:
                return None
            if memo is not None and key in memo:
                return memo[key]
            args = [m(k) if m else k for m, k in zip(makers, key)]
            try:
                result = fn(*args)
            except Exception as exc:
                raise CallError(f"{e.name} failed in {where}: {type(exc).__name__}: {exc}") from exc
            if memo is not None:
                memo[key] = result
            return result

        return value

    def aggregate(self, e: FnCall) -> Callable[[Row], Any]:
        rel = next(a for a in e.args if isinstance(a, RelArg))
        terms = [self.expr(a) for a in e.args if not isinstance(a, RelArg)]
        keyf, index = self.relation(rel)
        last, label = self._last_and_label(rel)
        memo: dict = {}
        where = self.rule.where()

        def value(b: Row) -> Any:
            key = (tuple(t(b) for t in terms), keyf(b))
            if None in key[0]:
                return None
            if key in memo:
                return memo[key]
            lastf = last(b)
            try:
                result = aggregate(e.name, key[0], index.get(key[1], ()), lastf, label)
            except (TypeError, ValueError) as exc:
                raise CallError(f"{e.name} failed in {where}: {exc}") from exc
            memo[key] = result
            return result

        return value

    def _last_and_label(self, rel: RelArg) -> tuple[Callable[[Row], Callable[[Row], Any]], Callable]:
        """For a binding of the enclosing rule: how to read an aggregated binding's value (the
        atom's last argument), and the name topn/bottomn pair it with (the other local values)."""
        local = rel.local_vars
        last_arg = rel.atom.args[-1] if rel.atom.args else Const(None)  # type: ignore[arg-type]
        if isinstance(last_arg, Var) and last_arg.name in local:
            getter = itemgetter(local.index(last_arg.name))
            names = [i for i, v in enumerate(local) if v != last_arg.name]

            def last(b: Row) -> Callable[[Row], Any]:
                return getter
        else:
            outer = self.expr(last_arg)  # a constant or a group variable: one value per call
            names = list(range(len(local)))

            def last(b: Row) -> Callable[[Row], Any]:
                value = outer(b)
                return lambda o: value

        if len(names) == 1:
            return last, itemgetter(names[0])
        return last, lambda o: tuple(o[i] for i in names)


# ------------------------------------------------------------------------------------- evaluation


def _evaluate(strat: Stratification, by_head: Mapping[str, list[NRule]], ctx: _Context,
              wanted: Callable[[tuple[str, ...]], bool]) -> None:
    """Evaluate every wanted component with rules, in dependency order."""
    for comp, recursive in zip(strat.components, strat.recursive):
        rules = [r for p in comp for r in by_head.get(p, ())]
        if rules and wanted(comp):
            for p in comp:
                ctx.db.setdefault(p, Relation())
            _component(comp, rules, recursive, ctx)


def _component(comp: tuple[str, ...], rules: list[NRule], recursive: bool, ctx: _Context) -> None:
    db = ctx.db
    members = set(comp)

    def cost(p: str) -> float:
        return len(db[p].rows) if p in db else 0.0

    def compiled(rule: NRule, first: int | None) -> Compiled:
        ctx.stats.rules += 1
        return _Compiler(rule, ctx).compile(plan_body(rule, first=first, cost=cost), first)

    full = [(r, compiled(r, None)) for r in rules]
    delta = _round(full, db, {}, ctx.stats)
    if not recursive:
        return
    versions = [(r, i, compiled(r, i)) for r in rules for i, item in enumerate(r.body)
                if isinstance(item, Literal) and not item.negated and item.atom.predicate in members]
    while delta:
        ctx.stats.iterations += 1
        active = [(r, plan) for r, i, plan in versions if r.body[i].atom.predicate in delta]  # type: ignore[union-attr]
        delta = _round(active, db, delta, ctx.stats)


def _round(plans: list, db: dict[str, Relation], delta: Mapping[str, Relation],
           stats: Stats) -> dict[str, Relation]:
    """Run rule versions once; add what is new; return it as the next round's deltas."""
    derived: dict[str, set[Row]] = defaultdict(set)
    for rule, (steps, finish) in plans:
        bindings: Bindings = [()]
        for step in steps:
            bindings = step(bindings, db, delta)
            if not bindings:
                break
        else:
            derived[rule.head.predicate].update(finish(bindings, db, delta))
    fresh = {}
    for pred, rows in derived.items():
        rows -= db[pred].rows
        if rows:
            db[pred].add(rows)
            stats.derived[pred] += len(rows)
            fresh[pred] = Relation(rows)
    return fresh


# ----------------------------------------------------------------------------------------- engine


FactInput = Atom | Fact | tuple[str, tuple]


class Engine:
    """A program, its facts and a function library, ready to answer queries (see the module)."""

    def __init__(self, program: Program | None = None, facts: Iterable[FactInput] = (),
                 library: FunctionLibrary | None = None, *, functions: FunctionLibrary | None = None):
        """`functions` is another name for `library` (both: an error)."""
        if library is not None and functions is not None:
            raise TypeError("give the function library as `library` or as `functions`, not both")
        program = program or Program()
        self.library = library or functions or FunctionLibrary()
        base = self._base_rows([*program.facts, *facts])
        rules = normalize(program.rules)
        self.arity = check_arities(rules, {p: (len(next(iter(rs))), f"facts of {p}")
                                           for p, rs in base.items() if rs})
        heads = {r.head.predicate for r in rules}
        for p in sorted(heads & set(base)):
            args = tuple(Var(f"_#{i}") for i in range(self.arity[p]))
            rules.append(NRule(Atom(p, args), (Literal(Atom(f"{p}#facts", args)),)))
            base[f"{p}#facts"] = base.pop(p)
        check_safety(rules)
        self.stratification = stratify(rules)
        self._rules = rules
        self._by_head: dict[str, list[NRule]] = defaultdict(list)
        for r in rules:
            self._by_head[r.head.predicate].append(r)
        self._graph = dependencies(rules)
        self._base = base
        self._magic: dict[tuple[str, str], tuple[MagicProgram, Stratification]] = {}
        self.last_stats: Stats | None = None
        self.reset()

    @staticmethod
    def _base_rows(facts: Iterable[FactInput]) -> dict[str, set[Row]]:
        base: dict[str, set[Row]] = defaultdict(set)
        for f in facts:
            if isinstance(f, (Atom, Fact)):
                atom = fact_atom(f)
                base[atom.predicate].add(tuple(c.value for c in atom.args))  # type: ignore[union-attr]
            else:
                pred, row = f
                base[pred].add(tuple(row))
        for pred, rows in base.items():
            if "#" in pred:
                raise ProgramError(f"predicate names cannot contain '#': {pred}")
            if len({len(r) for r in rows}) > 1:
                raise ArityError(f"facts of {pred} have arities {sorted({len(r) for r in rows})}")
        return base

    def reset(self) -> None:
        """Forget every derived relation (keeping the facts and the rewrites)."""
        self._db: dict[str, Relation] = {p: Relation(rows) for p, rows in self._base.items()}
        for p in self._graph:
            if p not in self._by_head:
                self._db.setdefault(p, Relation())
        self._done: set[str] = set()

    # ---------------------------------------------------------------------------------- queries

    def query(self, goal: Atom | Query, *, magic: bool = True) -> list[Row]:
        """Answer tuples for the goal's argument positions, sorted; constants filter.

        `Query(query(m, y1, ..., yn))` asks `m(y1, ..., yn, V...)`, free variables filling up
        m's arity."""
        atom = self._goal(goal)
        stats = Stats()
        start = time.perf_counter()
        ad = "".join("b" if isinstance(a, Const) else "f" for a in atom.args)
        if magic and "b" in ad and atom.predicate in self._by_head:
            rows: Iterable[Row] = self._magic_rows(atom, ad, stats)
        else:
            self._materialize({atom.predicate}, stats)
            rows = self._db[atom.predicate].rows
        answers = _matching(rows, atom)
        stats.seconds = time.perf_counter() - start
        self.last_stats = stats
        return _sorted(answers)

    def relation(self, name: str) -> set[Row]:
        """The whole relation (a copy); empty for a predicate the program does not know."""
        stats = Stats()
        start = time.perf_counter()
        if name in self._graph or name in self._db:
            self._materialize({name}, stats)
        stats.seconds = time.perf_counter() - start
        self.last_stats = stats
        return set(self._db[name].rows) if name in self._db else set()

    def evaluate_all(self) -> dict[str, set[Row]]:
        """Every relation of the program, materialized."""
        stats = Stats()
        start = time.perf_counter()
        self._materialize(set(self._graph), stats)
        stats.seconds = time.perf_counter() - start
        self.last_stats = stats
        return {p: set(r.rows) for p, r in self._db.items() if "#" not in p}

    def _goal(self, goal: Atom | Query) -> Atom:
        atom = goal.atom if isinstance(goal, Query) else goal
        fresh = (Var(f"_#q{i}") for i in count())
        if atom.predicate == "query" and "query" not in self.arity and atom.args:
            name = atom.args[0]
            if not isinstance(name, Const) or not isinstance(name.value, str):
                raise EngineError(f"{atom}: the first argument must name a predicate")
            have = self.arity.get(name.value)
            if have is None or have < len(atom.args) - 1:
                raise EngineError(f"{atom}: no predicate {name.value} taking {len(atom.args) - 1} or more "
                                 "arguments")
            atom = Atom(name.value, atom.args[1:] + tuple(next(fresh) for _ in range(have - len(atom.args) + 1)))
        if atom.predicate not in self.arity:
            raise EngineError(f"unknown predicate {atom.predicate} in goal {atom}")
        if self.arity[atom.predicate] != atom.arity:
            raise ArityError(f"goal {atom}: {atom.predicate} has arity {self.arity[atom.predicate]}")
        args = tuple(next(fresh) if isinstance(a, Var) and a.name == "_" else a for a in atom.args)
        if not all(isinstance(a, (Var, Const)) for a in args):
            raise EngineError(f"goal {atom}: arguments must be variables or constants")
        return Atom(atom.predicate, args)

    # ------------------------------------------------------------------------------- internals

    def _materialize(self, preds: set[str], stats: Stats) -> None:
        """Evaluate, in the engine, every component the predicates depend on and lacks."""
        needed = set()
        todo = [p for p in preds if p in self._graph]
        while todo:
            p = todo.pop()
            if p not in needed and p not in self._done:
                needed.add(p)
                todo.extend(self._graph[p])
        if not needed:
            return
        ctx = _Context(self._db, self.library, stats)
        _evaluate(self.stratification, self._by_head, ctx, lambda comp: bool(needed.intersection(comp)))
        self._done |= needed

    def _magic_rows(self, atom: Atom, ad: str, stats: Stats) -> set[Row]:
        key = (atom.predicate, ad)
        if key not in self._magic:
            components = {p: i for i, comp in enumerate(self.stratification.components) for p in comp}
            self._magic[key] = magic_program(self._by_head, atom.predicate, ad, components)
        program, strat = self._magic[key]
        stats.magic, stats.through_negation = True, program.through_negation
        self._materialize(set(program.full), stats)
        db = dict(self._db)
        by_head: dict[str, list[NRule]] = defaultdict(list)
        for r in program.rules:
            by_head[r.head.predicate].append(r)
            db[r.head.predicate] = Relation()
        for pred in (*strat.stratum, program.goal):  # the goal may have no rules left
            db.setdefault(pred, Relation())
        db[program.seed] = Relation([tuple(a.value for a in atom.args if isinstance(a, Const))])
        _evaluate(strat, by_head, _Context(db, self.library, stats), lambda comp: True)
        return db[program.goal].rows


def _matching(rows: Iterable[Row], goal: Atom) -> list[Row]:
    """The rows that agree with the goal's constants and its repeated variables."""
    consts = [(i, a.value) for i, a in enumerate(goal.args) if isinstance(a, Const)]
    first: dict[str, int] = {}
    same = []
    for i, a in enumerate(goal.args):
        if isinstance(a, Var):
            if a.name in first:
                same.append((i, first[a.name]))
            else:
                first[a.name] = i
    return [r for r in rows if all(r[i] == v for i, v in consts) and all(r[i] == r[j] for i, j in same)]


def _sorted(rows: list[Row]) -> list[Row]:
    try:
        return sorted(rows)
    except TypeError:  # mixed types in a column: order by type, then value
        return sorted(rows, key=lambda r: tuple((type(v).__name__, repr(v)) for v in r))
