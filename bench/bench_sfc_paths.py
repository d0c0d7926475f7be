"""The SFC eXchange Platform's path computation (`sdn.paths.rank`) on 50 domains, next to brute force.

    .venv/bin/python bench/bench_sfc_paths.py [--domains 50] [--sfs 5] [--repeats 7] [--seed 1]
                                              [--brute-domains 12] [--brute-repeats 3]

Domain graph: `--domains` domains AS01..ASnn, a random spanning tree plus as many extra random
links again, link routingcost a random integer 1..50 ms (seeded), intra-domain cost of each
domain a random integer 0..5; built as an `sdn.view.View`, so `View.costs()` gives all-pairs
costs and routes (Dijkstra from every domain), timed separately per metric.  A chain of `--sfs`
SFs, cases:
  sparse       each domain offers each SF with probability 0.3 (every SF somewhere);
  dense        every domain offers every SF (50^5 = 312,500,000 combinations);
  dense+ends   the same with ingress AS01 and egress ASnn;
  hop+ends     dense, hopcount costs (intra-domain 0): many equal costs, the tie-breaks decide.
Timed: `rank(..., k)` for k = 1, 10, 100, median of --repeats runs, ms (no caches survive
between calls: every call starts from the cost map).  Checked before anything is printed: the
k = 1 and 10 answers are the first paths of the k = 100 one, in every case.

Brute force: every combination, its cost, sorted by the same key (cost, distinct domains,
domain tuple), on the same cases over `--brute-domains` domains (12^5 = 248,832 combinations),
median of --brute-repeats runs (after a warm-up run, as rank()); its first k paths must equal rank()'s for every k, otherwise the
script exits with status 1 before printing times.  Ratio: brute force / rank (>1: rank faster).
Nothing is asserted on times.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_monitor import table  # noqa: E402

from sdn.paths import rank  # noqa: E402
from sdn.view import DomainInfo, LinkInfo, View  # noqa: E402

KS = (1, 10, 100)
CASES = ("sparse", "dense", "dense+ends", "hop+ends")


def build(n_domains: int, n_sfs: int, seed: int) -> tuple[View, list[str], dict[str, dict[str, list[str]]]]:
    """The view, the chain, and per case the candidates (SF -> domains)."""
    rng = random.Random(seed)
    names = [f"AS{i:02d}" for i in range(1, n_domains + 1)]
    chain = [f"SF{i}" for i in range(1, n_sfs + 1)]
    pairs = {tuple(sorted((names[i], names[rng.randrange(i)]))) for i in range(1, n_domains)}
    while len(pairs) < min(2 * (n_domains - 1), n_domains * (n_domains - 1) // 2):
        a, b = rng.sample(names, 2)
        pairs.add(tuple(sorted((a, b))))
    links = [LinkInfo(a, b, float(rng.randint(1, 50))) for a, b in sorted(pairs)]
    sparse = {sf: [d for d in names if rng.random() < 0.3] or [rng.choice(names)] for sf in chain}
    offered = {d: {sf: 1 for sf in chain} for d in names}
    domains = {d: DomainInfo(d, {"a": f"10.{i}.1.0/24"}, offered[d], intra_cost=float(rng.randint(0, 5)))
               for i, d in enumerate(names, 1)}  # fmt: skip
    dense = {sf: list(names) for sf in chain}
    return (
        View(domains, links),
        chain,
        {"sparse": sparse, "dense": dense, "dense+ends": dense, "hop+ends": dense},
    )


def arguments(case: str, view: View, chain: list[str], cands: dict, costs: dict) -> dict:
    names = sorted(view.domains)
    c = costs["hopcount" if case == "hop+ends" else "routingcost"]
    ends = {"ingress": names[0], "egress": names[-1]} if case.endswith("+ends") else {}
    return dict(chain=chain, candidates=cands[case], cost=c.value, route=c.route, **ends)


def brute_force(chain, candidates, cost, route, ingress=None, egress=None) -> list[tuple]:
    """All combinations, sorted by (cost, distinct domains, domain tuple): (cost, domains) rows."""
    rows = []
    for ds in itertools.product(*(sorted(set(candidates[sf])) for sf in chain)):
        seq = [*([ingress] if ingress else []), *ds, *([egress] if egress else [])]
        total = 0.0
        for a, b in zip(seq, seq[1:]):
            v = cost[a].get(b)
            if v is None:
                break
            total += v
        else:
            rows.append((total, len(set(ds)), ds))
    rows.sort()
    return [(t, ds) for t, _, ds in rows]


def median_ms(fn, repeats: int):
    """Median wall time of `repeats` calls after one warm-up call, ms, and the last result."""
    fn()
    times, result = [], None
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def combos(chain: list[str], cands: dict) -> int:
    n = 1
    for sf in chain:
        n *= len(set(cands[sf]))
    return n


def num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", type=int, default=50)
    ap.add_argument("--sfs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--brute-domains", type=int, default=12)
    ap.add_argument("--brute-repeats", type=int, default=3)
    args = ap.parse_args()

    wrong: list[str] = []
    big = build(args.domains, args.sfs, args.seed)
    small = build(args.brute_domains, args.sfs, args.seed)
    cost_ms = {}
    results = {}
    for label, (view, chain, cands) in (("big", big), ("small", small)):
        costs = {}
        for metric in ("routingcost", "hopcount"):
            cost_ms[label, metric], costs[metric] = median_ms(lambda m=metric: view.costs(m), args.repeats)
        for case in CASES:
            kw = arguments(case, view, chain, cands, costs)
            got = {}
            for k in KS:
                t, paths = median_ms(lambda k=k: rank(**kw, k=k), args.repeats)
                got[k] = (t, [(p.cost, p.sf_domains) for p in paths])
            for k in KS[:-1]:
                if got[k][1] != got[KS[-1]][1][:k]:
                    wrong.append(f"{label} {case}: k={k} is not the start of k={KS[-1]}")
            brute = None
            if label == "small":
                tb, rows = median_ms(lambda: brute_force(**kw), args.brute_repeats)
                brute = tb
                for k in KS:
                    if got[k][1] != rows[:k]:
                        wrong.append(
                            f"small {case}, k={k}: rank {got[k][1][:3]}... brute force {rows[:3]}..."
                        )
            results[label, case] = (combos(chain, cands[case]), got, brute)
    if wrong:
        print("ANSWERS DISAGREE:", *wrong, sep="\n  ")
        return 1

    n_links = len(big[0].links)
    print(f"{args.domains} domains, {n_links} links (seed {args.seed}), chain of {args.sfs} SFs; "
          f"times in ms, medians of {args.repeats} runs")  # fmt: skip
    table(["View.costs()", "domains", "routingcost", "hopcount"],
          [["all pairs", str(args.domains), f"{cost_ms['big', 'routingcost']:.2f}", f"{cost_ms['big', 'hopcount']:.2f}"],
           ["all pairs", str(args.brute_domains), f"{cost_ms['small', 'routingcost']:.2f}",
            f"{cost_ms['small', 'hopcount']:.2f}"]])  # fmt: skip
    print()
    rows = []
    for case in CASES:
        n, got, _ = results["big", case]
        rows.append([case, f"{n:,}", *(f"{got[k][0]:.2f}" for k in KS), f"{got[KS[-1]][1][0][0]:g}"])
    table(["rank()", "combinations", *(f"k={k}" for k in KS), "best cost"], rows)
    print(f"\nbrute force vs rank() over {args.brute_domains} domains (brute force: median of "
          f"{args.brute_repeats}; same answers for every k, checked)")  # fmt: skip
    rows = []
    for case in CASES:
        n, got, brute = results["small", case]
        rows.append(
            [
                case,
                f"{n:,}",
                num(brute),
                *(f"{got[k][0]:.2f}" for k in KS),
                *(num(brute / got[k][0]) for k in KS),
            ]
        )
    table(["case", "combinations", "brute", *(f"rank k={k}" for k in KS), *(f"x k={k}" for k in KS)], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
