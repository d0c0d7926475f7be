"""The abstract syntax of the recursive monitoring language (draft-cai-nfvrg-recursive-monitor-03).

Shared by the parser (`monitor.parser`), the engine (`monitor.engine`), the VNFFG translators
(`monitor.vnffg`) and the template library.  Everything is a frozen dataclass, hashable, so that
programs can be compared, cached and used as dictionary keys.

A program is facts, rules and queries:

    F1: sub(NF1, VNF1-1, VNF1-2)                      a labelled fact (n-ary `sub` is expanded)
    R3: leaf(X, Y) <= child(X, Y), ~sub(Y, Z)         a rule: head <= body; `,` or `&`; `~` negation
    R6: e2e(S, D, P) <= link(S, D), P == f_e2e_delay(in_leaf(S, Y), out_leaf(D, Z))
    query(e2e_delay, NF1, NF2)

A body holds literals (possibly negated atoms) and comparisons; a comparison side may be a
function call (`f_...`, `fn_...`, or a built-in aggregate such as `max`, `count`), whose
arguments may be terms or relation atoms (a relation argument stands for a set of bindings:
see `monitor.engine` for the semantics).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

Value = Union[str, int, float, tuple]
"""A constant's value: a name (str), a number, or a tuple (what top-N and similar return)."""


@dataclass(frozen=True, slots=True)
class Var:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Const:
    value: Value

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True, slots=True)
class Atom:
    """`predicate(args...)`; as a function argument it denotes a relation (a set of bindings)."""

    predicate: str
    args: tuple[Term, ...]

    @property
    def arity(self) -> int:
        return len(self.args)

    def variables(self) -> set[str]:
        return {a.name for a in self.args if isinstance(a, Var)}

    def __str__(self) -> str:
        return f"{self.predicate}({', '.join(map(str, self.args))})"


@dataclass(frozen=True, slots=True)
class Call:
    """A function term: `f_max_cpu(leaf(X, Y))`, `max(cpu(Y, V))`, `fn_add(A, 1)`."""

    name: str
    args: tuple[Term | Atom, ...]

    def __str__(self) -> str:
        return f"{self.name}({', '.join(map(str, self.args))})"


Term = Union[Var, Const, Call]


@dataclass(frozen=True, slots=True)
class Literal:
    atom: Atom
    negated: bool = False

    def __str__(self) -> str:
        return ("~" if self.negated else "") + str(self.atom)


COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")


@dataclass(frozen=True, slots=True)
class Comparison:
    """`left op right`; `V == f(...)` with V unbound binds V (an assignment)."""

    op: str
    left: Term
    right: Term

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


BodyItem = Union[Literal, Comparison]


@dataclass(frozen=True, slots=True)
class Position:
    line: int
    column: int

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}"


@dataclass(frozen=True, slots=True)
class Rule:
    head: Atom
    body: tuple[BodyItem, ...]
    label: str | None = None
    position: Position | None = field(default=None, compare=False)

    def __str__(self) -> str:
        prefix = f"{self.label}: " if self.label else ""
        return f"{prefix}{self.head} <= {', '.join(map(str, self.body))}"


@dataclass(frozen=True, slots=True)
class Fact:
    atom: Atom  #: ground: every argument a Const
    label: str | None = None
    position: Position | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return str(self.atom)


@dataclass(frozen=True, slots=True)
class Query:
    """`query(m, y1, ..., yn)`: the monitoring function `m` (a template or a predicate) applied
    to the arguments; or a plain goal atom such as `max_cpu(NF1, C)`."""

    atom: Atom
    position: Position | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return str(self.atom)


@dataclass(frozen=True, slots=True)
class Program:
    facts: tuple[Fact, ...] = ()
    rules: tuple[Rule, ...] = ()
    queries: tuple[Query, ...] = ()

    def __add__(self, other: Program) -> Program:
        return Program(self.facts + other.facts, self.rules + other.rules, self.queries + other.queries)
