"""The topology schema: defaults, quantities, and errors that name file, line and field."""

import pytest

from testbed import schema

GOOD = """\
name: t
domains:
  D1:
    networks: [a, b]
    hosts:
      h1:
        interfaces: [{network: a, delay: 20ms, loss: 10%}, b]
        processes:
          - registrar
          - pool-element: {handle: SF1, policy: least-used}
          - command: sleep 10
  D2:
    hosts:
      h2: {}
links:
  - {between: [D1, D2], delay: 0.5s, bandwidth: 512kbit}
"""


def test_small_file_gets_defaults_and_units():
    topo = schema.parse(GOOD)
    h1 = topo.domains["D1"].hosts["h1"]
    assert h1.interfaces[0].delay == 20.0 and h1.interfaces[0].loss == 10.0
    assert h1.interfaces[1].network == "b" and h1.interfaces[1].delay == 0.0
    assert [p.kind for p in h1.processes] == ["registrar", "pool-element", "command"]
    assert h1.processes[1].policy == "least-used" and h1.processes[0].restart == "no"
    assert topo.links[0].delay == 500.0 and topo.links[0].bandwidth == 0.512
    assert list(topo.domains["D2"].networks) == ["a"]
    assert topo.switch.kind == "ovs" and topo.controller.kind == "none"


def errors_of(text: str) -> list[str]:
    with pytest.raises(schema.TopologyError) as info:
        schema.parse(text, "bad.yaml")
    return info.value.problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("policy: least-used", "policy: least-usd", "bad.yaml:10: domains.D1.hosts.h1.processes[1].pool-element.policy"),
        ("network: a,", "network: c,", "bad.yaml:7: domains.D1.hosts.h1.interfaces[0]: no network 'c' in domain D1"),
        ("between: [D1, D2]", "between: [D1, D9]", "bad.yaml:16: links[0].between: no domain 'D9'"),
        ("delay: 20ms", "delay: 20 parsecs", "bad.yaml:7: domains.D1.hosts.h1.interfaces[0].delay: expected a duration"),
        ("loss: 10%", "loss: 120%", "bad.yaml:7: domains.D1.hosts.h1.interfaces[0].loss: must be between 0% and 100%"),
        ("- registrar", "- registar", "bad.yaml:9: domains.D1.hosts.h1.processes[0]: unknown process kind"),
        ("      h2: {}", "      h2: {colour: red}", "bad.yaml:14: domains.D2.hosts.h2.colour: unknown field"),
        ("      h2: {}", "      h1: {}", "bad.yaml:14: domains.D2.hosts.h1: host h1 is already in domain D1"),
        ("      h2: {}", "      gw-d2: {}", "reserved for domain gateways"),
    ],
)
def test_errors_name_line_and_field(old, new, expected):
    assert old in GOOD
    problems = errors_of(GOOD.replace(old, new))
    assert any(p.startswith(expected) or expected in p for p in problems), problems


def test_yaml_syntax_error_has_line_and_column():
    (problem,) = errors_of("name: t\ndomains: {D1: [\n")
    assert problem.startswith("bad.yaml:3:") and "not valid YAML" in problem


def test_every_problem_is_reported_at_once():
    problems = errors_of(GOOD.replace("loss: 10%", "loss: 120%").replace("policy: least-used", "policy: x"))
    assert len(problems) == 2


def test_not_a_mapping():
    assert errors_of("- a\n- b\n")[0].startswith("bad.yaml:1:")


def test_missing_file(tmp_path):
    with pytest.raises(schema.TopologyError, match="cannot read"):
        schema.load(tmp_path / "nope.yaml")


SFC = """
name: chained
controller: os-ken
sfc:
  chains:
    - {name: web, classifier: c1, destination: d1, functions: [SF1]}
domains:
  D1:
    hosts:
      c1: {}
      d1: {processes: [{pool-element: {handle: SF1, service: forwarder}}]}
"""


def test_an_sfc_section_adds_the_platform_the_controller_and_an_ibe_per_domain():
    from testbed.plan import build_plan

    plan = build_plan(schema.parse(SFC), "abcd")
    kinds = {name: (p.kind, p.host) for name, p in plan.processes().items()}
    assert kinds["controller"] == ("controller", None) and kinds["sxp"] == ("sxp", None)
    assert kinds["ibe-d1"][0] == "ibe"  # no gateway (no domain link): in the first host
    assert list(plan.processes())[:2] == ["controller", "sxp"]  # started before the nodes


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("classifier: c1", "classifier: nobody", "sfc.chains[0].classifier: no host 'nobody'"),
    ("destination: d1", "destination: c1", "the destination must differ from the classifier"),
    ("controller: os-ken", "controller: none", "chains need `controller: os-ken`"),
    ("functions: [SF1]", "functions: []", "at least 1 item"),
])  # fmt: skip
def test_bad_sfc_sections_are_refused_with_their_place(old, new, expected):
    with pytest.raises(schema.TopologyError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        schema.parse(SFC.replace(old, new), "chained.yaml")


def test_a_process_may_not_take_a_service_name():
    text = SFC.replace("{pool-element: {handle: SF1, service: forwarder}}",
                       "{pool-element: {name: controller, handle: SF1}}")  # fmt: skip
    with pytest.raises(schema.TopologyError, match="reserved for the SFC services"):
        schema.parse(text)
