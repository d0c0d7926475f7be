"""The Datalog engine of the recursive monitor: the draft's Figure 1 programs (section 7), errors,
aggregates, comparisons, recursion, negation and goal-directed (magic-sets) evaluation.

Programs are built as ASTs here, so that these tests do not depend on the parser."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.ast import Atom, Call, Comparison, Const, Fact, Literal, Position, Program, Query, Rule, Term, Var
from monitor.builtins import CallError, FunctionLibrary, UnknownFunctionError
from monitor.engine import ArityError, Engine, EngineError, SafetyError, StratificationError
from tests.monitor_samples import SAMPLE_E2E

X, Y, Z, M, S, D, P, C, N, V, W = (Var(n) for n in "X Y Z M S D P C N V W".split())


def term(value: Any) -> Term | Atom:
    return value if isinstance(value, (Var, Const, Call, Atom)) else Const(value)


def atom(pred: str, *args: Any) -> Atom:
    return Atom(pred, tuple(term(a) for a in args))  # type: ignore[misc]


def lit(pred: str, *args: Any) -> Literal:
    return Literal(atom(pred, *args))


def neg(pred: str, *args: Any) -> Literal:
    return Literal(atom(pred, *args), negated=True)


def call(name: str, *args: Any) -> Call:
    return Call(name, tuple(term(a) for a in args))


def cmp(left: Any, op: str, right: Any) -> Comparison:
    return Comparison(op, term(left), term(right))  # type: ignore[arg-type]


def rule(head: Atom, *body: Literal | Comparison, label: str | None = None, line: int | None = None) -> Rule:
    return Rule(head, tuple(body), label, Position(line, 1) if line else None)


def facts(pred: str, *rows: tuple) -> list[tuple[str, tuple]]:
    return [(pred, row) for row in rows]


def both(engine: Engine, goal: Atom | Query) -> list[tuple]:
    """The answer, checked to be the same with and without magic sets."""
    magic = engine.query(goal)
    assert engine.query(goal, magic=False) == magic
    return magic


# ------------------------------------------------------------------------------------ Figure 1

SUB = {  # F1, each n-ary sub(x, a, b) expanded into sub(x, a) and sub(x, b)
    "NF1": ["VNF1-1", "VNF1-2"], "NF2": ["VNF2-1", "VNF2-2"], "VNF1-1": ["VNF1-3", "vm1"],
    "VNF1-2": ["vm2", "vm3"], "VNF1-3": ["vm7", "vm8"], "VNF2-1": ["vm4", "vm5"],
    "VNF2-2": ["vm6", "VNF2-3"], "VNF2-3": ["vm9", "vm10"],
}
LINK = [("NF1", "NF2"), ("VNF1-3", "vm1"), ("vm2", "vm3"), ("vm3", "vm4"), ("vm4", "vm5"),
        ("vm5", "vm6"), ("vm6", "VNF2-3"), ("vm7", "vm8"), ("vm9", "vm10")]  # F2
F1 = tuple(Fact(atom("sub", x, y), "F1") for x, ys in SUB.items() for y in ys)
F2 = tuple(Fact(atom("link", x, y), "F2") for x, y in LINK)
R1 = rule(atom("child", X, Y), lit("sub", X, Z), lit("child", Z, Y), label="R1", line=1)
R2 = rule(atom("child", X, Y), lit("sub", X, Y), label="R2", line=2)
R3 = rule(atom("leaf", X, Y), lit("child", X, Y), neg("sub", Y, Z), label="R3", line=3)
R4 = rule(atom("in_leaf", X, Y), lit("leaf", X, Y), neg("link", M, Y), label="R4", line=4)
R5 = rule(atom("out_leaf", X, Y), lit("leaf", X, Y), neg("link", Y, M), label="R5", line=5)
R6 = rule(atom("e2e_delay", S, D, P), lit("link", S, D),
          cmp(P, "==", call("f_e2e_delay", atom("in_leaf", S, Y), atom("out_leaf", D, Z))), label="R6", line=6)
MAX_CPU = rule(atom("max_cpu", X, C), lit("leaf", X, Y), cmp(C, "==", call("f_max_cpu", atom("leaf", X, Y)))
               , label="R4", line=4)
MEAN_CPU = rule(atom("mean_cpu", X, C), lit("leaf", X, Y), cmp(C, "==", call("f_mean_cpu", atom("leaf", X, Y))),
                label="R5", line=5)
DELAY_PROGRAM = Program(F1 + F2, (R1, R2, R3, R4, R5, R6))
CPU_PROGRAM = Program(F1, (R1, R2, R3, MAX_CPU, MEAN_CPU))
CPU = {"vm1": 10.0, "vm2": 20.0, "vm3": 30.0, "vm7": 70.0, "vm8": 80.0, "vm4": 40.0, "vm5": 50.0,
       "vm6": 60.0, "vm9": 90.0, "vm10": 5.0}


def descendants(node: str) -> set[str]:
    out: set[str] = set()
    for child in SUB.get(node, []):
        out |= {child} | descendants(child)
    return out


class FakeMetrics:
    """Library functions over the CPU table, recording what the engine passed them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    def library(self) -> FunctionLibrary:
        return FunctionLibrary({"f_max_cpu": self.max_cpu, "f_mean_cpu": self.mean_cpu, "f_e2e_delay": self.e2e})

    def max_cpu(self, leaves: frozenset) -> float:
        self.calls.append(("f_max_cpu", (leaves,)))
        return max(CPU[v] for v in leaves)

    def mean_cpu(self, leaves: frozenset) -> float:
        self.calls.append(("f_mean_cpu", (leaves,)))
        return sum(CPU[v] for v in leaves) / len(leaves)

    def e2e(self, ingress: frozenset, egress: frozenset) -> float:
        self.calls.append(("f_e2e_delay", (ingress, egress)))
        return 12.5 * len(ingress) + len(egress)


def test_figure1_child_is_the_closure_of_sub() -> None:
    engine = Engine(DELAY_PROGRAM)
    expected = {(x, y) for x in SUB for y in descendants(x)}
    assert engine.relation("child") == expected
    assert {y for _, y in both(engine, atom("child", "NF1", Y))} == {
        "VNF1-1", "VNF1-2", "VNF1-3", "vm1", "vm2", "vm3", "vm7", "vm8"}


def test_figure1_leaves_ingress_and_egress() -> None:
    engine = Engine(DELAY_PROGRAM)
    assert both(engine, atom("leaf", "NF1", Y)) == [("NF1", v) for v in ["vm1", "vm2", "vm3", "vm7", "vm8"]]
    # The draft's prose says the ingress of NF1 is vm7 only, but by its rules R4 it is every leaf
    # without an incoming link: vm2 has none in F2 (only link(vm2, vm3) leaves it), so vm2 too.
    assert both(engine, atom("in_leaf", "NF1", Y)) == [("NF1", "vm2"), ("NF1", "vm7")]
    assert both(engine, atom("out_leaf", "NF2", Y)) == [("NF2", "vm10")]
    assert engine.relation("leaf") == {(x, y) for x in SUB for y in descendants(x) if y not in SUB}


def test_figure1_e2e_delay_gets_the_ingress_and_egress_sets() -> None:
    metrics = FakeMetrics()
    engine = Engine(DELAY_PROGRAM, library=metrics.library())
    goal = Query(atom("query", "e2e_delay", "NF1", "NF2"))
    assert engine.query(goal) == [("NF1", "NF2", 12.5 * 2 + 1)]
    assert metrics.calls == [("f_e2e_delay", (frozenset({"vm2", "vm7"}), frozenset({"vm10"})))]
    assert engine.query(goal, magic=False) == [("NF1", "NF2", 26.0)]


def test_figure1_max_and_mean_cpu_once_per_function() -> None:
    metrics = FakeMetrics()
    engine = Engine(CPU_PROGRAM, library=metrics.library())
    assert engine.query(Query(atom("query", "max_cpu", "NF1"))) == [("NF1", 80.0)]
    assert engine.query(atom("mean_cpu", "NF1", C)) == [("NF1", (10 + 20 + 30 + 70 + 80) / 5)]
    leaves = frozenset({"vm1", "vm2", "vm3", "vm7", "vm8"})
    # five leaves bind Y in R4's body, yet the call is evaluated once for X = NF1
    assert metrics.calls == [("f_max_cpu", (leaves,)), ("f_mean_cpu", (leaves,))]
    assert engine.query(atom("max_cpu", X, C), magic=False) == [
        ("NF1", 80.0), ("NF2", 90.0), ("VNF1-1", 80.0), ("VNF1-2", 30.0), ("VNF1-3", 80.0),
        ("VNF2-1", 50.0), ("VNF2-2", 90.0), ("VNF2-3", 90.0)]


def test_strata_of_figure1() -> None:
    engine = Engine(DELAY_PROGRAM)
    assert engine.stratification.strata() == [
        ["child", "link", "sub"], ["in_leaf", "leaf", "out_leaf"], ["e2e_delay"]]


# ------------------------------------------------------------------------------------- errors


def test_negative_cycle_is_named_with_its_rule() -> None:
    program = Program(rules=(
        rule(atom("p", X), lit("r", X), neg("q", X), label="R2", line=4),
        rule(atom("q", X), lit("p", X), label="R3", line=5),
    ))
    with pytest.raises(StratificationError, match=r"^not stratifiable: p -> ~q -> p \(rule R2 at line 4\)$"):
        Engine(program)


def test_self_negation_and_aggregation_cycles() -> None:
    with pytest.raises(StratificationError, match=r"ok -> ~ok \(rule 'ok\(\) <= ~ok\(\)'\)") as info:
        Engine(Program(rules=(rule(atom("ok"), neg("ok")),)))
    assert info.value.code == "cyclic_negation"
    program = Program(rules=(
        rule(atom("p", X, N), lit("r", X), cmp(N, "==", call("count", atom("q", X, Y)))),
        rule(atom("q", X, Y), lit("p", X, Y)),
    ))
    with pytest.raises(StratificationError, match=r"p -> count\(q\) -> p"):
        Engine(program)


@pytest.mark.parametrize("body, message", [
    ((lit("q", Y),), "head variable X is not bound"),
    ((lit("q", X), cmp(Y, ">", 1)), r"variable Y in `Y > 1` is not bound"),
    ((lit("q", X), neg("r", X, Y), neg("s", Y)), "variable Y occurs only in negated literals, in more than one"),
    ((lit("q", X), cmp(Y, "==", call("fn_add", Z, 1))), "variable Z"),
    ((neg("q", X),), "variable X in `~q"),
])
def test_unsafe_rules_are_named(body: tuple, message: str) -> None:
    with pytest.raises(SafetyError, match=message) as info:
        Engine(Program(rules=(rule(atom("p", X), *body, label="R9", line=9),)))
    assert "rule R9 at line 9" in str(info.value)


def test_safe_forms_assignment_chains_and_existential_negation() -> None:
    program = Program(rules=(
        rule(atom("p", X, Z), lit("q", X), cmp(Y, "==", call("fn_add", X, 1)), cmp(call("fn_mul", Y, 2), "==", Z)),
        rule(atom("lonely", X), lit("q", X), neg("edge", X, Y)),  # no Y with edge(X, Y)
    ))
    engine = Engine(program, facts("q", (1,), (2,)) + facts("edge", (1, 5)))
    assert both(engine, atom("p", X, Z)) == [(1, 4), (2, 6)]
    assert both(engine, atom("lonely", X)) == [(2,)]


def test_arity_errors() -> None:
    with pytest.raises(ArityError, match="predicate q has arity 1"):
        Engine(Program(rules=(rule(atom("p", X), lit("q", X), lit("q", X, Y)),)))
    with pytest.raises(ArityError, match="arity_mismatch|arities"):
        Engine(facts=facts("fib", (0, 0, 2), (1, 1)))
    with pytest.raises(ArityError):
        Engine(Program(rules=(rule(atom("p", X), lit("q", X)),)), facts("q", (1, 2)))


def test_unknown_function_names_function_and_rule() -> None:
    engine = Engine(Program(F1, (R1, R2, R3, MAX_CPU)))
    assert both(engine, atom("leaf", "VNF1-2", Y)) == [("VNF1-2", "vm2"), ("VNF1-2", "vm3")]  # not evaluated
    with pytest.raises(UnknownFunctionError, match="unknown function 'f_max_cpu' in rule R4 at line 4"):
        engine.query(atom("max_cpu", "NF1", C))


def test_failing_function_and_malformed_aggregates() -> None:
    library = FunctionLibrary({"f_boom": lambda s: 1 / 0})
    program = Program(rules=(rule(atom("p", X, C), lit("q", X), cmp(C, "==", call("f_boom", atom("q", X)))),))
    with pytest.raises(CallError, match=r"f_boom failed in rule 'p\(X, C\).*ZeroDivisionError"):
        Engine(program, facts("q", (1,)), library).query(atom("p", X, C))
    with pytest.raises(CallError, match=r"topn takes \(N, relation\)"):
        Engine(Program(rules=(rule(atom("p", C), lit("q", X), cmp(C, "==", call("topn", atom("q", X)))),)))
    with pytest.raises(CallError, match=r"count takes \(relation\)"):
        Engine(Program(rules=(rule(atom("p", C), lit("q", X), cmp(C, "==", call("count", X))),)))
    with pytest.raises(ValueError, match="built-in aggregate"):
        FunctionLibrary().register("count", len)


# --------------------------------------------------------------------------------- aggregates

NODES = facts("node", ("a",), ("b",))
LOAD = facts("cpu", ("a", "vm1", 80), ("a", "vm2", 50), ("a", "vm3", 90), ("a", "vm4", 50))


def aggregate_engine(expr: Call) -> Engine:
    program = Program(rules=(rule(atom("agg", X, V), lit("node", X), cmp(V, "==", expr)),))
    return Engine(program, NODES + LOAD)


@pytest.mark.parametrize("name, a, b", [
    ("count", 4, 0), ("sum", 270, 0), ("min", 50, None), ("max", 90, None), ("mean", 67.5, None),
])
def test_aggregates_and_their_empty_sets(name: str, a: Any, b: Any) -> None:
    engine = aggregate_engine(call(name, atom("cpu", X, Y, V)))
    expected = [("a", a)] + ([("b", b)] if b is not None else [])
    assert both(engine, atom("agg", X, V)) == expected
    assert both(engine, atom("agg", "b", V)) == expected[1:]


def test_topn_and_bottomn() -> None:
    top = aggregate_engine(call("topn", 3, atom("cpu", X, Y, V)))
    assert both(top, atom("agg", "a", V)) == [("a", (("vm3", 90), ("vm1", 80), ("vm2", 50)))]  # ties by name
    assert both(top, atom("agg", "b", V)) == []
    bottom = aggregate_engine(call("bottomn", 2, atom("cpu", X, Y, V)))
    assert both(bottom, atom("agg", X, V)) == [("a", (("vm2", 50), ("vm4", 50)))]
    everything = aggregate_engine(call("topn", 10, atom("cpu", X, Y, V)))
    assert len(both(everything, atom("agg", "a", V))[0][1]) == 4


def test_aggregate_over_constants_and_nested_calls() -> None:
    engine = aggregate_engine(call("fn_mul", call("count", atom("cpu", X, Y, 50)), 10))
    assert both(engine, atom("agg", X, V)) == [("a", 20), ("b", 0)]


def test_relation_arguments_as_library_functions_see_them() -> None:
    seen = []
    library = FunctionLibrary({"f_seen": lambda one, two, none: seen.append((one, two, none)) or len(seen)})
    program = Program(rules=(rule(atom("p", X, V), lit("node", X), cmp(V, "==", call(
        "f_seen", atom("cpu", X, Y, 50), atom("cpu", X, Y, W), atom("node", X)))),))
    Engine(program, NODES + LOAD, library).query(atom("p", "a", V))
    assert seen == [(frozenset({"vm2", "vm4"}), frozenset({("vm1", 80), ("vm2", 50), ("vm3", 90), ("vm4", 50)}),
                     frozenset({()}))]


def test_function_without_a_value_does_not_fire() -> None:
    library = FunctionLibrary({"f_half": lambda x: None if x % 2 else x // 2})
    program = Program(rules=(
        rule(atom("half", X, Y), lit("n", X), cmp(Y, "==", call("f_half", X))),
        rule(atom("inv", X, Y), lit("n", X), cmp(Y, "==", call("fn_div", 1, X))),
    ))
    engine = Engine(program, facts("n", (0,), (1,), (2,), (4,)), library)
    assert both(engine, atom("half", X, Y)) == [(0, 0), (2, 1), (4, 2)]
    assert both(engine, atom("inv", X, Y)) == [(1, 1.0), (2, 0.5), (4, 0.25)]


def test_calls_are_memoized_across_semi_naive_rounds() -> None:
    calls = []
    library = FunctionLibrary({"f_limit": lambda k: calls.append(k) or 10})
    program = Program(rules=(
        rule(atom("r", 0)),
        rule(atom("r", Y), lit("r", X), lit("e", X, Y), cmp(Y, "<", call("f_limit", "hops"))),
    ))
    engine = Engine(program, facts("e", *[(i, i + 1) for i in range(20)]), library)
    assert both(engine, atom("r", X)) == [(i,) for i in range(10)]
    assert calls == ["hops"]  # once, not once per round and rule version (and r is kept: no 2nd call)


# -------------------------------------------------------------------------------- comparisons


def test_comparisons_filter_and_mixed_types_are_unordered() -> None:
    program = Program(rules=(
        rule(atom("lt", X, Y), lit("v", X), lit("v", Y), cmp(X, "<", Y)),
        rule(atom("ne", X, Y), lit("v", X), lit("v", Y), cmp(X, "!=", Y), cmp(Y, ">=", 2)),
        rule(atom("eq", X), lit("v", X), cmp(X, "==", 2)),
    ))
    engine = Engine(program, facts("v", (1,), (2,), (3,), ("x",)))
    assert both(engine, atom("lt", X, Y)) == [(1, 2), (1, 3), (2, 3)]
    assert both(engine, atom("ne", X, 2)) == [(1, 2), (3, 2), ("x", 2)]
    assert both(engine, atom("eq", X)) == [(2,)]


def test_calls_in_heads_and_body_atoms_are_lifted() -> None:
    program = Program(rules=(
        rule(atom("next", X, call("fn_add", X, 1)), lit("n", X)),
        rule(atom("has_next", X), lit("n", X), lit("n", call("fn_add", X, 1))),
    ))
    engine = Engine(program, facts("n", (1,), (2,), (5,)))
    assert both(engine, atom("next", X, Y)) == [(1, 2), (2, 3), (5, 6)]
    assert both(engine, atom("has_next", X)) == [(1,)]


# ----------------------------------------------------------------------------- goals, queries


def test_goal_constants_and_repeated_variables_filter() -> None:
    engine = Engine(DELAY_PROGRAM)
    assert both(engine, atom("child", "NF1", "vm7")) == [("NF1", "vm7")]
    assert both(engine, atom("child", "NF1", "vm9")) == []
    loops = Engine(Program(rules=(rule(atom("path", X, Y), lit("e", X, Y)),
                                  rule(atom("path", X, Y), lit("e", X, Z), lit("path", Z, Y)))),
                   facts("e", (1, 2), (2, 1), (2, 3)))
    assert both(loops, atom("path", X, X)) == [(1, 1), (2, 2)]


def test_query_form_fills_the_result_arguments() -> None:
    engine = Engine(CPU_PROGRAM, library=FakeMetrics().library())
    assert engine.query(Query(atom("query", "max_cpu", "VNF1-2"))) == [("VNF1-2", 30.0)]
    assert engine.query(Query(atom("query", "child", "VNF1-3"))) == [("VNF1-3", "vm7"), ("VNF1-3", "vm8")]
    with pytest.raises(EngineError, match="no predicate nosuch"):
        engine.query(Query(atom("query", "nosuch", "NF1")))
    with pytest.raises(EngineError, match="unknown predicate"):
        engine.query(atom("nosuch", X))
    with pytest.raises(ArityError):
        engine.query(atom("child", X))


def test_extra_facts_as_atoms_rows_and_facts_with_rules() -> None:
    program = Program((Fact(atom("e", 1, 2)),), (rule(atom("e", X, Y), lit("e", Y, X)),))
    engine = Engine(program, [atom("e", 3, 4), ("e", (5, 6))])
    assert both(engine, atom("e", X, Y)) == [(1, 2), (2, 1), (3, 4), (4, 3), (5, 6), (6, 5)]
    assert both(engine, atom("e", 2, Y)) == [(2, 1)]


# -------------------------------------------------------------------------------- recursion

PATH = (rule(atom("path", X, Y), lit("edge", X, Y)),
        rule(atom("path", X, Y), lit("path", X, Z), lit("edge", Z, Y)))


def test_transitive_closure_with_a_cycle() -> None:
    engine = Engine(Program(rules=PATH), facts("edge", (1, 2), (2, 3), (3, 1), (3, 4)))
    expected = {(a, b) for a in (1, 2, 3) for b in (1, 2, 3, 4)}
    assert engine.relation("path") == expected
    assert both(engine, atom("path", 4, Y)) == []
    assert both(engine, atom("path", 2, Y)) == [(2, 1), (2, 2), (2, 3), (2, 4)]


def test_same_generation() -> None:
    program = Program(rules=(
        rule(atom("sg", X, X), lit("person", X)),
        rule(atom("sg", X, Y), lit("parent", X, Z), lit("sg", Z, W), lit("parent", Y, W)),
    ))
    parents = facts("parent", ("b", "a"), ("c", "a"), ("d", "b"), ("e", "c"), ("f", "d"))
    people = facts("person", *[(p,) for p in "abcdef"])
    engine = Engine(program, parents + people)
    assert both(engine, atom("sg", "d", Y)) == [("d", "d"), ("d", "e")]
    assert both(engine, atom("sg", "f", Y)) == [("f", "f")]
    assert ("b", "c") in engine.relation("sg")


def test_mutual_recursion() -> None:
    program = Program(rules=(
        rule(atom("even", 0)),
        rule(atom("even", Y), lit("odd", X), lit("succ", X, Y)),
        rule(atom("odd", Y), lit("even", X), lit("succ", X, Y)),
    ))
    engine = Engine(program, facts("succ", *[(i, i + 1) for i in range(9)]))
    assert both(engine, atom("even", X)) == [(0,), (2,), (4,), (6,), (8,)]
    assert both(engine, atom("odd", 7)) == [(7,)]
    assert both(engine, atom("odd", 8)) == []


def test_negation_of_a_recursive_predicate_in_a_higher_stratum() -> None:
    program = Program(rules=PATH + (
        rule(atom("unreachable", X, Y), lit("node", X), lit("node", Y), neg("path", X, Y)),
    ))
    engine = Engine(program, facts("edge", (1, 2), (2, 3)) + facts("node", (1,), (2,), (3,)))
    assert both(engine, atom("unreachable", 1, Y)) == [(1, 1)]
    assert both(engine, atom("unreachable", X, 1)) == [(1, 1), (2, 1), (3, 1)]
    assert engine.stratification.stratum["unreachable"] == engine.stratification.stratum["path"] + 1


def test_magic_falls_back_when_negation_would_break_the_strata() -> None:
    # with h bound, ~s(Y) gets magic from a prefix holding h itself: h -> ~s -> s#magic -> h
    program = Program(rules=(
        rule(atom("h", X, Y), lit("e", X, Y)),
        rule(atom("h", X, Y), lit("h", X, Z), lit("e", Z, Y), neg("s", Y)),
        rule(atom("s", Y), lit("g", Y)),
    ))
    engine = Engine(program, facts("e", (1, 2), (2, 3), (3, 4), (4, 5)) + facts("g", (4,)))
    assert both(engine, atom("h", 1, Y)) == [(1, 2), (1, 3)]
    engine.query(atom("h", 1, Y))
    assert engine.last_stats is not None and engine.last_stats.through_negation is False


# ------------------------------------------------------------------------------ magic at scale


def scaled_figure1(nfs: int, per_nf: int, fanout: int = 4) -> list[tuple[str, tuple]]:
    """NFs each over a nested tree of `per_nf` nodes: sub facts only (leaves have no sub)."""
    rows = []
    for f in range(nfs):
        names = [f"NF{f}"] + [f"NF{f}-n{i}" for i in range(1, per_nf)]
        rows += [("sub", (names[(i - 1) // fanout], names[i])) for i in range(1, per_nf)]
    return rows


def test_magic_derives_only_the_goals_part_of_a_big_graph() -> None:
    rows = scaled_figure1(nfs=400, per_nf=25)  # 10,000 nodes
    library = FunctionLibrary({"f_max_cpu": lambda leaves: max(len(v) for v in leaves)})
    program = Program(rules=(R1, R2, R3, MAX_CPU))
    magic = Engine(program, rows, library)
    answer = magic.query(atom("max_cpu", "NF7", C))
    stats = magic.last_stats
    assert stats is not None and stats.magic
    plain = Engine(program, rows, library)
    assert plain.query(atom("max_cpu", "NF7", C), magic=False) == answer == [("NF7", len("NF7-n24"))]
    assert plain.last_stats is not None and not plain.last_stats.magic
    assert stats.rows("child") == 24  # NF7's descendants, each once
    assert plain.last_stats.rows("child") > 100 * stats.rows("child")
    assert stats.rows("leaf") == 19 and plain.last_stats.rows("leaf") > 7000


def test_magic_on_a_100k_node_graph_stays_local() -> None:
    rows = scaled_figure1(nfs=1000, per_nf=100)
    engine = Engine(Program(rules=(R1, R2, R3)), rows)
    assert len(engine.query(atom("leaf", "NF500", Y))) == 75
    stats = engine.last_stats
    assert stats is not None and stats.rows("child") == 99 and stats.iterations < 20


def test_magic_on_a_deep_chain_is_linear() -> None:
    rows = [("sub", (f"c{i}", f"c{i + 1}")) for i in range(3000)]
    engine = Engine(Program(rules=(R1, R2, R3)), rows)
    assert engine.query(atom("leaf", "c1000", Y)) == [("c1000", "c3000")]
    assert engine.last_stats is not None and engine.last_stats.rows("child") == 2000


def test_reset_forgets_derived_relations() -> None:
    engine = Engine(Program(rules=PATH), facts("edge", (1, 2)))
    assert engine.relation("path") == {(1, 2)}
    engine.reset()
    assert engine.query(atom("path", X, Y)) == [(1, 2)]
    assert engine.last_stats is not None and engine.last_stats.rows("path") == 1
    assert engine.evaluate_all()["edge"] == {(1, 2)}
    assert engine.relation("nosuch") == set()


# ---------------------------------------------------------------- with the parser, if there is one

DRAFT_7_1 = SAMPLE_E2E  # section 7.1, verbatim
DRAFT_7_2_RULES = """
R1: child(X,Y) <= sub(X,Z), child(Z,Y)
R2: child(X,Y) <= sub(X,Y)
R3: leaf(X,Y) <= child(X,Y), ~sub(Y,Z)
R4: max_cpu(X,C) <= leaf(X,Y), C == f_max_cpu(leaf(X,Y))
R5: mean_cpu (X,C) <= leaf(X, Y), C == f_mean_cpu(leaf(X,Y))
Query(max_cpu, NF1)
"""


def test_the_drafts_own_scripts_parsed() -> None:
    parser = pytest.importorskip("monitor.parser")
    program = parser.parse_program(DRAFT_7_1)
    metrics = FakeMetrics()
    engine = Engine(program, library=metrics.library())
    assert engine.query(program.queries[0]) == [("NF1", "NF2", 26.0)]
    assert metrics.calls == [("f_e2e_delay", (frozenset({"vm2", "vm7"}), frozenset({"vm10"})))]
    cpu = parser.parse_program(DRAFT_7_2_RULES, constants=[c for x, ys in SUB.items() for c in [x, *ys]])
    engine = Engine(Program(F1, cpu.rules), library=FakeMetrics().library())
    assert engine.query(cpu.queries[0]) == [("NF1", 80.0)]
