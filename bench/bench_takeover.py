#!/usr/bin/env python3
"""ENRP takeover time: from a registrar's SIGKILL to its PEs re-homed at a survivor.

    sudo .venv/bin/python bench/bench_takeover.py [--repeats 3] [--pes-per-registrar 4]
        [--heartbeat 0.5] [--last-heard 1] [--no-response 1] [--backend usrsctp]

What is measured.  Each repeat is a testbed of its own (Testbed API, brought up and down, so
every repeat starts from the same state): one domain, registrar1..3 (server ids 0x1000,
0x2000, 0x3000; presence every --heartbeat s, a silent peer asked after --last-heard s and
dead after --no-response s more, takeover expiry 3 s, keep-alive interval and timeout 1 s)
and K real PE processes per registrar (`prefer-registrar`, re-registration interval 300 s,
fixed load) on K hosts.  Once the three handlespaces (read with hsdump) agree on all 3K PEs,
the bench waits until the registrars have dropped the hsdump tool from their peer tables
(last-heard + no-response + a cycle), then a random fraction of a cycle, and SIGKILLs the
victim (registrar1, 2, 3 in turn over the repeats).  From the kill (wall clock) it measures
  (a) the winner's `takeover-completed` event for the victim,
  (b) the last `home-changed` event of the victim's PEs (their new home's Home-flagged
      ENDPOINT_KEEP_ALIVE arrived),
  (c) the end of the first round of hsdumps (the survivors dumped in parallel, from the
      first round after (a)) where every survivor holds all PEs, each homed at a survivor.
How to read it.  The bound is max-time-last-heard + max-time-no-response after the victim's
last presence; that presence came up to one heartbeat cycle (+12.5 %) before the kill, so
detection falls between bound - cycle and the bound after it (ratio ~0.7-1.0); INIT_TAKEOVER
and its ACKs, the association to each PE and the keep-alive come on top, and (c) includes up
to one hsdump round (its duration is printed).  Figures, not asserts.  Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_failover import BenchError, Log, run_cli, wait_for  # noqa: E402

REGISTRARS = {f"registrar{i}": 0x1000 * i for i in (1, 2, 3)}
CASES = ("(a) kill -> takeover-completed", "(b) kill -> last home-changed", "(c) kill -> hsdumps re-homed")


def hex32(value: int) -> str:
    return f"0x{value:08x}"


def pes(k: int) -> dict[str, tuple[str, str, int]]:
    """PE process name -> (host, preferred registrar, PE id): host peJ has one PE per registrar."""
    return {f"pe{j}-r{i}": (f"pe{j}", f"registrar{i}", 0x100 * i + j) for j in range(1, k + 1) for i in (1, 2, 3)}


def topology(args: argparse.Namespace) -> str:
    timers = {"peer-heartbeat-cycle": args.heartbeat, "peer-max-time-last-heard": args.last_heard,
              "peer-max-time-no-response": args.no_response, "mentor-discovery-timeout": 3.0,
              "takeover-expiry": 3.0, "keepalive-interval": 1.0, "keepalive-timeout": 1.0}  # fmt: skip
    hosts = ""
    for name, server_id in REGISTRARS.items():
        options = {"backend": args.backend, "server-id": hex(server_id), **timers}
        process = f"{{registrar: {{name: {name}, options: {json.dumps(options)}}}}}"
        hosts += f"      reg{name[-1]}: {{processes: [{process}]}}\n"
    by_host: dict[str, str] = {}
    for pe, (host, prefer, pe_id) in pes(args.pes_per_registrar).items():
        options = {"backend": args.backend, "pe-id": hex(pe_id), "prefer-registrar": prefer,
                   "reregistration-interval": 300, "fixed-load": True}  # fmt: skip
        line = f"          - pool-element: {{name: {pe}, handle: TakeoverPool, options: {json.dumps(options)}}}\n"
        by_host[host] = by_host.get(host, "") + line
    hosts += "".join(f"      {host}:\n        processes:\n{lines}" for host, lines in by_host.items())
    return f"name: takeover-{args.backend.replace('-', '')}\ndomains:\n  D1:\n    hosts:\n{hosts}"


class Scope:
    """One running testbed: its logs, and the registrars' handlespaces (`Testbed.hsdump`)."""

    def __init__(self, tb, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
        self.tb, self.args, self.pes = tb, args, pes(args.pes_per_registrar)
        self.logs = {name: Log(Path(m.log)) for name, m in tb.supervisor.managed.items()}

    def homes(self, registrar: str) -> dict[str, str] | None:
        """PE id -> home registrar id in the registrar's handlespace (None: the dump failed)."""
        from testbed.inject import InjectError

        try:
            dump = json.loads(self.tb.hsdump(registrar, as_json=True, timeout=5))
        except InjectError:
            return None
        return {pe["pe_id"]: pe["home"] for pool in dump["pools"] for pe in pool["pool_elements"]}

    def dump_round(self, registrars: list[str]) -> dict[str, dict[str, str] | None]:
        with ThreadPoolExecutor(len(registrars)) as pool:
            return dict(zip(registrars, pool.map(self.homes, registrars)))

    def converged(self, timeout: float = 30.0) -> dict[str, str]:
        """Wait until all three dumps agree on every PE; its PE id -> home."""
        wanted = {hex32(pe_id) for _, _, pe_id in self.pes.values()}

        def agree() -> dict[str, str] | None:
            views = list(self.dump_round(list(REGISTRARS)).values())
            same = all(v == views[0] for v in views) and views[0] is not None and set(views[0]) == wanted
            return views[0] if same else None

        return wait_for("three agreeing handlespaces with every PE", agree, timeout)

    def event_after(self, process: str, event: str, after: float, **match: object) -> dict | None:
        return next((e for e in self.logs[process].update() if e.get("event") == event and e["t"] >= after
                     and all(e.get(k) == v for k, v in match.items())), None)  # fmt: skip


def once(args: argparse.Namespace, victim: str, rng: random.Random, run_root: Path) -> dict:
    from testbed import schema
    from testbed.api import Testbed

    with Testbed(schema.parse(topology(args)), run_root=run_root).up() as tb:
        s = Scope(tb, args)
        for name in REGISTRARS:
            wait_for(f"{name} synchronised", lambda n=name: s.event_after(n, "synchronised", 0), 30)
        for pe in s.pes:
            wait_for(f"{pe} registered", lambda p=pe: s.event_after(p, "registered", 0), 30)
        homes = s.converged()
        owned = [pe for pe, (_, _, pe_id) in s.pes.items() if homes[hex32(pe_id)] == hex32(REGISTRARS[victim])]
        if not owned:
            raise BenchError(f"{victim} owns no PE: {homes}")
        survivors = [r for r in REGISTRARS if r != victim]
        time.sleep(args.last_heard + args.no_response + args.heartbeat * 1.125 + 0.5 + rng.uniform(0, args.heartbeat))
        killed = time.time()
        tb.kill(victim)
        target = hex32(REGISTRARS[victim])

        def completed() -> tuple[str, dict] | None:
            found = ((r, s.event_after(r, "takeover-completed", killed, target=target)) for r in survivors)
            return next(((r, e) for r, e in found if e), None)

        winner, done = wait_for("takeover-completed", completed, args.last_heard + args.no_response + 20)
        rounds: list[float] = []

        def rehomed() -> float | None:
            start = time.time()
            views = s.dump_round(survivors)
            rounds.append(time.time() - start)
            homes = {hex32(REGISTRARS[r]) for r in survivors}
            ok = all(v is not None and len(v) == len(s.pes) and set(v.values()) <= homes for v in views.values())
            return time.time() if ok else None

        c_at = wait_for("survivors' dumps with every PE re-homed", rehomed, 30)
        changed = [wait_for(f"{pe} home-changed", lambda p=pe: s.event_after(p, "home-changed", killed), 10)
                   for pe in owned]  # fmt: skip
        completions = sum(1 for r in survivors if s.event_after(r, "takeover-completed", killed))
    new_homes = {e["server_id"] for e in changed}
    return {CASES[0]: (done["t"] - killed) * 1000, CASES[1]: (max(e["t"] for e in changed) - killed) * 1000,
            CASES[2]: (c_at - killed) * 1000, "victim": victim, "winner": winner, "owned": len(owned),
            "completions": completions, "new_homes": new_homes, "round_ms": statistics.median(rounds) * 1000,
            "moved": done.get("pool_elements")}  # fmt: skip


def print_table(args: argparse.Namespace, results: list[dict]) -> None:
    bound, cycle = (args.last_heard + args.no_response) * 1000, args.heartbeat * 1000
    k = args.pes_per_registrar
    print(f"Takeover after SIGKILL of a registrar: 3 registrars, {k} PE processes each ({3 * k} PEs), "
          f"backend {args.backend}; {len(results)} repeat(s), one testbed each")
    print(f"ENRP: presence every {cycle:.0f} ms (+-12.5 %), max-time-last-heard {args.last_heard * 1000:.0f} ms, "
          f"max-time-no-response {args.no_response * 1000:.0f} ms, takeover expiry 3 s")
    print(f"bound = max-time-last-heard + max-time-no-response = {bound:.0f} ms after the victim's last presence;")
    print(f"presence heartbeats add up to one cycle ({cycle:.0f} ms +12.5 %): that presence came up to a cycle")
    print(f"before the kill, so detection falls {bound - cycle * 1.125:.0f}-{bound:.0f} ms after it "
          f"(ratio {1 - cycle * 1.125 / bound:.2f}-1.00);")
    print("INIT_TAKEOVER and its ACKs, the associations to the PEs and the keep-alives come on top\n")
    head = f"{'case':<32} {'min':>6} {'median':>6} {'max':>6} {'bound':>6} | ratio {'min':>5} {'median':>6} {'max':>5}"
    print(head)
    print("-" * len(head))
    for case in CASES:
        values = [r[case] for r in results]
        lo, med, hi = min(values), statistics.median(values), max(values)
        print(f"{case:<32} {lo:>6.0f} {med:>6.0f} {hi:>6.0f} {bound:>6.0f} |       "
              f"{lo / bound:>5.2f} {med / bound:>6.2f} {hi / bound:>5.2f}")
    print()
    for i, r in enumerate(results, 1):
        print(f"#{i}: killed {r['victim']} ({r['owned']} PEs); {r['winner']} took {r['moved']} over "
              f"(takeover-completed at {r['completions']} survivor(s)); new home in the PEs' logs: "
              f"{', '.join(sorted(r['new_homes']))}; hsdump round {r['round_ms']:.0f} ms")


def default_backend() -> str:
    from nodes.transport import backend_status

    status = {b.value: ok for b, (ok, _) in backend_status().items()}
    return next(b for b in ("usrsctp", "kernel-sctp", "tcp") if status.get(b))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="kills, each in a fresh testbed")
    parser.add_argument("--pes-per-registrar", type=int, default=4, help="PE processes homed at each registrar")
    parser.add_argument("--heartbeat", type=float, default=0.5, help="s between presences (peer-heartbeat-cycle)")
    parser.add_argument("--last-heard", type=float, default=1.0, help="s (peer-max-time-last-heard)")
    parser.add_argument("--no-response", type=float, default=1.0, help="s (peer-max-time-no-response)")
    parser.add_argument("--backend", choices=("usrsctp", "kernel-sctp", "tcp"), help="default: usrsctp if available")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random wait before each kill")
    parser.add_argument("--keep-runs", type=Path, help="keep the testbed runs (logs) in this directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_takeover.py needs root (network namespaces): run it with sudo", file=sys.stderr)
        return 2
    if args.repeats < 1 or args.pes_per_registrar < 1 or min(args.heartbeat, args.last_heard, args.no_response) <= 0:
        parser.error("--repeats and --pes-per-registrar must be >= 1, timers > 0")
    args.backend = args.backend or default_backend()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # as Ctrl-C: the testbed goes down
    rng, results, started = random.Random(args.seed), [], time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-takeover-") as tmp:
        for i in range(args.repeats):
            victim = list(REGISTRARS)[i % 3]
            print(f"repeat {i + 1}/{args.repeats}: bringing a testbed up, then killing {victim} ...", file=sys.stderr)
            r = once(args, victim, rng, args.keep_runs or Path(tmp))
            figures = ", ".join(f"{c.split()[0]} {r[c]:.0f} ms" for c in CASES)
            print(f"  {figures}; winner {r['winner']}", file=sys.stderr)
            results.append(r)
    print_table(args, results)
    print(f"\n(took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    run_cli(main, "bench_takeover.py")
