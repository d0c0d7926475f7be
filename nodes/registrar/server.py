"""The registrar process: `RegistrarCore` on real associations and multicast groups.

It listens for ASAP (PEs and PUs, port 3863) and for ENRP (peer registrars, port 9901),
sends SERVER_ANNOUNCEs to the announce group and ENRP_PRESENCEs to the presence group, and
receives the latter.  Its static peers are the `--peer` flags, else the other registrars of
its domain from the testbed's config (one domain is one operation scope).
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from typing import Any

from nodes import node
from nodes.registrar.core import RegistrarCore, RegistrarOptions
from nodes.registrar.enrp import EnrpOptions
from nodes.runtime import Driver, EventLog
from nodes.transport.multicast import MulticastConfig
from nodes.wire import Protocol


def parser() -> argparse.ArgumentParser:
    p = node.base_parser("python -m nodes.registrar", "RSerPool registrar (ASAP, RFC 5352; ENRP, RFC 5353)")
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
    enrp = p.add_argument_group("ENRP (RFC 5353): the other registrars of the operation scope")
    enrp.add_argument("--enrp-port", type=int, default=9901, help="ENRP port (default 9901)")
    enrp.add_argument("--peer", action="append", default=[], metavar="ADDR[,ADDR][:PORT]",
                      help="static peer registrar (repeatable); default: the config's other registrars")  # fmt: skip
    enrp.add_argument("--presence-group", default="239.0.0.51:9901", help="multicast group:port for presences")
    enrp.add_argument("--no-presence-multicast", action="store_true", help="presences by unicast to peers only")
    enrp.add_argument("--peer-heartbeat-cycle", type=float, default=2.444, help="s between presences")
    enrp.add_argument("--peer-max-time-last-heard", type=float, default=5.0, help="s of silence before a peer is asked")
    enrp.add_argument("--peer-max-time-no-response", type=float, default=5.0, help="s for that answer: then it is dead")
    enrp.add_argument("--mentor-discovery-timeout", type=float, default=5.0, help="s to find a mentor at start-up")
    enrp.add_argument("--takeover-expiry", type=float, default=5.0, help="s for a takeover to be acknowledged")
    enrp.add_argument("--max-elements-per-ht-request", type=int, default=128, help="PEs per HANDLE_TABLE_RESPONSE")
    enrp.add_argument("--takeover-suggestion", action="store_true", help="draft-dreibholz-rserpool-enrp-takeover")
    enrp.add_argument("--takeover-arbitration", choices=("highest", "lowest"), default="highest",
                      help="who wins concurrent takeovers: highest server id (RFC 5353) or lowest (RSPLIB)")  # fmt: skip
    return p


def peers_from(args: argparse.Namespace, config: dict[str, Any]) -> tuple[tuple[tuple[str, ...], int], ...]:
    """`--peer` flags, else every other registrar of the config's domain."""
    if args.peer:
        return tuple(node.parse_endpoint(text, 9901) for text in args.peer)
    own = config.get("name")
    return tuple(
        (tuple(r["addresses"]), int(r.get("enrp_port", 9901)))
        for r in config.get("registrars", []) if r.get("name") != own and r.get("addresses")
    )  # fmt: skip


def options_from(args: argparse.Namespace, config: dict[str, Any] | None = None) -> RegistrarOptions:
    enrp = EnrpOptions(
        port=args.enrp_port,
        peers=peers_from(args, config or {}),
        multicast=not args.no_presence_multicast and bool(args.interface),
        heartbeat_cycle=args.peer_heartbeat_cycle,
        max_time_last_heard=args.peer_max_time_last_heard,
        max_time_no_response=args.peer_max_time_no_response,
        mentor_discovery_timeout=args.mentor_discovery_timeout,
        takeover_expiry=args.takeover_expiry,
        max_elements_per_ht=args.max_elements_per_ht_request,
        takeover_suggestion=args.takeover_suggestion,
        arbitration=args.takeover_arbitration,
    )
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
        enrp=enrp,
    )


async def run(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args, config = node.parse(p, argv)
    try:
        options = options_from(args, config)
    except ValueError as exc:
        p.error(str(exc))
    log = EventLog(args.name)
    core = RegistrarCore(options)
    driver = Driver(core, log, backend=args.backend, options=node.transport_options(args), local=args.local)
    try:
        await driver.listen(args.local, args.port)
        await driver.listen(args.local, args.enrp_port, endpoint="enrp")
        if options.announce:
            announce = MulticastConfig.parse(args.announce_group, tuple(args.interface))
            await driver.join(announce, receive=False, protocol=Protocol.ASAP)
        if options.enrp.multicast:
            presence = MulticastConfig.parse(args.presence_group, tuple(args.interface))
            await driver.join(presence, protocol=Protocol.ENRP)
        log("listening", addresses=args.local, port=args.port, enrp_port=args.enrp_port, backend=args.backend,
            announce=options.announce, presence_multicast=options.enrp.multicast, interfaces=args.interface,
            peers=[f"{','.join(a)}:{port}" for a, port in options.enrp.peers])  # fmt: skip
        node.serve_metrics(args.metrics_port, log, core.gauges)
        driver.execute(core.start(driver.now()))
        await node.until_signalled()
    finally:
        log("stopping", pool_elements=len(core.handlespace))
        await driver.close()
    return 0
