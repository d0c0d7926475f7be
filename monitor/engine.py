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
order is `stratify.plan_body` with the relations' sizes breaking ties; variables no later step
reads are projected away (with their duplicate bindings) before the next join.

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

The inner loops (a join, the last join with the head) are list and set comprehensions generated
per rule version, with slot numbers inlined: they run once per derivation, and a function call
less per binding is most of the difference between a fast and a slow Python Datalog engine.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count, repeat
from operator import itemgetter
from typing import Any

from monitor.ast import Atom, Const, Fact, Literal, Program, Query, Var
from monitor.builtins import (
    CallError,
    EngineError,
    Expr,
    ExprCompiler,
    FunctionLibrary,
    RelArg,
    UnknownFunctionError,
    comparison,
    expr_vars,
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


class Relation:
    """A set of rows with the hash indexes (views) its readers asked for."""

    __slots__ = ("rows", "_views")

    def __init__(self, rows: Iterable[Row] = ()):
        self.rows: set[Row] = set(rows)
        self._views: dict[View, defaultdict[Any, list[Row]]] = {}

    def view(self, spec: View) -> Mapping[Any, list[Row]]:
        """The index for `spec`: key (the value for one position, a tuple for several) -> the
        projected rows.  Read it with `get` or `in` only (it is a defaultdict)."""
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
    keys = map(itemgetter(*key), listed) if key else repeat((), len(listed))
    if not out:
        outs: Iterable[Row] = repeat((), len(listed))
    else:
        outs = zip(map(itemgetter(out[0]), listed)) if len(out) == 1 else map(itemgetter(*out), listed)
    for k, o in zip(keys, outs):
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


Bindings = list[Row]
Relations = Mapping[str, Relation]
StepFn = Callable[[Bindings, Relations, Relations], Bindings]
FinishFn = Callable[[Bindings, Relations, Relations], Iterable[Row]]
Compiled = tuple[list[StepFn], FinishFn]


@dataclass
class _Context:
    """What compiled rules share during one evaluation."""

    db: dict[str, Relation]
    library: FunctionLibrary
    stats: Stats
    memos: dict[tuple[NRule, Expr], dict] = field(default_factory=dict)  #: per call site, over all versions


class _Source:
    """Python source of small functions of a binding `b`: only slot numbers and names are
    written into it; constants are passed in `env`."""

    def __init__(self) -> None:
        self.env: dict[str, Any] = {}

    def const(self, value: Any) -> str:
        name = f"c{len(self.env)}"
        self.env[name] = value
        return name

    def key(self, parts: list[tuple[bool, Any]]) -> str:
        """A binding's key for a view: parts are (is a slot, slot or constant) in position order."""
        keys = [f"b[{v}]" if is_slot else self.const(v) for is_slot, v in parts]
        return keys[0] if len(keys) == 1 else self.tuple(keys)

    @staticmethod
    def tuple(items: Iterable[str]) -> str:
        return "(" + "".join(f"{i}, " for i in items) + ")"

    def compile(self, source: str) -> Callable:
        return eval(source, self.env)  # noqa: S307  # generated from slot numbers only


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


def _is_scan(spec: View, arity: int) -> bool:
    return spec == ((), tuple(range(arity)), ())


def _join(atom: Atom, slots: dict[str, int], from_delta: bool) -> StepFn:
    spec, parts, new_vars = _access(atom.args, slots, lambda v: v not in slots)
    slots.update({v: len(slots) + k for k, v in enumerate(new_vars)})
    name = atom.predicate
    if _is_scan(spec, atom.arity):  # whole rows: no index needed
        def scan(bindings: Bindings, db: Relations, delta: Relations) -> Bindings:
            rows = (delta if from_delta else db)[name].rows
            return list(rows) if bindings == [()] else [b + r for b in bindings for r in rows]
        return scan
    src = _Source()
    probe = src.compile(f"lambda bindings, get: [b + o for b in bindings for o in get({src.key(parts)}, ())]")
    return lambda bindings, db, delta: probe(bindings, (delta if from_delta else db)[name].view(spec).get)


def _final_join(atom: Atom, slots: dict[str, int], from_delta: bool, head: Atom) -> FinishFn:
    """The last join and the head in one comprehension: the head row is built straight from the
    binding and the matched row, without the binding they would make."""
    spec, parts, new_vars = _access(atom.args, slots, lambda v: v not in slots)
    src = _Source()
    row = src.tuple(src.const(a.value) if isinstance(a, Const) else
                    f"b[{slots[a.name]}]" if a.name in slots else f"o[{new_vars.index(a.name)}]"
                    for a in head.args)
    name = atom.predicate
    if _is_scan(spec, atom.arity):
        scan = src.compile(f"lambda bindings, rows: {{{row} for b in bindings for o in rows}}")
        return lambda bindings, db, delta: scan(bindings, (delta if from_delta else db)[name].rows)
    probe = src.compile(f"lambda bindings, get: {{{row} for b in bindings for o in get({src.key(parts)}, ())}}")
    return lambda bindings, db, delta: probe(bindings, (delta if from_delta else db)[name].view(spec).get)


def _negation(atom: Atom, slots: dict[str, int]) -> StepFn:
    spec, parts, _ = _access(atom.args, slots, lambda v: v not in slots)
    spec = (spec[0], (), spec[2])  # existential variables: only whether some row matches
    src = _Source()
    absent = src.compile(f"lambda bindings, index: [b for b in bindings if {src.key(parts)} not in index]")
    return lambda bindings, db, delta: absent(bindings, db[atom.predicate].view(spec))


def _filter(check: Callable[[Row], bool]) -> StepFn:
    return lambda bindings, db, delta: [b for b in bindings if check(b)]


def _assign(value: Callable[[Row], Any]) -> StepFn:
    def step(bindings: Bindings, db: Relations, delta: Relations) -> Bindings:
        return [b + (v,) for b in bindings if (v := value(b)) is not None]
    return step


def _needed_later(rule: NRule, plan: tuple[tuple[int, str | None], ...]) -> list[set[str]]:
    """For each step of the plan: the variables the steps after it and the head still read."""
    needed: list[set[str]] = [set() for _ in plan]
    later = rule.head.variables()
    for n in range(len(plan) - 1, -1, -1):
        needed[n] = set(later)
        item = rule.body[plan[n][0]]
        later |= item.atom.variables() if isinstance(item, Literal) else set(
            expr_vars(item.left) | expr_vars(item.right))
    return needed


class _Compiler:
    """Turns one planned rule version into step functions and a finish (bindings -> head rows)."""

    def __init__(self, rule: NRule, ctx: _Context):
        self.rule, self.ctx = rule, ctx
        self.slots: dict[str, int] = {}

    def compile(self, plan: tuple[tuple[int, str | None], ...], delta_at: int | None) -> Compiled:
        steps: list[StepFn] = []
        needed = _needed_later(self.rule, plan)
        for n, (i, assigned) in enumerate(plan):
            item = self.rule.body[i]
            join = isinstance(item, Literal) and not item.negated
            if join and n == len(plan) - 1:
                return steps, _final_join(item.atom, self.slots, i == delta_at, self.rule.head)  # type: ignore[union-attr]
            if join and n and set(self.slots) - needed[n - 1]:
                steps.append(self.project(needed[n - 1]))
            if isinstance(item, Literal):
                steps.append(_join(item.atom, self.slots, i == delta_at) if join else
                             _negation(item.atom, self.slots))
            elif assigned is not None:
                other = item.right if isinstance(item.left, Var) and item.left.name == assigned else item.left
                steps.append(_assign(self.expr(other)))
                self.slots[assigned] = len(self.slots)
            else:
                steps.append(_filter(comparison(item.op, self.expr(item.left), self.expr(item.right))))
        head = self.function(Atom("", self.rule.head.args))
        return steps, lambda bindings, db, delta: map(head, bindings)

    def function(self, atom: Atom) -> Callable[[Row], Row]:
        """binding -> the atom's arguments as a row."""
        src = _Source()
        row = src.tuple(src.const(a.value) if isinstance(a, Const) else f"b[{self.slots[a.name]}]"
                        for a in atom.args)
        return src.compile(f"lambda b: {row}")

    def project(self, keep: set[str]) -> StepFn:
        """Drop the variables nothing after needs, and the duplicate bindings that leaves: a join
        then runs once per distinct binding rather than once per way of reaching it."""
        kept = [v for v in self.slots if v in keep]
        getter = self.function(Atom("", tuple(Var(v) for v in kept)))
        self.slots = {v: k for k, v in enumerate(kept)}
        return lambda bindings, db, delta: list(set(map(getter, bindings)))

    def expr(self, e: Expr) -> Callable[[Row], Any]:
        def memo(call: Expr) -> dict:
            return self.ctx.memos.setdefault((self.rule, call), {})
        return ExprCompiler(dict(self.slots), self.relation, self.ctx.library, self.rule.where(), memo).expr(e)

    def relation(self, rel: RelArg) -> tuple[Callable[[Row], Any], Mapping[Any, list[Row]]]:
        """A relation argument: the key of its group values, and the view from key to bindings."""
        spec, parts, _ = _access(rel.atom.args, self.slots, lambda v: v not in rel.group)
        src = _Source()
        return src.compile(f"lambda b: {src.key(parts)}"), self.ctx.db[rel.atom.predicate].view(spec)


# ------------------------------------------------------------------------------------- evaluation


def _evaluate(strat: Stratification, by_head: Mapping[str, list[NRule]], ctx: _Context,
              wanted: Callable[[tuple[str, ...]], bool]) -> None:
    """Evaluate every wanted component with rules, in dependency order."""
    for comp, recursive in zip(strat.components, strat.recursive):
        rules = [r for p in comp for r in by_head.get(p, ())]
        if rules and wanted(comp):
            for p in comp:
                ctx.db.setdefault(p, Relation())
            _component(set(comp), rules, recursive, ctx)


def _component(members: set[str], rules: list[NRule], recursive: bool, ctx: _Context) -> None:
    db = ctx.db

    def compiled(rule: NRule, first: int | None) -> Compiled:
        ctx.stats.rules += 1
        plan = plan_body(rule, first=first, cost=lambda p: len(db[p].rows) if p in db else 0.0)
        return _Compiler(rule, ctx).compile(plan, first)

    delta = _round([(r, compiled(r, None)) for r in rules], db, {}, ctx.stats)
    if not recursive:
        return
    versions = [(r, item.atom.predicate, compiled(r, i)) for r in rules for i, item in enumerate(r.body)
                if isinstance(item, Literal) and not item.negated and item.atom.predicate in members]
    while delta:
        ctx.stats.iterations += 1
        delta = _round([(r, plan) for r, pred, plan in versions if pred in delta], db, delta, ctx.stats)


def _round(plans: list[tuple[NRule, Compiled]], db: dict[str, Relation], delta: Relations,
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
        base = _base_rows([*program.facts, *facts])
        rules = normalize(program.rules)
        self.arity = check_arities(rules, {p: (len(next(iter(rs))), f"facts of {p}") for p, rs in base.items()})
        if any("#" in p for p in self.arity):
            raise ProgramError(f"predicate names cannot contain '#': {sorted(p for p in self.arity if '#' in p)}")
        for p in sorted({r.head.predicate for r in rules} & set(base)):  # facts of derived predicates
            args = tuple(Var(f"_#{i}") for i in range(self.arity[p]))
            rules.append(NRule(Atom(p, args), (Literal(Atom(f"{p}#facts", args)),)))
            base[f"{p}#facts"] = base.pop(p)
        check_safety(rules)
        self.stratification = stratify(rules)
        self._by_head: dict[str, list[NRule]] = defaultdict(list)
        for r in rules:
            self._by_head[r.head.predicate].append(r)
        self._graph = dependencies(rules)
        self._component_of = {p: i for i, comp in enumerate(self.stratification.components) for p in comp}
        # facts are only ever read, so their relations and indexes serve every query and reset
        self._facts = {p: Relation(rows) for p, rows in base.items()}
        self._magic: dict[tuple[str, str], tuple[MagicProgram, Stratification]] = {}
        self.last_stats: Stats | None = None
        self.reset()

    def reset(self) -> None:
        """Forget every derived relation, keeping the facts, their indexes and the rewrites."""
        self._db: dict[str, Relation] = dict(self._facts)
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
        with self._measured() as stats:
            ad = "".join("b" if isinstance(a, Const) else "f" for a in atom.args)
            if magic and "b" in ad and atom.predicate in self._by_head:
                rows: Iterable[Row] = self._magic_rows(atom, ad, stats)
            else:
                self._materialize({atom.predicate}, stats)
                rows = self._db[atom.predicate].rows
            return _sorted(_matching(rows, atom))

    def relation(self, name: str) -> set[Row]:
        """The whole relation (a copy); empty for a predicate the program does not know."""
        with self._measured() as stats:
            self._materialize({name}, stats)
            return set(self._db[name].rows) if name in self._db else set()

    def evaluate_all(self) -> dict[str, set[Row]]:
        """Every relation of the program, materialized."""
        with self._measured() as stats:
            self._materialize(set(self._graph), stats)
            return {p: set(r.rows) for p, r in self._db.items() if "#" not in p}

    @contextmanager
    def _measured(self) -> Iterator[Stats]:
        stats = Stats()
        start = time.perf_counter()
        try:
            yield stats
        finally:
            stats.seconds = time.perf_counter() - start
            self.last_stats = stats

    def _goal(self, goal: Atom | Query) -> Atom:
        atom = goal.atom if isinstance(goal, Query) else goal
        fresh = (Var(f"_#q{i}") for i in count())
        if atom.predicate == "query" and "query" not in self.arity and atom.args:
            name, given = atom.args[0], len(atom.args) - 1
            if not isinstance(name, Const) or not isinstance(name.value, str):
                raise EngineError(f"{atom}: the first argument must name a predicate")
            have = self.arity.get(name.value, -1)
            if have < given:
                raise EngineError(f"{atom}: no predicate {name.value} taking {given} or more arguments")
            atom = Atom(name.value, atom.args[1:] + tuple(next(fresh) for _ in range(have - given)))
        if atom.predicate not in self.arity:
            raise EngineError(f"unknown predicate {atom.predicate} in goal {atom}")
        if self.arity[atom.predicate] != atom.arity:
            raise ArityError(f"goal {atom}: {atom.predicate} has arity {self.arity[atom.predicate]}")
        if not all(isinstance(a, (Var, Const)) for a in atom.args):
            raise EngineError(f"goal {atom}: arguments must be variables or constants")
        return Atom(atom.predicate, tuple(next(fresh) if a == Var("_") else a for a in atom.args))

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
        if needed:
            ctx = _Context(self._db, self.library, stats)
            _evaluate(self.stratification, self._by_head, ctx, lambda comp: bool(needed.intersection(comp)))
            self._done |= needed

    def _magic_rows(self, atom: Atom, ad: str, stats: Stats) -> set[Row]:
        key = (atom.predicate, ad)
        if key not in self._magic:
            self._magic[key] = magic_program(self._by_head, atom.predicate, ad, self._component_of)
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


def _base_rows(facts: Iterable[FactInput]) -> dict[str, set[Row]]:
    base: dict[str, set[Row]] = defaultdict(set)
    for f in facts:
        if isinstance(f, (Atom, Fact)):
            atom = fact_atom(f)
            base[atom.predicate].add(tuple(c.value for c in atom.args))  # type: ignore[union-attr]
        else:
            base[f[0]].add(tuple(f[1]))
    for pred, rows in base.items():
        if len({len(r) for r in rows}) > 1:
            raise ArityError(f"facts of {pred} have arities {sorted({len(r) for r in rows})}")
    return base


def _matching(rows: Iterable[Row], goal: Atom) -> list[Row]:
    """The rows that agree with the goal's constants and its repeated variables."""
    consts = [(i, a.value) for i, a in enumerate(goal.args) if isinstance(a, Const)]
    first: dict[str, int] = {}
    same = [(i, first.setdefault(a.name, i)) for i, a in enumerate(goal.args)
            if isinstance(a, Var) and first.setdefault(a.name, i) != i]
    return [r for r in rows if all(r[i] == v for i, v in consts) and all(r[i] == r[j] for i, j in same)]


def _sorted(rows: list[Row]) -> list[Row]:
    try:
        return sorted(rows)
    except TypeError:  # mixed types in a column: order by type, then value
        return sorted(rows, key=lambda r: tuple((type(v).__name__, repr(v)) for v in r))
