"""An adapter that lets the datalog-conformance suite evaluate programs with `monitor.engine`.

    pytest --pyargs datalog_conformance --datalog-evaluator=monitor.conformance.Evaluator

The suite's programs are facts (rows per predicate) and rules as text in a Soufflé-like dialect,
which this module parses into the monitoring language's AST:

    path(X, Y) :- edge(X, Z), path(Z, Y).        `:-`, an optional final `.`
    A(a, b, a+b) :- R(a, b).                     every identifier in an argument is a variable
    Z(a, b) :- not X("a", b), Y(a, b), (a <= 25)  `not`/`!`; "quoted" names and numbers are constants;
                                                 comparisons = == != < <= > >=, parentheses optional
    Ok() :- not Ok()                             zero-ary predicates; `_` is anonymous

Arithmetic (+ - * / %) becomes the engine's fn_add, fn_sub, fn_mul, fn_div, fn_mod calls.  Errors
keep the engine's codes (`cyclic_negation`, `unbound_variable`, `arity_mismatch`), which the suite
matches; `_` in a head is refused here with the dialect's `safety_violations`.

Not part of the monitor proper: it only exists to test the engine against an external corpus.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from monitor.ast import Atom, Call, Comparison, Const, Literal, Program, Rule, Term, Var
from monitor.engine import Engine, ProgramError

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>"(?:\\.|[^"\\])*")
    | (?P<number>\d+\.\d+|\d+)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>:-|<=|>=|!=|==|[(),.=<>+\-*/%!])
    )""", re.VERBOSE)

_ARITH = {"+": "fn_add", "-": "fn_sub", "*": "fn_mul", "/": "fn_div", "%": "fn_mod"}
_COMPARE = {"=": "==", "==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


class DialectError(ProgramError):
    """A rule text that is not in the suite's dialect (or breaks one of its rules)."""

    code = "parse_error"


class DialectSafetyError(DialectError):
    code = "safety_violations"


@dataclass
class _Tokens:
    items: list[tuple[str, str]]
    text: str
    pos: int = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        i = self.pos + offset
        return self.items[i] if i < len(self.items) else ("end", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        k, v = self.peek()
        if (value is not None and v != value) or (kind is not None and k != kind) or k == "end":
            want = value or kind or "more"
            raise DialectError(f"expected {want!r}, found {v or 'the end'!r} in {self.text!r}")
        self.pos += 1
        return v

    def accept(self, value: str) -> bool:
        if self.peek()[1] == value and self.peek()[0] != "string":
            self.pos += 1
            return True
        return False


def _tokenize(text: str) -> _Tokens:
    items, pos = [], 0
    text_end = len(text.rstrip())
    while pos < text_end:
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise DialectError(f"cannot read {text[pos:pos + 10]!r} in {text!r}")
        kind = m.lastgroup or "op"
        items.append((kind, m.group(kind)))
        pos = m.end()
    return _Tokens(items, text)


def parse_rule(text: str) -> Rule:
    """One rule (or a fact, without `:-`) of the suite's dialect, as an AST rule."""
    tokens = _tokenize(text)
    head = _atom(tokens)
    if any(isinstance(a, Var) and a.name == "_" for a in head.args):
        raise DialectSafetyError(f"`_` cannot be a head argument: {text!r}")
    body: list[Literal | Comparison] = []
    if tokens.accept(":-"):
        body.append(_body_item(tokens))
        while tokens.accept(","):
            body.append(_body_item(tokens))
    tokens.accept(".")
    if tokens.peek()[0] != "end":
        raise DialectError(f"unexpected {tokens.peek()[1]!r} in {text!r}")
    return Rule(head, tuple(body))


def _body_item(tokens: _Tokens) -> Literal | Comparison:
    kind, value = tokens.peek()
    if kind == "ident" and value == "not" and tokens.peek(1)[0] == "ident":
        tokens.take()
        return Literal(_atom(tokens), negated=True)
    if value == "!" and kind == "op":
        tokens.take()
        return Literal(_atom(tokens), negated=True)
    if kind == "ident" and tokens.peek(1)[1] == "(":
        return Literal(_atom(tokens))
    if value == "(" and kind == "op":
        tokens.take("(")
        item = _comparison(tokens)
        tokens.take(")")
        return item
    return _comparison(tokens)


def _comparison(tokens: _Tokens) -> Comparison:
    left = _expr(tokens)
    op = tokens.take(kind="op")
    if op not in _COMPARE:
        raise DialectError(f"expected a comparison, found {op!r} in {tokens.text!r}")
    return Comparison(_COMPARE[op], left, _expr(tokens))


def _atom(tokens: _Tokens) -> Atom:
    name = tokens.take(kind="ident")
    tokens.take("(")
    args: list[Term] = []
    if not tokens.accept(")"):
        args.append(_expr(tokens))
        while tokens.accept(","):
            args.append(_expr(tokens))
        tokens.take(")")
    return Atom(name, tuple(args))


def _expr(tokens: _Tokens) -> Term:
    """Sums of products, left-associative: `1-2-3` is (1-2)-3."""
    left = _product(tokens)
    while tokens.peek()[1] in ("+", "-") and tokens.peek()[0] == "op":
        op = tokens.take()
        left = Call(_ARITH[op], (left, _product(tokens)))
    return left


def _product(tokens: _Tokens) -> Term:
    left = _factor(tokens)
    while tokens.peek()[1] in ("*", "/", "%") and tokens.peek()[0] == "op":
        op = tokens.take()
        left = Call(_ARITH[op], (left, _factor(tokens)))
    return left


def _factor(tokens: _Tokens) -> Term:
    kind, value = tokens.peek()
    if kind == "number":
        tokens.take()
        return Const(float(value) if "." in value else int(value))
    if kind == "string":
        tokens.take()
        return Const(re.sub(r"\\(.)", r"\1", value[1:-1]))  # \" and \\ stand for themselves
    if kind == "ident":
        tokens.take()
        return Var(value)
    if value == "-":
        tokens.take()
        inner = _factor(tokens)
        if isinstance(inner, Const) and isinstance(inner.value, (int, float)):
            return Const(-inner.value)
        return Call("fn_neg", (inner,))
    tokens.take("(")
    inner = _expr(tokens)
    tokens.take(")")
    return inner


class _SuiteProgram(Protocol):
    """What the suite passes (`datalog_conformance.Program`), without importing the package."""

    facts: Mapping[str, Iterable[Iterable[Any]]]
    rules: list[str]


class Evaluator:
    """The suite's `DatalogEvaluator`: evaluate(program) -> {predicate: set of rows}.

    The suite asserts one relation per case, so consecutive cases often share a program (a YAML
    anchor): the last program's model is kept, for every Evaluator, and not computed again."""

    _last: tuple[Any, dict[str, set[tuple]]] | None = None

    def evaluate(self, program: _SuiteProgram) -> Any:
        """The model: the suite's own `Model` when it is installed (its runner then takes the
        rows as they are, instead of normalizing each of up to a million), else a plain dict."""
        facts = [(pred, tuple(row)) for pred, rows in program.facts.items() for row in rows]
        key = (tuple(program.rules), frozenset(facts))
        last = Evaluator._last
        if last is None or last[0] != key:
            rules = tuple(parse_rule(text) for text in program.rules)
            last = Evaluator._last = (key, Engine(Program(rules=rules), facts).evaluate_all())
        model = {pred: set(rows) for pred, rows in last[1].items()}
        try:
            from datalog_conformance import Model
        except ImportError:  # pragma: no cover - the suite is what calls this
            return model
        return Model(model)
