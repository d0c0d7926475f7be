#!/usr/bin/env python3
"""ENRP start-up synchronisation: how long a new registrar takes to fetch an N-PE handlespace.

    sudo .venv/bin/python bench/bench_enrp_sync.py [--sizes 1000,10000] [--ht 128,1024] [--repeats 3]

What is measured.  One testbed (hosts reg1, reg2, client; every process `start: manual`).
For each size N and --max-elements-per-ht-request M (set at the registrar that answers):
the mentor (0x1000 on reg1, keep-alives off) starts and, alone, synchronises after its 1 s
mentor discovery timeout; a bulk client (this script with --client, a testbed process on
`client`) registers N PEs with distinct ids over one association, 64 REGISTRATIONs in
flight (as bench_registrar.py), and keeps it open so that the PEs stay.  Then the joiner
(0x2000 on reg2, static peer the mentor, mentor discovery timeout 30 s so that it cannot
cut a long transfer short) is started --repeats times (`Testbed.start`, SIGTERM after):
  start->sync  the start call -> its `synchronised` event (how = "from mentor ..."):
               process start, association, PRESENCE exchange and the transfer;
  transfer     its `mentor-chosen` -> `synchronised`: one HANDLE_TABLE_REQUEST/RESPONSE
               round per part (M flag), counted by its `handle-table-received` events;
and hsdump checks that it holds the N PEs.  Side by side, in this process: two
RegistrarCores on tests/netsim.py with zero latency, the mentor fed the same REGISTRATIONs,
timed from the joiner's start to `synchronised` (median of 3): decode, handlespace and
encode without transport, event loop or logs; real/core = transfer / core.  A response
holds at most M PEs and ~60 kB (the registrar's budget): M = 1024 gives ~570 a response.
Figures, not asserts.  Needs root (namespaces).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from ipaddress import ip_address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_failover import BenchError, Log, run_cli, wait_for  # noqa: E402

from nodes.wire import PoolElement, Protocol, Registration, SctpTransport, TcpTransport  # noqa: E402
from nodes.wire.policies import RoundRobin  # noqa: E402

MENTOR, JOINER, CLIENT = "10.1.1.10", "10.1.1.11", "10.1.1.12"
MENTOR_ID, JOINER_ID = 0x1000, 0x2000
HANDLE, WINDOW, LIFE_MS = b"SyncPool", 64, 3_600_000


def registrations(n: int, address: str, backend: str) -> list[bytes]:
    kind = TcpTransport if backend == "tcp" else SctpTransport
    user = kind(port=9000, addresses=(ip_address(address),))
    return [Registration(pool_handle=HANDLE, pool_element=PoolElement(i, 0, LIFE_MS, user, RoundRobin())).encode()
            for i in range(1, n + 1)]  # fmt: skip


async def client(args: argparse.Namespace) -> int:
    from nodes import node, transport

    assoc = await transport.connect([MENTOR], 3863, local=[CLIENT], backend=args.backend)
    ppid = Protocol.ASAP.ppid if assoc.backend.is_sctp else assoc.ppid  # type: ignore[attr-defined]
    window, counts, done = asyncio.Semaphore(WINDOW), {"ok": 0, "rejected": 0}, asyncio.Event()

    async def read() -> None:
        while True:
            data = (await assoc.receive()).data
            counts["rejected" if data[1] & 0x01 else "ok"] += 1
            window.release()
            if counts["ok"] + counts["rejected"] == args.count:
                done.set()

    reader, start = asyncio.get_running_loop().create_task(read()), time.perf_counter()
    for message in registrations(args.count, CLIENT, args.backend):
        await window.acquire()
        await assoc.send(message, ppid)
    await asyncio.wait_for(done.wait(), 120)
    loaded = {"t": time.time(), "event": "loaded", **counts, "seconds": time.perf_counter() - start}
    print(json.dumps(loaded), flush=True)
    await node.until_signalled()  # the association stays open: the PEs stay registered
    reader.cancel()
    assoc.abort()
    return 0


def core_sync(n: int, m: int) -> tuple[float, int]:
    """Seconds from the joiner's start to `synchronised`, and HANDLE_TABLE_RESPONSEs."""
    from nodes.registrar.core import RegistrarCore, RegistrarOptions
    from nodes.registrar.enrp import EnrpOptions
    from tests.netsim import Network

    net, listens = Network(latency=0.0), {3863: {}, 9901: {"endpoint": "enrp"}}
    enrp = EnrpOptions(mentor_discovery_timeout=1.0, max_elements_per_ht=m)
    mentor = RegistrarCore(RegistrarOptions(MENTOR_ID, keepalive_interval=3600, keepalive_timeout=60,
                                            asap_addresses=(MENTOR,), enrp=enrp), random.Random(1))  # fmt: skip
    net.add("r1", mentor, (MENTOR,), listens=listens, groups={Protocol.ENRP})
    net.start("r1")
    net.run_for(2.0)
    mentor.association_up(1, net.now, peer_addresses=(CLIENT,), peer_port=5000, sctp=True)
    for data in registrations(n, CLIENT, "usrsctp"):
        mentor.receive(1, data, Protocol.ASAP.ppid, net.now)  # the replies and timers are not needed
    enrp2 = EnrpOptions(peers=(((MENTOR,), 9901),), mentor_discovery_timeout=30.0)
    joiner = RegistrarCore(RegistrarOptions(JOINER_ID, asap_addresses=(JOINER,), enrp=enrp2), random.Random(2))
    sim = net.add("r2", joiner, (JOINER,), listens=listens, groups={Protocol.ENRP})
    start = time.perf_counter()
    net.start("r2")
    while not sim.emitted("synchronised"):
        net.run_for(0.001)
    took = time.perf_counter() - start
    if len(joiner.handlespace) != n or not sim.emitted("synchronised")[0]["how"].startswith("from mentor"):
        raise BenchError(f"core: the joiner synchronised with {len(joiner.handlespace)} of {n} PEs")
    return took, len(sim.emitted("handle-table-received"))


def topology(args: argparse.Namespace) -> str:
    base = {"backend": args.backend, "no-announce": True}
    mentor = {**base, "server-id": hex(MENTOR_ID), "peer": JOINER, "keepalive-interval": 3600,
              "keepalive-timeout": 60, "mentor-discovery-timeout": 1.0}  # fmt: skip
    mentors = [{"registrar": {"name": f"mentor-{m}", "start": "manual",
                              "options": {**mentor, "max-elements-per-ht-request": m}}} for m in args.ht]  # fmt: skip
    joiner = {**base, "server-id": hex(JOINER_ID), "peer": MENTOR, "mentor-discovery-timeout": 30.0}
    bulks = [{"command": {"name": f"bulk-{n}", "start": "manual", "command": [
        sys.executable, str(Path(__file__).resolve()), "--client", "--count", str(n), "--backend", args.backend]}}
        for n in args.sizes]  # fmt: skip
    joiners = [{"registrar": {"name": "joiner", "start": "manual", "options": joiner}}]
    hosts = {h: {"interfaces": [{"network": "a", "address": f"{a}/24"}], "processes": p}
             for h, a, p in (("reg1", MENTOR, mentors), ("reg2", JOINER, joiners), ("client", CLIENT, bulks))}
    return json.dumps({"name": f"enrpsync-{args.backend.replace('-', '')}", "domains": {"D1": {"hosts": hosts}}})


def join(tb, logs: dict[str, Log]) -> dict:  # type: ignore[no-untyped-def]
    """Start the joiner, time its synchronisation, check its handlespace, stop it."""
    start = time.time()
    tb.start("joiner")
    try:
        synced = wait_for("joiner synchronised", lambda: logs["joiner"].find("synchronised", after=start), 120)
        chosen = logs["joiner"].find("mentor-chosen", after=start)
        parts = [e for e in logs["joiner"].update() if e.get("event") == "handle-table-received" and e["t"] >= start]
        if not synced["how"].startswith("from mentor") or chosen is None:
            raise BenchError(f"joiner synchronised {synced['how']!r} (mentor-chosen: {chosen})")
        dump = json.loads(tb.hsdump("joiner", as_json=True, timeout=60))
        dumped = sum(len(pool["pool_elements"]) for pool in dump["pools"])
    finally:
        stop(tb, "joiner")
    return {"start": synced["t"] - start, "transfer": synced["t"] - chosen["t"], "responses": len(parts),
            "learnt": sum(p["pool_elements"] for p in parts), "dumped": dumped, "held": synced["pool_elements"]}


def stop(tb, *names: str) -> None:  # type: ignore[no-untyped-def]
    for name in names:
        if tb.supervisor.get(name).state() in ("running", "stopped"):
            tb.supervisor.signal(name, signal.SIGTERM)


def measure(tb, logs: dict[str, Log], n: int, m: int, repeats: int) -> dict:  # type: ignore[no-untyped-def]
    """Mentor up, N PEs registered, the joiner started `repeats` times; medians."""
    mentor, bulk, began = f"mentor-{m}", f"bulk-{n}", time.time()
    try:
        tb.start(mentor)
        wait_for(f"{mentor} synchronised", lambda: logs[mentor].find("synchronised", after=began), 30)
        tb.start(bulk)
        loaded = wait_for(f"{bulk} loaded", lambda: logs[bulk].find("loaded", after=began), 60 + n / 100)
        if loaded["ok"] != n:
            raise BenchError(f"{bulk}: {loaded['rejected']} of {n} registrations rejected")
        runs = [join(tb, logs) for _ in range(repeats)]
    finally:
        stop(tb, "joiner", mentor, bulk)
    result = {k: statistics.median(r[k] for r in runs) for k in ("start", "transfer", "responses")}
    return result | {k: min(r[k] for r in runs) for k in ("learnt", "dumped", "held")} | {
        "range": (min(r["transfer"] for r in runs), max(r["transfer"] for r in runs)), "load_s": loaded["seconds"]}


def print_table(args: argparse.Namespace, real: dict, core: dict) -> None:
    print(f"ENRP start-up synchronisation of a new registrar from its mentor (backend {args.backend}); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"real: median of {args.repeats} joiner start(s); start->sync: Testbed.start -> `synchronised`;")
    print("transfer: `mentor-chosen` -> `synchronised` [min-max];")
    print("core: two RegistrarCores on tests/netsim.py, zero latency, joiner start -> `synchronised` (median of 3);")
    print("resp = HANDLE_TABLE_RESPONSEs; real/core = transfer / core; vs 128 = transfer / the same N's at M = 128;")
    print("the core runs both ends in one thread, the two registrar processes in parallel: real/core can be < 1\n")
    head = (f"{'PEs':>6} {'M':>4} | {'start->sync':>11} {'transfer':>8} {'[min-max]':>11} {'resp':>4} {'PEs/s':>6} | "
            f"{'core':>6} {'resp':>4} {'PEs/s':>6} | {'real/core':>9} {'vs 128':>6}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for n in args.sizes:
        for m in args.ht:
            r, (c, c_resp) = real[n, m], core[n, m]
            base = real.get((n, 128), {}).get("transfer")
            vs = f"{r['transfer'] / base:.2f}" if base else "-"
            span = f"[{r['range'][0] * 1000:.0f}-{r['range'][1] * 1000:.0f}]"
            print(f"{n:>6,} {m:>4} | {r['start'] * 1000:>9.0f}ms {r['transfer'] * 1000:>6.0f}ms {span:>11} "
                  f"{r['responses']:>4.0f} {n / r['transfer']:>6,.0f} | {c * 1000:>4.0f}ms {c_resp:>4} "
                  f"{n / c:>6,.0f} | {r['transfer'] / c:>9.2f} {vs:>6}")  # fmt: skip
    print()
    for (n, m), r in real.items():
        print(f"N={n:,} M={m}: the joiner learnt {r['learnt']:,} PEs from its responses, held {r['held']:,} at "
              f"`synchronised` and hsdump showed {r['dumped']:,} (fewest over the starts); the bulk client "
              f"registered them in {r['load_s']:.1f} s")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    parser.add_argument("--sizes", type=ints, default=[1000, 10000], help="PE counts, comma-separated (1000,10000)")
    parser.add_argument("--ht", type=ints, default=[128, 1024], help="max-elements-per-ht-request values (128,1024)")
    parser.add_argument("--repeats", type=int, default=3, help="joiner starts per case (the median is shown)")
    parser.add_argument("--backend", choices=("usrsctp", "kernel-sctp", "tcp"), help="default: usrsctp if available")
    parser.add_argument("--keep-runs", type=Path, help="keep the testbed run (logs) in this directory")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return asyncio.run(client(args))
    if os.geteuid() != 0:
        print("bench_enrp_sync.py needs root (network namespaces): run it with sudo", file=sys.stderr)
        return 2
    if not args.sizes or not args.ht or min(args.sizes + args.ht + [args.repeats]) < 1:
        parser.error("--sizes, --ht and --repeats must be positive numbers")
    from bench_takeover import default_backend
    from testbed import schema
    from testbed.api import Testbed

    args.backend = args.backend or default_backend()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # as Ctrl-C: the testbed goes down
    started, real, core = time.monotonic(), {}, {}
    for n in args.sizes:
        for m in args.ht:
            print(f"core: {n:,} PEs, M = {m} ...", file=sys.stderr)
            runs = [core_sync(n, m) for _ in range(3)]
            core[n, m] = (statistics.median(t for t, _ in runs), runs[0][1])
    with tempfile.TemporaryDirectory(prefix="bench-enrp-sync-") as tmp:
        with Testbed(schema.parse(topology(args)), run_root=args.keep_runs or Path(tmp)).up() as tb:
            logs = {name: Log(Path(mg.log)) for name, mg in tb.supervisor.managed.items()}
            for n in args.sizes:
                for m in args.ht:
                    print(f"testbed: {n:,} PEs, M = {m} ...", file=sys.stderr)
                    real[n, m] = measure(tb, logs, n, m, args.repeats)
    print_table(args, real, core)
    print(f"\n(took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    run_cli(main, "bench_enrp_sync.py")
