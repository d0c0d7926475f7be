"""The ALTO documents as pure functions of a View: the draft's three-domain scenario (AS1 offers
SF1 x2; AS2 SF2 x2 and SF3 x1; AS3 SF3 x2; links AS1-AS2 10, AS2-AS3 15, AS1-AS3 40), checked
against the structure of RFC 7285, 8189, 9240 and 9275, and every validation error."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from email import message_from_bytes
from email.policy import HTTP

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdn.alto import catalog as c
from sdn.alto import queries as q
from sdn.alto import requests as rq
from sdn.alto import resources as r
from sdn.alto.requests import AltoError
from sdn.view import DomainInfo, LinkInfo, View

BASE = "http://alto.example.net:8181/alto"


def scenario(**changes) -> View:
    """The draft's scenario; `changes` replace domains (by name) or the links ("links")."""
    domains = {
        "AS1": DomainInfo("AS1", {"a": "10.1.1.0/24", "b": "10.1.2.0/24"}, {"SF1": 2}, "http://127.0.0.1:9001/",
                          0.25, 2, 512.0, intra_cost=1.0),
        "AS2": DomainInfo("AS2", {"a": "10.2.1.0/24"}, {"SF2": 2, "SF3": 1}, "http://127.0.0.1:9002/", 0.5, 4, 1024.0),
        "AS3": DomainInfo("AS3", {"a": "10.3.1.0/24"}, {"SF3": 2, "SF9": 0}, "", 0.75, 1, 256.0),
    }  # fmt: skip
    links = [LinkInfo("AS1", "AS2", 10, delay_ms=4.5), LinkInfo("AS2", "AS3", 15, delay_ms=6.0),
             LinkInfo("AS1", "AS3", 40)]  # fmt: skip
    links = changes.pop("links", links)
    domains.update(changes)
    return View(domains, links)


def error_of(fn, *args) -> AltoError:
    with pytest.raises(AltoError) as info:
        fn(*args)
    return info.value


def parse_multipart(content_type: str, body: bytes):
    msg = message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=HTTP)
    return msg, list(msg.iter_parts())


# --- directory ----------------------------------------------------------------------------


def test_directory_lists_every_resource_with_absolute_uri_and_media_type():
    ird = r.directory(scenario(), BASE)
    entries = ird["resources"]
    assert ird["meta"]["default-alto-network-map"] == "networkmap"
    expected = {
        "networkmap": c.NETWORKMAP_MT, "filtered-networkmap": c.NETWORKMAP_MT, "subnetmap": c.NETWORKMAP_MT,
        "costmap-routingcost": c.COSTMAP_MT, "costmap-routingcost-ordinal": c.COSTMAP_MT,
        "costmap-hopcount": c.COSTMAP_MT, "costmap-delay": c.COSTMAP_MT,
        "subnetmap-costmap-routingcost": c.COSTMAP_MT, "filtered-costmap": c.COSTMAP_MT,
        "endpointcost": "application/alto-endpointcost+json",
        "pathvector": "multipart/related;type=application/alto-costmap+json",
        "domain-props": "application/alto-propmap+json", "filtered-domain-props": "application/alto-propmap+json",
    }  # fmt: skip
    assert {rid: e["media-type"] for rid, e in entries.items()} == expected
    for rid, entry in entries.items():
        assert entry["uri"] == f"{BASE}/{rid}"
        assert set(entry["uses"] if "uses" in entry else []) <= set(entries)
        assert re.fullmatch(r"[A-Za-z0-9:@_.-]{1,64}", rid) and "." not in rid
    accepts = {rid: e["accepts"] for rid, e in entries.items() if "accepts" in e}
    assert accepts == {"filtered-networkmap": "application/alto-networkmapfilter+json",
                       "filtered-costmap": "application/alto-costmapfilter+json",
                       "endpointcost": "application/alto-endpointcostparams+json",
                       "pathvector": "application/alto-costmapfilter+json",
                       "filtered-domain-props": "application/alto-propmapparams+json"}  # fmt: skip


def test_directory_cost_types_and_capabilities_follow_rfc7285_and_8189():
    ird = r.directory(None, BASE + "/")
    types = ird["meta"]["cost-types"]
    assert (
        types["num-routingcost"]["cost-metric"] == "routingcost"
        and types["num-routingcost"]["cost-mode"] == "numerical"
    )
    assert types["ord-routingcost"]["cost-mode"] == "ordinal"
    assert (types["num-delay-ow"]["cost-metric"], types["num-hopcount"]["cost-metric"]) == (
        "delay-ow",
        "hopcount",
    )
    assert (types["path-vector"]["cost-mode"], types["path-vector"]["cost-metric"]) == ("array", "ane-path")
    entries = ird["resources"]
    assert entries["networkmap"]["uri"] == f"{BASE}/networkmap"  # trailing slash of the base dropped
    for rid in r.COSTMAPS:
        names = entries[rid]["capabilities"]["cost-type-names"]
        assert len(names) == 1 and names[0] in types and entries[rid]["uses"] == ["networkmap"]
    for rid in ("filtered-costmap", "endpointcost"):
        caps = entries[rid]["capabilities"]
        assert (
            caps["cost-constraints"] is True and "testable-cost-type-names" not in caps
        )  # mutually exclusive
        assert caps["max-cost-types"] == len(caps["cost-type-names"]) == 4
        assert set(caps["cost-type-names"]) <= set(types)
    assert "uses" not in entries["endpointcost"]  # RFC 7285 §11.5.1.5
    pv = entries["pathvector"]["capabilities"]
    assert pv["cost-type-names"] == ["path-vector"] and not pv.get("cost-constraints")
    assert "persistent-entity-id" in pv["ane-property-names"]
    assert entries["pathvector"]["uses"] == ["networkmap", "domain-props"]
    assert entries["subnetmap-costmap-routingcost"]["uses"] == ["subnetmap"]
    mappings = entries["domain-props"]["capabilities"]["mappings"]
    assert mappings == entries["filtered-domain-props"]["capabilities"]["mappings"]
    assert set(mappings) == {"networkmap.pid", ".ane"}


# --- network maps -------------------------------------------------------------------------


def test_network_map_has_a_pid_per_domain_and_is_complete():
    doc = r.network_map(scenario())
    data = doc["network-map"]
    assert data["AS1"] == {"ipv4": ["10.1.1.0/24", "10.1.2.0/24"]} and data["AS3"] == {
        "ipv4": ["10.3.1.0/24"]
    }
    assert set(data) == {"AS1", "AS2", "AS3", "_default"}
    assert doc["meta"]["vtag"]["resource-id"] == "networkmap"
    assert re.fullmatch(r"[\x21-\x7e]{1,64}", doc["meta"]["vtag"]["tag"])
    assert r.lookup_pid(data, "10.1.2.7") == "AS1" and r.lookup_pid(data, "198.51.100.1") == "_default"
    prefixes = [p for group in data.values() for p in group["ipv4"]]
    assert len(prefixes) == len(set(prefixes))  # non-overlapping: no prefix in two PIDs


def test_network_map_with_ipv6_gets_an_ipv6_default():
    view = scenario(AS2=DomainInfo("AS2", {"a": "10.2.1.0/24", "v6": "2001:db8:2::/64"}))
    data = r.network_map_data(view)
    assert data["AS2"] == {"ipv4": ["10.2.1.0/24"], "ipv6": ["2001:db8:2::/64"]}
    assert data["_default"] == {"ipv4": ["0.0.0.0/0"], "ipv6": ["::/0"]}
    assert r.lookup_pid(data, "2001:db8:2::9") == "AS2"


def test_subnet_map_names_pids_domain_dash_network():
    data = r.subnet_map(scenario())["network-map"]
    assert set(data) == {"AS1-a", "AS1-b", "AS2-a", "AS3-a", "_default"}
    assert data["AS1-b"] == {"ipv4": ["10.1.2.0/24"]}


# --- cost maps ----------------------------------------------------------------------------


def test_routingcost_map_sums_the_route_and_references_the_network_map():
    view = scenario()
    doc = r.cost_map(view, "costmap-routingcost")
    costs = doc["cost-map"]
    assert costs["AS1"]["AS3"] == 25 and costs["AS3"]["AS1"] == 25 and costs["AS1"]["AS2"] == 10
    assert costs["AS1"]["AS1"] == 1.0 and costs["AS2"]["AS2"] == 0  # intra-domain costs
    assert "_default" not in costs and all("_default" not in row for row in costs.values())
    assert doc["meta"]["cost-type"] == {"cost-mode": "numerical", "cost-metric": "routingcost"}
    assert doc["meta"]["dependent-vtags"] == [r.network_map(view)["meta"]["vtag"]]
    assert doc["meta"]["vtag"]["resource-id"] == "costmap-routingcost"


def test_hopcount_and_delay_maps_use_their_own_routes_and_units():
    view = scenario()
    hops = r.cost_map(view, "costmap-hopcount")["cost-map"]
    assert hops["AS1"]["AS3"] == 1 and isinstance(hops["AS1"]["AS3"], int) and hops["AS1"]["AS1"] == 0
    delay = r.cost_map(view, "costmap-delay")
    assert delay["meta"]["cost-type"]["cost-metric"] == "delay-ow"
    assert delay["cost-map"]["AS1"]["AS3"] == pytest.approx(10_500)  # 4.5 + 6.0 ms, in microseconds
    assert delay["cost-map"]["AS1"]["AS2"] == pytest.approx(4_500)


def test_ordinal_map_ranks_from_one_with_shared_ranks_for_ties():
    ranks = r.cost_map(scenario(), "costmap-routingcost-ordinal")["cost-map"]
    # values: 0 (AS2, AS3 to themselves), 1 (AS1 to itself), 10, 15, 25
    assert ranks["AS2"]["AS2"] == ranks["AS3"]["AS3"] == 1 and ranks["AS1"]["AS1"] == 2
    assert ranks["AS1"]["AS2"] == ranks["AS2"]["AS1"] == 3
    assert ranks["AS2"]["AS3"] == 4 and ranks["AS1"]["AS3"] == ranks["AS3"]["AS1"] == 5
    assert all(isinstance(v, int) for row in ranks.values() for v in row.values())


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=3, max_size=3))
def test_ordinal_ranks_preserve_the_numerical_order(costs):
    view = scenario(links=[LinkInfo("AS1", "AS2", costs[0]), LinkInfo("AS2", "AS3", costs[1]),
                           LinkInfo("AS1", "AS3", costs[2])])  # fmt: skip
    num = r.cost_map(view, "costmap-routingcost")["cost-map"]
    ordl = r.cost_map(view, "costmap-routingcost-ordinal")["cost-map"]
    cells = [(num[s][d], ordl[s][d]) for s in num for d in num[s]]
    for a, ra in cells:
        for b, rb in cells:
            assert (a < b) == (ra < rb) and (a == b) == (ra == rb)
    assert min(rank for _, rank in cells) == 1
    assert sorted({rank for _, rank in cells}) == list(range(1, len({v for v, _ in cells}) + 1))


def test_unreachable_pairs_are_omitted():
    view = scenario(links=[LinkInfo("AS1", "AS2", 10), LinkInfo("AS2", "AS3", 15, up=False),
                           LinkInfo("AS1", "AS3", 40, up=False)])  # fmt: skip
    costs = r.cost_map(view, "costmap-routingcost")["cost-map"]
    assert costs["AS3"] == {"AS3": 0} and "AS3" not in costs["AS1"] and "AS3" not in costs["AS2"]


def test_subnet_cost_map_is_the_cost_between_the_subnets_domains():
    doc = r.subnet_cost_map(scenario())
    costs = doc["cost-map"]
    assert costs["AS1-a"]["AS3-a"] == 25 and costs["AS1-b"]["AS2-a"] == 10
    assert costs["AS1-a"]["AS1-b"] == 1.0  # same domain: its intra-domain cost
    assert doc["meta"]["dependent-vtags"][0]["resource-id"] == "subnetmap"


# --- version tags -------------------------------------------------------------------------


def _tags(view: View) -> dict[str, str]:
    return {rid: r.get_document(view, rid, BASE)["meta"]["vtag"]["tag"]
            for rid in r.GET_MEDIA if rid != "directory"}  # fmt: skip


def test_tags_are_stable_for_equal_views():
    assert _tags(scenario()) == _tags(scenario())


def test_cpu_change_moves_only_the_property_map_tag():
    before = _tags(scenario())
    as2 = scenario().domains["AS2"]
    after = _tags(scenario(AS2=dataclasses.replace(as2, cpu_utilization=0.9)))
    assert {rid for rid in before if before[rid] != after[rid]} == {"domain-props"}


def test_link_cost_change_moves_routingcost_tags_not_hopcount_or_delay():
    before = _tags(scenario())
    links = [LinkInfo("AS1", "AS2", 11, delay_ms=4.5), LinkInfo("AS2", "AS3", 15, delay_ms=6.0),
             LinkInfo("AS1", "AS3", 40)]  # fmt: skip
    after = _tags(scenario(links=links))
    changed = {rid for rid in before if before[rid] != after[rid]}
    assert changed == {"costmap-routingcost", "subnetmap-costmap-routingcost"}  # ranks keep their order


def test_subnet_change_moves_the_network_map_and_its_dependents():
    before = _tags(scenario())
    as3 = scenario().domains["AS3"]
    after = _tags(scenario(AS3=dataclasses.replace(as3, subnets={"a": "10.3.9.0/24"})))
    assert before["networkmap"] != after["networkmap"] and before["subnetmap"] != after["subnetmap"]
    assert all(before[rid] != after[rid] for rid in r.COSTMAPS)  # their dependent-vtags moved


# --- filtered network map and filtered cost map -------------------------------------------


def test_filtered_network_map_keeps_requested_pids_and_the_full_vtag():
    view = scenario()
    doc = q.filtered_network_map(view, rq.network_map_filter({"pids": ["AS2", "nope", "AS2"],
                                                              "address-types": ["ipv4", "ipx"]}))  # fmt: skip
    assert doc["network-map"] == {"AS2": {"ipv4": ["10.2.1.0/24"]}}
    assert doc["meta"]["vtag"] == r.network_map(view)["meta"]["vtag"]
    everything = q.filtered_network_map(view, rq.network_map_filter({"pids": []}))
    assert everything["network-map"] == r.network_map(view)["network-map"]
    no_v6 = q.filtered_network_map(view, rq.network_map_filter({"pids": ["AS1"], "address-types": ["ipv6"]}))
    assert no_v6["network-map"] == {"AS1": {}}


def test_filtered_cost_map_single_type_with_pids_and_unknown_pid_omitted():
    body = {"cost-type": {"cost-mode": "numerical", "cost-metric": "routingcost"},
            "pids": {"srcs": ["AS1", "ASX"], "dsts": []}}  # fmt: skip
    doc = q.filtered_cost_map(scenario(), rq.cost_query(body))
    assert doc["cost-map"] == {"AS1": {"AS1": 1.0, "AS2": 10, "AS3": 25}}
    assert doc["meta"]["cost-type"] == {"cost-mode": "numerical", "cost-metric": "routingcost"}
    assert "multi-cost-types" not in doc["meta"]


def test_filtered_cost_map_ordinal_agrees_with_the_full_ordinal_map():
    view = scenario()
    body = {
        "cost-type": {"cost-mode": "ordinal", "cost-metric": "routingcost"},
        "pids": {"srcs": ["AS1"], "dsts": []},
    }
    doc = q.filtered_cost_map(view, rq.cost_query(body))
    assert doc["cost-map"]["AS1"] == r.cost_map(view, "costmap-routingcost-ordinal")["cost-map"]["AS1"]


def test_multi_cost_with_and_or_constraints_and_testable_types():
    view = scenario()
    multi = [
        {"cost-metric": "routingcost", "cost-mode": "numerical"},
        {"cost-metric": "hopcount", "cost-mode": "numerical"},
    ]
    doc = q.filtered_cost_map(
        view, rq.cost_query({"multi-cost-types": multi, "constraints": ["[0] le 20", "[1] ge 1"]})
    )
    assert doc["meta"]["cost-type"] == {} and doc["meta"]["multi-cost-types"] == multi
    assert doc["cost-map"] == {
        "AS1": {"AS2": [10, 1]},
        "AS2": {"AS1": [10, 1], "AS3": [15, 1]},
        "AS3": {"AS2": [15, 1]},
    }
    either = rq.cost_query(
        {"multi-cost-types": multi, "or-constraints": [["[0] eq 25"], ["[1] eq 0", "[0] gt 0"]]}
    )
    doc = q.filtered_cost_map(view, either)
    assert doc["cost-map"] == {"AS1": {"AS1": [1.0, 0], "AS3": [25, 1]}, "AS3": {"AS1": [25, 1]}}
    tested = rq.cost_query(
        {"cost-type": multi[0], "testable-cost-types": [multi[1]], "constraints": ["[0] eq 0"]}
    )
    doc = q.filtered_cost_map(view, tested)
    assert doc["cost-map"] == {
        "AS1": {"AS1": 1.0},
        "AS2": {"AS2": 0},
        "AS3": {"AS3": 0},
    }  # routingcost where 0 hops


def test_multi_cost_fills_null_for_an_undefined_cost():
    view = scenario()
    multi = [
        {"cost-metric": "routingcost", "cost-mode": "numerical"},
        {"cost-metric": "delay-ow", "cost-mode": "numerical"},
    ]
    doc = q.filtered_cost_map(
        view, rq.cost_query({"multi-cost-types": multi, "pids": {"srcs": ["AS1"], "dsts": ["AS3"]}})
    )
    assert doc["cost-map"] == {"AS1": {"AS3": [25, pytest.approx(10_500)]}}
    table = r.CostTable(view)
    assert q._assemble(rq.cost_query({"multi-cost-types": multi}), [("AS1", "AS3")],
                       lambda t, p: None if t.metric == "delay-ow" else table.value(t, *p)) == {"AS1": {"AS3": [25, None]}}  # fmt: skip


# --- endpoint cost service ----------------------------------------------------------------


def test_endpoint_costs_map_addresses_to_domains_by_longest_prefix():
    body = {
        "cost-type": {"cost-mode": "numerical", "cost-metric": "routingcost"},
        "endpoints": {
            "srcs": ["ipv4:10.1.1.10"],
            "dsts": ["ipv4:10.3.1.20", "ipv4:10.1.2.5", "ipv4:192.0.2.1"],
        },
    }
    doc = q.endpoint_cost(scenario(), rq.endpoint_query(body))
    assert doc["meta"] == {"cost-type": {"cost-mode": "numerical", "cost-metric": "routingcost"}}
    assert doc["endpoint-cost-map"] == {"ipv4:10.1.1.10": {"ipv4:10.3.1.20": 25, "ipv4:10.1.2.5": 1.0}}
    assert "uses" not in r.directory(None, BASE)["resources"]["endpointcost"]


def test_endpoint_costs_ordinal_rank_the_requested_pairs_and_multi_cost_works():
    body = {
        "cost-type": {"cost-mode": "ordinal", "cost-metric": "routingcost"},
        "endpoints": {
            "srcs": ["ipv4:10.1.1.10"],
            "dsts": ["ipv4:10.3.1.20", "ipv4:10.2.1.4", "ipv4:10.1.1.11"],
        },
    }
    doc = q.endpoint_cost(scenario(), rq.endpoint_query(body))
    assert doc["endpoint-cost-map"]["ipv4:10.1.1.10"] == {
        "ipv4:10.1.1.11": 1,
        "ipv4:10.2.1.4": 2,
        "ipv4:10.3.1.20": 3,
    }
    body = {"multi-cost-types": [{"cost-mode": "numerical", "cost-metric": "hopcount"},
                                 {"cost-mode": "ordinal", "cost-metric": "routingcost"}],
            "constraints": ["[1] ge 2"], "endpoints": body["endpoints"]}  # fmt: skip
    doc = q.endpoint_cost(scenario(), rq.endpoint_query(body))
    assert doc["endpoint-cost-map"] == {"ipv4:10.1.1.10": {"ipv4:10.2.1.4": [1, 2], "ipv4:10.3.1.20": [1, 3]}}


def test_endpoint_costs_empty_sources_mean_the_client_address():
    body = {
        "cost-type": {"cost-mode": "numerical", "cost-metric": "hopcount"},
        "endpoints": {"dsts": ["ipv4:10.3.1.1"]},
    }
    doc = q.endpoint_cost(scenario(), rq.endpoint_query(body, "10.2.1.77"))
    assert doc["endpoint-cost-map"] == {"ipv4:10.2.1.77": {"ipv4:10.3.1.1": 1}}
    v6 = rq.endpoint_query(
        {**body, "endpoints": {"srcs": [], "dsts": ["ipv6:2001:DB8::1"]}}, "::ffff:10.2.1.77"
    )
    assert v6.srcs[0].text == "ipv4:10.2.1.77" and v6.dsts[0].address == "2001:db8::1"


# --- path vector --------------------------------------------------------------------------


def test_path_vector_is_multipart_with_domain_anes_and_their_properties():
    view = scenario()
    body = {"cost-type": {"cost-mode": "array", "cost-metric": "ane-path"},
            "pids": {"srcs": ["AS1"], "dsts": ["AS3", "AS2"]},
            "ane-property-names": ["persistent-entity-id", c.PROP_CAPABILITIES]}  # fmt: skip
    answer = q.path_vector(view, rq.pathvector_query(body), BASE)
    msg, parts = parse_multipart(answer.content_type, answer.body)
    assert msg.get_content_type() == "multipart/related"
    assert msg.get_param("type") == "application/alto-costmap+json"
    assert [p["Content-ID"] for p in parts] == ["<costmap@alto.example.net>", "<propmap@alto.example.net>"]
    assert [p.get_content_type() for p in parts] == [
        "application/alto-costmap+json",
        "application/alto-propmap+json",
    ]
    costmap, propmap = (json.loads(p.get_payload(decode=True)) for p in parts)
    assert costmap == answer.parts[0] and propmap == answer.parts[1]
    assert costmap["cost-map"] == {"AS1": {"AS3": ["AS1", "AS2", "AS3"], "AS2": ["AS1", "AS2"]}}
    assert costmap["meta"]["cost-type"] == {"cost-mode": "array", "cost-metric": "ane-path"}
    assert costmap["meta"]["vtag"]["resource-id"] == "pathvector.costmap"
    assert costmap["meta"]["dependent-vtags"] == [r.network_map(view)["meta"]["vtag"]]
    assert propmap["meta"]["dependent-vtags"] == [
        costmap["meta"]["vtag"],
        r.property_map(view)["meta"]["vtag"],
    ]
    anes = propmap["property-map"]
    assert set(anes) == {".ane:AS1", ".ane:AS2", ".ane:AS3"}
    assert anes[".ane:AS2"] == {
        "persistent-entity-id": "domain-props.ane:AS2",
        c.PROP_CAPABILITIES: ["SF2", "SF3"],
    }
    persistent = r.property_map(view)["property-map"][".ane:AS2"]  # what the id points to
    assert persistent[c.PROP_CAPABILITIES] == ["SF2", "SF3"]


def test_path_vector_without_property_names_gives_empty_ane_entries():
    body = {
        "cost-type": {"cost-mode": "array", "cost-metric": "ane-path"},
        "pids": {"srcs": ["AS3"], "dsts": ["AS3"]},
    }
    answer = q.path_vector(scenario(), rq.pathvector_query(body), "http://[::1]:80/alto")
    assert answer.parts[0]["cost-map"] == {"AS3": {"AS3": ["AS3"]}}
    assert answer.parts[1]["property-map"] == {".ane:AS3": {}}
    assert len(answer.parts[1]["meta"]["dependent-vtags"]) == 1
    assert b"Content-ID: <costmap@localhost>" in answer.body  # no dot-atom host name: localhost


# --- property map -------------------------------------------------------------------------


def test_property_map_describes_each_domain_by_pid_entity():
    doc = r.property_map(scenario())
    props = doc["property-map"]
    as1, as2, as3 = (props[f"networkmap.pid:AS{i}"] for i in (1, 2, 3))
    assert as1[c.PROP_CAPABILITIES] == ["SF1"] and as2[c.PROP_CAPABILITIES] == ["SF2", "SF3"]
    assert as3[c.PROP_CAPABILITIES] == ["SF3"] and as3[c.PROP_SF_INSTANCES] == {"SF3": 2, "SF9": 0}
    assert (
        as2[c.PROP_SF_INSTANCES] == {"SF2": 2, "SF3": 1}
        and as2[c.PROP_ENTRY_POINT] == "http://127.0.0.1:9002/"
    )
    assert c.PROP_ENTRY_POINT not in as3  # unknown: not defined rather than ""
    assert (as1[c.PROP_CPU_UTILIZATION], as1[c.PROP_CPU_CORES], as1[c.PROP_MEMORY_MB]) == (0.25, 2, 512.0)
    assert props[".ane:AS1"] == as1 and "networkmap.pid:_default" not in props
    assert doc["meta"]["dependent-vtags"][0]["resource-id"] == "networkmap"


def test_property_names_follow_rfc9240_syntax():
    for name in c.DOMAIN_PROPERTIES:
        resource, dot, prop_type = name.rpartition(".")
        assert resource == "" and dot == "."  # self-defined: resource id omitted (RFC 9240 §5.2.2)
        assert (
            re.fullmatch(r"[A-Za-z0-9:_-]{1,32}", prop_type)
            and prop_type.startswith("priv:")
            and len(prop_type) > 5
        )
    assert re.fullmatch(r"[A-Za-z0-9:_-]{1,32}", c.PROP_PERSISTENT_ENTITY_ID)
    assert c.pid_entity("AS1") == "networkmap.pid:AS1" and c.persistent_ane("AS1") == "domain-props.ane:AS1"


def test_filtered_property_map_selects_entities_and_properties():
    view = scenario()
    domains = r.mappings()
    query = rq.property_map_filter({"entities": ["networkmap.pid:AS2", "networkmap.pid:AS7", "networkmap.pid:AS2"],
                                    "properties": [c.PROP_CAPABILITIES, c.PROP_ENTRY_POINT]}, domains)  # fmt: skip
    doc = q.filtered_property_map(view, query)
    assert doc["property-map"] == {"networkmap.pid:AS2": {c.PROP_CAPABILITIES: ["SF2", "SF3"],
                                                          c.PROP_ENTRY_POINT: "http://127.0.0.1:9002/"}}  # fmt: skip
    assert doc["meta"]["vtag"] == r.property_map(view)["meta"]["vtag"]
    only_ep = q.filtered_property_map(
        view,
        rq.property_map_filter(
            {"entities": ["networkmap.pid:AS3"], "properties": [c.PROP_ENTRY_POINT]}, domains
        ),
    )
    assert only_ep["property-map"] == {}  # AS3 has no entry point: nothing to say
    names_only = q.filtered_property_map(view, rq.property_map_filter({"entities": [".ane:AS1", "networkmap.pid:AS3"]},
                                                                      domains))  # fmt: skip
    assert names_only["property-map"] == {".ane:AS1": {}, "networkmap.pid:AS3": {}}
    everything = q.filtered_property_map(
        view, rq.property_map_filter({"entities": [], "properties": []}, domains)
    )
    assert everything["property-map"] == r.property_map(view)["property-map"]


# --- validation errors --------------------------------------------------------------------


@pytest.mark.parametrize("body, message", [
    (b"{not json", "line 1 column 2"), (b'{"a": NaN}', "NaN"), (b"[1, 2]", "JSON object"),
    (b"\xff\xfe", "UTF-8"), (b"", "line 1 column 1"),
])  # fmt: skip
def test_bodies_that_are_not_a_json_object_are_syntax_errors(body, message):
    error = error_of(rq.parse_body, body)
    assert error.code == "E_SYNTAX" and message in error.document()["meta"]["syntax-error"]
    assert "field" not in error.document()["meta"]


CT = {"cost-mode": "numerical", "cost-metric": "routingcost"}
ANY = object()  # a "value" must be there, whatever it says


@pytest.mark.parametrize("body, code, field, value", [
    ({}, "E_MISSING_FIELD", "cost-type", None),
    ({"cost-type": "routingcost"}, "E_INVALID_FIELD_TYPE", "cost-type", None),
    ({"cost-type": {"cost-mode": "numerical"}}, "E_MISSING_FIELD", "cost-type/cost-metric", None),
    ({"cost-type": {"cost-metric": "routingcost", "cost-mode": 1}}, "E_INVALID_FIELD_TYPE", "cost-type/cost-mode", None),
    ({"cost-type": {"cost-metric": "bandwidth", "cost-mode": "numerical"}}, "E_INVALID_FIELD_VALUE", "cost-type/cost-metric", "bandwidth"),
    ({"cost-type": {"cost-metric": "hopcount", "cost-mode": "ordinal"}}, "E_INVALID_FIELD_VALUE", "cost-type/cost-mode", "ordinal"),
    ({"cost-type": {"cost-metric": "ane-path", "cost-mode": "array"}}, "E_INVALID_FIELD_VALUE", "cost-type/cost-metric", "ane-path"),
    ({"cost-type": CT, "multi-cost-types": [CT]}, "E_INVALID_FIELD_VALUE", "multi-cost-types", None),
    ({"multi-cost-types": []}, "E_INVALID_FIELD_VALUE", "multi-cost-types", "[]"),
    ({"multi-cost-types": [CT] * 5}, "E_INVALID_FIELD_VALUE", "multi-cost-types", ANY),
    ({"multi-cost-types": [CT, 3]}, "E_INVALID_FIELD_VALUE", "multi-cost-types", "3"),
    ({"multi-cost-types": CT}, "E_INVALID_FIELD_TYPE", "multi-cost-types", None),
    ({"cost-type": CT, "constraints": ["le 10", "about 3"]}, "E_INVALID_FIELD_VALUE", "constraints", "about 3"),
    ({"cost-type": CT, "constraints": ["le ten"]}, "E_INVALID_FIELD_VALUE", "constraints", "le ten"),
    ({"cost-type": CT, "constraints": ["le 1e999"]}, "E_INVALID_FIELD_VALUE", "constraints", "le 1e999"),
    ({"cost-type": CT, "constraints": ["[1] le 10"]}, "E_INVALID_FIELD_VALUE", "constraints", "[1] le 10"),
    ({"multi-cost-types": [CT], "constraints": ["[1] le 10"]}, "E_INVALID_FIELD_VALUE", "constraints", "[1] le 10"),
    ({"cost-type": CT, "constraints": "le 10"}, "E_INVALID_FIELD_TYPE", "constraints", None),
    ({"cost-type": CT, "constraints": [10]}, "E_INVALID_FIELD_VALUE", "constraints", "10"),
    ({"cost-type": CT, "constraints": ["le 1"], "or-constraints": [["le 1"]]}, "E_INVALID_FIELD_VALUE", "or-constraints", None),
    ({"cost-type": CT, "or-constraints": [["le 1"], []]}, "E_INVALID_FIELD_VALUE", "or-constraints", "[]"),
    ({"cost-type": CT, "or-constraints": []}, "E_INVALID_FIELD_VALUE", "or-constraints", "[]"),
    ({"cost-type": CT, "testable-cost-types": [{"cost-metric": "ane-path", "cost-mode": "array"}]},
     "E_INVALID_FIELD_VALUE", "testable-cost-types", '{"cost-metric": "ane-path", "cost-mode": "array"}'),
    ({"cost-type": CT, "pids": []}, "E_INVALID_FIELD_TYPE", "pids", None),
    ({"cost-type": CT, "pids": {"srcs": ["AS1"]}}, "E_MISSING_FIELD", "pids/dsts", None),
    ({"cost-type": CT, "pids": {"srcs": "AS1", "dsts": []}}, "E_INVALID_FIELD_TYPE", "pids/srcs", None),
    ({"cost-type": CT, "pids": {"srcs": [1], "dsts": []}}, "E_INVALID_FIELD_VALUE", "pids/srcs", "1"),
    ({"cost-type": CT, "ane-property-names": ["persistent-entity-id"]}, "E_INVALID_FIELD_VALUE", "ane-property-names", "persistent-entity-id"),
])  # fmt: skip
def test_filtered_cost_map_errors(body, code, field, value):
    error = error_of(rq.cost_query, body)
    meta = error.document()["meta"]
    assert (meta["code"], meta.get("field")) == (code, field)
    assert value is ANY and isinstance(meta["value"], str) or meta.get("value") == value


def test_malformed_pid_names_are_syntax_errors():
    error = error_of(rq.cost_query, {"cost-type": CT, "pids": {"srcs": ["AS 1"], "dsts": []}})
    assert error.code == "E_SYNTAX" and "pids/srcs" in error.syntax_error
    assert error_of(rq.network_map_filter, {"pids": ["a.b"]}).code == "E_SYNTAX"  # '.' is reserved


@pytest.mark.parametrize("body, code, field, value", [
    ({"cost-type": {"cost-mode": "array", "cost-metric": "ane-path"}, "constraints": ["le 2"]},
     "E_INVALID_FIELD_VALUE", "constraints", "le 2"),
    ({"cost-type": CT}, "E_INVALID_FIELD_VALUE", "cost-type/cost-metric", "routingcost"),
    ({"multi-cost-types": [{"cost-mode": "array", "cost-metric": "ane-path"}]}, "E_INVALID_FIELD_VALUE", "multi-cost-types", None),
    ({"cost-type": {"cost-mode": "array", "cost-metric": "ane-path"}, "ane-property-names": [".priv:color"]},
     "E_INVALID_FIELD_VALUE", "ane-property-names", ".priv:color"),
    ({"cost-type": {"cost-mode": "array", "cost-metric": "ane-path"}, "ane-property-names": "persistent-entity-id"},
     "E_INVALID_FIELD_TYPE", "ane-property-names", None),
])  # fmt: skip
def test_path_vector_errors(body, code, field, value):
    error = error_of(rq.pathvector_query, body)
    assert (error.code, error.field, error.value) == (code, field, value)


@pytest.mark.parametrize("endpoints, code, field, value", [
    (None, "E_MISSING_FIELD", "endpoints", None),
    ([], "E_INVALID_FIELD_TYPE", "endpoints", None),
    ({}, "E_INVALID_FIELD_VALUE", "endpoints", None),
    ({"srcs": [], "dsts": []}, "E_INVALID_FIELD_VALUE", "endpoints", None),
    ({"srcs": ["ipv5:1.2.3.4"], "dsts": ["ipv4:10.1.1.1"]}, "E_INVALID_FIELD_VALUE", "endpoints/srcs", "ipv5:1.2.3.4"),
    ({"srcs": ["ipv4:10.1.1.1"], "dsts": [7]}, "E_INVALID_FIELD_VALUE", "endpoints/dsts", "7"),
    ({"srcs": ["ipv4:10.1.1.1"]}, "E_INVALID_FIELD_VALUE", "endpoints/dsts", "[]"),  # no client address known
])  # fmt: skip
def test_endpoint_cost_errors(endpoints, code, field, value):
    body = {"cost-type": CT} | ({} if endpoints is None else {"endpoints": endpoints})
    error = error_of(rq.endpoint_query, body)
    assert (error.code, error.field, error.value) == (code, field, value)


@pytest.mark.parametrize("address", ["10.1.1.1", "ipv4:10.1.1.300", "ipv4:2001:db8::1", "ipv6:10.1.1.1",
                                     "ipv4:10.1.1.0/24", "ip-v4:10.1.1.1"])  # fmt: skip
def test_malformed_endpoint_addresses_are_syntax_errors(address):
    body = {"cost-type": CT, "endpoints": {"srcs": [address], "dsts": ["ipv4:10.1.1.1"]}}
    assert error_of(rq.endpoint_query, body).code == "E_SYNTAX"


def test_network_map_filter_errors():
    assert (error_of(rq.network_map_filter, {}).code, error_of(rq.network_map_filter, {}).field) == (
        "E_MISSING_FIELD",
        "pids",
    )
    error = error_of(rq.network_map_filter, {"pids": "AS1"})
    assert (error.code, error.field) == ("E_INVALID_FIELD_TYPE", "pids")
    error = error_of(rq.network_map_filter, {"pids": [], "address-types": [4]})
    assert (error.code, error.field, error.value) == ("E_INVALID_FIELD_VALUE", "address-types", "4")


@pytest.mark.parametrize("body, code, field, value", [
    ({}, "E_MISSING_FIELD", "entities", None),
    ({"entities": "networkmap.pid:AS1"}, "E_INVALID_FIELD_TYPE", "entities", None),
    ({"entities": ["pid:AS1"]}, "E_INVALID_FIELD_VALUE", "entities", "pid:AS1"),
    ({"entities": ["subnetmap.pid:AS1-a"]}, "E_INVALID_FIELD_VALUE", "entities", "subnetmap.pid:AS1-a"),
    ({"entities": ["domain-props.ane:AS1"]}, "E_INVALID_FIELD_VALUE", "entities", "domain-props.ane:AS1"),
    ({"entities": ["networkmap.pid:bad name"]}, "E_INVALID_FIELD_VALUE", "entities", "networkmap.pid:bad name"),
    ({"entities": ["ipv4:10.1.1.1"]}, "E_INVALID_FIELD_VALUE", "entities", "ipv4:10.1.1.1"),
    ({"entities": [], "properties": ["capabilities"]}, "E_INVALID_FIELD_VALUE", "properties", "capabilities"),
    ({"entities": [], "properties": [True]}, "E_INVALID_FIELD_VALUE", "properties", "true"),
])  # fmt: skip
def test_filtered_property_map_errors(body, code, field, value):
    error = error_of(rq.property_map_filter, body, r.mappings())
    assert (error.code, error.field, error.value) == (code, field, value)


def test_error_documents_carry_value_only_with_field():
    assert AltoError("E_INVALID_FIELD_VALUE", None, "x").document() == {
        "meta": {"code": "E_INVALID_FIELD_VALUE"}
    }
    assert AltoError("E_INVALID_FIELD_VALUE", "pids", [1]).document()["meta"] == {
        "code": "E_INVALID_FIELD_VALUE", "field": "pids", "value": "[1]"}  # fmt: skip
    assert rq.missing("endpoints").document() == {"meta": {"code": "E_MISSING_FIELD", "field": "endpoints"}}


def test_lookup_pid_prefers_the_longest_prefix():
    data = {
        "wide": {"ipv4": ["10.0.0.0/8"]},
        "narrow": {"ipv4": ["10.1.0.0/16"]},
        "_default": {"ipv4": ["0.0.0.0/0"]},
    }
    assert r.lookup_pid(data, "10.1.2.3") == "narrow" and r.lookup_pid(data, "10.9.0.1") == "wide"
    assert r.lookup_pid(data, "2001:db8::1") is None
    assert ipaddress.ip_address("10.1.2.3")  # the helper takes plain address strings
