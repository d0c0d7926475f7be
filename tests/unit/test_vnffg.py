"""Nested VNFFGs as facts: the draft's Figure 1 in plain YAML and in TOSCA, the checks, the
synthetic graphs of the benchmarks, and the live topology that runs Figure 1."""

import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from monitor.ast import Atom, Const, Fact
from monitor.tosca import CP, FP, VDU, VL, VNF, ToscaError, load_any, load_tosca, parse_tosca
from monitor.vnffg import VnffgError, generate, load_vnffg, parse_vnffg
from testbed import plan, schema

ROOT = Path(__file__).resolve().parents[2]
FIGURE1 = ROOT / "monitor/examples/figure1.yaml"
FIGURE1_TOSCA = ROOT / "monitor/examples/figure1-tosca.yaml"

# The draft's section 7.1, F1 (n-ary sub, expanded) and F2, as written there.
F1 = {"NF1": ["VNF1-1", "VNF1-2"], "NF2": ["VNF2-1", "VNF2-2"], "VNF1-1": ["VNF1-3", "vm1"],
      "VNF1-2": ["vm2", "vm3"], "VNF1-3": ["vm7", "vm8"], "VNF2-1": ["vm4", "vm5"],
      "VNF2-2": ["vm6", "VNF2-3"], "VNF2-3": ["vm9", "vm10"]}  # fmt: skip
F2 = [("NF1", "NF2"), ("VNF1-3", "vm1"), ("vm2", "vm3"), ("vm3", "vm4"), ("vm4", "vm5"),
      ("vm5", "vm6"), ("vm6", "VNF2-3"), ("vm7", "vm8"), ("vm9", "vm10")]  # fmt: skip
VMS = [f"vm{i}" for i in range(1, 11)]
NF1_LEAVES = {"vm1", "vm2", "vm3", "vm7", "vm8"}  # the draft's section 7.2
NF2_LEAVES = {"vm4", "vm5", "vm6", "vm9", "vm10"}


def fact(predicate, *args):
    return Fact(Atom(predicate, tuple(Const(a) for a in args)))


def tuples(facts, predicate):
    return [tuple(c.value for c in f.atom.args) for f in facts if f.atom.predicate == predicate]


def sub_leaves(facts, x):
    """R1-R3 of the draft, evaluated naively on the facts: leaf(x, Y)."""
    sub = tuples(facts, "sub")
    children = {}
    for p, c in sub:
        children.setdefault(p, []).append(c)
    found, todo = set(), list(children.get(x, ()))
    while todo:
        y = todo.pop()
        found.add(y)
        todo += children.get(y, ())
    return {y for y in found if y not in children}


def problems(text):
    with pytest.raises(VnffgError) as info:
        parse_vnffg(text, "g.yaml")
    return info.value.problems


# -- Figure 1, plain YAML -------------------------------------------------------------------


def test_figure1_gives_exactly_the_drafts_f1_and_f2_facts():
    facts = load_vnffg(FIGURE1).facts()
    subs = [fact("sub", p, c) for p, cs in F1.items() for c in cs]
    assert Counter(f.atom.predicate for f in facts) == {"node": 18, "sub": 16, "link": 9}
    assert sorted(map(str, (f for f in facts if f.atom.predicate == "sub"))) == sorted(map(str, subs))
    assert [f for f in facts if f.atom.predicate == "sub"] == subs  # same order as F1, too
    assert tuples(facts, "link") == F2
    assert {f.atom.args[0].value for f in facts if f.atom.predicate == "node"} == {*F1, *VMS}
    assert facts[0].position.line == 9  # `NF1:` under elements, for the engine's messages


def test_figure1_leaves_and_hosts():
    g = load_vnffg(FIGURE1)
    assert g.service == ("NF1", "NF2")
    assert set(g.leaves("NF1")) == NF1_LEAVES == sub_leaves(g.facts(), "NF1")
    assert set(g.leaves("NF2")) == NF2_LEAVES == sub_leaves(g.facts(), "NF2")
    assert g.leaves("VNF1-1") == ("vm7", "vm8", "vm1")  # depth first, in member order
    assert g.leaves("vm1") == ()  # as R3: a leaf has no leaves
    assert [g.host_of(vm) for vm in VMS] == VMS
    with pytest.raises(ValueError, match="VNF1-3 is not a leaf"):
        g.host_of("VNF1-3")
    with pytest.raises(KeyError, match="vm99"):
        g.leaves("vm99")


def test_hosts_default_to_the_leaf_name_and_text_is_accepted():
    g = parse_vnffg("name: t\nelements: {A: [b, c], b: [], c: []}\nhosts: {b: h1}\n")
    assert (g.host_of("b"), g.host_of("c"), g.service) == ("h1", "c", ("A",))
    assert load_vnffg("name: t\nelements: {A: [b], b: }\n").leaves("A") == ("b",)


def test_round_trip_through_to_dict():
    g = load_vnffg(FIGURE1)
    again = parse_vnffg(yaml.safe_dump(g.to_dict(), sort_keys=False))
    assert again.facts() == g.facts() and again.hosts == g.hosts


# -- checks ---------------------------------------------------------------------------------


def test_unknown_member_names_line_path_and_a_close_name():
    text = "name: t\nservice: [NF1]\nelements:\n  NF1: [a, b, vm99]\n  a: []\n  b: []\n  vm9: []\n"
    assert problems(text) == [
        "g.yaml:4: elements.NF1[2]: unknown element 'vm99' (did you mean 'vm9'?)",
        "g.yaml:7: elements.vm9: vm9 is neither in the service nor a member of any element",
    ]
    assert len(problems(text.replace("service: [NF1]\n", ""))) == 1  # no service: vm9 is a root


def test_two_parents_refused_the_graph_is_a_tree():
    text = "name: t\nservice: [A, B]\nelements:\n  A: [x]\n  B:\n    - y\n    - x\n  x: []\n  y: []\n"
    assert problems(text) == [
        "g.yaml:7: elements.B[1]: x is already a member of A: an element has one parent (the VNFFG is a tree)"]


def test_membership_cycles_are_found_however_long():
    assert problems("name: t\nservice: [R]\nelements:\n  R: []\n  a: [b]\n  b: [c]\n  c: [a]\n") == [
        "g.yaml:7: elements.c[0]: membership cycle: a -> b -> c -> a (each contains the next)"]
    assert problems("name: t\nelements: {R: [], s: [s]}\n") == [
        "g.yaml:2: elements.s[0]: membership cycle: s -> s (each contains the next)"]


def test_duplicates_are_refused_keys_members_links_service():
    text = "name: t\nservice: [A, A]\nelements:\n  A: [b, b]\n  b: []\n  b: []\nlinks: [[A, b], [A, b]]\n"
    assert problems(text) == ["g.yaml:6: elements.b: 'b' is given twice (first on line 5)"]
    text = "name: t\nservice: [A, A]\nelements:\n  A: [b, b]\n  b: []\nlinks: [[A, b], [A, b]]\n"
    assert problems(text) == [
        "g.yaml:4: elements.A[1]: b is listed twice in A",
        "g.yaml:2: service[1]: A is listed twice",
        "g.yaml:6: links[1]: link A -> b is listed twice",
    ]


def test_other_reference_and_shape_problems():
    text = ("name: t\nservice: [A, b]\nelements: {A: [b], b: []}\nlinks: [[A, A], [A, zz]]\n"
            "hosts: {A: h}\nextra: 1\n")  # fmt: skip
    assert problems(text) == ["g.yaml:6: extra: unknown field"]
    assert problems(text.replace("extra: 1\n", "")) == [
        "g.yaml:2: service[1]: b is a member of A; the service lists the top layer only",
        "g.yaml:4: links[0]: a link joins two elements (A to itself)",
        "g.yaml:4: links[1][1]: unknown element 'zz'",
        "g.yaml:5: hosts.A: A is not a leaf (members: b); only leaves are measured",
    ]
    assert problems("name: t\nelements: {A: [vm 1]}\n")[0].startswith(
        "g.yaml:2: elements.A[0]: 'vm 1' is not a name")
    assert problems("name: t\nelements: [A]\n") == ["g.yaml:2: elements: Input should be a valid dictionary"]
    assert problems("- a\n") == ["g.yaml:1: a VNFFG is one mapping with at least `name` and `elements`"]
    assert problems("name: [\n")[0].startswith("g.yaml:2:1: not valid YAML")


# -- Figure 1, TOSCA ------------------------------------------------------------------------


def test_tosca_figure1_facts_exactly():
    service = load_tosca(FIGURE1_TOSCA)
    facts = service.facts()
    cps = {f"cp-{x}": x for x in [*VMS, "VNF1-3", "VNF2-3", "NF1", "NF2"]}
    vnf_templates = [x.lower() for x in F1 if x.startswith("VNF")]
    expected_nodes = {**dict.fromkeys(VMS, VDU), **dict.fromkeys(F1, VNF), **dict.fromkeys(cps, CP),
                      **dict.fromkeys(["vl-ns", *(f"vl-{t}" for t in vnf_templates)], VL),
                      **dict.fromkeys(["fp-service", "fp-data", "fp-vnf1-1", "fp-vnf1-3", "fp-vnf2-3"], FP)}
    assert len(tuples(facts, "node")) == 44 and dict(tuples(facts, "node")) == expected_nodes
    assert sorted(tuples(facts, "sub")) == sorted((p, c) for p, cs in F1.items() for c in cs)
    assert sorted(tuples(facts, "vbind")) == sorted((x, cp) for cp, x in cps.items())
    expected_vlink = {("vl-ns", "cp-NF1"), ("vl-ns", "cp-NF2")} | {
        (f"vl-{owner.lower()}", f"cp-{m}") for owner, ms in F1.items() if owner.startswith("VNF") for m in ms}
    assert set(tuples(facts, "vlink")) == expected_vlink and len(tuples(facts, "vlink")) == 14
    assert tuples(facts, "forwarding_path") == [
        ("fp-service", 1, "cp-NF1"), ("fp-service", 2, "cp-NF2"),
        *[("fp-data", i, f"cp-{x}") for i, x in enumerate(["vm2", "vm3", "vm4", "vm5", "vm6", "VNF2-3"], 1)],
        ("fp-vnf1-1", 1, "cp-VNF1-3"), ("fp-vnf1-1", 2, "cp-vm1"),
        ("fp-vnf1-3", 1, "cp-vm7"), ("fp-vnf1-3", 2, "cp-vm8"),
        ("fp-vnf2-3", 1, "cp-vm9"), ("fp-vnf2-3", 2, "cp-vm10"),
    ]  # fmt: skip
    assert sorted(tuples(facts, "link")) == sorted(F2)  # the derived links are the draft's F2
    assert all(f.position for f in facts)


def test_tosca_and_plain_yaml_give_the_same_leaves():
    plain, tosca = load_vnffg(FIGURE1), load_tosca(FIGURE1_TOSCA)
    for nf, leaves in (("NF1", NF1_LEAVES), ("NF2", NF2_LEAVES)):
        assert sub_leaves(tosca.facts(), nf) == sub_leaves(plain.facts(), nf) == leaves
        assert set(tosca.leaves(nf)) == leaves
    assert tosca.graph.service == plain.service and tosca.graph.problems() == []
    assert sorted(tosca.graph.facts(), key=str) == sorted(plain.facts(), key=str)


def test_tosca_connectivity_subs_follow_the_drafts_example():
    tosca = load_tosca(FIGURE1_TOSCA)
    subs = set(tuples(tosca.facts(connectivity=True), "sub"))
    assert {("VNF1-1", "cp-vm1"), ("VNF1-1", "vl-vnf1-1"), ("VNF1-1", "fp-vnf1-1")} <= subs
    assert len(subs) == 16 + 12 + 6 + 3  # + CPs, VLs and FPs of the nested templates
    assert "cp-vm1" in sub_leaves(tosca.facts(connectivity=True), "NF1")  # why it is not the default


def test_load_any_tells_the_formats_apart():
    assert type(load_any(FIGURE1)).__name__ == "Vnffg"
    assert type(load_any(FIGURE1_TOSCA)).__name__ == "ToscaService"
    with pytest.raises(VnffgError, match="a TOSCA service template: read it with monitor.tosca"):
        load_vnffg(FIGURE1_TOSCA)
    with pytest.raises(VnffgError, match="cannot read"):
        load_vnffg("no/such/file.yaml")


NS = """tosca_definitions_version: tosca_simple_profile_for_nfv_1_0_0
metadata: {template_name: ns}
topology_template:
  node_templates:
    A: {type: t.A}
    v1: {type: tosca.nodes.nfv.VDU}
    c1:
      type: tosca.nodes.nfv.CP
      requirements: [{virtualBinding: v1}, {virtualLink: l1}]
    l1: {type: tosca.nodes.nfv.VL.ELAN}
    p1:
      type: tosca.nodes.nfv.FP
      requirements: [{forwarder: c1}, {forwarder: c2}]
---
tosca_definitions_version: tosca_simple_profile_for_nfv_1_0_0
metadata: {template_name: a}
node_types: {t.A: {derived_from: tosca.nodes.nfv.VNF}}
topology_template:
  substitution_mappings: {node_type: t.A}
  node_templates:
    v2: {type: tosca.nodes.nfv.VDU}
    c2:
      type: tosca.nodes.nfv.CP
      requirements: [{virtualBinding: {node: v2}}]
"""


CYCLE = """---
tosca_definitions_version: tosca_simple_profile_for_nfv_1_0_0
metadata: {{template_name: {name}}}
node_types: {{{own}: {{derived_from: tosca.nodes.nfv.VNF}}}}
topology_template:
  substitution_mappings: {{node_type: {own}}}
  node_templates:
    in-{name}: {{type: {uses}}}
"""


def tosca_problems(text):
    with pytest.raises(ToscaError) as info:
        parse_tosca(text, "t.yaml")
    return info.value.problems


def test_tosca_small_service_and_derived_types():
    s = parse_tosca(NS)
    assert tuples(s.facts(), "link") == [("v1", "v2")]
    assert dict(tuples(s.facts(), "node"))["l1"] == VL  # VL.ELAN is a VL
    assert s.graph.service == ("A", "v1") and s.leaves("A") == ("v2",)


def test_tosca_checks_name_line_template_and_path():
    assert tosca_problems(NS.replace("virtualLink: l1", "virtualLink: v1")) == [
        "t.yaml:9: ns: topology_template.node_templates.c1.requirements[1]: "
        "virtualLink names v1, a VDU; expected a VL"]
    assert tosca_problems(NS.replace("{forwarder: c2}", "{forwarder: c3}")) == [
        "t.yaml:13: ns: topology_template.node_templates.p1.requirements[1]: no node 'c3' in any template"]
    assert tosca_problems(NS.replace("virtualBinding: v1", "virtualBinding: v2")) == [
        "t.yaml:9: ns: topology_template.node_templates.c1.requirements[0]: no node 'v2' in template ns"]
    assert tosca_problems(NS.replace("v2: {type", "v1: {type")) == [
        "t.yaml:21: a: topology_template.node_templates.v1: node v1 is already defined in template ns "
        "(line 6); names are global",
        "t.yaml:24: a: topology_template.node_templates.c2.requirements[0]: no node 'v2' in template a"]
    assert tosca_problems(NS.replace("{type: t.A}", "{type: t.B}")) == [
        "t.yaml:5: ns: topology_template.node_templates.A.type: unknown type 't.B': declare it in "
        "node_types, derived from a tosca.nodes.nfv type"]
    assert tosca_problems(NS.replace("[{virtualBinding: {node: v2}}]", "[]")) == [
        "t.yaml:13: ns: topology_template.node_templates.p1.requirements[1]: "
        "c2 has no virtualBinding: no element to link from or to"]


def test_tosca_nesting_checks():
    two_users = NS.replace("    v1: {type: tosca.nodes.nfv.VDU}", "    v1: {type: tosca.nodes.nfv.VDU}\n    B: {type: t.A}")
    assert tosca_problems(two_users)[0] == (
        "t.yaml:7: ns: topology_template.node_templates.B.type: template a already implements node A; "
        "names are global, so a template implements one node")
    two_roots = NS.replace("  substitution_mappings: {node_type: t.A}\n", "")
    assert "templates ns, a implement no node" in tosca_problems(two_roots)[0]
    cycle = NS + CYCLE.format(name="b", own="t.B", uses="t.C") + CYCLE.format(name="c", own="t.C", uses="t.B")
    assert tosca_problems(cycle) == [
        "t.yaml:30: b: topology_template.substitution_mappings: templates implement each other: b -> c -> b"]
    assert tosca_problems(NS.replace("tosca_simple_profile_for_nfv_1_0_0", "tosca_2", 1))[0].startswith(
        "t.yaml:1: document 1: tosca_definitions_version: Input should be")


# -- synthetic graphs -----------------------------------------------------------------------


@pytest.mark.parametrize("n", [1_000, 10_000, 100_000])
def test_generate_sizes_tree_and_links(n):
    t0 = time.perf_counter()
    g = generate(n, fanout=4, depth=4, seed=7)
    t1 = time.perf_counter()
    facts = g.facts()
    t2 = time.perf_counter()
    print(f"\ngenerate({n}): {t1 - t0:.3f} s, facts(): {t2 - t1:.3f} s, {len(facts)} facts")
    assert abs(len(g.members) - n) <= n // 100  # exactly n, in fact
    counts = Counter(f.atom.predicate for f in facts)
    assert counts["node"] == len(g.members) and counts["sub"] == len(g.members) - len(g.service)
    parents = Counter(c for _, c in tuples(facts, "sub"))
    assert max(parents.values()) == 1 and not set(g.service) & set(parents)
    if n <= 10_000:
        assert g.problems() == []
    into = {b for a, b in g.links}
    out_of = {a for a, b in g.links}
    for nf in g.service[:50]:
        leaves = g.leaves(nf)
        assert [y for y in leaves if y not in into] == [leaves[0]]  # one ingress leaf (R4)
        assert [y for y in leaves if y not in out_of] == [leaves[-1]]  # one egress leaf (R5)
    assert list(zip(g.service, g.service[1:])) == [ln for ln in g.links if ln[0].startswith("NF")]


def test_generate_depth_and_determinism():
    g = generate(2_000, fanout=3, depth=3, seed=1)
    assert max(len(vm_path_len(g, x)) for x in g.members) <= 3
    assert any(not g.is_leaf(x) and any(g.is_leaf(c) for c in g.members[x]) and
               any(not g.is_leaf(c) for c in g.members[x]) for x in g.members)  # mixed like VNF1-1
    assert generate(2_000, 3, 3, seed=1).facts() == g.facts()
    assert generate(2_000, 3, 3, seed=2).facts() != g.facts()
    assert len(generate(5, fanout=2, depth=1).service) == 5
    with pytest.raises(ValueError):
        generate(0)


def vm_path_len(g, x):
    path = [x]
    while path[-1] in g.parents:
        path.append(g.parents[path[-1]])
    return path


# -- the live topology ----------------------------------------------------------------------


def test_recursive_monitor_topology_plans_and_hosts_every_leaf():
    topo = schema.load(ROOT / "topologies/recursive-monitor.yaml")
    p = plan.build_plan(topo, "ab12")
    g = load_vnffg(FIGURE1)
    leaves = {leaf for nf in g.service for leaf in g.leaves(nf)}
    assert leaves == set(VMS) and {g.host_of(x) for x in leaves} <= set(p.hosts)
    monitors = [proc for proc in p.processes().values() if proc.kind == "monitor"]
    assert len(monitors) == 1 and (ROOT / monitors[0].spec.vnffg).exists()
    assert p.hosts["vm10"].interfaces[0].shape.delay > p.hosts["vm7"].interfaces[0].shape.delay
    assert {p.hosts[f"vm{i}"].domain for i in (1, 2, 3, 7, 8)} == {"NF1"}
