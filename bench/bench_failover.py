#!/usr/bin/env python3
"""Failover time seen by a pool user, after SIGKILL of its PE and after its PE's link is cut.

    sudo .venv/bin/python bench/bench_failover.py [--repeats 3] [--backends usrsctp tcp]

What is measured.  One testbed per backend (Testbed API, a Linux-bridge domain): a registrar
(keep-alive interval 1 s, keep-alive timeout 1 s), three echo PEs in the pool EchoPool on hosts
of their own, and a pool user sending 50 echo requests per second with a reply timeout of 1 s.
For each case, `--repeats` times: find the PE serving the PU (the PE of its last reply), wait a
random 0.5-1.5 s (so that faults fall anywhere in the keep-alive cycle), then
  * kill: SIGKILL the PE process (`tb.kill`), or
  * cut:  take the PE host's only link down (`tb.link_down("peN:eth0")`),
and read from the logs:
  * PU detect   the PU's `failover` event, detect_ms: from sending the request that failed to
                the moment the PU gave up on the PE;
  * PU gap      the same event, gap_ms: from sending that request to its reply from another PE
                (detection + handle resolution + connect + cookie echo + the request again);
  * fault->back from the fault (wall clock here) to that reply;
  * fault->removed  from the fault to the registrar's `pe-removed` event for that PE.
Then the PE comes back (link up, the process started again with a new random PE id, so that the
PU's 30 s avoid-list does not matter) and the next repeat waits until the pool has 3 PEs again.

How to read it.  Each figure is median [min-max] in ms over the repeats, next to the protocol's
bound and the ratio median / bound:
  * PU detect and PU gap: the reply timeout (1,000 ms) for a silent PE, the PU's lower bound:
    a PE that says nothing is given up only after it.  SIGKILL over TCP is detected at once
    (the dead process's kernel resets the connection: bound 0, no ratio); over usrsctp a killed
    PE sends no ABORT (its SCTP stack died with it), so the reply timeout applies.  A gap ratio
    above 1 is the failover's own cost (resolution and connection) on top of the detection.
  * fault->removed: for a silent PE, keep-alive interval + keep-alive timeout (2,000 ms): the
    registrar notices at the first keep-alive not acknowledged, at most an interval after the
    fault, plus the timeout; so the removal falls between the timeout and that sum (ratio 0.5-1).
    SIGKILL over TCP removes the PE at once ("association lost", bound 0).
The removal reasons are listed under the table.  Timings depend on the machine and its load;
nothing is asserted.  Needs root (namespaces).
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
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT = 1.0, 1.0
REPLY_TIMEOUT, RATE = 1.0, 50
PES = ("pe1", "pe2", "pe3")
CASES = ("kill", "cut")
MEASURES = ("PU detect", "PU gap", "fault->back", "fault->removed")


def run_cli(main: Callable[[], int], name: str, interrupted: str = "the testbed was taken down") -> NoReturn:
    """Run a benchmark's main and exit: 1 with the reason on a failure, 130 on Ctrl-C (its
    testbed or namespaces are gone by then: the context managers clean up on the way out)."""
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"{name}: failed: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{name}: interrupted; {interrupted}", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # the testbed's own errors (BuildError, SupervisorError, ...): say which
        print(f"{name}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


class BenchError(Exception):
    """The run could not be measured; the message says why."""


def topology(backend: str) -> str:
    registrar = {"backend": backend, "server-id": "0x4242", "keepalive-interval": KEEPALIVE_INTERVAL,
                 "keepalive-timeout": KEEPALIVE_TIMEOUT}  # fmt: skip
    pe = {"backend": backend, "reregistration-interval": 300, "fixed-load": True}
    pu = {"backend": backend, "reply-timeout": REPLY_TIMEOUT}
    hosts = "".join(
        f"      {h}: {{processes: [{{pool-element: {{name: {h}, handle: EchoPool, policy: round-robin, "
        f"service: echo, options: {json.dumps(pe)}}}}}]}}\n"
        for h in PES
    )
    return f"""
name: failover-{backend.replace('-', '')}
switch: {{kind: linux-bridge}}
domains:
  D1:
    hosts:
      reg: {{processes: [{{registrar: {{name: registrar, options: {json.dumps(registrar)}}}}}]}}
{hosts}      pu:
        processes:
          - pool-user: {{name: pu, handle: EchoPool, workload: {{service: echo, rate: {RATE}}},
                         options: {json.dumps(pu)}}}
"""


class Log:
    """A process's JSON-lines log, read incrementally (it grows while we read)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.events = path, 0, []  # type: ignore[var-annotated]
        self.partial = b""

    def update(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.events
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if line.startswith(b"{"):
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    pass
        return self.events

    def find(self, event: str, after: float = 0.0, **match: object) -> dict | None:
        for e in reversed(self.update()):
            if e.get("t", 0) < after:
                break
            if e.get("event") == event and all(e.get(k) == v for k, v in match.items()):
                return e
        return None

    def last(self, event: str) -> dict | None:
        return next((e for e in reversed(self.update()) if e.get("event") == event), None)

    def tail(self, n: int = 5) -> list[dict]:
        return self.update()[-n:]


def wait_for(what: str, probe, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.02)
    raise BenchError(f"no {what} within {timeout:.0f} s")


class Run:
    def __init__(self, tb, backend: str) -> None:  # type: ignore[no-untyped-def]
        self.tb, self.backend = tb, backend
        self.logs = {name: Log(Path(tb.supervisor.get(name).log)) for name in ("registrar", "pu", *PES)}

    def registered(self) -> set[str]:
        present: set[str] = set()
        for e in self.logs["registrar"].update():
            if e.get("event") == "pe-registered":
                present.add(e["pe_id"])
            elif e.get("event") == "pe-removed":
                present.discard(e["pe_id"])
        return present

    def pe_ids(self) -> dict[str, str]:
        """PE process -> the PE id of its current incarnation."""
        ids = {}
        for name in PES:
            started = self.logs[name].last("pe-started")
            if started:
                ids[started["pe_id"]] = name
        return ids

    def steady(self, timeout: float = 40.0) -> str:
        """Wait until the pool has its 3 current PEs and the PU gets replies; the serving PE id."""

        def ready() -> str | None:
            ids = self.pe_ids()
            if len(ids) != len(PES) or not set(ids) <= self.registered():
                return None
            reply = self.logs["pu"].last("reply")
            if reply is None or reply["t"] < time.time() - 0.5 or reply.get("pe") not in ids:
                return None
            return reply["pe"]

        try:
            return wait_for("steady state (3 PEs registered, PU served)", ready, timeout)
        except BenchError as exc:
            raise BenchError(f"{self.backend}: {exc}; registrar: {self.logs['registrar'].tail(3)}; "
                             f"pu: {self.logs['pu'].tail(3)}") from None  # fmt: skip

    def once(self, case: str, rng: random.Random) -> dict:
        self.steady()
        time.sleep(rng.uniform(0.5, 1.5))
        serving = self.steady()
        victim = self.pe_ids()[serving]
        fault_at = time.time()
        if case == "kill":
            self.tb.kill(victim)
        else:
            self.tb.link_down(f"{victim}:eth0")
        try:
            failover = wait_for("PU failover event", lambda: self.logs["pu"].find("failover", after=fault_at), 30)
            removal_budget = KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT + 15
            removed = wait_for(f"pe-removed of {serving}", lambda: self.logs["registrar"].find(
                "pe-removed", after=fault_at, pe_id=serving), removal_budget)  # fmt: skip
        finally:
            self._restore(case, victim)
        if failover.get("to") == serving:
            raise BenchError(f"{self.backend} {case}: the PU failed over to the failed PE {serving}")
        return {
            "PU detect": failover["detect_ms"], "PU gap": failover["gap_ms"],
            "fault->back": (failover["t"] - fault_at) * 1000, "fault->removed": (removed["t"] - fault_at) * 1000,
            "reason": removed.get("reason", "?"), "cause": failover.get("cause", ""),
        }  # fmt: skip

    def _restore(self, case: str, victim: str) -> None:
        if case == "cut":
            self.tb.link_up(f"{victim}:eth0")
            self.tb.kill(victim)  # the isolated incarnation is already removed: start afresh
        self.tb.start(victim)


def bounds(backend: str, case: str) -> dict[str, float | None]:
    silent = case == "cut" or backend != "tcp"  # a killed usrsctp PE sends no ABORT
    reply = REPLY_TIMEOUT * 1000 if silent else 0.0
    return {"PU detect": reply, "PU gap": reply, "fault->back": None,
            "fault->removed": (KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT) * 1000 if silent else 0.0}  # fmt: skip


def measure(backend: str, args: argparse.Namespace, run_root: Path) -> dict[str, list[dict]]:
    from testbed import schema
    from testbed.api import Testbed

    rng = random.Random(args.seed)
    tb = Testbed(schema.parse(topology(backend)), run_root=run_root)
    print(f"{backend}: bringing the testbed up ...", file=sys.stderr)
    with tb.up():
        run = Run(tb, backend)
        results: dict[str, list[dict]] = {}
        for case in CASES:
            for i in range(args.repeats):
                result = run.once(case, rng)
                print(f"{backend} {case} #{i + 1}: detect {result['PU detect']:.0f} ms, "
                      f"gap {result['PU gap']:.0f} ms, removed after {result['fault->removed']:.0f} ms "
                      f"({result['reason']})", file=sys.stderr)  # fmt: skip
                results.setdefault(case, []).append(result)
    return results


def print_table(backends: list[str], results: dict[str, dict | str], repeats: int) -> None:
    print(f"Failover seen by a pool user ({RATE} requests/s, reply timeout {REPLY_TIMEOUT * 1000:.0f} ms; registrar "
          f"keep-alive {KEEPALIVE_INTERVAL:g} s + timeout {KEEPALIVE_TIMEOUT:g} s); {repeats} repeats per case")
    print("ms: median [min-max] | bound = the protocol's bound | ratio = median / bound\n")
    head = f"{'case':<5} {'measure':<15}"
    for b in backends:
        head += f" | {b + ' median':>14} {'[min-max]':>13} {'bound':>6} {'ratio':>5}"
    print(head)
    print("-" * len(head))
    for case in CASES:
        for m in MEASURES:
            row = f"{case:<5} {m:<15}"
            for b in backends:
                res = results[b]
                if isinstance(res, str):
                    row += f" | {'-':>14} {'':>13} {'':>6} {'':>5}"
                    continue
                values = [r[m] for r in res[case]]
                med = statistics.median(values)
                bound = bounds(b, case)[m]
                bound_text = "-" if bound is None else f"{bound:.0f}"
                ratio = "-" if not bound else f"{med / bound:.2f}"
                span = f"[{min(values):.0f}-{max(values):.0f}]"
                row += f" | {med:>14.0f} {span:>13} {bound_text:>6} {ratio:>5}"
            print(row)
        print()
    for b in backends:
        res = results[b]
        if isinstance(res, str):
            print(f"{b}: not measured: {res}")
            continue
        for case in CASES:
            reasons = ", ".join(sorted({f"{r['reason']} x{sum(1 for s in res[case] if s['reason'] == r['reason'])}"
                                        for r in res[case]}))  # fmt: skip
            causes = ", ".join(sorted({r["cause"].split(":")[0] for r in res[case]}))
            print(f"{b} {case}: registrar removal: {reasons}; PU detection: {causes}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="faults per case and backend")
    parser.add_argument("--backends", nargs="+", default=["usrsctp", "tcp"], help="transport backends")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random wait before each fault")
    parser.add_argument("--keep-runs", type=Path, help="keep the testbed runs (logs) in this directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_failover.py needs root (the testbed creates network namespaces): run it with sudo",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    from nodes.transport import backend_status

    status = {b.value: s for b, s in backend_status().items()}
    for backend in args.backends:
        if backend not in status or backend == "mptcp":
            parser.error(f"unknown backend {backend!r} (choose from usrsctp, kernel-sctp, tcp)")
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM as Ctrl-C: the testbed goes down on the way out
    started = time.monotonic()
    results: dict[str, dict | str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        run_root = args.keep_runs or Path(tmp)
        for backend in args.backends:
            ok, reason = status[backend]
            results[backend] = measure(backend, args, run_root) if ok else reason
    print_table(args.backends, results, args.repeats)
    print(f"\n(took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    run_cli(main, "bench_failover.py")
