"""The recursive monitor's Datalog engine on the draft's two queries, next to clingo and pyDatalog.

    .venv/bin/python bench/bench_monitor.py [--sizes 1000,10000,100000] [--repeats 5] [--timeout 120]

Queries (draft-cai-nfvrg-recursive-monitor-03, section 7, the rules of `monitor.templates`):
`max_cpu(NF1, C)` and `e2e_delay(NF1, NF2, P)`, over `monitor.vnffg.generate(n, 4, 4, seed=0)`
(nested VNFFGs of exactly n elements) and its node/sub/link facts.  Each leaf gets a CPU load
(per mille, random with seed n); delays (microseconds) are given for every leaf-to-leaf link and for
every (ingress of NFi, egress of NFi+1) pair, so the rules must pick the right pairs out of them.

Ours: `monitor.engine.Engine` with the e2e_delay and max_cpu template rules (parsed) plus the facts
as AST `Fact`s (`Vnffg.facts()`), the metric functions of `monitor.functions` over `FixedMetrics`
(CPU = per mille / 1000, delay = us / 1000 ms).  Measured, medians of --repeats runs:
  build      parsing the template rules + `Engine(...)` (facts loaded, rules normalized, stratified);
  magic      `engine.query(goal)` (magic sets) right after `engine.reset()`, the rewrite cached by
             a warm-up query: what a query costs on a fresh engine state;
  magic+idx  the same query repeated without reset: the facts' hash indexes already built;
  plain      `engine.query(goal, magic=False)` after `engine.reset()`: bottom-up over everything.
`monitor.query.Answerer` (the public path, which builds its own engine) must give the same rows.

Baselines, each in a subprocess (killed after --timeout seconds for one size, and then skipped):
  clingo     the same rules in ASP (`not sub(Y,_)`, `#max`); load = parsing and grounding the facts,
             query = adding the rules and the query, grounding, solving; a new Control per run;
  pyDatalog  the same rules, `max_` aggregates; load = asserting the facts and loading the rules
             (once), query = `pyDatalog.ask` (top-down with tabling, goal-directed; it keeps no
             answers between queries: repeats take as long as the first).
Every answer (ours, Answerer's, clingo's, pyDatalog's) must equal one computed in plain Python from
the graph, at every size, before any time is printed; otherwise the script exits with status 1.
Ratios are baseline time / our `magic` time (>1: ours is faster).  Nothing is asserted on times.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.vnffg import Vnffg, generate  # noqa: E402

QUERIES = {"max_cpu": ("NF1",), "e2e_delay": ("NF1", "NF2")}
BASELINES = ("clingo", "pyDatalog")
INSTALL = ".venv/bin/python -m pip install -e '.[bench]'"
ASP_RULES = """
child(X,Y) :- sub(X,Y).
child(X,Y) :- sub(X,Z), child(Z,Y).
leaf(X,Y) :- child(X,Y), not sub(Y,_).
in_leaf(X,Y) :- leaf(X,Y), not link(_,Y).
out_leaf(X,Y) :- leaf(X,Y), not link(Y,_).
"""
ASP_QUERIES = {
    "max_cpu": 'max_cpu(X,C) :- X = "NF1", leaf(X,_), C = #max { V,Y : leaf(X,Y), cpu(Y,V) }.',
    "e2e_delay": 'e2e_delay(S,D,P) :- S = "NF1", D = "NF2", link(S,D), in_leaf(S,_), out_leaf(D,_),'
                 ' P = #max { Q,Y,Z : in_leaf(S,Y), out_leaf(D,Z), delay(Y,Z,Q) }.',
}
PYD_RULES = """
child(X,Y) <= sub(X,Y)
child(X,Y) <= sub(X,Z) & child(Z,Y)
leaf(X,Y) <= child(X,Y) & ~sub(Y,Z)
in_leaf(X,Y) <= leaf(X,Y) & ~link(M,Y)
out_leaf(X,Y) <= leaf(X,Y) & ~link(Y,M)
(max_cpu[X] == max_(C, order_by=C)) <= leaf(X,Y) & cpu(Y,C)
(e2e_delay[S,D] == max_(P, order_by=P)) <= link(S,D) & in_leaf(S,Y) & out_leaf(D,Z) & delay(Y,Z,P)
"""
PYD_QUERIES = {"max_cpu": "max_cpu['NF1'] == C", "e2e_delay": "e2e_delay['NF1','NF2'] == P"}


def dataset(n: int) -> tuple[Vnffg, dict[str, int], dict[tuple[str, str], int], dict[str, int]]:
    """The graph, CPU per mille per leaf, delay in us per (src, dst), and the expected answers."""
    g = generate(n, 4, 4, 0)
    rng = random.Random(n)
    cpu = {x: rng.randrange(1001) for x, members in g.members.items() if not members}
    into, outof = {b for _, b in g.links}, {a for a, _ in g.links}
    ins = {nf: [y for y in g.leaves(nf) if y not in into] for nf in g.service}
    outs = {nf: [y for y in g.leaves(nf) if y not in outof] for nf in g.service}
    pairs = [(a, b) for a, b in g.links if a in cpu and b in cpu]
    pairs += [(y, z) for s, d in zip(g.service, g.service[1:]) for y in ins[s] for z in outs[d] if y != z]
    delay = {p: rng.randrange(100, 50_000) for p in dict.fromkeys(pairs)}
    expected = {"max_cpu": max(cpu[y] for y in g.leaves("NF1")),
                "e2e_delay": max(delay[y, z] for y in ins["NF1"] for z in outs["NF2"])}
    return g, cpu, delay, expected


def ms(seconds: float) -> float:
    return seconds * 1000


def timed(fn):
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return ms(time.perf_counter() - start), result


def run_ours(g: Vnffg, cpu: dict, delay: dict, repeats: int) -> dict:
    from monitor.ast import Atom, Const, Program, Var
    from monitor.builtins import FunctionLibrary
    from monitor.engine import Engine
    from monitor.functions import FixedMetrics, MetricFunctions
    from monitor.parser import parse_program
    from monitor.query import Answerer
    from monitor.templates import SOURCES

    facts = tuple(g.facts())
    nested: dict[str, dict[str, float]] = {}
    for (s, d), us in delay.items():
        nested.setdefault(s, {})[d] = us / 1000
    metrics = FixedMetrics({"cpu": {y: v / 1000 for y, v in cpu.items()}, "delay": nested})

    def build() -> Engine:
        rules = parse_program(SOURCES["e2e_delay"][0]).rules + tuple(
            r for r in parse_program(SOURCES["max_cpu"][0]).rules if r.head.predicate == "max_cpu")
        library = FunctionLibrary()
        for name, fn in MetricFunctions(metrics).table().items():
            library.register(name, fn)
        return Engine(Program(facts, rules), functions=library)

    builds = []
    for _ in range(repeats):
        engine = None  # one engine alive at a time: 100,000 facts are large
        t, engine = timed(build)
        builds.append(t)
    out: dict = {"build": statistics.median(builds)}
    answerer = Answerer(facts, metrics)
    for q, args in QUERIES.items():
        goal = Atom(q, tuple(Const(a) for a in args) + (Var("V"),))
        engine.query(goal)  # warm-up: the magic rewrite is made once and cached
        res: dict = {}
        for mode, magic, reset in (("magic", True, True), ("magic+idx", True, False), ("plain", False, True)):
            times, answers = [], set()
            for _ in range(repeats):
                if reset:
                    engine.reset()
                t, rows = timed(lambda: engine.query(goal, magic=magic))
                times.append(t)
                answers.add(tuple(rows))
            res[mode] = statistics.median(times)
            res[mode + " stats"] = engine.last_stats
            res[mode + " rows"] = answers
        public = answerer.answer(f"{q} {' '.join(args)}").rows
        res["answerer rows"] = {tuple(tuple(r) for r in public)}
        out[q] = res
    return out


def baseline_clingo(g: Vnffg, cpu: dict, delay: dict, repeats: int) -> dict:
    import clingo

    text = "\n".join([*(f'sub("{p}","{c}").' for p, cs in g.members.items() for c in cs),
                      *(f'link("{a}","{b}").' for a, b in g.links),
                      *(f'cpu("{y}",{v}).' for y, v in cpu.items()),
                      *(f'delay("{s}","{d}",{us}).' for (s, d), us in delay.items())])
    loads, out = [], {}
    for q, rule in ASP_QUERIES.items():
        times, answers = [], set()
        for _ in range(repeats):
            ctl = clingo.Control(["--warn=none"])
            loads.append(timed(lambda: (ctl.add("base", [], text), ctl.ground([("base", [])])))[0])
            found: list = []

            def query() -> None:
                ctl.add("query", [], ASP_RULES + rule + f"\n#show {q}/{len(QUERIES[q]) + 1}.")
                ctl.ground([("query", [])])
                ctl.solve(on_model=lambda m: found.extend(m.symbols(shown=True)))

            times.append(timed(query)[0])
            answers |= {s.arguments[-1].number for s in found}
        out[q] = {"ms": statistics.median(times), "answers": sorted(answers)}
    return {"load": statistics.median(loads), **out}


def baseline_pydatalog(g: Vnffg, cpu: dict, delay: dict, repeats: int) -> dict:
    from pyDatalog import pyDatalog

    def load() -> None:
        for p, cs in g.members.items():
            for c in cs:
                pyDatalog.assert_fact("sub", p, c)
        for a, b in g.links:
            pyDatalog.assert_fact("link", a, b)
        for y, v in cpu.items():
            pyDatalog.assert_fact("cpu", y, v)
        for (s, d), us in delay.items():
            pyDatalog.assert_fact("delay", s, d, us)
        pyDatalog.load(PYD_RULES)

    out: dict = {"load": timed(load)[0]}
    for q, text in PYD_QUERIES.items():
        runs = [timed(lambda: pyDatalog.ask(text)) for _ in range(repeats)]
        answers = {row[0] for _, a in runs for row in (a.answers if a else [])}
        out[q] = {"ms": statistics.median(t for t, _ in runs), "answers": sorted(answers)}
    return out


def run_baseline(name: str, n: int, repeats: int, timeout: float) -> tuple[dict | None, str]:
    """(results, note): the baseline run in a subprocess of this script; None with the reason."""
    if importlib.util.find_spec(name) is None:
        return None, f"{name} is not installed: {INSTALL}"
    cmd = [sys.executable, __file__, "--baseline", name, "--sizes", str(n), "--repeats", str(repeats)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"{name} skipped at {n:,} nodes: over {timeout:g} s"
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"{name} failed at {n:,} nodes (exit {done.returncode}): {tail}"
    return json.loads(done.stdout.strip().splitlines()[-1]), ""


def scaled(rows: set, factor: int = 1000) -> list[int]:
    """Our answer rows (sets of tuples of rows) as the baselines' integers: the last column x 1000."""
    return sorted({round(row[-1] * factor) for answer in rows for row in answer})


def table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per baseline and size")
    ap.add_argument("--baseline", choices=BASELINES, help=argparse.SUPPRESS)  # the subprocess's job
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.replace("_", "").split(",")]
    if args.baseline:
        run = baseline_clingo if args.baseline == "clingo" else baseline_pydatalog
        g, cpu, delay, _ = dataset(sizes[0])
        print(json.dumps(run(g, cpu, delay, args.repeats)))
        return 0
    notes, results, wrong = [], [], []
    for n in sizes:
        g, cpu, delay, expected = dataset(n)
        print(f"{n:,} nodes: {len(g.service)} functions, {len(cpu):,} leaves, {len(g.links):,} links, "
              f"{len(delay):,} delays ...", flush=True)
        ours = run_ours(g, cpu, delay, args.repeats)
        base = {}
        for name in BASELINES:
            base[name], note = run_baseline(name, n, args.repeats, args.timeout)
            if note and note not in notes:
                notes.append(note)
        for q in QUERIES:
            got = {f"ours {m}": scaled(ours[q][m + " rows"]) for m in ("magic", "magic+idx", "plain")}
            got["Answerer"] = scaled(ours[q]["answerer rows"])
            got |= {name: b[q]["answers"] for name, b in base.items() if b}
            bad = {k: v for k, v in got.items() if v != [expected[q]]}
            if bad:
                wrong.append(f"{n:,} nodes, {q}: expected [{expected[q]}], got {bad}")
            results.append((n, q, ours, base, not bad))
    if wrong:
        print("ANSWERS DISAGREE (values x 1000: CPU per mille, delay in us):", *wrong, sep="\n  ")
        return 1
    rows, derived = [], []
    for n, q, ours, base, agree in results:
        r, c, p = ours[q], base.get("clingo"), base.get("pyDatalog")
        cms, pms = (c[q]["ms"] if c else None), (p[q]["ms"] if p else None)

        def f(v, spec=".1f"):
            return "n/a" if v is None else format(v, spec)

        rows.append([f"{n:,}", q, f(ours["build"]), f(r["magic"], ".2f"), f(r["magic+idx"], ".2f"),
                     f(r["plain"]), f(c and c["load"]), f(cms), f(p and p["load"]), f(pms),
                     f(cms and cms / r["magic"], ".1f"), f(pms and pms / r["magic"], ".1f"),
                     f(cms and cms / r["magic+idx"], ".1f"), f(pms and pms / r["magic+idx"], ".1f"),
                     "yes" if agree else "NO"])
        sm, sp = r["magic stats"], r["plain stats"]
        derived.append([f"{n:,}", q, f"{sum(sm.derived.values()):,}", f"{sum(sp.derived.values()):,}",
                        f"{sm.rows('child'):,}", f"{sp.rows('child'):,}", f"{sm.rows('leaf'):,}",
                        f"{sp.rows('leaf'):,}", sm.iterations, sp.iterations, sm.rules, sp.rules])
    print(f"times in ms, medians of {args.repeats} runs (ratios: baseline / ours)")
    table(["size", "query", "build", "magic", "magic+idx", "plain", "clingo load", "clingo",
           "pyD load", "pyD", "clingo/magic", "pyD/magic", "clingo/idx", "pyD/idx", "agree"], rows)
    print("\nrows derived (engine.last_stats), magic vs plain")
    table(["size", "query", "all magic", "all plain", "child magic", "child plain", "leaf magic",
           "leaf plain", "rounds magic", "rounds plain", "rules magic", "rules plain"], derived)
    print("\nmagic: after engine.reset(); magic+idx: repeated without reset (the facts' indexes kept); "
          "clingo/idx, pyD/idx: against magic+idx")
    for note in notes:
        print("note:", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
