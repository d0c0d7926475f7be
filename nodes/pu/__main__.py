"""The pool user program.

    python -m nodes.pu resolve HANDLE [--items N] [--registrar ADDR:PORT] [--json]
    python -m nodes.pu [--config FILE] [--pool HANDLE --rate R ...] [run]   # a workload, failover included

`resolve` prints the PEs the registrar chose, like RSPLIB's tools; `--count K` repeats the
resolution K times and prints how often each PE came first (a policy at work).  `run` sends
the workload's requests (echo or calc, at `rate` per second) through a `Session` and prints a
JSON line per reply, with the PE that served it and the session's `served` count.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from nodes import app, node
from nodes.pu.core import PoolUserOptions, Resolution
from nodes.pu.session import PoolUser, Session, SessionFailed
from nodes.registrars import RegistrarAddress
from nodes.runtime import EventLog
from nodes.transport.multicast import MulticastConfig
from nodes.wire.params import PoolElement


def parser() -> argparse.ArgumentParser:
    p = node.base_parser("python -m nodes.pu", "RSerPool pool user (ASAP, RFC 5352)")
    p.add_argument("--registrar", action="append", default=[], metavar="ADDR[,ADDR]:PORT",
                   help="static registrar (repeatable); default: the config's registrars")  # fmt: skip
    p.add_argument("--announce-group", default="239.0.0.50:3863", help="group:port of SERVER_ANNOUNCEs")
    p.add_argument("--timeout", type=float, default=3.0, help="s to wait for a handle resolution")
    p.add_argument("--cache-lifetime", type=float, default=0.0,
                   help="s a resolution is reused before asking the registrar again (0: always ask)")  # fmt: skip
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("resolve", help="resolve a pool handle and print the chosen PEs")
    r.add_argument("handle")
    r.add_argument("--items", type=int, default=None, help="PEs wanted (default: the registrar's maximum)")
    r.add_argument("--count", type=int, default=1, help="resolve K times; print the first PE's counts")
    r.add_argument("--json", action="store_true")
    u = sub.add_parser("report", help="report a PE unreachable (ENDPOINT_UNREACHABLE), as after a failure")
    u.add_argument("handle")
    u.add_argument("pe_id", type=lambda v: int(v, 0))
    sub.add_parser("run", help="run the workload through a session with failover (the default)")
    p.set_defaults(command="run")
    g = p.add_argument_group("workload (run)")
    g.add_argument("--pool", help="pool handle of the workload (default: the config's)")
    g.add_argument("--service", choices=("echo", "calc"), help="default: the config's workload")
    g.add_argument("--rate", type=_positive, help="requests per second")
    g.add_argument("--size", type=int, help="echo payload bytes")
    g.add_argument("--work", type=int, default=2000, help="calc work units per request")
    g.add_argument("--requests", type=int, default=0, help="stop after N requests (0: run until signalled)")
    g.add_argument("--reply-timeout", type=float, default=2.0, help="s before a PE counts as failed")
    return p


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be > 0")
    return value


def pu_options(args: argparse.Namespace, config: dict[str, Any]) -> PoolUserOptions:
    registrars = [node.parse_endpoint(r, 3863) for r in args.registrar] or [
        (tuple(r["addresses"]), int(r.get("port", 3863))) for r in config.get("registrars", [])
    ]
    return PoolUserOptions(
        registrars=tuple(RegistrarAddress(a, port) for a, port in registrars),
        sctp=args.backend not in ("tcp", "mptcp"), request_timeout=args.timeout,
        cache_lifetime=args.cache_lifetime,
    )  # fmt: skip


def describe(pe: PoolElement) -> dict[str, Any]:
    return {
        "pe_id": f"0x{pe.identifier:08x}", "home": f"0x{pe.home_registrar:08x}",
        "transport": type(pe.user_transport).__name__.removesuffix("Transport").lower(),
        "addresses": [str(a) for a in pe.user_transport.addresses], "port": pe.user_transport.port,
        "policy": pe.policy.name, "values": list(pe.policy.values()), "registration_life_ms": pe.registration_life,
    }  # fmt: skip


async def resolve(pu: PoolUser, args: argparse.Namespace) -> int:
    handle = args.handle.encode()
    firsts: collections.Counter[str] = collections.Counter()
    last: Resolution | None = None
    for _ in range(max(1, args.count)):
        last = await pu.resolve(handle, args.items)
        if last.error:
            break
        if last.pool_elements:
            firsts[f"0x{last.pool_elements[0].identifier:08x}"] += 1
    assert last is not None
    result: dict[str, Any] = {"handle": args.handle, "error": last.error,
                              "pool_elements": [describe(p) for p in last.pool_elements]}  # fmt: skip
    if args.count > 1:
        result["first_counts"] = dict(sorted(firsts.items()))
    if args.json:
        print(json.dumps(result), flush=True)
    elif last.error:
        print(f"{args.handle}: {last.error}")
    else:
        for pe in result["pool_elements"]:
            print(f"{pe['pe_id']}  {pe['transport']} {','.join(pe['addresses'])}:{pe['port']}  "
                  f"{pe['policy']} {pe['values']}  home {pe['home']}")  # fmt: skip
        for pe_id, count in result.get("first_counts", {}).items():
            print(f"first {pe_id}: {count}")
    return 1 if last.error else 0


async def report(pu: PoolUser, args: argparse.Namespace) -> int:
    """Send one ENDPOINT_UNREACHABLE once a registrar is connected; then a resolution, which the
    registrar answers only after it has handled the report (one association, in order)."""
    pu.report_unreachable(args.handle.encode(), args.pe_id)
    after = await pu.resolve(args.handle.encode(), 0xFFFFFFFF)
    still = any(p.identifier == args.pe_id for p in after.pool_elements)
    print(json.dumps({"handle": args.handle, "pe_id": f"0x{args.pe_id:08x}", "still_listed": still}), flush=True)
    return 0


async def workload(pu: PoolUser, args: argparse.Namespace, config: dict[str, Any], log: EventLog) -> int:
    spec = config.get("spec", {})
    load = spec.get("workload", {})
    handle = (args.pool or spec.get("handle") or "EchoPool").encode()
    service = args.service or load.get("service", "echo")
    rate = args.rate or load.get("rate", 1.0)
    size = args.size or load.get("size", 64)
    session = Session(pu, handle, log, reply_timeout=args.reply_timeout)
    stop = asyncio.Event()
    asyncio.get_running_loop().create_task(_on_signal(stop))
    seq, status = 0, 0
    next_at = time.monotonic()
    while not stop.is_set() and (not args.requests or seq < args.requests):
        seq += 1
        if service == "calc":
            request = app.AppMessage(app.AppType.CALC_REQUEST, seq, args.work)
        else:
            request = app.AppMessage(app.AppType.ECHO_REQUEST, seq, 0, os.urandom(size // 2).hex()[:size].encode())
        started = time.monotonic()
        try:
            reply = await session.request(request)
        except SessionFailed as exc:
            log("request-failed", seq=seq, error=str(exc))
            status = 1
            break
        log("reply", seq=seq, pe=f"0x{session.pe.identifier:08x}" if session.pe else None, served=reply.value,
            rtt_ms=round((time.monotonic() - started) * 1000, 2), ok=reply.seq == seq)  # fmt: skip
        next_at = max(next_at + 1.0 / rate, time.monotonic())
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        except TimeoutError:
            pass
    await session.close()
    log("workload-done", requests=seq, failovers=session.failovers)
    return status


async def _on_signal(stop: asyncio.Event) -> None:
    await node.until_signalled()
    stop.set()


async def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args, config = node.parse(p, argv)
    log = EventLog(args.name, out=sys.stdout if args.command == "run" else sys.stderr)
    async with PoolUser(pu_options(args, config), log, backend=args.backend,
                        transport_options=node.transport_options(args), local=tuple(args.local)) as pu:  # fmt: skip
        if args.interface and not args.registrar and not config.get("registrars"):
            assert pu.driver is not None
            await pu.driver.join(MulticastConfig.parse(args.announce_group, tuple(args.interface)))
        node.serve_metrics(args.metrics_port, log, pu.core.gauges)
        if args.command == "resolve":
            return await resolve(pu, args)
        if args.command == "report":
            return await report(pu, args)
        return await workload(pu, args, config, log)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
