"""The SFC eXchange Platform: an ALTO server fed by the domains, and path computation.

draft-lachos-multi-domain-sfc-alto-00 §5.1: the SXP "includes an ALTO server component";
every domain has a local Information Base Element from which it builds a property map (the
SFs each domain offers, its resources, its entry point) and cost maps.  Here the platform
polls each domain's IBE (pools registered at the domain's registrar, CPU and memory, measured
link delays), keeps a `View`, serves the ALTO resources from it (`/alto/...`) and ranks
multi-domain service function paths from those very documents (`/sxp/paths`).

    GET  /sxp/paths?chain=SF1,SF2,SF3[&ingress=AS1][&egress=AS3][&exclude=AS3][&max-cost=30][&k=10][&metric=...]
    POST /sxp/costs {"a": "AS2", "b": "AS3", "routingcost": 50}   (null resets; a == b: intra-domain cost)
    GET  /sxp/view, /sxp/health

`python -m sdn.sxp --config FILE` (the testbed writes FILE; it listens on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
import time
import urllib.parse
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from nodes.runtime import EventLog

from . import paths as pathcomp
from .alto import catalog
from .alto import resources as alto
from .view import METRICS, DomainInfo, LinkInfo, View

#: The ALTO cost map the platform ranks with, per metric (delay-ow is in microseconds, RFC 9439).
COSTMAPS = {"routingcost": catalog.COSTMAP_ROUTINGCOST, "hopcount": catalog.COSTMAP_HOPCOUNT,
            "delay-ow": catalog.COSTMAP_DELAY}  # fmt: skip

IBE_TIMEOUT = 2.0
STALE_AFTER = 3  #: failed polls after which a domain's last report is dropped (it offers nothing)
MAX_K = 1000
MAX_CHAIN = 32


class Platform:
    """The platform's state: configured domains and links, what the IBEs last said, overrides."""

    def __init__(self, config: dict[str, Any], log: EventLog) -> None:
        self.config, self.log = config, log
        self.domains_cfg: dict[str, Any] = config["domains"]
        self.links_cfg: list[dict[str, Any]] = config.get("links", [])
        self.metric = config.get("metric", "routingcost")
        self.reports: dict[str, dict[str, Any]] = {d: {} for d in self.domains_cfg}
        self.failures: dict[str, int] = dict.fromkeys(self.domains_cfg, 0)
        self.link_costs: dict[tuple[str, str], float] = {}
        self.intra_costs: dict[str, float] = {}
        self.polled_at = 0.0

    def view(self) -> View:
        domains = {}
        for name, cfg in self.domains_cfg.items():
            report = self.reports.get(name, {})
            pools = report.get("pools", {})
            resources = report.get("resources", {})
            domains[name] = DomainInfo(
                name, dict(cfg.get("subnets", {})), {sf: len(pes) for sf, pes in pools.items()},
                entry_point=f"http+unix://{urllib.parse.quote(cfg.get('ibe', ''), safe='')}/",
                cpu_utilization=float(resources.get("cpu_utilization", 0.0)),
                cpu_cores=int(resources.get("cpu_cores", 0)), memory_mb=float(resources.get("memory_mb", 0.0)),
                intra_cost=self.intra_costs.get(name, 0.0),
            )  # fmt: skip
        return View(domains, [self._link(cfg) for cfg in self.links_cfg])

    def _link(self, cfg: dict[str, Any]) -> LinkInfo:
        a, b = cfg["a"], cfg["b"]
        measured = self.reports.get(a, {}).get("delays", {}).get(b) or self.reports.get(b, {}).get("delays", {}).get(a)
        delay = measured.get("delay_ms") if measured else None
        up = not (measured and measured.get("delay_ms") is None and float(measured.get("loss", 0)) >= 1.0)
        cost = self.link_costs.get(tuple(sorted((a, b))), float(cfg.get("routingcost", 1.0)))  # type: ignore[arg-type]
        return LinkInfo(a, b, cost, delay, up)

    def set_cost(self, a: str, b: str, routingcost: float | None) -> dict[str, Any]:
        for d in (a, b):
            if d not in self.domains_cfg:
                raise ValueError(f"no domain {d!r} (domains: {', '.join(self.domains_cfg)})")
        if a == b:
            target = self.intra_costs
            key: Any = a
        else:
            key = tuple(sorted((a, b)))
            if not any(tuple(sorted((c["a"], c["b"]))) == key for c in self.links_cfg):
                raise ValueError(f"no link between {a} and {b}")
            target = self.link_costs  # type: ignore[assignment]
        if routingcost is None:
            target.pop(key, None)
        elif not math.isfinite(routingcost) or routingcost < 0:
            raise ValueError(f"a routingcost is a finite number, not negative (got {routingcost})")
        else:
            target[key] = float(routingcost)
        self.log("cost-set", a=a, b=b, routingcost=routingcost)
        return {"a": a, "b": b, "routingcost": routingcost}

    async def poll_forever(self, interval: float) -> None:
        while True:
            try:
                await asyncio.gather(*(self._poll(d) for d in self.domains_cfg))
                self.polled_at = time.time()
            except Exception as exc:  # noqa: BLE001 (one odd answer must not end the polling)
                self.log("poll-error", error=repr(exc))
            await asyncio.sleep(interval)

    async def _poll(self, domain: str) -> None:
        sock = self.domains_cfg[domain].get("ibe")
        try:
            if not sock or not Path(sock).exists():
                raise FileNotFoundError(f"no IBE socket {sock}")
            report = await self._fetch(sock)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError, AttributeError) as exc:
            self._failed(domain, repr(exc))
            return
        old = self.reports[domain].get("pools")
        if "pools" not in report and old is not None:  # the registrar did not answer the IBE yet
            report["pools"] = old
        self.failures[domain] = 0
        self.reports[domain] = report
        if old is not None and _counts(old) != _counts(report.get("pools", {})):
            self.log("pools-changed", domain=domain, pools=_counts(report.get("pools", {})))


    @staticmethod
    async def _fetch(sock: str) -> dict[str, Any]:
        report: dict[str, Any] = {}
        connector = aiohttp.UnixConnector(path=sock)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=IBE_TIMEOUT)) as s:
            for part in ("pools", "resources", "delays"):
                async with s.get(f"http://ibe/{part}") as response:
                    if response.status == 200:
                        body = await response.json()
                        if not isinstance(body, dict):
                            raise ValueError(f"/{part}: not a JSON object")
                        report[part] = body.get("pools", {}) if part == "pools" else body
        return report

    def _failed(self, domain: str, error: str) -> None:
        """A domain whose IBE stays silent offers nothing: its instances cannot be confirmed."""
        self.failures[domain] += 1
        if self.failures[domain] == 1:
            self.log("ibe-unreachable", domain=domain, error=error)
        if self.failures[domain] >= STALE_AFTER:
            if self.reports[domain].get("pools"):
                self.log("domain-stale", domain=domain, failed_polls=self.failures[domain])
            self.reports[domain] = {"error": error}
        else:
            self.reports[domain]["error"] = error


def _counts(pools: dict[str, list]) -> dict[str, int]:
    return {sf: len(pes) for sf, pes in sorted(pools.items())}


def paths_json(view: View, chain: list[str], *, ingress: str | None = None, egress: str | None = None,
               exclude: tuple[str, ...] = (), max_cost: float | None = None, k: int = 10,
               metric: str = "routingcost") -> dict[str, Any]:  # fmt: skip
    """Ranked paths for a chain, with each leg's domain route (what the controller installs).

    As the draft has it, the candidates come from the ALTO property map (each domain's
    capabilities) and the costs from the ALTO cost map of the metric: the very documents
    the server serves.  The legs' domain routes are those behind the costs (the path vector's)."""
    candidates = pathcomp.candidates_from_propmap(alto.property_map(view), prop=catalog.PROP_CAPABILITIES)
    for sf in chain:
        candidates.setdefault(sf, [])
    cost = pathcomp.costs_from_costmap(alto.cost_map(view, COSTMAPS[metric]))
    routes = view.costs(metric).route
    for end, name in (("ingress", ingress), ("egress", egress)):
        if name is not None and name not in view.domains:
            raise pathcomp.NoPath(f"unknown {end} domain {name!r} (domains: {', '.join(view.domains)})")
    ranked = pathcomp.rank(chain, candidates, cost, routes, ingress=ingress, egress=egress,
                           exclude=exclude, max_cost=max_cost, k=k)  # fmt: skip
    out = []
    for path in ranked:
        points = [*([ingress] if ingress else []), *(d for _, d in path.hops), *([egress] if egress else [])]
        legs = [routes[a][b] for a, b in zip(points, points[1:])]
        out.append(path.to_json() | {"path": path.describe(), "legs": legs,
                                     "hops": [{"sf": sf, "domain": d} for sf, d in path.hops]})  # fmt: skip
    return {"chain": chain, "ingress": ingress, "egress": egress, "metric": metric, "paths": out}


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(v for v in (value or "").split(",") if v)


def platform_routes(platform: Platform) -> list[web.RouteDef]:
    async def paths(request: web.Request) -> web.Response:
        q = request.query
        chain = list(_split(q.get("chain")))
        if not chain:
            return _error(400, "give the chain: ?chain=SF1,SF2,SF3")
        if len(chain) > MAX_CHAIN:
            return _error(400, f"a chain has at most {MAX_CHAIN} functions")
        if not platform.polled_at:
            return _error(503, "the platform has not heard from the domains yet")
        metric = q.get("metric", platform.metric)
        if metric not in METRICS:
            return _error(400, f"unknown metric {metric!r} (metrics: {', '.join(METRICS)})")
        try:
            k = int(q.get("k", "10"))
            max_cost = float(q["max-cost"]) if "max-cost" in q else None
            if not 1 <= k <= MAX_K or (max_cost is not None and not math.isfinite(max_cost)):
                raise ValueError
        except ValueError:
            return _error(400, f"k is an integer from 1 to {MAX_K} and max-cost a finite number")
        try:
            body = paths_json(platform.view(), chain, ingress=q.get("ingress"), egress=q.get("egress"),
                              exclude=_split(q.get("exclude")), max_cost=max_cost, k=k, metric=metric)  # fmt: skip
        except pathcomp.NoPath as exc:
            return _error(404, str(exc))
        return web.json_response(body)

    async def costs(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            result = platform.set_cost(str(body["a"]), str(body["b"]),
                                       None if body.get("routingcost") is None else float(body["routingcost"]))
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, f"expected {{'a': domain, 'b': domain, 'routingcost': number|null}}: {exc}")
        return web.json_response(result)

    async def view(request: web.Request) -> web.Response:
        v = platform.view()
        return web.json_response({"domains": {n: asdict(d) | {"capabilities": d.capabilities}
                                              for n, d in v.domains.items()},
                                  "links": [asdict(link) for link in v.links], "polled_at": platform.polled_at})

    async def health(request: web.Request) -> web.Response:
        reachable = {d: "error" not in r and bool(r) for d, r in platform.reports.items()}
        return web.json_response({"domains": reachable, "polled_at": platform.polled_at})

    routes = {"/sxp/paths": ("GET", paths), "/sxp/costs": ("POST", costs), "/sxp/view": ("GET", view),
              "/sxp/health": ("GET", health)}  # fmt: skip
    return [web.route(method, path, _authenticated(platform, handler)) for path, (method, handler) in routes.items()]


def _authenticated(platform: Platform, handler: Any) -> Any:
    """The platform's routes take the same HTTP Basic credentials as ALTO (`sfc.auth`)."""
    from .alto.server import authorized

    auth = platform.config.get("auth")
    if not auth:
        return handler
    credentials = tuple(auth.split(":", 1))

    async def checked(request: web.Request) -> web.Response:
        if not authorized(request.headers.get("Authorization"), credentials):  # type: ignore[arg-type]
            return web.json_response({"error": "authentication required"}, status=401,
                                     headers={"WWW-Authenticate": 'Basic realm="sxp"'})  # fmt: skip
        return await handler(request)

    return checked


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def make_app(platform: Platform) -> web.Application:
    from .alto.server import AltoConfig, make_app as alto_app

    auth = platform.config.get("auth")
    config = AltoConfig(base_url=f"http://127.0.0.1:{platform.config['port']}", prefix="/alto",
                        auth=tuple(auth.split(":", 1)) if auth else None)  # type: ignore[arg-type]
    app = alto_app(platform.view, config)
    app.add_routes(platform_routes(platform))
    return app


async def serve(config: dict[str, Any]) -> None:
    log = EventLog(config.get("name", "sxp"))
    platform = Platform(config, log)
    runner = web.AppRunner(make_app(platform))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(config["port"])).start()
    log("listening", port=config["port"], domains=list(platform.domains_cfg))
    poller = asyncio.create_task(platform.poll_forever(float(config.get("poll_interval", 1.0))))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    poller.cancel()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdn.sxp", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        config = json.loads(args.config.read_text())
    except (OSError, ValueError) as exc:
        p.error(f"--config {args.config}: {exc}")
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
