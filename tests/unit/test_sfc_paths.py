"""The SFC eXchange Platform's path computation (sdn.paths): the draft's Table 2, ties,
constraints, transit domains, every NoPath message, the ALTO adapters, and rank() against
brute-force enumeration on random instances."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdn.alto.catalog import PROP_CAPABILITIES as PROP
from sdn.paths import NoPath, ServicePath, candidates_from_propmap, costs_from_costmap, rank
from sdn.view import DomainInfo, LinkInfo, View

CHAIN = ["SF1", "SF2", "SF3"]
TABLE2 = ["AS1:SF1->AS2:SF2->AS2:SF3", "AS1:SF1->AS2:SF2->AS3:SF3"]


def draft_view(ab: float = 10, intra2: float = 0) -> View:
    """Figure 1: AS1 offers SF1, AS2 SF2 and SF3, AS3 SF3; links AS1-AS2, AS2-AS3 15, AS1-AS3 40."""
    domains = {
        "AS1": DomainInfo("AS1", {"a": "10.1.1.0/24"}, {"SF1": 1}),
        "AS2": DomainInfo("AS2", {"a": "10.2.1.0/24"}, {"SF2": 2, "SF3": 1}, intra_cost=intra2),
        "AS3": DomainInfo("AS3", {"a": "10.3.1.0/24"}, {"SF3": 1}),
    }
    return View(domains, [LinkInfo("AS1", "AS2", ab), LinkInfo("AS2", "AS3", 15), LinkInfo("AS1", "AS3", 40)])


def offers(view: View) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in view.domains.values():
        for sf in d.capabilities:
            out.setdefault(sf, []).append(d.name)
    return out


def draft(ab: float = 10, intra2: float = 0, **kw) -> list[ServicePath]:
    view = draft_view(ab, intra2)
    c = view.costs()
    return rank(CHAIN, offers(view), c.value, c.route, **kw)


def described(paths: list[ServicePath]) -> list[str]:
    return [p.describe() for p in paths]


# -- the draft's scenario ---------------------------------------------------------------------


def test_table2():
    paths = draft()
    assert described(paths) == TABLE2
    assert [(p.rank, p.cost) for p in paths] == [(1, 10.0), (2, 25.0)]
    assert paths[0].hops == (("SF1", "AS1"), ("SF2", "AS2"), ("SF3", "AS2"))
    assert paths[0].domains == ("AS1", "AS2")
    assert paths[1].domains == ("AS1", "AS2", "AS3")
    assert paths[1].sf_domains == ("AS1", "AS2", "AS3")


def test_table2_numbered_as_in_the_draft():
    assert [f"{p.rank}:{{{p.describe()}}}" for p in draft()] == [
        "1:{AS1:SF1->AS2:SF2->AS2:SF3}", "2:{AS1:SF1->AS2:SF2->AS3:SF3}"]  # fmt: skip


def test_ingress_egress_tie_goes_to_fewer_domains():
    paths = draft(ingress="AS1", egress="AS3")
    assert [p.cost for p in paths] == [25.0, 25.0]
    assert described(paths) == TABLE2  # AS1, AS2 before AS1, AS2, AS3
    assert paths[0].domains == ("AS1", "AS2", "AS3")  # ends at the egress
    assert [p.describe() for p in draft(ingress="AS1", egress="AS3", k=1)] == TABLE2[:1]


def test_intra_domain_cost_reorders():
    paths = draft(intra2=50)
    assert described(paths) == TABLE2[::-1]
    assert [p.cost for p in paths] == [25.0, 60.0]
    assert [p.cost for p in draft(intra2=50, ingress="AS1", egress="AS3")] == [25.0, 75.0]


def test_exclude_max_cost():
    assert described(draft(exclude=["AS3"])) == TABLE2[:1]
    assert described(draft(max_cost=20)) == TABLE2[:1]
    assert described(draft(max_cost=25)) == TABLE2  # a path costing exactly max_cost is kept
    assert described(draft(k=1)) == TABLE2[:1]
    with pytest.raises(NoPath, match=r"^no path within max cost 5 \(cheapest: 10\)$"):
        draft(max_cost=5)


def test_transit_domains_in_route():
    # AS1-AS2 costs 100: the route from AS1 to AS2 goes via AS3 (40 + 15)
    paths = draft(ab=100)
    assert described(paths) == TABLE2
    assert [p.cost for p in paths] == [55.0, 70.0]
    assert paths[0].domains == ("AS1", "AS3", "AS2")
    assert paths[1].domains == ("AS1", "AS3", "AS2", "AS3")
    with_ends = draft(ab=100, ingress="AS3", egress="AS1")
    assert with_ends[0].domains == ("AS3", "AS1", "AS3", "AS2", "AS3", "AS1")


def test_excluded_domain_may_not_be_transited():
    view = draft_view(ab=100)
    c = view.costs()
    with pytest.raises(NoPath, match=r"^no domain offering SF2 \(AS2\) is reachable from the domains that "
                                     r"can host SF1 \(AS1\) \(routes through excluded domains are not "
                                     r"allowed: AS3\)$"):  # fmt: skip
        rank(CHAIN, offers(view), c.value, c.route, exclude=["AS3"])
    # without routes hops are direct: only hosting is restricted
    paths = rank(CHAIN, offers(view), c.value, exclude=["AS3"])
    assert described(paths) == TABLE2[:1] and paths[0].domains == ("AS1", "AS2")
    # the ingress and egress are endpoints, not checked against exclude
    paths = rank(["SF2"], {"SF2": ["AS2"]}, c.value, c.route, ingress="AS3", egress="AS3", exclude=["AS3"])
    assert paths[0].domains == ("AS3", "AS2", "AS3")


def test_no_route_means_direct_hops():
    cost = {"A": {"B": 1.0, "C": 5.0}, "B": {"C": 2.0}}
    (path,) = rank(["X", "Y"], {"X": ["A"], "Y": ["C"]}, cost)
    assert path.domains == ("A", "C") and path.cost == 5.0


def test_missing_self_cost_is_zero():
    (path,) = rank(["X", "Y"], {"X": ["A"], "Y": ["A"]}, {})
    assert path.cost == 0.0 and path.domains == ("A",)
    (path,) = rank(["X"], {"X": ["A"]}, {"A": {"A": 7}})  # one SF, no ends: no hop at all
    assert path.cost == 0.0


def test_tie_break_is_not_decided_by_the_prefix():
    # With equal costs, the prefix (A, D) is "better" than (B, D) (fewer domains: tie, then
    # name), but the suffix returns to B: B, D, B has 2 domains, A, D, B has 3.
    cand = {"SF1": ["A", "B"], "SF2": ["D"], "SF3": ["B", "E"]}
    cost = {x: {y: 1.0 for y in "ABDE"} for x in "ABDE"}
    paths = rank(CHAIN, cand, cost)
    assert [p.sf_domains for p in paths] == [
        ("B", "D", "B"),
        ("A", "D", "B"),
        ("A", "D", "E"),
        ("B", "D", "E"),
    ]
    assert [p.sf_domains for p in rank(CHAIN, cand, cost, k=1)] == [("B", "D", "B")]


def test_many_ties_dense():
    # 5 SFs, 50 domains offering all, every cost 0: 312M paths of cost 0.  First the 50
    # single-domain paths in name order, then the two-domain ones in name order.
    doms = [f"AS{i:02d}" for i in range(1, 51)]
    chain = [f"SF{i}" for i in range(1, 6)]
    cost = {a: dict.fromkeys(doms, 0.0) for a in doms}
    two = sorted(s for y in doms[1:] for s in itertools.product(["AS01", y], repeat=5) if len(set(s)) == 2)
    expected = [(d,) * 5 for d in doms] + two[:50]
    paths = rank(chain, dict.fromkeys(chain, doms), cost, k=100)
    assert [p.sf_domains for p in paths] == expected
    assert [p.rank for p in paths] == list(range(1, 101))


def test_many_ties_disjoint_offers():
    # Every SF in its own 20 domains, all costs equal: every path has 5 domains, order by name.
    layers = [[f"{c}{i:02d}" for i in range(20)] for c in "ABCDE"]
    doms = [d for layer in layers for d in layer]
    cost = {a: dict.fromkeys(doms, 1.0) for a in doms}
    chain = [f"SF{i}" for i in range(5)]
    paths = rank(chain, dict(zip(chain, layers)), cost, k=50)
    assert [p.sf_domains for p in paths] == list(itertools.islice(itertools.product(*layers), 50))
    assert {p.cost for p in paths} == {4.0}


def test_many_ties_isolated_hubs():
    # Hubs S0-S2 offer every SF but reach only themselves (intra cost 0): three one-domain paths
    # of cost 0, then the paths avoiding the hubs, all with 5 domains and cost 4, by name.  The
    # distinct-domain bound must not count on a hub that the prefix cannot reach.
    hubs = ["S0", "S1", "S2"]
    layers = [[f"{c}{i:02d}" for i in range(30)] for c in "ABCDE"]
    doms = [d for layer in layers for d in layer]
    cost = {a: dict.fromkeys(doms, 1.0) for a in doms} | {s: {s: 0.0} for s in hubs}
    chain = [f"SF{i}" for i in range(5)]
    paths = rank(chain, {sf: hubs + layer for sf, layer in zip(chain, layers)}, cost, k=60)
    assert [p.sf_domains for p in paths] == [(s,) * 5 for s in hubs] + list(
        itertools.islice(itertools.product(*layers), 57)
    )
    assert [p.cost for p in paths] == [0.0] * 3 + [4.0] * 57


def test_costs_summed_exactly():
    # 0.1 + 0.2 > 0.3 in floats; exact sums of the binary values, rounded once (= math.fsum)
    cost = {"A": {"B": 0.1, "C": 0.3}, "B": {"D": 0.2}, "C": {"D": 0.0}}
    paths = rank(["X", "Y"], {"X": ["B", "C"], "Y": ["D"]}, cost, ingress="A")
    assert [(p.sf_domains, p.cost) for p in paths] == [(("C", "D"), 0.3), (("B", "D"), math.fsum([0.1, 0.2]))]
    big = {"A": {"B": 1e16, "C": 1e16}, "B": {"D": 1.0}, "C": {"D": 1.0}, "D": {"E": 1.0}}
    (p, q) = rank(["X", "Y", "Z"], {"X": ["B", "C"], "Y": ["D"], "Z": ["E"]}, big, ingress="A")
    assert p.cost == q.cost == 1e16 + 2 and p.sf_domains[0] == "B"


def test_describe_json_frozen():
    p = draft()[1]
    assert p.to_json() == {
        "rank": 2, "path": "AS1:SF1->AS2:SF2->AS3:SF3", "cost": 25.0,
        "hops": [{"sf": "SF1", "domain": "AS1"}, {"sf": "SF2", "domain": "AS2"}, {"sf": "SF3", "domain": "AS3"}],
        "domains": ["AS1", "AS2", "AS3"]}  # fmt: skip
    with pytest.raises(AttributeError):
        p.cost = 1.0  # type: ignore[misc]


# -- NoPath and bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(("kw", "message"), [
    ({"chain": ["SF1", "SF4"]}, "no domain offers SF4 (offered: SF1, SF2, SF3)"),
    ({"chain": ["SF1", "SF3"], "exclude": ["AS2", "AS3"]}, "SF3 is offered only by excluded domains: AS2, AS3"),
    ({"chain": []}, "empty chain: there is no SF to place"),
    ({"k": 0}, "k must be at least 1 (got 0)"),
    ({"ingress": "AS9"}, "unknown ingress domain AS9 (domains: AS1, AS2, AS3)"),
    ({"egress": "AS9"}, "unknown egress domain AS9 (domains: AS1, AS2, AS3)"),
    ({"max_cost": 5}, "no path within max cost 5 (cheapest: 10)"),
    ({"max_cost": 9.5}, "no path within max cost 9.5 (cheapest: 10)"),
    ({"max_cost": -math.inf}, "no path within max cost -inf (cheapest: 10)"),
    ({"chain": ["SF1", "SF2"], "cut": [("AS1", "AS2")]},
     "no domain offering SF2 (AS2) is reachable from the domains that can host SF1 (AS1)"),
    ({"ingress": "AS3", "cut": [("AS3", "AS1")]}, "no domain offering SF1 (AS1) is reachable from ingress AS3"),
    ({"egress": "AS1", "cut": [("AS2", "AS1"), ("AS3", "AS1")]},
     "egress AS1 is not reachable from the domains that can host SF3 (AS2, AS3)"),
])  # fmt: skip
def test_no_path_messages(kw, message):
    view = draft_view()
    c = view.costs()
    cost = {a: dict(row) for a, row in c.value.items()}
    for a, b in kw.pop("cut", ()):
        del cost[a][b]
    chain = kw.pop("chain", CHAIN)
    with pytest.raises(NoPath) as info:
        rank(chain, offers(view), cost, c.route, **kw)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_no_domain_offers_anything():
    with pytest.raises(NoPath, match=r"^no domain offers SF1 \(offered: nothing\)$"):
        rank(["SF1"], {"SF1": []}, {})


def test_bad_input():
    with pytest.raises(ValueError, match="cost from A to B is not a number: 'x'"):
        rank(["X", "Y"], {"X": ["A"], "Y": ["B"]}, {"A": {"B": "x"}})
    with pytest.raises(ValueError, match="cost from A to B is nan"):
        rank(["X", "Y"], {"X": ["A"], "Y": ["B"]}, {"A": {"B": math.nan}})
    with pytest.raises(ValueError, match="cost from A to B has no route"):
        rank(["X", "Y"], {"X": ["A"], "Y": ["B"]}, {"A": {"B": 1}}, {})
    with pytest.raises(ValueError, match=r"route from A to B must start at A and end at B: \['A', 'C'\]"):
        rank(["X", "Y"], {"X": ["A"], "Y": ["B"]}, {"A": {"B": 1}}, {"A": {"B": ["A", "C"]}})
    with pytest.raises(TypeError, match="exclude must be a collection"):
        rank(["X"], {"X": ["A"]}, {}, exclude="A")
    with pytest.raises(NoPath, match="no domain offering Y"):  # +inf: unreachable
        rank(["X", "Y"], {"X": ["A"], "Y": ["B"]}, {"A": {"B": math.inf}})


# -- ALTO adapters ------------------------------------------------------------------------------


def test_candidates_from_propmap():
    propmap = {
        "meta": {"dependent-vtags": [{"resource-id": "networkmap", "tag": "1"}]},
        "property-map": {
            "networkmap.pid:AS1": {PROP: ["SF1"], "entry-point": "http://as1", "cpu-cores": 4},
            "networkmap.pid:AS2": {PROP: ["SF3", "SF2"]},
            "othermap.pid:AS3": {PROP: ["SF3"]},
            "networkmap.pid:AS4": {"cpu-cores": 2},
            "ipv4:10.0.0.1": {PROP: ["SF9"]},
        },
    }
    assert candidates_from_propmap(propmap) == {"SF1": ["AS1"], "SF2": ["AS2"], "SF3": ["AS2", "AS3"]}
    c = draft_view().costs()
    assert described(rank(CHAIN, candidates_from_propmap(propmap), c.value, c.route)) == TABLE2
    with pytest.raises(ValueError, match='no "property-map"'):
        candidates_from_propmap({"cost-map": {}})
    with pytest.raises(ValueError, match="capabilities must be a list of SF names"):
        candidates_from_propmap({"property-map": {"networkmap.pid:AS1": {PROP: "SF1"}}})


def costmap(mode: str = "numerical", rows: dict | None = None) -> dict:
    return {"meta": {"dependent-vtags": [{"resource-id": "networkmap", "tag": "1"}],
                     "cost-type": {"cost-mode": mode, "cost-metric": "routingcost"}},
            "cost-map": rows if rows is not None else {"AS1": {"AS1": 0, "AS2": 10.0}, "AS2": {"AS1": 10}}}  # fmt: skip


def test_costs_from_costmap():
    assert costs_from_costmap(costmap()) == {"AS1": {"AS1": 0.0, "AS2": 10.0}, "AS2": {"AS1": 10.0}}
    c = draft_view().costs()
    doc = costmap(rows=c.value)
    assert described(rank(CHAIN, offers(draft_view()), costs_from_costmap(doc))) == TABLE2
    with pytest.raises(ValueError, match="ordinal mode: ordinal costs are ranks"):
        costs_from_costmap(costmap("ordinal"))
    with pytest.raises(ValueError, match="array mode"):
        costs_from_costmap(costmap("array"))
    with pytest.raises(ValueError, match="unknown cost mode 'fancy'"):
        costs_from_costmap(costmap("fancy"))
    with pytest.raises(ValueError, match="without meta.cost-type.cost-mode"):
        costs_from_costmap({"cost-map": {}})
    with pytest.raises(ValueError, match="multi-cost"):
        costs_from_costmap({"meta": {"multi-cost-types": []}, "cost-map": {}})
    with pytest.raises(ValueError, match="cost from AS1 to AS2 is not a number"):
        costs_from_costmap(costmap(rows={"AS1": {"AS2": [1, 2]}}))
    with pytest.raises(ValueError, match='no "cost-map"'):
        costs_from_costmap({"property-map": {}})


# -- against brute force ----------------------------------------------------------------------


def brute_force(chain, candidates, cost, route, ingress, egress, exclude, max_cost, k, exact):
    """Every combination, summed left to right (floats) or exactly (Fractions), sorted by the key."""
    layers = [sorted(set(candidates.get(sf, ())) - set(exclude)) for sf in chain]
    found = []
    for ds in itertools.product(*layers):
        seq = [*([ingress] if ingress else []), *ds, *([egress] if egress else [])]
        total, ok = (Fraction(0) if exact else 0.0), True
        for a, b in zip(seq, seq[1:]):
            value = cost.get(a, {}).get(b, 0.0 if a == b else None)
            if value is None or value == math.inf:
                ok = False
                break
            if route is not None and a != b and set(route[a][b][1:-1]) & set(exclude):
                ok = False
                break
            total += Fraction(value) if exact else value
        if ok and (max_cost is None or total <= max_cost):
            domains = [seq[0]]
            for a, b in zip(seq, seq[1:]):
                if a != b:
                    domains += (route[a][b] if route is not None else [a, b])[1:]
            found.append((total, len(set(ds)), ds, tuple(domains)))
    found.sort()
    return [(float(t), ds, domains) for t, _, ds, domains in found[:k]]


@st.composite
def instances(draw, values):
    doms = [f"D{i}" for i in range(draw(st.integers(1, 6)))]
    sfs = [f"SF{i}" for i in range(draw(st.integers(1, 4)))]
    chain = draw(st.lists(st.sampled_from(sfs), min_size=1, max_size=4))
    candidates = {sf: draw(st.lists(st.sampled_from(doms), unique=True)) for sf in sfs}
    use_route = draw(st.booleans())
    cost: dict = {}
    route: dict = {}
    for a in doms:
        for b in doms:
            if draw(st.integers(0, 9)) < 2:  # unreachable (or, for a == b, no entry: 0)
                continue
            cost.setdefault(a, {})[b] = draw(values)
            others = [x for x in doms if x not in (a, b)]
            transit = draw(st.lists(st.sampled_from(others), unique=True, max_size=2)) if others else []
            route.setdefault(a, {})[b] = [a, *transit, b] if a != b else [a]
    ends = st.none() | st.sampled_from(doms)
    return dict(chain=chain, candidates=candidates, cost=cost, route=route if use_route else None,
                ingress=draw(ends), egress=draw(ends), exclude=draw(st.sets(st.sampled_from(doms), max_size=3)),
                max_cost=draw(st.none() | st.integers(0, 12) | values), k=draw(st.integers(1, 8)))  # fmt: skip


def check_against_brute_force(case, exact):
    expected = brute_force(**case, exact=exact)
    try:
        paths = rank(**case)
    except NoPath:
        assert expected == []
        return
    assert [(p.cost, p.sf_domains, p.domains) for p in paths] == expected
    assert [p.rank for p in paths] == list(range(1, len(paths) + 1))
    assert all(p.hops == tuple(zip(case["chain"], p.sf_domains)) for p in paths)


@given(instances(st.integers(0, 4).map(float)))
def test_rank_equals_brute_force_with_ties(case):
    check_against_brute_force(case, exact=False)  # small integers: float sums are exact


@given(instances(st.floats(0, 100, allow_nan=False) | st.sampled_from([0.1, 0.2, 0.3, 0.7, 1e-17, 1e16])))
def test_rank_equals_exact_brute_force_with_floats(case):
    check_against_brute_force(case, exact=True)
