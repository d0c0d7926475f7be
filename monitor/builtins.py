"""What a call means in the monitoring language: built-in aggregates, scalar `fn_` functions and
the library of user functions (`f_...`), with the exact rules the engine follows.

Calls appear on a side of a comparison (`C == f_max_cpu(leaf(X, Y))`), as an argument of a head
or body atom (`p(X, fn_add(X, 1))`, lifted by the engine to a fresh variable `V` and `V == call`)
or nested in another call (`fn_mul(count(r(X, Y)), 2)`).

Assignment.  `V == call(...)` (or `call(...) == V`) with V not yet bound assigns V the call's
value.  With V already bound it is an equality test.  Other comparisons (`!=`, `<`, ...) are
tests; an ordering between values of types Python cannot order (a number and a name) is false.

Arguments.  A call's argument is a term (a variable, a constant, another call), evaluated under
the current binding, or a relation atom.  A relation atom denotes the SET of bindings of its
variables that are not *group variables*.  The group variables of a call are the variables of the
rule head other than the call's assigned result variable (the head after lifting: a call written
in the head is replaced by a fresh variable first).  Group variables in a relation atom take their
values from the current binding, so they must be bound before the call is evaluated; the other
variables of the atom (and `_`) are local to the call, even if a variable of the same name is
bound elsewhere in the body.  Examples, from the draft:

    R4: max_cpu(X, C) <= leaf(X, Y), C == f_max_cpu(leaf(X, Y))
        group {X}; the argument is {Y | leaf(X, Y)} for the current X
    R6: e2e_delay(S, D, P) <= link(S, D), P == f_e2e_delay(in_leaf(S, Y), out_leaf(D, Z))
        groups {S, D}; the arguments are {Y | in_leaf(S, Y)} and {Z | out_leaf(D, Z)}

A relation used inside a call must be completely computed before the call is evaluated: the
dependency counts as a negative edge for stratification (it is an aggregation).

Built-in aggregates (the names are reserved; the relation argument is required):
    count(rel)           the number of bindings of rel (0 for an empty set)
    sum(rel)             the sum of the LAST argument of rel's atom over its bindings (0 if empty);
                         over bindings, not values: two VMs at 50 % sum to 100
    min(rel), max(rel)   the least / greatest last-argument value; no value if empty
    mean(rel)            sum / count, a float; no value if empty
    topn(N, rel)         a tuple of at most N (name, value) pairs with the highest values, highest
                         first, ties by name; value = the last argument, name = the binding of the
                         atom's other local variables (a single value if there is one, else a
                         tuple); `topn(2, cpu(Y, V))` gives ((vm3, 90), (vm1, 80)); no value if
                         the set is empty; N must be an integer >= 0
    bottomn(N, rel)      the same with the lowest values first

Scalar functions: any name starting with `fn_` registered in the library; the default library has
fn_add, fn_sub, fn_mul, fn_div (true division), fn_mod, fn_neg, fn_abs, fn_min, fn_max.  fn_div and
fn_mod by zero give no value.

User and library functions (f_e2e_delay, f_max_cpu, ...): any other name, looked up in the
`FunctionLibrary` given to the engine.  The callable receives the evaluated arguments in order:
a Python value for a term; a frozenset for a relation argument, of single values when the atom has
one local variable, else of tuples of the local variables' values in order of first appearance
(of empty tuples when it has none: {()} if the atom holds, else empty).  It returns a value
(str, int, float or tuple), or None for "no value".

No value.  A call that produces no value (None, an aggregate of an empty set, a division by zero)
makes its comparison fail for that binding: the rule does not fire for it.  A call whose argument
has no value has no value.

Errors.  A function the library does not have raises `UnknownFunctionError` naming it and the
rule, when the rule is first evaluated (so a template library may define rules for functions that
are registered later, as long as those rules are not evaluated).  A malformed aggregate call
(`count(X)`, `topn(cpu(Y, V))`) raises `CallError` when the engine is built; an exception inside a
function is re-raised as `CallError` naming the function and the rule, with the original as its
cause.

Evaluation count.  Within one evaluation (one query, or one materialization), a call with a
relation argument or to a non-`fn_` function is computed at most once for each distinct set of
inputs (term values and group-variable values): R4 calls f_max_cpu once per X, not once per leaf.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from monitor.ast import Atom, Const, Var

AGGREGATES = frozenset({"count", "sum", "min", "max", "mean", "topn", "bottomn"})
"""Reserved names: aggregates over one relation argument (topn/bottomn: a count, then a relation)."""


class EngineError(ValueError):
    """Base of every error the engine raises about a program, a query or a call."""

    code = "engine_error"


class CallError(EngineError):
    """A call is malformed, or its function failed."""

    code = "call_error"


class UnknownFunctionError(CallError, LookupError):
    """A call names a function that is neither built in nor in the library."""

    code = "unknown_function"


@dataclass(frozen=True, slots=True)
class RelArg:
    """A relation argument of a call: the bindings of the atom's variables outside `group`."""

    atom: Atom  #: arguments are Var or Const only
    group: frozenset[str]  #: the enclosing rule's group variables (see the module docstring)

    @property
    def local_vars(self) -> tuple[str, ...]:
        """The atom's local variables, in order of first appearance (the shape of a binding)."""
        seen: dict[str, None] = {}
        for arg in self.atom.args:
            if isinstance(arg, Var) and arg.name not in self.group:
                seen.setdefault(arg.name, None)
        return tuple(seen)

    @property
    def outer_vars(self) -> frozenset[str]:
        """The atom's group variables: they must be bound when the call is evaluated."""
        return frozenset(a.name for a in self.atom.args if isinstance(a, Var) and a.name in self.group)

    def __str__(self) -> str:
        return str(self.atom)


@dataclass(frozen=True, slots=True)
class FnCall:
    """A call with its relation arguments resolved (the engine's form of `ast.Call`)."""

    name: str
    args: tuple[Expr, ...]

    def __str__(self) -> str:
        return f"{self.name}({', '.join(map(str, self.args))})"


Expr = Union[Var, Const, FnCall, RelArg]
"""An evaluable expression: RelArg only as a call argument."""


def expr_vars(expr: Expr) -> frozenset[str]:
    """The variables that must be bound to evaluate `expr` (a relation's local ones are not)."""
    if isinstance(expr, Var):
        return frozenset({expr.name})
    if isinstance(expr, RelArg):
        return expr.outer_vars
    if isinstance(expr, FnCall):
        return frozenset().union(*(expr_vars(a) for a in expr.args))
    return frozenset()


def rel_args(expr: Expr) -> list[RelArg]:
    """Every relation argument inside `expr` (nested calls included)."""
    if isinstance(expr, RelArg):
        return [expr]
    if isinstance(expr, FnCall):
        return [r for a in expr.args for r in rel_args(a)]
    return []


def check_aggregate(call: FnCall, where: str) -> None:
    """Reject an aggregate call of the wrong shape (a static check, before evaluation)."""
    kinds = ["rel" if isinstance(a, RelArg) else "term" for a in call.args]
    expected = ["term", "rel"] if call.name in ("topn", "bottomn") else ["rel"]
    if kinds != expected:
        shape = "(N, relation)" if len(expected) == 2 else "(relation)"
        raise CallError(f"{call.name} takes {shape}, got {call} in {where}")


# ---------------------------------------------------------------------------------------- scalars


def fn_div(a: Any, b: Any) -> Any:
    """True division; no value for a zero divisor (rather than an exception mid-evaluation)."""
    return None if b == 0 else a / b


def fn_mod(a: Any, b: Any) -> Any:
    return None if b == 0 else a % b


SCALARS: dict[str, Callable[..., Any]] = {
    "fn_add": operator.add,
    "fn_sub": operator.sub,
    "fn_mul": operator.mul,
    "fn_div": fn_div,
    "fn_mod": fn_mod,
    "fn_neg": operator.neg,
    "fn_abs": abs,
    "fn_min": min,
    "fn_max": max,
}


class FunctionLibrary:
    """The functions calls may name: the `fn_` scalars plus whatever is registered."""

    def __init__(self, functions: Mapping[str, Callable[..., Any]] | None = None, *, scalars: bool = True):
        self._functions: dict[str, Callable[..., Any]] = dict(SCALARS) if scalars else {}
        for name, fn in (functions or {}).items():
            self.register(name, fn)

    def register(self, name: str, fn: Callable[..., Any]) -> None:
        """Add or replace `name`; aggregate names are reserved since their semantics are fixed."""
        if name in AGGREGATES:
            raise ValueError(f"{name!r} is a built-in aggregate and cannot be registered")
        if not callable(fn):
            raise TypeError(f"function {name!r} is not callable")
        self._functions[name] = fn

    def lookup(self, name: str) -> Callable[..., Any] | None:
        return self._functions.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def names(self) -> list[str]:
        return sorted(self._functions)


# ------------------------------------------------------------------------------------- aggregates


def _order_key(value: Any) -> tuple[int, Any]:
    """A total order over mixed values, so that ties are broken the same way every time."""
    if isinstance(value, (int, float)):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (2, repr(value))


def _ranked(pairs: list[tuple[Any, Any]], n: Any, highest: bool) -> tuple[tuple[Any, Any], ...]:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise TypeError(f"N must be an integer >= 0, got {n!r}")
    pairs.sort(key=lambda p: _order_key(p[0]))
    pairs.sort(key=lambda p: p[1], reverse=highest)  # stable: ties stay in name order
    return tuple(pairs[:n])


def aggregate(
    name: str,
    terms: Sequence[Any],
    bindings: Sequence[tuple],
    last: Callable[[tuple], Any],
    label: Callable[[tuple], Any],
) -> Any:
    """Apply the built-in aggregate `name` to the bindings of its relation argument.

    `last` gives a binding's last-argument value, `label` its name (for topn/bottomn)."""
    if name == "count":
        return len(bindings)
    values = [last(b) for b in bindings]
    if name == "sum":
        return sum(values) if values else 0
    if not values:
        return None
    if name == "min":
        return min(values)
    if name == "max":
        return max(values)
    if name == "mean":
        return math.fsum(values) / len(values)
    pairs = [(label(b), v) for b, v in zip(bindings, values)]
    return _ranked(pairs, terms[0], highest=(name == "topn"))


def user_set(bindings: Iterable[tuple], width: int) -> frozenset:
    """A relation argument as a library function receives it (see the module docstring)."""
    if width == 1:
        return frozenset(b[0] for b in bindings)
    return frozenset(bindings)

