"""Service function chaining on the multi-domain topology, as `testbed up` runs it.

One testbed for the module: AS1 {SF1}, AS2 {SF2, SF3}, AS3 {SF3}; the chain `web` from
classifier-as1 to dest-as3 through SF1, SF2, SF3.  What is asserted is what the packets say:
every service function instance appends its name to the datagrams it forwards, and a capture
on an instance's host, decoded by tshark, shows the labels and stamps it saw and sent.  Faults
are undone at the end of each test, so each starts from the draft's Table 2 ranking.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from testbed import schema
from testbed.api import Testbed
from testbed.sfc_api import SfcError
from tests.netlab import needs_root, tshark_fields
from tests.sfclab import chain_spec, received, send_through, start_receiver, start_sender, wait_for, wait_installed

pytestmark = [pytest.mark.netns, needs_root]
ROOT = Path(__file__).resolve().parents[2]
BEST = "AS1:SF1->AS2:SF2->AS2:SF3"
SECOND = "AS1:SF1->AS2:SF2->AS3:SF3"


@pytest.fixture(scope="module")
def tb(tmp_path_factory):
    topo = schema.load(ROOT / "topologies/multi-domain.yaml")
    topo = topo.model_copy(update={  # free ports: another testbed may hold the defaults
        "controller": topo.controller.model_copy(update={"port": 0, "rest_port": 0}),
        "sfc": topo.sfc.model_copy(update={"port": 0}),
    })  # fmt: skip
    bed = Testbed(topo, source="multi-domain.yaml", run_root=tmp_path_factory.mktemp("sfc"))
    with bed.up():
        wait_installed(bed, BEST, timeout=60)
        yield bed


def stamps(packets: list[dict]) -> set[tuple[str, ...]]:
    return {tuple(p["stamps"]) for p in packets}


def _alto(tb: Testbed, path: str, body: dict | None = None, content_type: str = "") -> tuple[int, str, dict]:
    url = f"http://127.0.0.1:{tb.plan.ports['sxp']}/alto/{path}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], json.loads(exc.read())


def test_the_chain_carries_traffic_through_sf1_sf2_sf3_in_order(tb):
    placement = wait_installed(tb, BEST)
    sf2 = placement["hops"][1]["instance"]
    tb.capture_start([f"{sf2}:eth0"])
    packets, summary = send_through(tb, count=30, rate=50)
    pcaps = tb.capture_stop()
    print(f"received {summary['received']}/30 via {summary['paths']}")
    assert summary["received"] == 30 and summary["lost"] == 0
    (path,) = stamps(packets)
    assert [name.split("-")[0] for name in path] == ["sf1", "sf2", "sf3"], path
    assert [h["instance"] for h in placement["hops"]] == list(path)
    assert path[1].endswith("as2-1") or path[1].endswith("as2-2")
    # tshark, independently: the SF2 instance saw label SPI 1 / SI 254 with SF1's stamp, and
    # sent SI 253 with its own added.
    pcap = Path(pcaps[0]["file"])
    rows = tshark_fields(pcap, "mpls && udp.dstport == 5000", "mpls.label", "udp.payload")
    seen = {(int(label), bytes.fromhex(payload.replace(":", "")).decode().split(" >", 1)[1]) for label, payload in rows}
    assert (1 << 8 | 254, path[0]) in seen, seen
    assert (1 << 8 | 253, f"{path[0]} >{path[1]}") in seen, seen


def test_full_size_datagrams_fit_with_their_label(tb):
    wait_installed(tb, BEST)
    packets, summary = send_through(tb, count=10, size=1496 - 28)  # the classifier's MTU, less IP and UDP
    assert summary["received"] == 10, summary  # 1500-byte frames with the label: no link dropped them
    assert all(len(p["stamps"]) <= 3 for p in packets)  # no room for stamps: forwarded unstamped


def test_alto_maps_come_from_the_running_domains(tb):
    status, ctype, ird = _alto(tb, "directory")
    assert status == 200 and ctype.startswith("application/alto-directory+json")
    assert "domain-props" in ird["resources"] and "costmap-routingcost" in ird["resources"]
    status, ctype, props = _alto(tb, "domain-props")
    assert ctype.startswith("application/alto-propmap+json")
    caps = {entity.rsplit(":", 1)[1]: p[".priv:capabilities"] for entity, p in props["property-map"].items()
            if entity.startswith("networkmap.pid:")}  # fmt: skip
    assert caps == {"AS1": ["SF1"], "AS2": ["SF2", "SF3"], "AS3": ["SF3"]}  # from the registrars
    _, ctype, costs = _alto(tb, "costmap-routingcost")
    assert ctype.startswith("application/alto-costmap+json")
    assert costs["cost-map"]["AS1"]["AS3"] == 25  # 10 ms + 15 ms via AS2, cheaper than the 40 ms link
    delay = wait_for("a measured delay", lambda: _alto(tb, "costmap-delay")[2]["cost-map"]["AS1"].get("AS2"))
    assert 8_000 < delay < 30_000, delay  # µs (RFC 9439): the AS1-AS2 link's 10 ms, pinged between the gateways
    status, ctype, error = _alto(tb, "filtered-costmap", {"cost-type": "routingcost"},
                                 "application/alto-costmapfilter+json")  # fmt: skip
    assert status == 400 and ctype.startswith("application/alto-error+json")
    assert error["meta"]["code"] == "E_INVALID_FIELD_TYPE", error


def test_the_platform_ranks_the_drafts_table_2(tb):
    answer = tb.sfc_paths(["SF1", "SF2", "SF3"])
    assert [(p["rank"], p["path"]) for p in answer["paths"]] == [(1, BEST), (2, SECOND)]
    assert [p["path"] for p in tb.sfc_paths(["SF1", "SF2", "SF3"], exclude=["AS3"])["paths"]] == [BEST]
    assert [p["path"] for p in tb.sfc_paths(["SF1", "SF2", "SF3"], max_cost=20)["paths"]] == [BEST]
    with pytest.raises(SfcError, match="SF2"):  # SF2 is offered only by AS2
        tb.sfc_paths(["SF1", "SF2", "SF3"], exclude=["AS2"])


def test_raising_the_cost_of_the_chosen_path_moves_the_chain(tb):
    before = wait_installed(tb, BEST)
    chain = chain_spec(tb)
    rx = start_receiver(tb, chain, count=300, timeout=5.0)
    tx = start_sender(tb, chain, count=300, rate=100)  # 3 s of traffic across the move
    try:
        time.sleep(1.0)
        tb.sfc_cost("AS2", "AS2", 50)  # AS2 congested inside: SF2 -> SF3 within AS2 now costs 50
        started = time.monotonic()
        after = wait_installed(tb, SECOND, timeout=20)
        print(f"moved {before['path']} -> {after['path']} in {time.monotonic() - started:.2f} s")
        tx.communicate(timeout=30)
        packets, summary = received(rx)
        # make before break: the new rules were in before the classifier switched, the old
        # ones stayed until the packets on the old path were through
        assert summary["received"] == 300 and summary["lost"] == 0, summary
        seen = [tuple(p["stamps"])[2][:7] for p in sorted(packets, key=lambda p: p["seq"])]
        assert seen[0] == "sf3-as2" and seen[-1] == "sf3-as3", (seen[0], seen[-1])
        packets, summary = send_through(tb, count=20)
        assert summary["received"] == 20
        (path,) = stamps(packets)
        assert path[2].startswith("sf3-as3-"), path
    finally:
        tb.sfc_cost("AS2", "AS2", None)
    wait_installed(tb, BEST, timeout=20)


def test_a_dead_instance_is_replaced_by_another_of_its_pool(tb):
    placement = wait_installed(tb, BEST)
    victim = placement["hops"][1]["instance"]  # the SF2 instance in AS2
    tb.kill(victim)
    try:
        moved = wait_for("another SF2 instance", lambda: (p := wait_installed(tb, BEST))["hops"][1]["instance"]
                         != victim and p, timeout=20)  # fmt: skip
        packets, summary = send_through(tb, count=20)
        assert summary["received"] == 20
        (path,) = stamps(packets)
        assert path[1] == moved["hops"][1]["instance"] != victim
    finally:
        tb.restart(victim)


def test_a_domain_without_sf3_instances_moves_sf3_to_the_other_candidate(tb):
    wait_installed(tb, BEST)
    tb.kill("sf3-as2-1")  # AS2's only SF3 instance
    try:
        started = time.monotonic()
        moved = wait_installed(tb, SECOND, timeout=20)
        print(f"SF3 moved to AS3 in {time.monotonic() - started:.2f} s: {moved['hops'][2]['instance']}")
        packets, summary = send_through(tb, count=20)
        assert summary["received"] == 20 and summary["lost"] == 0
        (path,) = stamps(packets)
        assert path[2] == moved["hops"][2]["instance"] and path[2].startswith("sf3-as3-")
    finally:
        tb.restart("sf3-as2-1")
    wait_installed(tb, BEST, timeout=30)


def _chain_rules(switch: str) -> list[str]:
    out = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", switch], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "mpls" in line]


def test_the_controller_reinstalls_a_restarted_switch(tb):
    wait_installed(tb, BEST)
    log = Path(tb.supervisor.get("controller").log)
    before = log.read_text().count('"switch-ready"')
    sff = tb.plan.sff("AS2").name
    assert len(_chain_rules(sff)) == 3  # SI 254 to SF2, 253 to SF3, 252 onto the trunk to AS3
    restarted_at = time.monotonic()
    restarted = tb.switch_restart("AS2/a")
    assert restarted["switch"] == sff
    wait_for("the switch back", lambda: log.read_text().count('"switch-ready"') > before, timeout=30)
    rules = wait_for("its chain rules back", lambda: len(r := _chain_rules(sff)) == 3 and r, timeout=10)
    ages = [float(re.search(r"duration=([0-9.]+)s", rule).group(1)) for rule in rules]
    assert max(ages) < time.monotonic() - restarted_at  # installed again after the restart emptied the table
    packets, summary = send_through(tb, count=20)
    print(f"after restarting {restarted['switch']}: {summary['received']}/20")
    assert summary["received"] == 20
    assert stamps(packets) == {tuple(h["instance"] for h in wait_installed(tb, BEST)["hops"])}
