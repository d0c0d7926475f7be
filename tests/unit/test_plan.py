"""The plan: generated addresses, names, least-delay routes, shaping inheritance."""

from pathlib import Path

from testbed import plan, schema
from testbed.graph import to_dot

ROOT = Path(__file__).resolve().parents[2]


def multi_domain() -> plan.Plan:
    return plan.build_plan(schema.load(ROOT / "topologies/multi-domain.yaml"), "ab12")


def test_addresses_are_generated_per_domain_and_network():
    p = multi_domain()
    reg = p.hosts["reg-as2"]
    assert [str(i.address) for i in reg.interfaces] == ["10.2.1.10/24", "10.2.2.10/24"]
    assert [str(i.address) for i in p.hosts["gw-as2"].interfaces[:2]] == ["10.2.1.1/24", "10.2.2.1/24"]
    addresses = [i.address.ip for h in p.hosts.values() for i in h.interfaces]
    assert len(addresses) == len(set(addresses))


def test_root_namespace_names_carry_the_run_id_and_fit_ifnamsiz():
    p = multi_domain()
    ports = [i.port for h in p.hosts.values() for i in h.interfaces if i.port]
    assert all(n.startswith("vtbab12s") and len(n) <= 15 for n in [*ports, *(s.name for s in p.switches)])
    assert len(set(ports)) == len(ports)


def test_routes_follow_the_least_delay_path():
    p = multi_domain()
    # AS1 -> AS3: via AS2 (10 + 15 ms) rather than the direct 40 ms link.
    routes = {r.destination: r for r in p.hosts["gw-as1"].routes}
    assert routes["10.3.1.0/24"].via == "10.255.1.2"
    assert routes["10.2.2.0/24"].via == "10.255.1.2"
    hosts_default = [r for r in p.hosts["pu-as1"].routes if r.destination == "default"]
    assert [(r.via, r.metric) for r in hosts_default] == [("10.1.1.1", 100), ("10.1.2.1", 101)]


def test_shaping_inherits_defaults_network_and_interface():
    topo = schema.parse("""
name: t
defaults: {link: {delay: 1ms, loss: 1%}}
domains:
  D:
    networks: {a: {link: {delay: 5ms}}, b: {}}
    hosts:
      h: {interfaces: [a, {network: b, loss: 3%}]}
""")
    p = plan.build_plan(topo, "0001")
    a, b = p.hosts["h"].interfaces
    assert (a.shape.delay, a.shape.loss) == (5.0, 1.0)
    assert (b.shape.delay, b.shape.loss) == (1.0, 3.0)
    assert "gw-d" not in p.hosts  # no domain links, no gateway


def test_graph_has_a_cluster_per_domain():
    dot = to_dot(multi_domain())
    assert dot.count("subgraph \"cluster_") == 3
    assert "AS1–AS3" in dot and "40 ms" in dot


def test_last_event_summarises_the_latest_json_line(tmp_path):
    from testbed.processes import last_event

    log = tmp_path / "pu1.log"
    assert last_event(log) == ""  # not there yet
    log.write_text('--- start: python -m nodes.pu\n{"t": 1, "node": "pu1", "event": "pe-connected", "pe": "0x1"}\n'
                   '{"t": 2, "node": "pu1", "event": "reply", "seq": 7, "pe": "0x1", "ok": true, "x": [1]}\n'
                   'Traceback (most recent call last):\n')  # fmt: skip
    assert last_event(log) == "reply seq=7 pe=0x1 ok=True"


def test_every_shipped_topology_loads_and_plans():
    for path in sorted((ROOT / "topologies").glob("*.yaml")):
        p = plan.build_plan(schema.load(path), "ab12")
        assert p.hosts, path


def test_registrars_of_one_domain_are_each_others_enrp_peers():
    from testbed import processes

    p = plan.build_plan(schema.load(ROOT / "topologies/registrar-pool.yaml"), "ab12")
    procs = p.processes()
    config = processes.context(p, procs["registrar2"])
    listed = {r["name"]: (r["addresses"], r["enrp_port"]) for r in config["registrars"]}
    assert set(listed) == {"registrar1", "registrar2", "registrar3", "registrar4"}
    assert listed["registrar1"] == ([str(i.address.ip) for i in p.hosts["reg1"].interfaces], 9901)
    assert procs["registrar4"].spec.start == "manual" and procs["registrar1"].spec.start == "auto"
