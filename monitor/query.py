"""Answering one query: a program (the user's rules, or a template's) over the VNFFG's facts.

Shared by the monitor process (live metrics), `testbed query` offline (metrics from a file) and
the HTTP API.  A query names a template (`max_cpu NF1`, `query(e2e_delay, NF1, NF2)`) or any
predicate of the program (`leaf(NF1, Y)`); the template's rules are added unless the program
defines the predicate itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.ast import Atom, Const, Fact, Program, Query, Var
from monitor.builtins import FunctionLibrary
from monitor.engine import Engine
from monitor.functions import MetricFunctions, Metrics
from monitor.parser import parse_program, parse_query
from monitor.templates import TemplateLibrary


MAX_ENGINES = 16  #: prepared engines kept (one per template and caller's program)


class QueryError(ValueError):
    """A query that cannot be answered as asked (unknown template, wrong arity ...)."""


@dataclass
class Answer:
    query: str
    goal: str
    rows: list[tuple[Any, ...]]
    took_ms: float
    template: str | None = None
    missing: list[str] = field(default_factory=list)  #: measurements that were not available

    def to_json(self) -> dict[str, Any]:
        return {"query": self.query, "goal": self.goal, "template": self.template,
                "rows": [list(r) for r in self.rows], "took_ms": round(self.took_ms, 3), "missing": self.missing}  # fmt: skip


class Answerer:
    """Everything a query needs but the query: facts, templates, functions over metrics."""

    def __init__(self, facts: Sequence[Fact], metrics: Metrics, *, host_of: Any = None,
                 templates: TemplateLibrary | None = None, program: str = "") -> None:  # fmt: skip
        self.facts = tuple(facts)
        self.metrics = metrics
        self.host_of = host_of or (lambda leaf: leaf)
        self.templates = templates or TemplateLibrary.default()
        self.constants = _constants(self.facts)
        self.base = parse_program(program, constants=self.constants) if program.strip() else Program()
        self.constants |= _constants(self.base.facts)
        self.functions = MetricFunctions(self.metrics, self.host_of)
        self.library = FunctionLibrary(self.functions.table())
        # Engines by (the caller's program, the template's rules): the facts are loaded and
        # indexed once; each query starts from them afresh (the measurements change).
        self.engines: dict[tuple[str, str | None], Engine] = {}
        self.lock = threading.Lock()  # the HTTP API answers in threads; engines are not shared safely
        self.parsed: dict[str, Program] = {}  # template rules, parsed once (lark costs ms per query)

    def answer(self, text: str, program: str = "") -> Answer:
        with self.lock:
            return self._answer(text, program)

    def _answer(self, text: str, program: str) -> Answer:
        started = time.perf_counter()
        extra = parse_program(program, constants=self.constants) if program.strip() else Program()
        query = parse_query(text, constants=self.constants | _constants(extra.facts))
        user = self.base + extra
        goal, template = self._goal(query, user)
        engine = self._engine(program, template, user)
        engine.reset()
        self.functions.missing.clear()
        rows = sorted(engine.query(goal), key=repr)
        name = goal.predicate if template is not None else None
        return Answer(text, str(goal), rows, (time.perf_counter() - started) * 1000, name, sorted(self.functions.missing))

    def _engine(self, program: str, template: str | None, user: Program) -> Engine:
        key = (program, template)
        engine = self.engines.get(key)
        if engine is None:
            rules = user if template is None else self._parsed(template) + user
            engine = Engine(Program(self.facts + rules.facts, rules.rules), functions=self.library)
            if len(self.engines) >= MAX_ENGINES:  # callers' programs vary: keep the newest few
                self.engines.pop(next(iter(self.engines)))
            self.engines[key] = engine
        return engine

    def _goal(self, query: Query, program: Program) -> tuple[Atom, str | None]:
        """The goal atom, with the result variables added, and the template's rules if used."""
        atom = query.atom
        if atom.predicate.lower() == "query":
            if not atom.args or not isinstance(atom.args[0], Const):
                raise QueryError(f"{query}: query(...) names the monitoring function first")
            atom = Atom(str(atom.args[0].value), atom.args[1:])
        defined = {r.head.predicate: r.head.arity for r in program.rules}
        rules_text = None
        arity = defined.get(atom.predicate)
        if arity is None:
            rules_text, arity = self._template_defining(atom.predicate)
        if arity is None:
            arity = _fact_arity(self.facts, atom.predicate)
        if arity is None:
            known = ", ".join(self.templates.names())
            raise QueryError(f"{atom.predicate}: neither a template ({known}) nor a predicate of the program")
        if len(atom.args) > arity:
            raise QueryError(f"{atom.predicate} takes {arity} arguments, the query gives {len(atom.args)}")
        free = tuple(Var(f"_R{i}") for i in range(arity - len(atom.args)))
        return Atom(atom.predicate, atom.args + free), rules_text


    def _parsed(self, rules: str) -> Program:
        program = self.parsed.get(rules)
        if program is None:
            program = self.parsed[rules] = parse_program(rules, constants=self.constants)
        return program

    def _template_defining(self, predicate: str) -> tuple[str | None, int | None]:
        """The template named so, else the first whose rules define the predicate (`in_leaf`
        comes with `e2e_delay`): (its rules, the predicate's arity), or (None, None)."""
        named = self.templates.get(predicate)
        candidates = [named] if named else [self.templates.get(n) for n in self.templates.names()]
        for template in candidates:
            assert template is not None
            arity = _arity_in(self._parsed(template.rules), predicate)
            if arity is not None:
                return template.rules, arity
        return None, None


def _constants(facts: Iterable[Fact]) -> set[str]:
    return {str(a.value) for f in facts for a in f.atom.args if isinstance(a, Const)}


def _arity_in(program: Program, predicate: str) -> int | None:
    return next((r.head.arity for r in program.rules if r.head.predicate == predicate), None)


def _fact_arity(facts: Iterable[Fact], predicate: str) -> int | None:
    return next((f.atom.arity for f in facts if f.atom.predicate == predicate), None)
