"""The ALTO server over HTTP (aiohttp test server on loopback): media types, negotiation, status
codes and ALTO error documents, Basic authentication, a view read per request, and that a
failing handler neither leaks a traceback nor stops the server."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections.abc import Callable

from aiohttp import MultipartReader, web
from aiohttp.test_utils import TestClient, TestServer

from sdn.alto import catalog as c
from sdn.alto.server import AltoConfig, acceptable, authorized, make_app
from sdn.view import DomainInfo, View
from tests.unit.test_alto import scenario

CT = {"cost-mode": "numerical", "cost-metric": "routingcost"}
PV = {"cost-mode": "array", "cost-metric": "ane-path"}


App = Callable[[], web.Application]  # an application is bound to one event loop: a factory each


def serve(app: App, session):
    """Runs `session(client)` against a new app on a loopback test server."""

    async def main():
        async with TestClient(TestServer(app())) as client:
            return await session(client)

    return asyncio.run(main())


def fetch(app: App, method: str, path: str, **kwargs) -> tuple[int, str, bytes, dict]:
    async def session(client):
        resp = await client.request(method, path, **kwargs)
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read(), dict(resp.headers)

    return serve(app, session)


def post(app, rid: str, body, media: str, **kwargs):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": media, **kwargs.pop("headers", {})}
    return fetch(app, "POST", f"/alto/{rid}", data=data, headers=headers, **kwargs)


def app_for(view: View | None = None, **config) -> App:
    view = view or scenario()
    return lambda: make_app(lambda: view, AltoConfig(**config))


def test_every_get_resource_answers_with_its_media_type():
    app = app_for()
    ird = json.loads(fetch(app, "GET", "/alto/directory")[2])
    for rid, entry in ird["resources"].items():
        if "accepts" in entry:
            continue
        status, media, body, _ = fetch(app, "GET", f"/alto/{rid}")
        assert (status, media) == (200, entry["media-type"]), rid
        assert "meta" in json.loads(body)


def test_directory_uris_use_the_request_origin_or_the_configured_base_url():
    async def session(client):
        resp = await client.get(
            "/alto/directory",
            headers={"Accept": "application/alto-directory+json,application/alto-error+json"},
        )
        return (
            resp.status,
            resp.headers["Content-Type"],
            await resp.json(content_type=None),
            f"{client.make_url('')}",
        )

    status, media, ird, origin = serve(app_for(), session)
    assert (status, media) == (200, "application/alto-directory+json")
    assert ird["resources"]["networkmap"]["uri"] == origin.rstrip("/") + "/alto/networkmap"
    configured = json.loads(fetch(app_for(base_url="http://sxp.example:8181/"), "GET", "/alto/directory")[2])
    assert configured["resources"]["costmap-delay"]["uri"] == "http://sxp.example:8181/alto/costmap-delay"
    other_prefix = lambda: make_app(scenario, AltoConfig(prefix="/x/alto/", base_url="http://h"))  # noqa: E731
    status, _, body, _ = fetch(other_prefix, "GET", "/x/alto/directory")
    assert (
        status == 200 and json.loads(body)["resources"]["networkmap"]["uri"] == "http://h/x/alto/networkmap"
    )


def test_get_view_is_called_on_every_request():
    calls = []
    views = [scenario(), scenario(AS1=dataclasses.replace(scenario().domains["AS1"], functions={"SF1": 0}))]

    def get_view():
        calls.append(1)
        return views[min(len(calls), 2) - 1]

    app = lambda: make_app(get_view, AltoConfig())  # noqa: E731

    async def session(client):
        first = await (await client.get("/alto/domain-props")).json(content_type=None)
        second = await (await client.get("/alto/domain-props")).json(content_type=None)
        return first, second

    first, second = serve(app, session)
    assert len(calls) == 2
    assert first["property-map"]["networkmap.pid:AS1"][c.PROP_CAPABILITIES] == ["SF1"]
    assert second["property-map"]["networkmap.pid:AS1"][c.PROP_CAPABILITIES] == []
    assert first["meta"]["vtag"]["tag"] != second["meta"]["vtag"]["tag"]


def test_post_services_answer_with_their_media_types():
    app = app_for()
    status, media, body, _ = post(app, "filtered-networkmap", {"pids": ["AS3"]}, c.NETWORKMAPFILTER_MT)
    assert (status, media) == (200, c.NETWORKMAP_MT) and list(json.loads(body)["network-map"]) == ["AS3"]
    status, media, body, _ = post(app, "filtered-costmap", {"cost-type": CT, "pids": {"srcs": ["AS1"], "dsts": ["AS3"]}},
                                  c.COSTMAPFILTER_MT)  # fmt: skip
    assert (status, media, json.loads(body)["cost-map"]) == (200, c.COSTMAP_MT, {"AS1": {"AS3": 25}})
    ecs = {"cost-type": CT, "endpoints": {"srcs": ["ipv4:10.1.1.10"], "dsts": ["ipv4:10.3.1.20"]}}
    status, media, body, _ = post(app, "endpointcost", ecs, c.ENDPOINTCOSTPARAMS_MT)
    assert (status, media) == (200, c.ENDPOINTCOST_MT)
    assert json.loads(body)["endpoint-cost-map"] == {"ipv4:10.1.1.10": {"ipv4:10.3.1.20": 25}}
    props = {"entities": ["networkmap.pid:AS2"], "properties": [c.PROP_SF_INSTANCES]}
    status, media, body, _ = post(app, "filtered-domain-props", props, c.PROPMAPPARAMS_MT)
    assert (status, media) == (200, c.PROPMAP_MT)
    assert json.loads(body)["property-map"] == {
        "networkmap.pid:AS2": {c.PROP_SF_INSTANCES: {"SF2": 2, "SF3": 1}}
    }


def test_endpoint_cost_without_sources_uses_the_connection_address():
    loopback = scenario(AS2=DomainInfo("AS2", {"a": "10.2.1.0/24", "lo": "127.0.0.0/8"}))
    body = {"cost-type": CT, "endpoints": {"dsts": ["ipv4:10.1.1.1"]}}
    status, _, answer, _ = post(app_for(loopback), "endpointcost", body, c.ENDPOINTCOSTPARAMS_MT)
    assert status == 200 and json.loads(answer)["endpoint-cost-map"] == {
        "ipv4:127.0.0.1": {"ipv4:10.1.1.1": 10}
    }


def test_path_vector_multipart_parses_back():
    body = {
        "cost-type": PV,
        "pids": {"srcs": ["AS1"], "dsts": ["AS3"]},
        "ane-property-names": ["persistent-entity-id"],
    }

    async def session(client):
        resp = await client.post(
            "/alto/pathvector",
            data=json.dumps(body),
            headers={
                "Content-Type": c.COSTMAPFILTER_MT,
                "Accept": "multipart/related;type=application/alto-costmap+json,application/alto-error+json",
            },
        )
        parts = []
        reader = MultipartReader.from_response(resp)
        while (part := await reader.next()) is not None:
            parts.append((part.headers["Content-ID"], part.headers["Content-Type"], await part.json()))
        return resp.status, resp.content_type, resp.headers["Content-Type"], parts

    status, media, header, parts = serve(app_for(), session)
    assert (status, media) == (200, "multipart/related") and 'type="application/alto-costmap+json"' in header
    (cid1, type1, costmap), (cid2, type2, propmap) = parts
    assert (cid1, type1, type2) == ("<costmap@127.0.0.1>", c.COSTMAP_MT, c.PROPMAP_MT) and cid2.startswith(
        "<propmap@"
    )
    assert costmap["cost-map"]["AS1"]["AS3"] == ["AS1", "AS2", "AS3"]
    assert propmap["property-map"][".ane:AS2"] == {"persistent-entity-id": "domain-props.ane:AS2"}


# --- negotiation and status codes ---------------------------------------------------------


def test_accept_header_negotiation():
    app = app_for()
    for accept in (
        "*/*",
        "application/*",
        c.NETWORKMAP_MT,
        f"{c.ERROR_MT}, {c.NETWORKMAP_MT};q=0.5",
        "text/html, */*;q=0.1",
    ):
        assert fetch(app, "GET", "/alto/networkmap", headers={"Accept": accept})[0] == 200, accept
    for accept in (c.ERROR_MT, "application/json", f"{c.NETWORKMAP_MT};q=0", f"*/*, {c.NETWORKMAP_MT};q=0"):
        status, media, body, _ = fetch(app, "GET", "/alto/networkmap", headers={"Accept": accept})
        assert status == 406 and c.NETWORKMAP_MT.encode() in body and "Traceback" not in body.decode(), accept
    pv = {"cost-type": PV}
    assert post(app, "pathvector", pv, c.COSTMAPFILTER_MT, headers={"Accept": c.COSTMAP_MT})[0] == 406
    assert post(app, "pathvector", pv, c.COSTMAPFILTER_MT, headers={"Accept": "multipart/related"})[0] == 200
    wrong_type = "multipart/related;type=application/alto-endpointcost+json"
    assert post(app, "pathvector", pv, c.COSTMAPFILTER_MT, headers={"Accept": wrong_type})[0] == 406


def test_acceptable_parses_parameters_and_quality():
    assert acceptable(None, c.COSTMAP_MT) and acceptable("", c.COSTMAP_MT)
    assert acceptable('multipart/related; type="application/alto-costmap+json"', c.MULTIPART_COSTMAP_MT)
    assert acceptable("MULTIPART/*", c.MULTIPART_COSTMAP_MT) and not acceptable(
        "multipart/mixed", c.MULTIPART_COSTMAP_MT
    )
    assert not acceptable(f"{c.COSTMAP_MT};q=0.000", c.COSTMAP_MT) and acceptable(
        f"{c.COSTMAP_MT};q=bogus", c.COSTMAP_MT
    )


def test_wrong_content_type_on_post_is_415():
    app = app_for()
    body = {"cost-type": CT}
    assert post(app, "filtered-costmap", body, "application/json")[0] == 415
    assert post(app, "filtered-costmap", body, c.ENDPOINTCOSTPARAMS_MT)[0] == 415
    no_type = fetch(app, "POST", "/alto/filtered-costmap", data=json.dumps(body).encode())
    assert no_type[0] == 415
    assert (
        post(app, "filtered-costmap", body, c.COSTMAPFILTER_MT + "; charset=utf-8")[0] == 200
    )  # parameters ignored


def test_unknown_resource_is_404_and_wrong_method_is_405():
    app = app_for()
    assert fetch(app, "GET", "/alto/costmap-bandwidth")[0] == 404
    assert fetch(app, "GET", "/alto/filtered-costmap")[0] == 405
    status, _, _, headers = fetch(app, "POST", "/alto/networkmap", data=b"{}")
    assert status == 405 and "GET" in headers["Allow"]


def alto_error(app, rid: str, body, media: str) -> dict:
    status, content_type, answer, _ = post(app, rid, body, media)
    assert (status, content_type) == (400, c.ERROR_MT)
    return json.loads(answer)["meta"]


def test_alto_errors_over_http():
    app = app_for()
    meta = alto_error(app, "filtered-costmap", b'{"cost-type": ', c.COSTMAPFILTER_MT)
    assert meta["code"] == "E_SYNTAX" and "syntax-error" in meta
    assert alto_error(app, "filtered-costmap", {"pids": {}}, c.COSTMAPFILTER_MT) == {
        "code": "E_MISSING_FIELD",
        "field": "cost-type",
    }
    assert alto_error(app, "filtered-networkmap", {"pids": {"AS1": 1}}, c.NETWORKMAPFILTER_MT) == {
        "code": "E_INVALID_FIELD_TYPE", "field": "pids"}  # fmt: skip
    meta = alto_error(app, "endpointcost", {"cost-type": {**CT, "cost-mode": "fuzzy"}, "endpoints": {"srcs": ["ipv4:10.1.1.1"]}},
                      c.ENDPOINTCOSTPARAMS_MT)  # fmt: skip
    assert meta == {"code": "E_INVALID_FIELD_VALUE", "field": "cost-type/cost-mode", "value": "fuzzy"}
    meta = alto_error(app, "filtered-domain-props", {"entities": ["networkmap.pid:AS1"], "properties": ["cpu"]},
                      c.PROPMAPPARAMS_MT)  # fmt: skip
    assert meta == {"code": "E_INVALID_FIELD_VALUE", "field": "properties", "value": "cpu"}
    meta = alto_error(app, "pathvector", {"cost-type": PV, "constraints": ["le 3"]}, c.COSTMAPFILTER_MT)
    assert (meta["code"], meta["field"]) == ("E_INVALID_FIELD_VALUE", "constraints")


# --- authentication and robustness --------------------------------------------------------


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_authentication():
    app = app_for(auth=("sxp", "s3cret"))
    status, _, _, headers = fetch(app, "GET", "/alto/directory")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic ")
    assert fetch(app, "GET", "/alto/directory", headers=basic("sxp", "wrong"))[0] == 401
    assert fetch(app, "GET", "/alto/directory", headers=basic("other", "s3cret"))[0] == 401
    assert fetch(app, "GET", "/alto/directory", headers={"Authorization": "Basic !!!"})[0] == 401
    assert fetch(app, "GET", "/alto/directory", headers=basic("sxp", "s3cret"))[0] == 200
    assert post(app, "filtered-costmap", {"cost-type": CT}, c.COSTMAPFILTER_MT)[0] == 401
    assert (
        post(app, "filtered-costmap", {"cost-type": CT}, c.COSTMAPFILTER_MT, headers=basic("sxp", "s3cret"))[
            0
        ]
        == 200
    )
    assert authorized(None, None) and not authorized("Bearer x", ("a", "b"))
    assert not authorized("Basic " + base64.b64encode(b"sxps3cret").decode(), ("sxp", "s3cret"))  # no colon


def test_routes_mounted_beside_alto_are_untouched():
    async def paths(request: web.Request) -> web.Response:
        return web.json_response({"paths": []})

    def app() -> web.Application:
        application = make_app(scenario, AltoConfig(auth=("sxp", "s3cret")))
        application.router.add_get("/sxp/paths", paths)
        return application

    status, media, body, _ = fetch(app, "GET", "/sxp/paths")
    assert (status, media.split(";")[0], json.loads(body)) == (200, "application/json", {"paths": []})


class BrokenView(View):
    def costs(self, metric: str = "routingcost"):
        raise RuntimeError("secret internals")


def test_failures_do_not_leak_or_stop_the_server():
    state = {"fail": True}

    def get_view():
        if state["fail"]:
            raise ConnectionError("IBE unreachable")
        return scenario()

    async def session(client):
        first = await client.get("/alto/networkmap")
        state["fail"] = False
        second = await client.get("/alto/networkmap")
        return first.status, await first.text(), second.status

    assert serve(lambda: make_app(get_view, AltoConfig()), session) == (
        503,
        "the network view is not available\n",
        200,
    )

    broken = BrokenView(scenario().domains, scenario().links)

    async def broken_session(client):
        first = await client.get("/alto/costmap-routingcost")
        text = await first.text()
        second = await client.get("/alto/networkmap")  # does not need costs
        return first.status, text, second.status

    status, text, after = serve(lambda: make_app(lambda: broken, AltoConfig()), broken_session)
    assert (status, after) == (500, 200)
    assert "Traceback" not in text and "secret" not in text
