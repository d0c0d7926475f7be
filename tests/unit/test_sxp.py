"""The platform without a network: its view from the IBEs' reports, cost overrides, and the
path API answering from the ALTO documents it serves."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from nodes.runtime import EventLog
from sdn.sxp import Platform, make_app, paths_json

CONFIG = {
    "name": "sxp", "port": 8181, "auth": None, "metric": "routingcost",
    "domains": {d: {"subnets": {"a": f"10.{i}.1.0/24"}, "ibe": f"/nonexistent/{d}.sock"}
                for i, d in enumerate(("AS1", "AS2", "AS3"), start=1)},
    "links": [{"a": "AS1", "b": "AS2", "routingcost": 10}, {"a": "AS2", "b": "AS3", "routingcost": 15},
              {"a": "AS1", "b": "AS3", "routingcost": 40}],
}  # fmt: skip
PE = {"pe_id": 1, "addresses": ["10.0.0.1"], "port": 1}


@pytest.fixture
def platform() -> Platform:
    p = Platform(CONFIG, EventLog("sxp", open("/dev/null", "w")))  # noqa: SIM115
    p.reports = {
        "AS1": {"pools": {"SF1": [PE, PE]}, "resources": {"cpu_utilization": 0.25, "cpu_cores": 2, "memory_mb": 80}},
        "AS2": {"pools": {"SF2": [PE], "SF3": [PE]}, "delays": {"AS1": {"delay_ms": 10.4, "loss": 0.0}}},
        "AS3": {"pools": {"SF3": [PE], "SF1": []}, "delays": {"AS1": {"delay_ms": None, "loss": 1.0}}},
    }  # fmt: skip
    p.polled_at = 1.0
    return p


def test_the_view_is_what_the_domains_reported(platform):
    view = platform.view()
    assert view.domains["AS1"].functions == {"SF1": 2} and view.domains["AS1"].cpu_utilization == 0.25
    assert view.domains["AS3"].capabilities == ["SF3"]  # an empty pool is not a capability
    links = {link.key(): link for link in view.links}
    assert links[("AS1", "AS2")].delay_ms == 10.4 and links[("AS1", "AS2")].up
    assert not links[("AS1", "AS3")].up  # the probe over it lost everything


def test_the_ranking_is_table_2_and_follows_cost_overrides(platform):
    ranked = paths_json(platform.view(), ["SF1", "SF2", "SF3"])["paths"]
    assert [(p["path"], p["cost"]) for p in ranked] == [("AS1:SF1->AS2:SF2->AS2:SF3", 10.0),
                                                        ("AS1:SF1->AS2:SF2->AS3:SF3", 25.0)]  # fmt: skip
    platform.set_cost("AS2", "AS2", 50)
    chosen = paths_json(platform.view(), ["SF1", "SF2", "SF3"], ingress="AS1", egress="AS3")["paths"][0]
    assert chosen["path"] == "AS1:SF1->AS2:SF2->AS3:SF3"
    assert chosen["legs"] == [["AS1"], ["AS1", "AS2"], ["AS2", "AS3"], ["AS3"]]
    platform.set_cost("AS2", "AS2", None)
    assert paths_json(platform.view(), ["SF1", "SF2", "SF3"])["paths"][0]["cost"] == 10.0


@pytest.mark.parametrize(("a", "b", "cost", "message"), [
    ("AS9", "AS1", 5, "no domain 'AS9'"), ("AS1", "AS2", -1, "not negative"),
    ("AS1", "AS2", float("nan"), "finite"), ("AS1", "AS1", float("inf"), "finite"),
])  # fmt: skip
def test_bad_cost_overrides_are_refused(platform, a, b, cost, message):
    platform.link_costs.clear()
    with pytest.raises(ValueError, match=message):
        platform.set_cost(a, b, cost)


async def _get(platform: Platform, url: str, headers: dict | None = None) -> tuple[int, dict]:
    async with TestClient(TestServer(make_app(platform))) as client:
        response = await client.get(url, headers=headers or {})
        return response.status, await response.json(content_type=None)


@pytest.mark.parametrize(("url", "status", "message"), [
    ("/sxp/paths", 400, "give the chain"),
    ("/sxp/paths?chain=SF1&metric=bogus", 400, "unknown metric"),
    ("/sxp/paths?chain=SF1&k=x", 400, "k is an integer"),
    ("/sxp/paths?chain=SF1&k=100000", 400, "k is an integer from 1 to 1000"),
    ("/sxp/paths?chain=SF1&max-cost=nan", 400, "finite"),
    ("/sxp/paths?chain=SF1,SF4", 404, "no domain offers SF4"),
    ("/sxp/paths?chain=SF1,SF2,SF3&exclude=AS2", 404, "SF2 is offered only by excluded domains"),
    ("/sxp/paths?chain=SF1&ingress=AS9", 404, "unknown ingress domain"),
])  # fmt: skip
def test_the_path_api_says_what_is_wrong(platform, url, status, message):
    got, body = asyncio.run(_get(platform, url))
    assert got == status and message in body["error"], body


def test_the_path_api_and_alto_share_one_server(platform):
    status, body = asyncio.run(_get(platform, "/sxp/paths?chain=SF1,SF2,SF3&max-cost=20"))
    assert status == 200 and [p["path"] for p in body["paths"]] == ["AS1:SF1->AS2:SF2->AS2:SF3"]
    status, ird = asyncio.run(_get(platform, "/alto/directory"))
    assert status == 200 and ird["resources"]["domain-props"]["uri"].startswith("http://127.0.0.1:8181/alto/")


def test_no_ranking_before_the_domains_were_heard(platform):
    platform.polled_at = 0.0
    status, body = asyncio.run(_get(platform, "/sxp/paths?chain=SF1"))
    assert status == 503 and "not heard" in body["error"]


def test_a_silent_domain_stops_offering_its_functions(platform):
    for _ in range(3):
        asyncio.run(platform._poll("AS2"))  # its socket does not exist
    assert platform.view().domains["AS2"].capabilities == []
    assert platform.view().domains["AS1"].capabilities == ["SF1"]


def test_the_platform_takes_the_altos_credentials(platform):
    platform.config = CONFIG | {"auth": "user:secret"}
    assert asyncio.run(_get(platform, "/sxp/paths?chain=SF1"))[0] == 401
    import base64

    good = {"Authorization": "Basic " + base64.b64encode(b"user:secret").decode()}
    assert asyncio.run(_get(platform, "/sxp/paths?chain=SF1", good))[0] == 200
