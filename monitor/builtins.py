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

Evaluation count.  Within one evaluation (one query, or one materialization), each call site with
a relation argument or a non-`fn_` function is computed at most once for each distinct set of
inputs (term values and group-variable values): R4 calls f_max_cpu once per X, not once per leaf,
and a recursive rule's call is not repeated in later semi-naive rounds.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
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


# ------------------------------------------------------------------------------ evaluation


Binding = tuple
"""The values of a rule's bound variables, at the positions `slots` gives."""

RelationAccess = Callable[[RelArg], tuple[Callable[[Binding], Any], Mapping[Any, list[tuple]]]]
"""For a relation argument: a binding's key (its group values), and the index from a key to the
bindings of the local variables (the engine's view of the relation)."""

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def comparison(op: str, left: Callable[[Binding], Any], right: Callable[[Binding], Any]) -> Callable[[Binding], bool]:
    """A test: false when a side has no value, or when Python cannot order the two values."""
    test = _OPS[op]

    def check(b: Binding) -> bool:
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


class ExprCompiler:
    """Turns expressions of one rule into functions of a binding, by the rules above."""

    def __init__(self, slots: Mapping[str, int], access: RelationAccess, library: FunctionLibrary, where: str,
                 memo: Callable[[FnCall], dict] | None = None):
        """`memo(call)`: the memo of a call site, shared by all the compiled versions of its rule
        in one evaluation (a fresh one per call when not given)."""
        self.slots, self.access, self.library, self.where = slots, access, library, where
        self.memo = memo or (lambda call: {})

    def expr(self, e: Expr) -> Callable[[Binding], Any]:
        if isinstance(e, Var):
            return itemgetter(self.slots[e.name])
        if isinstance(e, Const):
            value = e.value
            return lambda b: value
        if isinstance(e, FnCall):
            return self.aggregate(e) if e.name in AGGREGATES else self.call(e)
        raise CallError(f"relation {e} can only be a call's argument, in {self.where}")

    def call(self, e: FnCall) -> Callable[[Binding], Any]:
        fn = self.library.lookup(e.name)
        if fn is None:
            raise UnknownFunctionError(f"unknown function {e.name!r} in {self.where}: not built in and "
                                       "not registered in the FunctionLibrary")
        inputs, makers = [], []
        for a in e.args:
            if isinstance(a, RelArg):
                keyf, index = self.access(a)
                inputs.append(keyf)
                makers.append(lambda k, index=index, width=len(a.local_vars): user_set(index.get(k, ()), width))
            else:
                inputs.append(self.expr(a))
                makers.append(None)
        memo: dict | None = None if e.name.startswith("fn_") and not any(makers) else self.memo(e)
        where = self.where

        def value(b: Binding) -> Any:
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

    def aggregate(self, e: FnCall) -> Callable[[Binding], Any]:
        rel = next(a for a in e.args if isinstance(a, RelArg))
        terms = [self.expr(a) for a in e.args if not isinstance(a, RelArg)]
        keyf, index = self.access(rel)
        last, label = self._last_and_label(rel)
        memo = self.memo(e)
        where = self.where

        def value(b: Binding) -> Any:
            key = (tuple(t(b) for t in terms), keyf(b))
            if None in key[0]:
                return None
            if key in memo:
                return memo[key]
            try:
                result = aggregate(e.name, key[0], index.get(key[1], ()), last(b), label)
            except (TypeError, ValueError) as exc:
                raise CallError(f"{e.name} failed in {where}: {exc}") from exc
            memo[key] = result
            return result

        return value

    def _last_and_label(self, rel: RelArg) -> tuple[Callable[[Binding], Callable[[tuple], Any]], Callable]:
        """For a binding of the enclosing rule: how to read an aggregated binding's value (the
        atom's last argument), and the name topn/bottomn pair it with (the other local values)."""
        local = rel.local_vars
        last_arg = rel.atom.args[-1] if rel.atom.args else Const(None)  # type: ignore[arg-type]
        if isinstance(last_arg, Var) and last_arg.name in local:
            getter = itemgetter(local.index(last_arg.name))
            names = [i for i, v in enumerate(local) if v != last_arg.name]

            def last(b: Binding) -> Callable[[tuple], Any]:
                return getter
        else:
            outer = self.expr(last_arg)  # a constant or a group variable: one value per call
            names = list(range(len(local)))

            def last(b: Binding) -> Callable[[tuple], Any]:
                value = outer(b)
                return lambda o: value

        if len(names) == 1:
            return last, itemgetter(names[0])
        return last, lambda o: tuple(o[i] for i in names)
