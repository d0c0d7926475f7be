"""Queries end to end without a network: templates, metric functions, the HTTP API, the CLI.

The draft's Figure 1 (monitor/examples/figure1.yaml) with fixed measurements; the expected
values are computed here from those measurements and the leaf sets the draft's rules define.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from monitor.functions import FixedMetrics
from monitor.parser import ParseError
from monitor.query import Answerer, QueryError
from monitor.service import application
from monitor.tosca import load_any
from monitor.tsdb import Store

ROOT = Path(__file__).resolve().parents[2]
FIGURE1 = ROOT / "monitor/examples/figure1.yaml"
CPU = {"vm1": 0.1, "vm2": 0.2, "vm3": 0.3, "vm7": 0.9, "vm8": 0.4, "vm4": 0.15, "vm5": 0.25, "vm6": 0.05,
       "vm9": 0.6, "vm10": 0.5}  # fmt: skip
DELAY = {"vm7": {"vm10": 30.5, "vm8": 0.2}, "vm2": {"vm10": 29.0}}
NF1 = ["vm1", "vm2", "vm3", "vm7", "vm8"]
NF2 = ["vm10", "vm4", "vm5", "vm6", "vm9"]


@pytest.fixture(scope="module")
def answerer() -> Answerer:
    graph = load_any(FIGURE1)
    return Answerer(graph.facts(), FixedMetrics({"cpu": CPU, "delay": DELAY}), host_of=graph.host_of)


def rows(answerer: Answerer, text: str, program: str = "") -> list[tuple]:
    return answerer.answer(text, program).rows


def test_leaves_follow_the_drafts_rules(answerer):
    assert [r[1] for r in rows(answerer, "leaf NF1")] == NF1
    assert sorted(r[1] for r in rows(answerer, "leaf(NF2, Y)")) == sorted(NF2)
    # by R4/R5 as written: vm2 has no incoming link in F2 either (the draft's prose says vm7 only)
    assert [r[1] for r in rows(answerer, "in_leaf(NF1, Y)")] == ["vm2", "vm7"]
    assert [r[1] for r in rows(answerer, "out_leaf NF2")] == ["vm10"]


def test_cpu_templates_aggregate_the_leaves_measurements(answerer):
    assert rows(answerer, "max_cpu NF1") == [("NF1", max(CPU[v] for v in NF1))]
    assert rows(answerer, "query(min_cpu, NF2)") == [("NF2", min(CPU[v] for v in NF2))]
    [(_, mean)] = rows(answerer, "mean_cpu NF1")
    assert mean == pytest.approx(statistics.fmean(CPU[v] for v in NF1))
    [(_, top)] = rows(answerer, "top_cpu NF2")
    assert [name for name, _ in top] == ["vm9", "vm10", "vm5"]


def test_e2e_delay_is_the_worst_ingress_egress_pair(answerer):
    assert rows(answerer, "e2e_delay NF1 NF2") == [("NF1", "NF2", 30.5)]
    assert rows(answerer, "delay vm7 vm8") == [("vm7", "vm8", 0.2)]


def test_a_missing_measurement_gives_no_answer_and_says_which():
    graph = load_any(FIGURE1)
    partial = Answerer(graph.facts(), FixedMetrics({"cpu": {"vm1": 0.5}}), host_of=graph.host_of)
    answer = partial.answer("max_cpu NF1")
    assert answer.rows == [] and "cpu of vm2" in answer.missing and "cpu of vm1" not in answer.missing


def test_a_program_of_ones_own_may_define_new_queries(answerer):
    program = """
R1: child(X, Y) <= sub(X, Z), child(Z, Y)
R2: child(X, Y) <= sub(X, Y)
R3: leaf(X, Y) <= child(X, Y), ~sub(Y, Z)
R4: busy(X, Y) <= leaf(X, Y), C == f_cpu(Y), C > 0.35
"""
    assert [r[1] for r in rows(answerer, "busy(NF1, Y)", program)] == ["vm7", "vm8"]


def test_bad_queries_are_refused_clearly(answerer):
    with pytest.raises(QueryError, match="no_such"):
        answerer.answer("no_such NF1")
    with pytest.raises(QueryError, match="takes 2 arguments"):
        answerer.answer("max_cpu(NF1, C, D)")
    with pytest.raises(ParseError) as error:
        answerer.answer("max_cpu(NF1")
    assert error.value.line == 1 and error.value.column > 1


def test_http_api(answerer):
    async def scenario() -> None:
        store = Store()
        store.add("host_cpu_ratio", ("vm1",), 0.25)
        async with TestClient(TestServer(application(answerer, store))) as client:
            ok = await client.get("/query", params={"q": "max_cpu NF1"})
            assert ok.status == 200 and (await ok.json())["rows"] == [["NF1", 0.9]]
            posted = await client.post("/query", json={"query": "busy(NF1, Y)", "program": "busy(X, Y) <= sub(X, Y)"})
            assert sorted(r[1] for r in (await posted.json())["rows"]) == ["VNF1-1", "VNF1-2"]
            bad = await client.get("/query", params={"q": "max_cpu(NF1"})
            assert bad.status == 400 and "column" in (await bad.json())["error"]
            unknown = await client.get("/query", params={"q": "nope NF1"})
            assert unknown.status == 422
            assert (await client.post("/query", data=b"not json")).status == 400
            templates = await (await client.get("/templates")).json()
            assert {"e2e_delay", "max_cpu", "mean_cpu"} <= set(templates)
            metrics = await (await client.get("/metrics")).text()
            assert 'vnfpool_host_cpu_ratio{host="vm1"} 0.25' in metrics
            facts = await (await client.get("/facts")).text()
            assert "sub(VNF2-3, vm10)" in facts

    asyncio.run(scenario())


def test_cli_offline(tmp_path):
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"cpu": CPU, "delay": DELAY}))
    argv = [sys.executable, "-c", "from testbed.cli import app; app()", "query", "--vnffg", str(FIGURE1), "--metrics", str(metrics)]
    out = subprocess.run([*argv, "max_cpu NF1", "--json"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows"] == [["NF1", 0.9]]
    bad = subprocess.run([*argv, "max_cpu(NF1"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "line 1, column" in bad.stderr
