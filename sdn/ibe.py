"""The domain's Information Base Element (draft-lachos-multi-domain-sfc-alto §5.1).

    python -m sdn.ibe --config FILE        # in the domain's gateway namespace

"Every domain has a local Information Base Element": what the domain offers (its pools, one per
service function), where they are (a pool's PEs), what it has left (CPU and memory of its hosts)
and how far its neighbours are (delay over the gateway links).  The IBE is a pool user of its
domain's registrar (ASAP), measures the rest itself, and answers the SFC platform and the
steering controller over HTTP on a Unix socket: a file, reachable from the root namespace
although the IBE's network is the gateway's (the API is the "IBE HTTP API" of docs/sfc.md).

Everything slow happens in the background (pools every `poll_interval`, hosts every
`poll_interval`, neighbours every `probe_interval`) and requests get the cached result, so a
client never waits for a registrar or a ping, except for a first answer and for /resolve,
which is live: the registrar's pool policy chooses, so it must be asked each time.

Config: the node keys of `nodes.node` (flags such as --backend work) plus
`"ibe": {"socket", "handles", "hosts": {host: pid}, "neighbours": {domain: address},
"poll_interval", "probe_interval"}`; `--socket`, `--poll-interval`, `--probe-interval` and
`--timeout` override them.  Events are JSON lines on stdout, like the other nodes'.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from nodes import node
from nodes.pu.core import PoolUserOptions, Resolution
from nodes.registrars import RegistrarAddress
from nodes.runtime import EventLog
from nodes.wire import PoolElement
from nodes.wire.params import SctpTransport, TcpTransport, Transport
from nodes.wire.policies import Policy, PolicyType
from sdn import ibe_resources
from sdn.ibe_resources import SocketBusy, release_socket, serve_unix

ALL_ITEMS = 255  #: PEs asked for when listing a pool (the registrar caps it at 128)
MAX_HANDLE_BYTES = 32  #: the registrar's limit (nodes.registrar.handlespace)
MAX_BODY = 64 * 1024  #: bytes of a request body; more is 413
DEFAULTS = {"poll_interval": 1.0, "probe_interval": 5.0, "timeout": 2.0}


class ConfigError(ValueError):
    """The config cannot be served: said once, clearly, before anything starts."""


# -- config ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IbeSettings:
    domain: str
    socket: Path
    handles: tuple[str, ...]
    hosts: dict[str, int | None] = field(default_factory=dict)  #: host -> pid in its namespace
    neighbours: dict[str, str] = field(default_factory=dict)  #: domain -> its gateway's address
    poll_interval: float = 1.0
    probe_interval: float = 5.0
    timeout: float = 2.0  #: s to wait for a registrar's answer


def settings(config: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> IbeSettings:
    """The IBE's settings from the testbed's config; `overrides` (flags, None: not given) win."""
    section = config.get("ibe", {})
    if not isinstance(section, Mapping):
        raise ConfigError('"ibe" must be an object')
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    merged = {**DEFAULTS, **section, **given}
    domain = config.get("domain")
    if not isinstance(domain, str) or not domain:
        raise ConfigError('"domain" must be a non-empty string')
    return IbeSettings(
        domain=domain, socket=_socket_path(merged.get("socket")), handles=_handles(merged.get("handles", [])),
        hosts=_hosts(merged.get("hosts", {})), neighbours=_neighbours(merged.get("neighbours", {})),
        poll_interval=_positive(merged, "poll_interval"), probe_interval=_positive(merged, "probe_interval"),
        timeout=_positive(merged, "timeout"),
    )  # fmt: skip


def check_handle(value: object) -> str:
    """A pool handle the registrar accepts (1 to 32 bytes of UTF-8); anything else would fail
    to encode inside the pool user and leave its request waiting for nothing."""
    if not isinstance(value, str) or not 1 <= len(value.encode()) <= MAX_HANDLE_BYTES:
        raise ValueError(f"a pool handle is a string of 1 to {MAX_HANDLE_BYTES} bytes, not {value!r:.60}")
    return value


def _socket_path(value: object) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError('"ibe.socket" (or --socket) must name the Unix socket to serve on')
    if len(value.encode()) > 107:  # sun_path is 108 bytes with the NUL
        raise ConfigError(
            f"socket path too long for a Unix socket ({len(value.encode())} > 107 bytes): {value}"
        )
    return Path(value)


def _handles(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError('"ibe.handles" must be a list of pool handles')
    try:
        return tuple(dict.fromkeys(check_handle(h) for h in value))
    except ValueError as exc:
        raise ConfigError(f"ibe.handles: {exc}") from None


def _hosts(value: object) -> dict[str, int | None]:
    """host -> pid; a pid may also come as {"pid": n} (the monitor's format) or null (not up)."""
    if not isinstance(value, Mapping):
        raise ConfigError('"ibe.hosts" must map host names to pids')
    hosts: dict[str, int | None] = {}
    for name, pid in value.items():
        if isinstance(pid, Mapping):
            pid = pid.get("pid")
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0):
            raise ConfigError(f"ibe.hosts.{name}: a pid is a positive integer, not {pid!r}")
        hosts[str(name)] = pid
    return hosts


def _neighbours(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError('"ibe.neighbours" must map domains to gateway addresses')
    try:
        return {str(d): str(ipaddress.ip_address(a)) for d, a in value.items()}
    except ValueError as exc:
        raise ConfigError(f"ibe.neighbours: {exc}") from None


def _positive(merged: Mapping[str, Any], key: str) -> float:
    try:
        value = float(merged[key])
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number, not {merged[key]!r}") from None
    if not 0 < value < 3600:
        raise ConfigError(f"{key} must be > 0 s and < 1 h, not {value:g}")
    return value


# -- what the registrar says, as JSON -------------------------------------------------------------


def transport_name(transport: Transport) -> str:
    if isinstance(transport, SctpTransport):
        return "sctp"
    if isinstance(transport, TcpTransport):
        return "tcp"
    return type(transport).__name__.removesuffix("Transport").lower()


def policy_name(policy: Policy) -> str:
    """The topology's spelling (`round-robin`, `least-used`), not RSPLIB's `RR`."""
    try:
        return PolicyType(policy.policy_type).name.lower().replace("_", "-")
    except ValueError:
        return f"0x{int(policy.policy_type):08x}"


def pe_json(pe: PoolElement) -> dict[str, Any]:
    t = pe.user_transport
    return {"pe_id": pe.identifier, "addresses": [str(a) for a in t.addresses], "port": t.port,
            "transport": transport_name(t), "policy": policy_name(pe.policy)}  # fmt: skip


def outcome(resolution: Resolution) -> str:
    """ok, empty (no PE, or a pool the registrar does not know: its pools exist while they
    have PEs), unreachable (no registrar answered in time) or error (an ASAP error cause)."""
    if resolution.error is None:
        return "ok" if resolution.pool_elements else "empty"
    if "UNKNOWN_POOL_HANDLE" in resolution.error:
        return "empty"
    return "unreachable" if resolution.error.startswith("timeout") else "error"


def pool_listing(resolution: Resolution) -> list[dict[str, Any]]:
    """A pool's PEs by id: the registrar lists them in selection order, which turns with every
    resolution and would make an unchanged pool look changed."""
    return [pe_json(pe) for pe in sorted(resolution.pool_elements, key=lambda p: p.identifier)]


def parse_report(body: bytes) -> tuple[str, int]:
    """(handle, pe_id) of a POST /unreachable body; ValueError says what is wrong with it."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError('the body must be JSON: {"handle": "SF1", "pe_id": 123}') from None
    if not isinstance(data, dict):
        raise ValueError('the body must be a JSON object: {"handle": "SF1", "pe_id": 123}')
    handle = check_handle(data.get("handle"))
    pe_id = data.get("pe_id")
    if isinstance(pe_id, bool) or not isinstance(pe_id, int) or not 0 <= pe_id <= 0xFFFFFFFF:
        raise ValueError(f"pe_id must be an integer from 0 to 2**32-1, not {pe_id!r:.40}")
    return handle, pe_id


# -- the IBE's state ------------------------------------------------------------------------------


class Resolver(Protocol):
    """What the IBE needs of `nodes.pu.session.PoolUser` (a fake in the unit tests)."""

    async def resolve(self, handle: bytes, items: int | None = None) -> Resolution: ...
    def report_unreachable(self, handle: bytes, pe_id: int) -> None: ...


class Ibe:
    """The caches the background loops fill, and the answers built from them."""

    def __init__(self, config: IbeSettings, pu: Resolver, log: EventLog, *, connected: Callable[[], bool],
                 sampler: ibe_resources.HostSampler | None = None,
                 prober: Callable[[str], Awaitable[dict[str, Any]]] = ibe_resources.ping) -> None:  # fmt: skip
        self.config, self.pu, self.log, self.connected = config, pu, log, connected
        self.sampler = sampler if sampler is not None else ibe_resources.HostSampler(config.hosts)
        self.prober = prober
        self.started = time.monotonic()
        self.pools: dict[str, list[dict[str, Any]]] | None = None
        self.pools_at = 0.0
        self.answered: bool | None = None  #: did the registrar answer the last poll (None: none yet)
        self.resources: dict[str, Any] | None = None
        self.delays: dict[str, dict[str, Any]] = {}
        self.ready = {k: asyncio.Event() for k in ("pools", "resources", "delays")}
        self._samples = 0

    # -- the registrar ----------------------------------------------------------------------

    async def resolve(self, handle: str, items: int) -> Resolution:
        """A resolution that ends in any case: the pool user times out itself, this bounds a
        request that its core could not even send."""
        try:
            return await asyncio.wait_for(self.pu.resolve(handle.encode(), items), self.config.timeout + 1)
        except TimeoutError:
            return Resolution(handle.encode(), error="timeout: the pool user did not answer")

    async def poll_pools(self) -> None:
        """Every handle at once; a snapshot only from a poll the registrar answered in full,
        else the previous one stays (its `measured_at` shows its age)."""
        results = await asyncio.gather(*(self.resolve(h, ALL_ITEMS) for h in self.config.handles))
        kinds = [outcome(r) for r in results]
        self._registrar_state("unreachable" not in kinds)
        if "unreachable" in kinds:
            return
        for handle, kind, r in zip(self.config.handles, kinds, results):
            if kind == "error":
                self.log("resolution-error", handle=handle, error=r.error)
        pools = {h: pool_listing(r) for h, r in zip(self.config.handles, results)}
        if pools != self.pools:
            self.log("pools", **{h: [pe["pe_id"] for pe in pes] for h, pes in pools.items()})
        self.pools, self.pools_at = pools, time.time()
        self.ready["pools"].set()

    def _registrar_state(self, answered: bool) -> None:
        if answered != self.answered:
            self.log("registrar-answering" if answered else "registrar-silent")
        self.answered = answered

    def registrar_ok(self) -> bool:
        return self.connected() and self.answered is not False

    # -- hosts and neighbours ---------------------------------------------------------------

    async def sample_hosts(self) -> None:
        """The first sample only sets the CPU baseline: ready from the second one on."""
        sample = await asyncio.to_thread(self.sampler.sample)
        self._samples += 1
        if self._samples >= 2:
            self.resources = sample
            self.ready["resources"].set()

    async def probe_neighbours(self) -> None:
        names = list(self.config.neighbours)
        entries = await asyncio.gather(*(self.prober(self.config.neighbours[n]) for n in names))
        for name, entry in zip(names, entries):
            before = self.delays.get(name, {}).get("delay_ms", 0.0)
            if (before is None) != (entry["delay_ms"] is None):
                self.log("neighbour-unreachable" if entry["delay_ms"] is None else "neighbour-reachable",
                         domain=name, address=self.config.neighbours[name], loss=entry["loss"])  # fmt: skip
            self.delays[name] = entry
        self.ready["delays"].set()

    # -- life -------------------------------------------------------------------------------

    def start(self) -> list[asyncio.Task[None]]:
        c = self.config
        loops = [("pools", self.poll_pools, c.poll_interval), ("hosts", self.sample_hosts, c.poll_interval),
                 ("delays", self.probe_neighbours, c.probe_interval)]  # fmt: skip
        return [asyncio.create_task(self._every(n, step, i), name=f"ibe-{n}") for n, step, i in loops]

    async def _every(self, name: str, step: Callable[[], Awaitable[None]], interval: float) -> None:
        """`step` every `interval` s, from its start (no pile-up when a step is slow); a failing
        step is logged and the loop goes on: a bad round must not end the IBE."""
        loop = asyncio.get_running_loop()
        while True:
            begun = loop.time()
            try:
                await step()
            except Exception as exc:
                self.log("internal-error", loop=name, error=repr(exc))
            await asyncio.sleep(max(0.0, begun + interval - loop.time()))

    async def wait(self, what: str, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.ready[what].wait(), timeout)
        except TimeoutError:
            pass
        return self.ready[what].is_set()

    def gauges(self) -> dict[str, float]:
        return {"ibe_registrar_ok": float(self.registrar_ok()), "ibe_pools": float(len(self.pools or {})),
                "ibe_pool_elements": float(sum(len(p) for p in (self.pools or {}).values()))}  # fmt: skip


# -- HTTP -----------------------------------------------------------------------------------------


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def application(ibe: Ibe) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_json_errors(ibe.log)])
    handlers = Handlers(ibe)
    app.router.add_get("/pools", handlers.pools)
    app.router.add_get("/resolve", handlers.resolve)
    app.router.add_post("/unreachable", handlers.unreachable)
    app.router.add_get("/resources", handlers.resources)
    app.router.add_get("/delays", handlers.delays)
    app.router.add_get("/health", handlers.health)
    return app


def _json_errors(log: EventLog) -> Any:
    """Every error as JSON (aiohttp's own 404, 405 and 413 too); a handler's bug is a 500 and
    an event, never the end of the server."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:  # fmt: skip
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = error(exc.status, exc.reason or "error", path=request.path[:200])
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        except Exception as exc:
            log("internal-error", path=request.path[:200], error=repr(exc))
            return error(500, "internal error", path=request.path[:200])

    return middleware


class Handlers:
    def __init__(self, ibe: Ibe) -> None:
        self.ibe = ibe
        self.domain = ibe.config.domain

    async def pools(self, request: web.Request) -> web.Response:
        ibe = self.ibe
        if not await ibe.wait("pools", ibe.config.timeout + 1):
            return error(503, "no answer from the registrar yet", registrar="unreachable")
        return web.json_response({"domain": self.domain, "measured_at": round(ibe.pools_at, 3), "pools": ibe.pools,
                                  "registrar": "ok" if ibe.registrar_ok() else "unreachable"})  # fmt: skip

    async def resolve(self, request: web.Request) -> web.Response:
        try:
            handle = check_handle(request.query.get("handle"))
        except ValueError as exc:
            return error(400, f"GET /resolve?handle=SF1: {exc}")
        resolution = await self.ibe.resolve(handle, 1)
        kind = outcome(resolution)
        if kind == "ok":
            return web.json_response({"handle": handle, "pe": pe_json(resolution.pool_elements[0])})
        if kind == "empty":
            return error(404, f"no pool element in pool {handle}", handle=handle)
        if kind == "unreachable":
            return error(503, f"registrar unreachable: {resolution.error}", handle=handle)
        return error(502, f"the registrar answered with an error: {resolution.error}", handle=handle)

    async def unreachable(self, request: web.Request) -> web.Response:
        try:
            handle, pe_id = parse_report(await request.read())
        except ValueError as exc:
            return error(400, str(exc))
        self.ibe.pu.report_unreachable(handle.encode(), pe_id)
        return web.Response(status=204)

    async def resources(self, request: web.Request) -> web.Response:
        ibe = self.ibe
        if not await ibe.wait("resources", 2 * ibe.config.poll_interval + 2):
            return error(503, "the hosts have not been measured yet")
        return web.json_response(ibe.resources)

    async def delays(self, request: web.Request) -> web.Response:
        """The latest probe per neighbour; the first request may wait for the first burst."""
        await self.ibe.wait(
            "delays", ibe_resources.PING_COUNT * ibe_resources.PING_GAP + ibe_resources.PING_WAIT + 4
        )
        return web.json_response(self.ibe.delays)

    async def health(self, request: web.Request) -> web.Response:
        ibe = self.ibe
        return web.json_response({"domain": self.domain, "registrar": "ok" if ibe.registrar_ok() else "unreachable",
                                  "uptime": round(time.monotonic() - ibe.started, 3)})  # fmt: skip


# -- the program ----------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = node.base_parser("python -m sdn.ibe", "Information Base Element of a domain (HTTP on a Unix socket)")
    p.add_argument("--socket", help="Unix socket to serve on (default: the config's ibe.socket)")
    p.add_argument("--poll-interval", type=float, help="s between pool and host samples (default 1)")
    p.add_argument(
        "--probe-interval", type=float, help="s between delay probes of the neighbours (default 5)"
    )
    p.add_argument("--timeout", type=float, help="s to wait for a registrar's answer (default 2)")
    return p


def pool_user_options(args: argparse.Namespace, config: Mapping[str, Any], timeout: float) -> PoolUserOptions:
    registrars = tuple(RegistrarAddress(tuple(r["addresses"]), int(r.get("port", 3863)))
                       for r in config.get("registrars", []))  # fmt: skip
    return PoolUserOptions(
        registrars=registrars, sctp=args.backend not in ("tcp", "mptcp"), request_timeout=timeout
    )


async def main(argv: Sequence[str] | None = None) -> int:
    args, config = node.parse(parser(), argv)
    log = EventLog(args.name)
    try:
        conf = settings(config, {"socket": args.socket, "poll_interval": args.poll_interval,
                                 "probe_interval": args.probe_interval, "timeout": args.timeout})  # fmt: skip
        options = pool_user_options(args, config, conf.timeout)
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        log("config-error", error=str(exc))
        print(f"python -m sdn.ibe: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # first: a signal during start-up still cleans up
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    return await serve(conf, options, args, config, log, stop)


async def serve(conf: IbeSettings, options: PoolUserOptions, args: argparse.Namespace,
                config: Mapping[str, Any], log: EventLog, stop: asyncio.Event) -> int:  # fmt: skip
    from nodes.pu.session import PoolUser  # the transports load here, after the config is known good
    from nodes.transport.multicast import MulticastConfig

    async with PoolUser(options, log, backend=args.backend, transport_options=node.transport_options(args),
                        local=tuple(args.local)) as pu:  # fmt: skip
        if args.interface and not options.registrars:  # no registrar configured: hear their announces
            assert pu.driver is not None
            await pu.driver.join(MulticastConfig.parse("239.0.0.50:3863", tuple(args.interface)))
        ibe = Ibe(conf, pu, log, connected=lambda: pu.core.registrar is not None)
        node.serve_metrics(args.metrics_port, log, lambda: pu.core.gauges() | ibe.gauges())
        tasks = ibe.start()
        runner = web.AppRunner(application(ibe), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            inode = await serve_unix(runner, conf.socket)
        except (SocketBusy, OSError) as exc:
            log("socket-unavailable", socket=str(conf.socket), error=str(exc))
            await _stop(runner, tasks)
            return 1
        log("listening", socket=str(conf.socket), domain=conf.domain, handles=list(conf.handles),
            hosts=sorted(conf.hosts), neighbours=conf.neighbours, registrars=[str(r) for r in options.registrars])  # fmt: skip
        try:
            await stop.wait()
        finally:
            release_socket(conf.socket, inode)  # first: a client sees the IBE gone at once
            await _stop(runner, tasks)
    log("stopped")
    return 0


async def _stop(runner: web.AppRunner, tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await runner.cleanup()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
