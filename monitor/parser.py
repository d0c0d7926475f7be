"""Parser of the recursive monitoring language (draft-cai-nfvrg-recursive-monitor-03).

    parse_program(text, constants=())  -> monitor.ast.Program
    parse_query(text, constants=())    -> monitor.ast.Query   (`query(m, a)`, `m(a, X)`, `m a b`)

Parsing is in two steps, because whether `NF1` is a constant or a variable depends on facts that
may come later in the text: the LALR grammar (`grammar.lark`) builds a tree of unresolved names,
then `_Resolver` turns names into `Const` or `Var`, expands n-ary `sub` facts and checks what the
grammar cannot (arities, ground facts, where calls may stand).  Every failure, lark's included,
is a `ParseError` with a line and a column.  docs/monitor-language.md records each decision.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from lark import Lark, Token, Transformer
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedToken

from monitor.ast import Atom, BodyItem, Call, Comparison, Const, Fact, Literal, Position, Program
from monitor.ast import Query, Rule, Term, Var

__all__ = ["ParseError", "parse_program", "parse_query"]

QUERY_NAMES = ("query", "Query")  # the draft writes `Query(max_cpu, NF1)` once (section 7.2)
_ARITIES = {"link": (2, 2), "node": (1, 2)}  # `sub` apart: n-ary in facts, binary elsewhere


class ParseError(Exception):
    """A malformed program or query; `str()` is "line L, column C: what was expected, found"."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message, self.line, self.column = message, line, column


def _error(position: Position, message: str) -> ParseError:
    return ParseError(message, position.line, position.column)


# --- tokens: the line-break rules live here, so that the grammar stays LALR(1) ------------------

_CONTINUES = {"_LPAR", "_COMMA", "_AMP", "_TILDE", "_NOT", "LABEL", "LE", "EQ", "NE", "LT", "GT", "GE"}
"""After these a statement cannot end, so a line break that follows them is only layout."""
_DEEPEST = 64  # parentheses open at once: the tree is built recursively, so bound its depth


@dataclass
class _Feed:
    """The tokens given to the parser, kept so that an error can be explained: the state
    before the offending token is rebuilt from them, and the parentheses still open."""

    fed: list[Token] = field(default_factory=list)
    opened: list[Token] = field(default_factory=list)

    @property
    def previous(self) -> Token | None:
        return self.fed[-1] if self.fed else None

    def tokens(self, parser: Lark, text: str) -> Iterator[Token]:
        for token in parser.lex(text):
            if token.type == "_END" and token.value != "." and self._is_layout():
                continue
            if token.type == "_LPAR" and len(self.opened) == _DEEPEST:
                raise ParseError(f"more than {_DEEPEST} parentheses open at once", token.line, token.column)
            yield token  # an error raised while the parser takes it leaves `fed` before it
            self.fed.append(token)
            if token.type == "_LPAR":
                self.opened.append(token)
            elif token.type == "_RPAR" and self.opened:
                self.opened.pop()

    def _is_layout(self) -> bool:
        kind = self.previous.type if self.previous else "_END"
        return bool(self.opened) or kind in _CONTINUES or kind == "_END"

    def acceptable(self, start: str) -> set[str]:
        """What may come next.  Not the error's own `expected`: LALR merges states, so that
        set would offer ')' and '&' after a fact; replaying and asking the parser is exact."""
        parser = _lark().parse_interactive(start=start)
        for token in self.fed:
            parser.feed_token(token)
        return set(parser.accepts())


_SHOWN = {  # how error messages name the terminals, in the order they list them
    "STATEMENT": "a statement", "_RPAR": "')'", "_COMMA": "','", "_AMP": "'&'", "_LPAR": "'('", "LABEL": "a label",
    "TERM": "a term", "IDENT": "a name", "NUMBER": "a number", "STRING": "a string",
    "_TILDE": "'~'", "_NOT": "'not'", "LE": "'<='", "OPERATOR": "a comparison operator",
    "EQ": "'=='", "NE": "'!='", "LT": "'<'", "GT": "'>'", "GE": "'>='",
    "_END": "end of statement", "$END": "end of input",
}
_TERMS = {"IDENT", "NUMBER", "STRING"}
_OPERATORS = {"EQ", "NE", "LT", "LE", "GT", "GE"}


def _expected(names: set[str], after_term: bool) -> str:
    """What the parser wanted, in words.  After a term, '(' is left out: "expected ')' or ','"
    is what the writer needs, not an offer to turn the term into a call."""
    names = set(names) - ({"_LPAR"} if after_term and len(names) > 1 else set())
    names -= {"$END"} if "_END" in names else set()  # "end of statement" says it all
    for group, word in (({"LABEL", "IDENT"}, "STATEMENT"), (_TERMS, "TERM"), (_OPERATORS, "OPERATOR")):
        if group <= names:
            names = names - group | {word}
    words = list(dict.fromkeys(shown for name, shown in _SHOWN.items() if name in names))
    words += sorted(names - _SHOWN.keys())
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _describe(token: Token) -> str:
    if token.type == "$END":
        return "end of input"
    if token.type == "_END":
        return "'.'" if token.value == "." else "end of line"
    return f"the label '{token}'" if token.type == "LABEL" else f"'{token}'"


# --- parsing: lark's exceptions become ParseErrors here and nowhere else -------------------------


@cache
def _lark() -> Lark:
    grammar = Path(__file__).with_name("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", lexer="basic", start=["start", "query_start"], maybe_placeholders=True)


def _parse(text: str, start: str) -> object:
    feed, parser = _Feed(), _lark().parse_interactive(start=start)
    try:
        for token in feed.tokens(_lark(), text):
            parser.feed_token(token)
        return _Builder().transform(parser.feed_eof())
    except UnexpectedToken as error:
        raise _token_error(error, feed, start) from None
    except UnexpectedCharacters as error:
        raise _character_error(error, text) from None
    except (LarkError, RecursionError) as error:  # nothing else is known to happen: stay safe
        line, column = _end_of(feed.previous)
        raise ParseError(f"cannot parse ({error.__class__.__name__})", line, column) from None


def _end_of(token: Token | None) -> tuple[int, int]:
    return (1, 1) if token is None else (token.end_line, token.end_column)


def _token_error(error: UnexpectedToken, feed: _Feed, start: str) -> ParseError:
    token, previous, expected = error.token, feed.previous, feed.acceptable(start)
    line, column = _end_of(previous) if token.type == "$END" else (token.line, token.column)
    after_term = previous is not None and previous.type in _TERMS
    message = f"expected {_expected(expected, after_term)}{_after(previous, expected)}"
    message += f", found {_describe(token)}"
    if token.type == "LE" and "LE" not in expected and (previous is None or previous.type in {"_END", "LABEL"}):
        message += " (a rule needs a head: head(X) <= body)"
    if feed.opened and "_RPAR" in expected and (token.type == "$END" or token.line > feed.opened[-1].line):
        opened = feed.opened[-1]
        message += f" (the '(' at line {opened.line}, column {opened.column} is not closed)"
    return ParseError(message, line, column)


def _after(previous: Token | None, expected: set[str]) -> str:
    if previous is None or previous.type == "_END":
        return ""
    if previous.type in _TERMS:
        return f" after the {'name' if expected == {'_LPAR'} else 'term'} '{previous}'"
    return f" after {_describe(previous)}"


def _character_error(error: UnexpectedCharacters, text: str) -> ParseError:
    line, column, char = error.line, error.column, error.char
    before = text.split("\n")[line - 1][: column - 1]
    if char in "'\"":
        return ParseError(f"unterminated string: no closing {char} on this line", line, column)
    word = (re.search(r"\S+\s*$", before) or re.match("", "")).group()
    if char == ":" and word:
        return ParseError(f"bad label '{word}:': a label is an upper-case letter, letters, digits, then ':'"
                          " right after them (F1:, R12:)", line, column - len(word))
    if char == "-":
        return ParseError("a '-' must join two parts of a name (VNF1-1) or start a number (-3)", line, column)
    return ParseError(f"unexpected character '{char}'", line, column)


# --- the tree, before names are resolved ---------------------------------------------------------


@dataclass(frozen=True)
class _Name:
    text: str
    position: Position


@dataclass(frozen=True)
class _Compound:
    """`name(args)`: an atom or a call, which only its place tells (see `_Resolver`)."""

    name: _Name
    args: tuple  # of _Compound, _Name, Const


@dataclass(frozen=True)
class _Literal:
    compound: _Compound
    negated: bool


@dataclass(frozen=True)
class _Comparison:
    op: Token
    left: object
    right: object


@dataclass(frozen=True)
class _Statement:
    kind: str  # "rule", "facts", "goal" or "shorthand"
    label: str | None
    position: Position
    atoms: tuple[_Compound, ...]
    body: tuple = ()
    names: frozenset[str] = frozenset()  # every name written in it, for `_Resolver._anonymous`


def _at(token: Token) -> Position:
    return Position(token.line, token.column)


class _Builder(Transformer):
    """Tree to `_Statement`s.  It raises nothing: lark would wrap it in a VisitError.  The tree
    is built bottom-up, so the names seen since the last statement are the next statement's."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def IDENT(self, token: Token) -> _Name:
        self.names.add(str(token))
        return _Name(str(token), _at(token))

    def NUMBER(self, token: Token) -> Const:
        return Const(float(token) if any(c in token for c in ".eE") else int(token))

    def STRING(self, token: Token) -> Const:
        return Const(re.sub(r"\\(.)", r"\1", token[1:-1]))

    def compound(self, children: list) -> _Compound:
        return _Compound(children[0], tuple(children[1:]))

    def positive(self, children: list) -> _Literal:
        return _Literal(children[0], False)

    def negative(self, children: list) -> _Literal:
        return _Literal(children[0], True)

    def comparison(self, children: list) -> _Comparison:
        left, op, right = children
        return _Comparison(op, left, right)

    def rule(self, children: list) -> _Statement:
        label, head, _arrow, *body = children
        return self._make("rule", label, (head,), tuple(body))

    def facts(self, children: list) -> _Statement:
        return self._make("facts", children[0], tuple(children[1:]))

    def goal(self, children: list) -> _Statement:
        return self._make("goal", None, (children[0],))

    def shorthand(self, children: list) -> _Statement:
        return self._make("shorthand", None, (_Compound(children[0], tuple(children[1:])),))

    def start(self, children: list) -> list[_Statement]:
        return children

    def _make(self, kind: str, label: Token | None, atoms: tuple, body: tuple = ()) -> _Statement:
        position = _at(label) if label is not None else atoms[0].name.position
        text = str(label)[:-1] if label is not None else None
        names, self.names = frozenset(self.names), set()
        return _Statement(kind, text, position, atoms, body, names)


# --- names to constants and variables, and the checks the grammar cannot make --------------------


class _Resolver:
    """Resolves one statement; anonymous `_` become `_1`, `_2`... avoiding its own names."""

    def __init__(self, statement: _Statement, known: frozenset[str], *, fact: bool = False) -> None:
        self.known, self.fact, self.count, self.used = known, fact, 0, statement.names

    def name(self, name: _Name) -> Term:
        if name.text == "_":
            if self.fact:
                raise _error(name.position, "a fact must be ground: '_' (any value) cannot be in a fact")
            return Var(self._anonymous())
        text = name.text  # decision 7 of docs/monitor-language.md
        constant = self.fact or text[0].islower() or "-" in text or text in self.known
        return Const(text) if constant else Var(text)

    def _anonymous(self) -> str:
        self.count += 1
        while f"_{self.count}" in self.used:
            self.count += 1
        return f"_{self.count}"

    def term(self, arg: object) -> Term:
        if isinstance(arg, _Compound):
            text = arg.name.text
            raise _error(arg.name.position, f"'{text}(...)' here is a call, which can only be a side of a "
                         f"comparison (V == {text}(...)); an argument of an atom or a fact is a term")
        return self.name(arg) if isinstance(arg, _Name) else arg

    def atom(self, compound: _Compound) -> Atom:
        name = compound.name
        if name.text in QUERY_NAMES:
            raise _error(name.position, f"'{name.text}' is reserved for query statements")
        _check_arity(compound, self.fact)
        return Atom(name.text, tuple(self.term(arg) for arg in compound.args))

    def side(self, side: object) -> Term:
        if not isinstance(side, _Compound):
            return self.term(side)
        args = (self.atom(a) if isinstance(a, _Compound) else self.term(a) for a in side.args)
        return Call(side.name.text, tuple(args))

    def item(self, item: _Literal | _Comparison) -> BodyItem:
        if isinstance(item, _Literal):
            return Literal(self.atom(item.compound), item.negated)
        if item.op == "<=" and isinstance(item.left, _Compound):
            text = item.left.name.text
            raise _error(_at(item.op), f"a second '<=' after '{text}(...)': a rule has one arrow; to compare "
                         f"a call with '<=', write it on the right (X >= {text}(...))")
        return Comparison(str(item.op), self.side(item.left), self.side(item.right))


def _check_arity(compound: _Compound, fact: bool) -> None:
    name, count = compound.name, len(compound.args)
    if name.text == "sub" and (count < 2 if fact else count != 2):
        raise _error(name.position, f"sub(x, y, ...) needs at least 2 arguments, not {count}" if fact else
                     f"sub takes 2 arguments outside facts (sub(x, y, z) is a shorthand of facts), not {count}")
    low, high = _ARITIES.get(name.text, (1, count))
    if not low <= count <= high:
        raise _error(name.position, f"{name.text} takes {' or '.join(sorted({str(low), str(high)}))} "
                     f"arguments, not {count}")


def _facts(statement: _Statement, known: frozenset[str]) -> Iterator[Fact]:
    resolver = _Resolver(statement, known, fact=True)
    for compound in statement.atoms:
        atom, position = resolver.atom(compound), compound.name.position
        if atom.predicate == "sub":  # the draft's F1: sub(x, a, b) is sub(x, a), sub(x, b)
            for child in atom.args[1:]:
                yield Fact(Atom("sub", (atom.args[0], child)), statement.label, position)
        else:
            yield Fact(atom, statement.label, position)


def _rule(statement: _Statement, known: frozenset[str]) -> Rule:
    resolver = _Resolver(statement, known)
    head, body = resolver.atom(statement.atoms[0]), tuple(map(resolver.item, statement.body))
    return Rule(head, body, statement.label, statement.position)


def _query(statement: _Statement, known: frozenset[str]) -> Query:
    resolver, compound = _Resolver(statement, known), statement.atoms[0]
    if statement.kind == "shorthand":  # `e2e_delay NF1 NF2`: the first word names the function
        args = (Const(compound.name.text), *map(resolver.term, compound.args))
        return Query(Atom("query", args), statement.position)
    if compound.name.text in QUERY_NAMES:
        return Query(Atom("query", tuple(map(resolver.term, compound.args))), statement.position)
    return Query(resolver.atom(compound), statement.position)


def _is_query(statement: _Statement) -> bool:
    """`query(...)` on its own; with a label or beside other facts it is an error."""
    queries = [c for c in statement.atoms if c.name.text in QUERY_NAMES]
    if statement.kind != "facts" or not queries:
        return False
    if statement.label is not None or len(statement.atoms) > 1:
        raise _error(queries[0].name.position, "a query stands alone: no label, no other fact beside it")
    return True


def _fact_constants(statements: list[_Statement]) -> set[str]:
    """Every name and string in the facts, found before resolving, so that facts may follow
    the rules that use their constants."""
    facts = [c for s in statements if s.kind == "facts" for c in s.atoms if c.name.text not in QUERY_NAMES]
    args = [a for compound in facts for a in compound.args]
    return {a.text for a in args if isinstance(a, _Name)} | {
        a.value for a in args if isinstance(a, Const) and isinstance(a.value, str)}


def parse_program(text: str, *, constants: Iterable[str] = ()) -> Program:
    """Facts, rules and `query(...)` statements; `constants` (e.g. the VNFFG's node names) are
    names that stay constants in rules and queries even when they begin upper-case."""
    statements = _parse(text, "start")
    known = _known(constants) | _fact_constants(statements)
    facts: list[Fact] = []
    rules: list[Rule] = []
    queries: list[Query] = []
    for statement in statements:  # in source order, so that the first error is reported
        if _is_query(statement):
            queries.append(_query(statement, known))
        elif statement.kind == "rule":
            rules.append(_rule(statement, known))
        else:
            facts.extend(_facts(statement, known))
    return Program(tuple(facts), tuple(rules), tuple(queries))


def parse_query(text: str, *, constants: Iterable[str] = ()) -> Query:
    """One query: `query(max_cpu, NF1)`, a goal `max_cpu(NF1, C)`, or the template shorthand
    `e2e_delay NF1 NF2` (= `query(e2e_delay, NF1, NF2)`) of the draft's section 7.1."""
    return _query(_parse(text, "query_start"), _known(constants))


def _known(constants: Iterable[str]) -> frozenset[str]:
    """A lone string is one name, not its letters: `constants="NF1"` is easy to write."""
    return frozenset([constants] if isinstance(constants, str) else map(str, constants))
