"""Goal-directed evaluation: the magic-sets rewrite, with supplementary predicates.

Why: `max_cpu(NF1, C)` over a VNFFG of 100,000 nodes must look at NF1's descendants only, not
compute the closure of the whole graph.  Bottom-up evaluation of the rewritten program does that:
each derived predicate `p` is specialised to an adornment (which arguments arrive bound, `p#bf`),
and a magic predicate `p#bf#magic` holds the bound values actually asked for, starting from the
goal's constants (the seed) and passed sideways, left to right in the order the planner gives the
body (`stratify.plan_body` with the head's bound variables).  Same generation, X bound:

    sg(X, Y) <= parent(X, Z), sg(Z, W), parent(Y, W)      becomes
    sg#bf#sup0_1(X, Z) <= sg#bf#magic(X), parent(X, Z)     (supplementary: the prefix, once)
    sg#bf#magic(Z) <= sg#bf#sup0_1(X, Z)                    (the calls the rule makes)
    sg#bf(X, Y) <= sg#bf#sup0_1(X, Z), sg#bf(Z, W), parent(Y, W)

A supplementary predicate stores the join of a rule's prefix (projected on the variables still
needed) where a magic rule and the rest of the rule both need it, so that it is computed once.  A
magic atom a rule already asked for from a shorter prefix is not asked again.

Right-linear predicates (the draft's R1-R2) take a shortcut (`_Rewriter.right_linear`): the free
arguments pass through the recursive call unchanged, so its answers are the caller's, and a
context predicate links each entry call S to the calls it reaches:

    child#bf#ctx(S, S) <= child#bf#magic(S)
    child#bf#ctx(S, Z) <= child#bf#ctx(S, X), sub(X, Z)
    child#bf(S, Y) <= child#bf#ctx(S, X), sub(X, Y)

Negation and aggregation.  A negated literal or a call's relation argument needs its relation
complete for the bound context.  With `through_negation` they get adornments and magic seeds of
their own, like positive literals (`~sub(Y, Z)` with Y bound reads `sub#bf`, complete for every Y
its magic predicate holds), and the sideways order places them after the positive literals where
it can.  That can still make the rewritten program unstratifiable (a magic predicate fed through
the negation of something it feeds), so `magic_program` checks the rewritten program and
otherwise rewrites again without: negated and aggregated predicates are then read from their
fully materialized relations, and since those never depend on the rewritten ones the program is
stratified by construction.  A literal whose adornment is all free also reads the full relation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from monitor.ast import Atom, Const, Literal, Term, Var
from monitor.builtins import Expr, FnCall, RelArg, expr_vars
from monitor.stratify import (
    Cmp,
    Item,
    NRule,
    SafetyError,
    Stratification,
    StratificationError,
    item_atoms,
    plan_body,
    stratify,
)


def adorned(pred: str, adornment: str) -> str:
    return f"{pred}#{adornment}"


def magic_name(pred: str, adornment: str) -> str:
    return f"{pred}#{adornment}#magic"


def adornment_of(args: Sequence[Term], bound: set[str] | frozenset[str]) -> str:
    """`b` where the argument is a constant or a bound variable, `f` elsewhere."""
    return "".join("b" if isinstance(a, Const) or (isinstance(a, Var) and a.name in bound) else "f"
                   for a in args)


@dataclass(frozen=True)
class MagicProgram:
    rules: tuple[NRule, ...]
    goal: str  #: the adorned goal predicate, whose rows answer the query
    seed: str  #: the magic predicate that receives the goal's constants
    full: frozenset[str]  #: original derived predicates read whole: materialize them first
    through_negation: bool


class _Rewriter:
    """One rewrite: a worklist of (predicate, adornment) pairs reachable from the goal."""

    def __init__(self, by_head: Mapping[str, Sequence[NRule]], components: Mapping[str, int],
                 through_negation: bool):
        self.by_head = by_head
        self.components = components
        self.through_negation = through_negation
        self.rules: list[NRule] = []
        self.full: set[str] = set()
        self.seen: set[tuple[str, str]] = set()
        self.todo: list[tuple[str, str]] = []

    def demand(self, pred: str, adornment: str) -> None:
        if (pred, adornment) not in self.seen:
            self.seen.add((pred, adornment))
            self.todo.append((pred, adornment))

    def run(self, goal: str, adornment: str) -> MagicProgram:
        self.demand(goal, adornment)
        while self.todo:
            pred, ad = self.todo.pop()
            if self.right_linear(pred, ad):
                continue
            for k, rule in enumerate(self.by_head[pred]):
                self.rewrite_rule(rule, ad, f"{pred}#{ad}#sup{k}")
        return MagicProgram(tuple(self.rules), adorned(goal, adornment), magic_name(goal, adornment),
                            frozenset(self.full), self.through_negation)

    def rewrite_rule(self, rule: NRule, ad: str, sup_prefix: str) -> None:
        head = rule.head
        bound = {a.name for a, c in zip(head.args, ad) if c == "b" and isinstance(a, Var)}
        magic = Literal(Atom(magic_name(head.predicate, ad), _at(head.args, ad, "b")))
        self.chain(rule, bound, magic, Atom(adorned(head.predicate, ad), head.args), sup_prefix)

    def chain(self, rule: NRule, bound: set[str], start: Literal, final: Atom, sup_prefix: str) -> None:
        """Rewrite `rule`'s body in SIPS order after `start` (the magic literal), deriving `final`:
        each derived literal gets its adornment and a magic rule, fed by a supplementary
        predicate when the prefix is more than the magic literal."""
        plan = plan_body(rule, bound, cost=lambda p: 1.0 if p in self.by_head else 0.0,
                         late=self.reads_derived_whole if self.through_negation else None)
        prefix: list[Item] = [start]
        asked: set[Atom] = set()
        for pos, (i, assigned) in enumerate(plan):
            item, demands = self.adorn(rule.body[i], bound)
            # the same magic atom asked again from a longer prefix only derives a subset: skip it
            # (it would also tie the rule's derived literals into one recursive component)
            demands = [d for d in demands if Atom(magic_name(d[0], d[1]), d[2]) not in asked]
            asked.update(Atom(magic_name(d[0], d[1]), d[2]) for d in demands)
            if demands:
                if len(prefix) > 1:
                    later = [rule.body[j] for j, _ in plan[pos:]]
                    keep = sorted(bound & (_visible(later) | final.variables()))
                    sup = Atom(f"{sup_prefix}_{pos}", tuple(Var(v) for v in keep))
                    self.rules.append(NRule(sup, tuple(prefix), rule.origin))
                    prefix = [Literal(sup)]
                for pred, bad, args in demands:
                    self.rules.append(NRule(Atom(magic_name(pred, bad), args), tuple(prefix), rule.origin))
                    self.demand(pred, bad)
            prefix.append(item)
            if isinstance(item, Literal) and not item.negated:
                bound |= item.atom.variables()
            if assigned:
                bound.add(assigned)
        self.rules.append(NRule(final, tuple(prefix), rule.origin))

    def right_linear(self, pred: str, ad: str) -> bool:
        """Rewrite `pred` the right-linear way if every rule of it allows (see `_linear_at`).

        Why: `child(X, Y) <= sub(X, Z), child(Z, Y)` with X bound passes Y through unchanged, so
        every answer of the call child(Z, ·) is an answer of the caller's call.  Plain magic
        computes child(Z, ·) for each descendant Z of the goal: quadratic on a chain.  Here a
        context predicate `pred#ad#ctx(S, Z)` says which calls Z the entry call S reaches, and
        the exit rules answer S directly: linear in what the entry calls reach."""
        rules = self.by_head[pred]
        if any(self.components.get(q) == self.components.get(pred)
               for r in rules for item in r.body for q in map(_pred_of, item_atoms(item)) if q != pred):
            return False  # mutual recursion
        shapes = [_linear_at(r, pred, ad) for r in rules]
        if None in shapes or all(j == -1 for j in shapes):
            return False
        context = tuple(Var(f"_#s{i}") for i in range(ad.count("b")))
        ctx = f"{pred}#{ad}#ctx"
        self.rules.append(NRule(Atom(ctx, context + context), (Literal(Atom(magic_name(pred, ad), context)),)))
        for k, (rule, j) in enumerate(zip(rules, shapes)):
            bargs = _at(rule.head.args, ad, "b")
            bound = {v.name for v in context} | {a.name for a in bargs if isinstance(a, Var)}
            start = Literal(Atom(ctx, context + bargs))
            if j == -1:  # an exit rule answers the entry call
                it = iter(context)
                args = tuple(next(it) if c == "b" else a for a, c in zip(rule.head.args, ad))
                self.chain(rule, bound, start, Atom(adorned(pred, ad), args), f"{pred}#{ad}#sup{k}")
            else:  # the recursive call becomes a call reached from the same entry call
                rec_b = _at(rule.body[j].atom.args, ad, "b")  # type: ignore[union-attr]
                self.chain(_without(rule, j, bargs + rec_b), bound, start, Atom(ctx, context + rec_b),
                           f"{pred}#{ad}#sup{k}")
        return True

    def reads_derived_whole(self, item: Item) -> bool:
        """Negation or aggregation over a derived predicate: placed after the positive literals
        where it can be, so that their magic rules do not depend on it (which could close a cycle
        through negation)."""
        if isinstance(item, Literal):
            return item.negated and item.atom.predicate in self.by_head
        return any(a.predicate in self.by_head for a in item_atoms(item))

    def adorn(self, item: Item, bound: set[str]) -> tuple[Item, list[tuple[str, str, tuple[Term, ...]]]]:
        """The item reading adorned predicates where it can, and the magic facts it demands."""
        demands: list[tuple[str, str, tuple[Term, ...]]] = []
        if isinstance(item, Literal):
            atom = self.adorn_atom(item.atom, bound, demands, negative=item.negated)
            return Literal(atom, item.negated), demands
        left = self.adorn_expr(item.left, demands)
        right = self.adorn_expr(item.right, demands)
        return Cmp(item.op, left, right), demands

    def adorn_expr(self, expr: Expr, demands: list) -> Expr:
        if isinstance(expr, FnCall):
            return FnCall(expr.name, tuple(self.adorn_expr(a, demands) for a in expr.args))
        if isinstance(expr, RelArg):
            atom = self.adorn_atom(expr.atom, expr.outer_vars, demands, negative=True)
            return RelArg(atom, expr.group)
        return expr

    def adorn_atom(self, atom: Atom, bound: set[str] | frozenset[str], demands: list,
                   negative: bool) -> Atom:
        if atom.predicate not in self.by_head:
            return atom  # a base relation: nothing to rewrite
        ad = adornment_of(atom.args, bound)
        if "b" not in ad or (negative and not self.through_negation):
            self.full.add(atom.predicate)
            return atom
        demands.append((atom.predicate, ad, tuple(a for a, c in zip(atom.args, ad) if c == "b")))
        return Atom(adorned(atom.predicate, ad), atom.args)


def _visible(items: Sequence[Item]) -> set[str]:
    """Variables the items share with the rest of their rule (not a call's local ones)."""
    out: set[str] = set()
    for item in items:
        out |= item.atom.variables() if isinstance(item, Literal) else set(
            expr_vars(item.left) | expr_vars(item.right))
    return out


def _at(args: Sequence[Term], ad: str, which: str) -> tuple[Term, ...]:
    return tuple(a for a, c in zip(args, ad) if c == which)


def _pred_of(atom: Atom) -> str:
    return atom.predicate


def _linear_at(rule: NRule, pred: str, ad: str) -> int | None:
    """-1 for an exit rule; the index of the recursive literal of a right-linear rule: one
    positive `pred` literal, whose free arguments (by `ad`) are the head's, distinct variables
    found nowhere else in the rule, and whose bound ones the rest of the body binds; else None."""
    refs = [i for i, item in enumerate(rule.body) if any(a.predicate == pred for a in item_atoms(item))]
    if not refs:
        return -1
    lit = rule.body[refs[0]]
    if len(refs) > 1 or not isinstance(lit, Literal) or lit.negated:
        return None
    free = _at(rule.head.args, ad, "f")
    names = {a.name for a in free if isinstance(a, Var)}
    if free != _at(lit.atom.args, ad, "f") or len(names) != len(free):
        return None
    rest = [item for i, item in enumerate(rule.body) if i != refs[0]]
    bound_args = _at(rule.head.args, ad, "b") + _at(lit.atom.args, ad, "b")
    if names & (_visible(rest) | {a.name for a in bound_args if isinstance(a, Var)}):
        return None
    try:
        head_bound = {a.name for a in _at(rule.head.args, ad, "b") if isinstance(a, Var)}
        plan_body(_without(rule, refs[0], bound_args), head_bound)
    except SafetyError:
        return None
    return refs[0]


def _without(rule: NRule, index: int, needed: Sequence[Term]) -> NRule:
    """The rule's body minus one literal, with a head of the variables that must stay bound."""
    names = sorted({a.name for a in needed if isinstance(a, Var)})
    body = tuple(item for i, item in enumerate(rule.body) if i != index)
    return NRule(Atom("#linear", tuple(Var(v) for v in names)), body, rule.origin)


def rewrite(by_head: Mapping[str, Sequence[NRule]], goal: str, adornment: str,
            through_negation: bool = True, components: Mapping[str, int] | None = None) -> MagicProgram:
    """The magic program for `goal` called with `adornment` (`by_head`: the rules per head;
    `components`: each predicate's strongly connected component, to tell mutual recursion)."""
    if components is None:
        strat = stratify([r for rules in by_head.values() for r in rules])
        components = {p: i for i, comp in enumerate(strat.components) for p in comp}
    return _Rewriter(by_head, components, through_negation).run(goal, adornment)


def magic_program(by_head: Mapping[str, Sequence[NRule]], goal: str, adornment: str,
                  components: Mapping[str, int] | None = None) -> tuple[MagicProgram, Stratification]:
    """The rewrite with magic through negation if that stays stratified, else without."""
    program = rewrite(by_head, goal, adornment, True, components)
    try:
        return program, stratify(program.rules)
    except StratificationError:
        program = rewrite(by_head, goal, adornment, False, components)
        return program, stratify(program.rules)
