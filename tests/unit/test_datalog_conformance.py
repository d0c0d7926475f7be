"""The external datalog-conformance suite (the pip package datalog_conformance) against the engine,
through the adapter `monitor.conformance.Evaluator`, one test per YAML case.

The cases are run by the suite's own runner (`YamlTestRunner.run_test_case`), exactly as its
pytest plugin would with `--datalog-evaluator=monitor.conformance.Evaluator`.  Skipped: the
defeasible-logic suites (theories with defeasible rules and superiority, KLM properties), which
are another logic, not Datalog.  Every core (Datalog) case must pass except those listed in
DEVIATIONS, where the monitoring language differs from the suite's dialect by design; they run
as strict xfails, so that a change in behaviour shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

datalog_conformance = pytest.importorskip("datalog_conformance")

from datalog_conformance import TestCase as YamlCase  # not "Test...": pytest would try to collect it  # noqa: E402
from datalog_conformance import YamlTestRunner, discover_yaml_tests, get_tests_dir  # noqa: E402

from monitor.conformance import Evaluator  # noqa: E402

DEVIATIONS = {
    "unsafe_negation_variable_only_in_negative_literal": (
        "`ok(X) :- person(X), not banned(X, Y)` is expected to be rejected; the monitoring language "
        "reads a variable that occurs only in a negated literal as existential (no Y with "
        "banned(X, Y)), as the draft's R3-R5 (`~sub(Y, Z)`, `~link(M, Y)`) need"),
}

CASES = discover_yaml_tests()


def case_id(path: Path, case: YamlCase) -> str:
    """The plugin's id: the YAML path under the suite's directory, then the case's name."""
    return f"{path.relative_to(get_tests_dir()).with_suffix('').as_posix()}::{case.name}"


def params() -> list:
    out = []
    for path, case in CASES:
        marks = []
        if case.program is None:
            marks.append(pytest.mark.skip(reason="defeasible logic suite: not Datalog"))
        elif case.skip:
            marks.append(pytest.mark.skip(reason=f"skipped by the suite: {case.skip}"))
        elif case.name in DEVIATIONS:
            marks.append(pytest.mark.xfail(reason=DEVIATIONS[case.name], strict=True))
        out.append(pytest.param(case, id=case_id(path, case), marks=marks))
    return out


@pytest.mark.parametrize("case", params())
def test_conformance_case(case: YamlCase) -> None:
    YamlTestRunner(Evaluator()).run_test_case(case)


def test_the_corpus_is_the_one_these_counts_describe() -> None:
    """114 core cases (108 expected results, 6 expected errors) and 181 defeasible ones in
    datalog-conformance 0.1.0; a new version of the suite should be looked at, not just run."""
    core = [c for _, c in CASES if c.program is not None]
    assert len(core) == 114 and sum(c.expect_error is not None for c in core) == 6
    assert len(CASES) - len(core) == 181
    assert set(DEVIATIONS) <= {c.name for c in core}


def test_evaluator_reports_the_suites_error_codes() -> None:
    runner = YamlTestRunner(Evaluator())
    errors = [c for _, c in CASES if c.program is not None and c.expect_error and c.name not in DEVIATIONS]
    assert {c.expect_error for c in errors} == {"arity_mismatch", "cyclic_negation", "unbound_variable",
                                                "safety_violations"}
    for case in errors:
        runner.run_test_case(case)
