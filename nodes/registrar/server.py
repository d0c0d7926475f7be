"""The registrar process: `RegistrarCore` on real associations and the announce group."""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence

from nodes import node
from nodes.registrar.core import RegistrarCore, RegistrarOptions
from nodes.runtime import Driver, EventLog
from nodes.transport.multicast import MulticastConfig


def parser() -> argparse.ArgumentParser:
    p = node.base_parser("python -m nodes.registrar", "RSerPool registrar (ASAP, RFC 5352)")
    p.add_argument("--port", type=int, default=3863, help="ASAP port (default 3863)")
    p.add_argument("--server-id", type=lambda s: int(s, 0), default=None, help="default: random")
    p.add_argument("--keepalive-interval", type=float, default=5.0, help="s between keep-alives to each PE")
    p.add_argument("--keepalive-timeout", type=float, default=5.0, help="s to wait for a keep-alive ACK")
    p.add_argument("--max-bad-pe-reports", type=int, default=3, help="unreachability reports that remove a PE")
    p.add_argument("--max-hres-items", type=int, default=3, help="PEs per handle resolution, unless asked")
    p.add_argument("--max-increment", type=int, default=0, help="selection state advances (0: policy default)")
    p.add_argument("--announce-cycle", type=float, default=1.0, help="s between SERVER_ANNOUNCEs")
    p.add_argument("--no-announce", action="store_true", help="send no SERVER_ANNOUNCE")
    p.add_argument("--announce-group", default="239.0.0.50:3863", help="multicast group:port for announces")
    return p


def options_from(args: argparse.Namespace) -> RegistrarOptions:
    return RegistrarOptions(
        server_id=args.server_id if args.server_id is not None else random.randint(1, 0xFFFFFFFF),
        keepalive_interval=args.keepalive_interval,
        keepalive_timeout=args.keepalive_timeout,
        max_bad_pe_reports=args.max_bad_pe_reports,
        max_hres_items=args.max_hres_items,
        max_increment=args.max_increment,
        announce_cycle=args.announce_cycle,
        announce=not args.no_announce and bool(args.interface),
        asap_port=args.port,
        asap_addresses=tuple(args.local),
        sctp=args.backend not in ("tcp", "mptcp"),
    )


async def run(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args, _config = node.parse(p, argv)
    try:
        options = options_from(args)
    except ValueError as exc:
        p.error(str(exc))
    log = EventLog(args.name)
    core = RegistrarCore(options)
    driver = Driver(core, log, backend=args.backend, options=node.transport_options(args), local=args.local)
    try:
        await driver.listen(args.local, args.port)
        if options.announce:
            await driver.join(MulticastConfig.parse(args.announce_group, tuple(args.interface)))
        log("listening", addresses=args.local, port=args.port, backend=args.backend,
            announce=options.announce, interfaces=args.interface)  # fmt: skip
        node.serve_metrics(args.metrics_port, log, core.gauges)
        driver.execute(core.start(driver.now()))
        await node.until_signalled()
    finally:
        log("stopping", pool_elements=len(core.handlespace))
        await driver.close()
    return 0
