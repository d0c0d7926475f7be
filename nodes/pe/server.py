"""The pool element process: `PoolElementCore` towards registrars, `ServiceCore` towards PUs.

Two drivers share one event loop: one for the registrar side (ASAP over its own
associations, announces heard on the ASAP group), one for the service's listener on the
user transport.  The registrar side listens on an ASAP port and connects to registrars from
it, so that a registrar taking the PE over reaches it at its registrator transport (the
address and port it registered from).  Every second the process measures its own CPU use
(process time over wall time) and hands it to the core as its load, which re-registers when
the load moved under an adaptive policy.  SIGTERM deregisters before exiting; SIGKILL, of
course, does not.

The service `forwarder` also runs the SF data plane (nodes/pe/forwarder.py) on every
interface of the node (--interface, default: the config's), stamping probes with the PE's
name.  Its raw sockets open before the PE registers: an SF that cannot forward must not
enter the pool.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

from nodes import node
from nodes.cookie import CookieSealer
from nodes.pe.core import PoolElementCore, PoolElementOptions
from nodes.pe.forwarder import Forwarder, ForwarderError
from nodes.pe.policy import make_policy
from nodes.pe.service import SERVICES, ServiceCore
from nodes.registrars import RegistrarAddress
from nodes.runtime import Driver, EventLog
from nodes.transport import TransportError
from nodes.transport.multicast import MulticastConfig

ASAP_PORTS = (20000, 59999)  #: where a random ASAP port is chosen
ASAP_PORT_ATTEMPTS = 20  #: random ports tried before giving up


def parser() -> argparse.ArgumentParser:
    p = node.base_parser("python -m nodes.pe", "RSerPool pool element (ASAP, RFC 5352) running a service")
    p.add_argument("--handle", help="pool handle (default: the config's)")
    p.add_argument("--policy", help="pool policy, e.g. round-robin, least-used, LUD (default: the config's)")
    p.add_argument("--weight", type=int, help="weight (WRR, WRAND, WRAND-DPF)")
    p.add_argument("--priority", type=int, default=0, help="priority (PRIO)")
    p.add_argument("--load", type=float, default=0.0, help="initial load, fraction (least-used family)")
    p.add_argument("--load-degradation", type=float, default=0.0, help="fraction (LUD, PLU, ...)")
    p.add_argument("--load-dpf", type=float, default=0.0, help="fraction (LU-DPF, LUD-DPF)")
    p.add_argument("--weight-dpf", type=float, default=0.0, help="fraction (WRAND-DPF)")
    p.add_argument("--fixed-load", action="store_true", help="report --load, not the measured CPU load")
    p.add_argument("--service", choices=SERVICES, help="service (default: the config's, else echo)")
    p.add_argument("--port", type=int, default=0, help="user transport port (0: random in 10000-59999)")
    p.add_argument("--asap-port", type=int, default=0,
                   help="ASAP port: listened on and registrars connected from (0: a free random one in 20000-59999)")  # fmt: skip
    p.add_argument("--pe-id", type=lambda s: int(s, 0), default=None, help="PE identifier (default: random)")
    p.add_argument("--registrar", action="append", default=[], metavar="ADDR[,ADDR]:PORT",
                   help="static registrar (repeatable); default: the config's registrars")  # fmt: skip
    p.add_argument("--prefer-registrar", metavar="NAME", help="try this registrar of the config first (by name)")
    p.add_argument("--reregistration-interval", type=float, default=30.0, help="s (registration life: 3x)")
    p.add_argument("--pool-secret", default=None, help="secret that seals cookies (default: the config's)")
    p.add_argument("--cookie-every", type=int, default=1, help="send a cookie after every N replies (0: never)")
    p.add_argument("--load-interval", type=float, default=1.0, help="s between load measurements")
    p.add_argument("--announce-group", default="239.0.0.50:3863", help="group:port of SERVER_ANNOUNCEs")
    return p


def options_from(args: argparse.Namespace, config: dict[str, Any]) -> tuple[PoolElementOptions, str, bytes]:
    spec = config.get("spec", {})
    handle = (args.handle or spec.get("handle") or "EchoPool").encode()
    weight = args.weight if args.weight is not None else spec.get("weight")
    policy = make_policy(
        args.policy or spec.get("policy") or "round-robin", weight=weight if weight is not None else 1,
        priority=args.priority, load=args.load, load_degradation=args.load_degradation,
        load_dpf=args.load_dpf, weight_dpf=args.weight_dpf,
    )  # fmt: skip
    secret = args.pool_secret or config.get("pool_secret") or ""
    listed = sorted(config.get("registrars", []), key=lambda r: r.get("name") != args.prefer_registrar)
    if args.prefer_registrar and not any(r.get("name") == args.prefer_registrar for r in listed):
        raise ValueError(f"--prefer-registrar {args.prefer_registrar}: no such registrar in the config")
    registrars = [node.parse_endpoint(r, 3863) for r in args.registrar] or [
        (tuple(r["addresses"]), int(r.get("port", 3863))) for r in listed
    ]
    options = PoolElementOptions(
        pool_handle=handle,
        pe_id=args.pe_id if args.pe_id is not None else random.randint(1, 0xFFFFFFFE),
        policy=policy,
        user_addresses=tuple(args.local),
        user_port=args.port or random.randint(10000, 59999),
        sctp=args.backend not in ("tcp", "mptcp"),
        control_channel=args.cookie_every > 0 and bool(secret),
        registrars=tuple(RegistrarAddress(a, p) for a, p in registrars),
        reregistration_interval=args.reregistration_interval,
    )
    service = args.service or spec.get("service") or "echo"
    return options, service, secret.encode()


async def run(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args, config = node.parse(p, argv)
    try:
        options, service, secret = options_from(args, config)
    except ValueError as exc:
        p.error(str(exc))
    if args.asap_port and args.asap_port == options.user_port:
        p.error(f"--asap-port {args.asap_port} is the user transport port")
    log = EventLog(args.name)
    core = PoolElementCore(options)
    # No secret, no cookies: a made-up default would let any pool user forge them.
    sealer = CookieSealer(secret, options.pool_handle) if args.cookie_every > 0 and secret else None
    if sealer is None and args.cookie_every > 0:
        log("cookies-off", reason="no pool secret: give --pool-secret (the testbed gives one per pool)")
    transport_options = node.transport_options(args)
    control = Driver(core, log, backend=args.backend, options=transport_options, local=args.local,
                     connect_port=args.asap_port or _random_asap_port(options.user_port))  # fmt: skip

    services = ServiceCore(
        service, options.pe_id, sealer, cookie_every=max(1, args.cookie_every),
        card=lambda: (options.pool_handle, core.policy, core.pool_mates),
        on_session=lambda: control.call("refresh_mates", control.now()),  # the next card has the answer
    )  # fmt: skip
    data = Driver(services, log, backend=args.backend, options=transport_options, local=args.local)
    sf = Forwarder(args.name, args.interface, log) if service == "forwarder" else None
    try:
        if sf is not None:
            try:
                sf.start()
            except ForwarderError as exc:
                log("sf-unavailable", error=str(exc))
                print(f"{p.prog}: forwarder: {exc}", file=sys.stderr)
                return 1
        await data.listen(args.local, options.user_port)
        await _listen_asap(control, args.local, chosen=bool(args.asap_port), user_port=options.user_port)
        if args.interface:
            await control.join(MulticastConfig.parse(args.announce_group, tuple(args.interface)))
        log("listening", addresses=args.local, port=options.user_port, asap_port=control.connect_port,
            service=service, backend=args.backend)  # fmt: skip
        node.serve_metrics(args.metrics_port, log, lambda: core.gauges() | services.gauges() | _sf_gauges(sf))
        control.execute(core.start(control.now()))
        measure = None if args.fixed_load else asyncio.create_task(_measure_load(control, args.load_interval))
        await node.until_signalled()
        if measure:
            measure.cancel()
        control.execute(core.shutdown(control.now()))
        await _wait_finished(core, options.deregistration_timeout + 0.5)
        await control.flush()
    finally:
        if sf is not None:
            sf.stop()
        await data.close()
        await control.close()
    return 0


def _sf_gauges(sf: Forwarder | None) -> dict[str, float]:
    return sf.gauges() if sf is not None else {}


def _random_asap_port(user_port: int) -> int:
    while (port := random.randint(*ASAP_PORTS)) == user_port:
        pass
    return port


async def _listen_asap(control: Driver, local: Sequence[str], *, chosen: bool, user_port: int) -> None:
    """Listen on the control driver's `connect_port`, the port it connects to registrars from.
    A random one that is taken is replaced by another (a port given by flag is not): the
    registrar taking the PE over must find this PE, not another process, at that port."""
    for attempt in range(1, ASAP_PORT_ATTEMPTS + 1):
        try:
            await control.listen(local, control.connect_port)
            return
        except TransportError:
            if chosen or attempt == ASAP_PORT_ATTEMPTS:
                raise
            control.connect_port = _random_asap_port(user_port)


async def _measure_load(driver: Driver, interval: float) -> None:
    """CPU time used / wall time elapsed, per interval: the load the policies see."""
    cpu, wall = time.process_time(), time.monotonic()
    while True:
        await asyncio.sleep(interval)
        cpu2, wall2 = time.process_time(), time.monotonic()
        fraction = min(1.0, (cpu2 - cpu) / max(1e-6, wall2 - wall))
        cpu, wall = cpu2, wall2
        driver.call("set_load", fraction, driver.now())


async def _wait_finished(core: PoolElementCore, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not core.finished and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
