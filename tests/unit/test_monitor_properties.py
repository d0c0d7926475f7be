"""Property tests of the engine: random stratified programs, evaluated by the engine (plain and
with magic sets, on random goals with and without constants) and by a brute-force evaluator
written here, which must agree.

The programs: a few derived predicates of arity 1-2 over base relations on a small domain; rules
with positive and negated literals (with existential variables), comparisons and aggregates
(count, sum, min, max).  Stratified by construction: each derived predicate has a level; a
positive literal may read its own level (recursion, mutual recursion), a negated literal or an
aggregate only lower ones.  The reference evaluator knows nothing of joins, indexes or magic: per
level, it applies every rule to every assignment of its variables over the active domain until
nothing changes, reading negation and aggregation by their definitions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import product
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.ast import Atom, Call, Comparison, Const, Literal, Program, Rule, Term, Var
from monitor.engine import Engine

DOMAIN = (0, 1, 2)
BASE = {"a": 1, "b": 2, "c": 2}
VARS = ("V0", "V1", "V2")
OPS = ("==", "!=", "<", "<=", ">", ">=")
AGGREGATES = ("count", "sum", "min", "max")


@dataclass
class Case:
    rules: list[Rule]
    facts: dict[str, set[tuple]]
    level: dict[str, int]  #: derived predicate -> level
    arity: dict[str, int]


def terms(draw: st.DrawFn, n: int, variables: list[str], const_weight: int = 1) -> tuple[Term, ...]:
    """n arguments, each a variable (three times as likely as a given constant) or a constant."""
    pool = [Var(v) for v in variables] * 3 + [Const(c) for c in DOMAIN] * const_weight
    return tuple(draw(st.sampled_from(pool)) for _ in range(n))


ROWS = {k: list(product(DOMAIN, repeat=k)) for k in (1, 2)}


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(1, 4))
    arity = dict(BASE) | {f"p{i}": draw(st.integers(1, 2)) for i in range(n)}
    steps = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    level = {f"p{i}": sum(steps[1:i + 1]) for i in range(n)}
    facts = {}
    for p, k in BASE.items():
        mask = draw(st.integers(0, 2 ** len(ROWS[k]) - 1))
        facts[p] = {row for i, row in enumerate(ROWS[k]) if mask >> i & 1}
    counts = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    base_cases = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))  # 0: none, often recursive
    rules = [draw(rules_for(f"p{i}", arity, level, k == 0 and base_cases[i] > 0))
             for i in range(n) for k in range(counts[i])]
    return Case(rules, facts, level, arity)


@st.composite
def rules_for(draw: st.DrawFn, head: str, arity: dict[str, int], level: dict[str, int], first: bool) -> Rule:
    """A safe rule for `head`; its first rule reads lower levels only (a base case, mostly)."""
    lower = sorted(BASE) + [p for p in level if level[p] < level[head]]
    readable = lower if first else sorted(BASE) + [p for p in level if level[p] <= level[head]]
    body: list[Literal | Comparison] = []
    for _ in range(draw(st.sampled_from([1, 1, 2, 2, 3]))):
        pred = draw(st.sampled_from(readable))
        body.append(Literal(Atom(pred, terms(draw, arity[pred], list(VARS)))))
    bound = sorted({a.name for item in body for a in item.atom.args if isinstance(a, Var)})  # type: ignore[union-attr]
    for k in range(draw(st.sampled_from([0, 0, 1, 1, 2]))):
        pred = draw(st.sampled_from(lower))
        pool = [Var(v) for v in bound] * 3 + [Var(f"E{k}a"), Var(f"E{k}b")]  # E: only in this literal
        pool += [Const(c) for c in DOMAIN]
        body.append(Literal(Atom(pred, tuple(draw(st.sampled_from(pool)) for _ in range(arity[pred]))), True))
    if bound and draw(st.booleans()):
        right: Term = Var(draw(st.sampled_from(bound))) if draw(st.booleans()) else Const(draw(st.sampled_from(DOMAIN)))
        body.append(Comparison(draw(st.sampled_from(OPS)), Var(draw(st.sampled_from(bound))), right))
    if arity[head] == 2 and bound and draw(st.integers(0, 9)) < 3:
        group = draw(st.sampled_from(bound))
        pred = draw(st.sampled_from(lower))
        args = terms(draw, arity[pred], [group, "W", "W2"], const_weight=0)
        agg = Call(draw(st.sampled_from(AGGREGATES)), (Atom(pred, args),))
        body.append(Comparison("==", Var("N"), agg))
        return Rule(Atom(head, (Var(group), Var("N"))), tuple(body))
    return Rule(Atom(head, terms(draw, arity[head], bound)), tuple(body))


# ---------------------------------------------------------------------------- the reference


def value(t: Term, env: dict[str, Any]) -> Any:
    return env[t.name] if isinstance(t, Var) else t.value  # type: ignore[union-attr]


def holds(atom: Atom, env: dict[str, Any], rel: dict[str, set[tuple]]) -> bool:
    return tuple(value(a, env) for a in atom.args) in rel[atom.predicate]


def assignments(names: list[str], domain: list[Any], env: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for values in product(domain, repeat=len(names)):
        yield env | dict(zip(names, values))


def compare(op: str, x: Any, y: Any) -> bool:
    return {"==": x == y, "!=": x != y, "<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def aggregate(call: Call, group: set[str], env: dict[str, Any], rel: dict, domain: list) -> Any:
    """By definition: the bindings of the atom's non-group variables that make it true."""
    atom = call.args[0]
    assert isinstance(atom, Atom)
    local = sorted({a.name for a in atom.args if isinstance(a, Var) and a.name not in group})
    found = {tuple(e[v] for v in local): value(atom.args[-1], e)
             for e in assignments(local, domain, env) if holds(atom, e, rel)}
    values = list(found.values())
    if call.name == "count":
        return len(found)
    if call.name == "sum":
        return sum(values)
    return (min if call.name == "min" else max)(values) if values else None


def fire(rule: Rule, rel: dict[str, set[tuple]], domain: list) -> Iterator[tuple]:
    positive = [i.atom for i in rule.body if isinstance(i, Literal) and not i.negated]
    names = sorted({a.name for atom in positive for a in atom.args if isinstance(a, Var)})
    head_vars = {a.name for a in rule.head.args if isinstance(a, Var)}
    for env in assignments(names, domain, {}):
        if not all(holds(atom, env, rel) for atom in positive):
            continue
        ok = True
        for item in rule.body:
            if isinstance(item, Literal) and item.negated:
                free = sorted({a.name for a in item.atom.args if isinstance(a, Var)} - set(env))
                ok = not any(holds(item.atom, e, rel) for e in assignments(free, domain, env))
            elif isinstance(item, Comparison) and isinstance(item.right, Call):
                result = aggregate(item.right, head_vars - {"N"}, env, rel, domain)
                ok = result is not None
                env = env | {"N": result}
            elif isinstance(item, Comparison):
                ok = compare(item.op, value(item.left, env), value(item.right, env))  # type: ignore[arg-type]
            if not ok:
                break
        if ok:
            yield tuple(value(a, env) for a in rule.head.args)


def reference_model(case: Case) -> dict[str, set[tuple]]:
    rel: dict[str, set[tuple]] = defaultdict(set, {p: set(rows) for p, rows in case.facts.items()})
    constants = {a.value for r in case.rules for i in r.body if isinstance(i, Literal)
                 for a in i.atom.args if isinstance(a, Const)}
    for level in sorted(set(case.level.values())):
        layer = [r for r in case.rules if case.level[r.head.predicate] == level]
        changed = True
        while changed:
            domain = sorted(constants | set(DOMAIN) | {v for rows in rel.values() for row in rows for v in row})
            new = {(r.head.predicate, row) for r in layer for row in fire(r, rel, domain)}
            changed = any(row not in rel[p] for p, row in new)
            for p, row in new:
                rel[p].add(row)
    return rel


# ------------------------------------------------------------------------------------ the tests


def engine_for(case: Case) -> Engine:
    rows = [(p, row) for p, rs in case.facts.items() for row in rs]
    return Engine(Program(rules=tuple(case.rules)), rows)


@st.composite
def goals(draw: st.DrawFn, arity: dict[str, int], model: dict[str, set[tuple]]) -> Atom:
    """Mostly derived predicates; constants often taken from an answer, so that the goal-directed
    path has answers to find, and sometimes 3, which no base fact holds."""
    derived = [p for p in sorted(arity) if p not in BASE]
    pred = draw(st.sampled_from(derived * 4 + [p for p in sorted(arity) if p in BASE]))
    rows = sorted(model.get(pred, ()))
    row = draw(st.sampled_from(rows)) if rows and draw(st.booleans()) else None
    args = []
    for i in range(arity[pred]):
        if draw(st.booleans()):
            args.append(Var(draw(st.sampled_from(["X", "Y"]))))
        else:
            args.append(Const(row[i] if row else draw(st.sampled_from(DOMAIN + (3,)))))
    return Atom(pred, tuple(args))


def matching(rows: set[tuple], goal: Atom) -> list[tuple]:
    out = []
    for row in rows:
        env: dict[str, Any] = {}
        if all((env.setdefault(a.name, v) == v) if isinstance(a, Var) else a.value == v
               for a, v in zip(goal.args, row)):
            out.append(row)
    return sorted(out)


@settings(max_examples=max(500, settings.default.max_examples), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_magic_and_plain_answers_equal_the_reference(data: st.DataObject) -> None:
    case = data.draw(cases())
    model = reference_model(case)
    magic, plain = engine_for(case), engine_for(case)
    known = {p: k for p, k in case.arity.items() if p in magic.arity}  # a predicate nothing mentions is unknown
    for goal in data.draw(st.lists(goals(known, model), min_size=1, max_size=4)):
        expected = matching(model.get(goal.predicate, set()), goal)
        assert magic.query(goal) == expected, goal
        assert plain.query(goal, magic=False) == expected, goal


@settings(max_examples=max(200, settings.default.max_examples), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_whole_model_equals_the_reference(case: Case) -> None:
    model = reference_model(case)
    computed = engine_for(case).evaluate_all()
    for pred in case.arity:
        assert computed.get(pred, set()) == model.get(pred, set()), pred
