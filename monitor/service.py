"""The monitor process: live metrics of the testbed's hosts, and queries over the nested VNFFG.

`python -m monitor --config FILE` (the testbed starts it for a `monitor` process) or by hand
with `--vnffg FILE --host NAME=PID[,ADDR] ...`.  It samples every host's CPU each interval and
probes the delays that queries ask for (`monitor.collectors`), keeps them in a store with a
freshness window (`monitor.tsdb`), and answers over HTTP, on its TCP port inside its host and
on a Unix socket beside the run's control socket that `testbed query` reaches from the root
namespace:

    GET  /query?q=max_cpu+NF1                 the answer tuples, as JSON
    POST /query  {"query": ..., "program": ...} with rules of the caller's own
    GET  /templates   GET /facts   GET /metrics (Prometheus text)   GET /health
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from aiohttp import web

from monitor.collectors import CPU_METRIC, DELAY_METRIC, Collector
from monitor.engine import EngineError
from monitor.exposition import render
from monitor.parser import ParseError
from monitor.query import Answerer, QueryError
from monitor.tsdb import Store
from monitor.tosca import load_any as load_vnffg

ROOT = Path(__file__).resolve().parents[1]
PROBE_TIMEOUT = 3.0  #: s a query waits for a delay never measured before


class LiveMetrics:
    """`Metrics` over the store; a delay never measured is probed once, on demand."""

    def __init__(self, store: Store, collector: Collector) -> None:
        self.store, self.collector = store, collector

    def cpu(self, host: str) -> float | None:
        sample = self.store.latest(CPU_METRIC, (host,))
        return sample.value if sample else None

    def delay(self, src: str, dst: str) -> float | None:
        if src == dst:
            return 0.0
        sample = self.store.latest(DELAY_METRIC, (src, dst))
        if sample is None and src in self.collector.hosts and dst in self.collector.hosts:
            sample = self.collector.probe_now(src, dst, timeout=PROBE_TIMEOUT)
        return sample.value if sample else None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m monitor", description="Recursive monitoring of the testbed's VNFFG")
    p.add_argument("--config", type=Path, help="JSON config written by the testbed")
    p.add_argument("--vnffg", help="nested VNFFG file (YAML or TOSCA); default: the config's")
    p.add_argument("--port", type=int, help="HTTP port (default: the config's, else 9100)")
    p.add_argument("--socket", help="also serve on this Unix socket (default: the config's)")
    p.add_argument("--host", action="append", default=[], metavar="NAME=PID[,ADDR]", help="a host to measure")
    p.add_argument("--interval", type=float, default=1.0, help="s between CPU samples")
    p.add_argument("--freshness", type=float, default=10.0, help="s a measurement stays usable")
    p.add_argument("--program", type=Path, help="rules of your own, added to every query")
    return p


def settings(args: argparse.Namespace) -> dict[str, Any]:
    config = json.loads(args.config.read_text()) if args.config else {}
    spec = config.get("spec", {})
    options = spec.get("options", {})
    hosts = {name: (h.get("pid"), (h.get("addresses") or [None])[0]) for name, h in config.get("hosts", {}).items()}
    for text in args.host:
        name, _, rest = text.partition("=")
        pid, _, address = rest.partition(",")
        hosts[name] = (int(pid), address or None)
    vnffg = args.vnffg or options.get("vnffg") or spec.get("vnffg")
    if not vnffg:
        raise SystemExit("monitor: no VNFFG: give --vnffg FILE (or `vnffg:` in the topology's monitor process)")
    path = Path(vnffg)
    if not path.is_absolute() and not path.exists():
        path = ROOT / path
    return {"vnffg": path, "hosts": hosts, "port": args.port or spec.get("port") or 9100,
            "socket": args.socket or config.get("socket"), "interval": float(options.get("interval", args.interval)),
            "freshness": float(options.get("freshness", args.freshness))}  # fmt: skip


def application(answerer: Answerer, store: Store) -> web.Application:
    async def query(request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                return _error(400, "the body must be JSON: {\"query\": ..., \"program\": ...}")
            text, program = str(body.get("query", "")), str(body.get("program", ""))
        else:
            text, program = request.query.get("q", ""), request.query.get("program", "")
        if not text.strip():
            return _error(400, "no query: GET /query?q=max_cpu+NF1")
        try:
            answer = await asyncio.to_thread(answerer.answer, text, program)
        except ParseError as exc:
            return _error(400, f"parse error: {exc}")
        except (QueryError, EngineError) as exc:
            return _error(422, str(exc))
        return web.json_response(answer.to_json())

    async def templates(request: web.Request) -> web.Response:
        lib = answerer.templates
        return web.json_response({n: {"description": lib.get(n).description, "rules": lib.get(n).rules}  # type: ignore[union-attr]
                                  for n in lib.names()})  # fmt: skip

    async def facts(request: web.Request) -> web.Response:
        return web.Response(text="".join(f"{f}\n" for f in answerer.facts), content_type="text/plain")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=render(store).encode(), content_type="text/plain", charset="utf-8")

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "facts": len(answerer.facts), "metrics": store.metrics()})

    app = web.Application()
    app.router.add_route("*", "/query", query)
    app.router.add_get("/templates", templates)
    app.router.add_get("/facts", facts)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    return app


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def run(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    config = settings(args)
    vnffg = load_vnffg(config["vnffg"])
    store = Store(freshness=config["freshness"])
    hosts = {name: pid for name, (pid, _) in config["hosts"].items() if pid}
    addresses = {name: address for name, (_, address) in config["hosts"].items() if address}
    collector = Collector(store, hosts, addresses, interval=config["interval"]).start()
    program = args.program.read_text() if args.program else ""
    answerer = Answerer(vnffg.facts(), LiveMetrics(store, collector), host_of=vnffg.host_of, program=program)
    runner = web.AppRunner(application(answerer, store), access_log=None)
    await runner.setup()
    sites = [web.TCPSite(runner, "0.0.0.0", config["port"])]
    if config["socket"]:
        Path(config["socket"]).unlink(missing_ok=True)
        sites.append(web.UnixSite(runner, config["socket"]))
    for site in sites:
        await site.start()
    print(json.dumps({"event": "listening", "port": config["port"], "socket": config["socket"],
                      "hosts": sorted(hosts), "facts": len(answerer.facts)}), flush=True)  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        collector.stop()
        await runner.cleanup()
        if config["socket"]:
            Path(config["socket"]).unlink(missing_ok=True)
    return 0
