#!/usr/bin/env python3
"""Registrar speed: registrations and handle resolutions per second at one real registrar.

    sudo .venv/bin/python bench/bench_registrar.py [--sizes 10 1000 10000] [--backends usrsctp tcp]
                                                   [--seconds 2] [--window 64]

What is measured.  One registrar process (`python -m nodes.registrar`, keep-alive interval one
hour so that no keep-alive runs meanwhile, no announces, its JSON log to a file) runs in a network
namespace; a load client runs in a second namespace joined to it by a veth pair.  The client is
this script again (`--client`, started with `ip netns exec`): one association, requests
pipelined with at most `--window` outstanding, every message encoded before the clock starts.
For each pool size N, in two pools (round robin and least used, PE loads random):
  * register (fill)  N REGISTRATIONs of distinct PE ids, user transport = the client's address;
                     rate = N / time from the first send to the N-th REGISTRATION_RESPONSE
                     (at N = 10 that is 10 messages: a latency, not a throughput);
  * re-register      REGISTRATIONs of those N PEs again, round and round, for `--seconds`
                     (the steady load of PEs refreshing their registration, at pool size N);
  * resolve(3)       HANDLE_RESOLUTIONs asking for 3 PEs, for `--seconds`.
Every response is counted by its type and reject flag; every 64th is decoded and checked (a
resolution must carry min(3, N) PEs).  The same messages also go through `RegistrarCore.receive`
in this process, on the encoded bytes, without network, driver or log: the "core" column is that
upper bound, and each backend's ratio is network / core.  Each rate is the median of five
consecutive slices of its measurement (for the core fill: of at least five fills), so that a
burst of other work on the machine does not decide a figure; the load average is printed.

How to read it.  Ratios near 1 mean the network path costs little; a ratio of 0.3 means the
registrar process spends about two thirds of its time outside the protocol core (transport, event loop,
encoding the replies, one JSON log line per request).  `cpu` is the registrar's CPU use during
the measurement / the client's ("-" for runs under 0.2 s): a registrar near 100 % is saturated,
a client near 100 % with a registrar below it means the client was the limit (over usrsctp the
stack's own threads count too, so the registrar can show more than 100 %).  A registrar well under
100 % was short of CPU (other load on this machine): the second table divides each timed rate by
the CPU time the registrar got (for the core: this process's CPU time), requests per CPU-second,
the cost of a request, which stays comparable when the machine is busy.  LU against RR, and
N = 10 against N = 10,000, shows the handlespace's O(log n) selection: rates drop by a small
factor, not by 1,000.  Figures depend on the machine and on what else runs on it; nothing is
asserted.  Needs root (namespaces).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from ipaddress import ip_address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_failover import BenchError, run_cli  # noqa: E402
from nodes.registrar.core import RegistrarCore, RegistrarOptions  # noqa: E402
from nodes.wire import (  # noqa: E402
    HandleResolution,
    HandleResolutionResponse,
    PoolElement,
    Protocol,
    Registration,
    RegistrationResponse,
    SctpTransport,
    TcpTransport,
    decode,
)
from nodes.wire import policies as pol  # noqa: E402
from nodes.wire.constants import AsapType  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REGISTRAR_ADDRESS, CLIENT_ADDRESS, PORT = "10.1.0.1", "10.1.0.2", 3863
POLICIES = ("RR", "LU")
HANDLES = {"RR": b"BenchRR", "LU": b"BenchLU"}
ITEMS = 3
KEEPALIVE_INTERVAL = 3600.0  # s: no keep-alive during the run
CHECK_EVERY = 64  # decode and check one response in this many
SLICES = 5  # a rate is the median of this many consecutive slices of its measurement
MARK_EVERY = 16  # the client notes the time of every 16th response


class LabGone(BenchError):
    """Our namespaces vanished under us (a concurrent `testbed clean` removes every vtb* one)."""


# --- the messages (the same bytes for the core and the network) -------------------------------


def registrations(policy: str, n: int, backend: str) -> list[bytes]:
    """N REGISTRATIONs of PE ids 1..N in the policy's pool, user transport = the client."""
    r = random.Random(n)
    address = (ip_address(CLIENT_ADDRESS),)
    kind = TcpTransport if backend == "tcp" else SctpTransport
    transport = kind(port=9000, addresses=address)
    out = []
    for pe_id in range(1, n + 1):
        policy_value = pol.RoundRobin() if policy == "RR" else pol.LeastUsed(r.randrange(pol.load_value(1.0)))
        pe = PoolElement(pe_id, 0, 90_000, transport, policy_value)
        out.append(Registration(pool_handle=HANDLES[policy], pool_element=pe).encode())
    return out


def resolution(policy: str) -> bytes:
    return HandleResolution(pool_handle=HANDLES[policy], items=ITEMS).encode()


# --- the core alone, in this process ----------------------------------------------------------


def core_rates(sizes: list[int], seconds: float) -> dict[tuple[str, str, int], tuple[float, float]]:
    """{(operation, policy, N): calls of RegistrarCore.receive per second, per CPU-second}."""
    results: dict[tuple[str, str, int], tuple[float, float]] = {}
    for n in sizes:
        core = _core()
        for policy in POLICIES:
            regs = registrations(policy, n, "usrsctp")
            # The fill into this core, then into fresh cores, at least SLICES times and a quarter
            # of `seconds` (ten calls alone are too short to time); the median fill's rate.
            fill_rates: list[float] = []
            fill_cpu_rates: list[float] = []
            spent, target = 0.0, core
            while len(fill_rates) < SLICES or spent < seconds / 4:
                start, cpu = time.perf_counter(), time.process_time()
                for data in regs:
                    target.receive(1, data, Protocol.ASAP.ppid, 0.0)
                took = time.perf_counter() - start
                spent += took
                fill_rates.append(n / took)
                fill_cpu_rates.append(n / max(time.process_time() - cpu, 1e-6))
                target = _core()
            results["register (fill)", policy, n] = statistics.median(fill_rates), statistics.median(fill_cpu_rates)
            pool = core.handlespace.pool(HANDLES[policy])
            if pool is None or len(pool) != n:
                raise BenchError(f"core: the {policy} pool has not {n} PEs after the fill")
            results["re-register", policy, n] = _rate(core, regs, seconds)
            hres = resolution(policy)
            check = core.receive(1, hres, Protocol.ASAP.ppid, 0.0)[0].message  # type: ignore[attr-defined]
            if len(check.pool_elements) != min(ITEMS, n):
                raise BenchError(f"core: a resolution in the {policy} pool gave {len(check.pool_elements)} PEs")
            results["resolve(3)", policy, n] = _rate(core, [hres], seconds)
    return results


def _core() -> RegistrarCore:
    options = RegistrarOptions(server_id=0x5EED, keepalive_interval=KEEPALIVE_INTERVAL, announce=False)
    core = RegistrarCore(options, random.Random(1))
    core.association_up(1, 0.0, peer_addresses=(CLIENT_ADDRESS,), peer_port=5000, sctp=True)
    return core


def _rate(core: RegistrarCore, messages: list[bytes], seconds: float) -> tuple[float, float]:
    """receive() calls per second and per CPU-second: medians over SLICES consecutive slices."""
    ppid, count, i = Protocol.ASAP.ppid, len(messages), 0
    rates, cpu_rates = [], []
    for _ in range(SLICES):
        calls, start, cpu = 0, time.perf_counter(), time.process_time()
        while True:
            for _ in range(100):
                core.receive(1, messages[i], ppid, 0.0)
                i = i + 1 if i + 1 < count else 0
            calls += 100
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / SLICES:
                rates.append(calls / elapsed)
                cpu_rates.append(calls / max(time.process_time() - cpu, 1e-6))
                break
    return statistics.median(rates), statistics.median(cpu_rates)


def sliced_rate(marks: list[tuple[int, float]]) -> float | None:
    """Median rate over SLICES equal parts of a run, from (responses so far, time) marks."""
    if len(marks) < 2 * SLICES + 1:
        return None
    rates = []
    for k in range(SLICES):
        (c0, t0), (c1, t1) = marks[k * (len(marks) - 1) // SLICES], marks[(k + 1) * (len(marks) - 1) // SLICES]
        rates.append((c1 - c0) / max(t1 - t0, 1e-9))
    return statistics.median(rates)


# --- the load client (runs inside the client namespace) ---------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (from /proc: the pid namespace is shared)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Phase:
    """One pipelined run: what was sent, what came back, whether it was right."""

    def __init__(self, expected_type: int, window: int, check: int) -> None:
        self.expected_type, self.check = expected_type, check
        self.window = asyncio.Semaphore(window)
        self.sent = self.received = self.rejected = 0
        self.last = 0.0
        self.marks: list[tuple[int, float]] = []
        self.errors: list[str] = []
        self.complete = asyncio.Event()
        self.sending = True

    def on_response(self, data: bytes) -> None:
        self.received += 1
        self.last = time.perf_counter()
        if self.received % MARK_EVERY == 0:
            self.marks.append((self.received, self.last))
        if data[0] != self.expected_type:
            self.errors.append(f"unexpected response type 0x{data[0]:02x}: {_describe(data)}")
        elif data[1] & 0x01:
            self.rejected += 1
            if len(self.errors) < 3:
                self.errors.append(f"rejected: {_describe(data)}")
        elif self.received % CHECK_EVERY == 1:
            message = decode(data, Protocol.ASAP)
            wrong = isinstance(message, HandleResolutionResponse) and (
                message.error or len(message.pool_elements) != self.check)
            if wrong:
                self.errors.append(f"resolution with {len(message.pool_elements)} PEs, error {message.error}")
            elif isinstance(message, RegistrationResponse) and message.error:
                self.errors.append(f"registration error {message.error}")
        self.window.release()
        if not self.sending and self.received >= self.sent:
            self.complete.set()


def _describe(data: bytes) -> str:
    try:
        return repr(decode(data, Protocol.ASAP))[:300]
    except Exception as exc:  # noqa: BLE001 - only for the error message
        return f"undecodable ({exc})"


async def client(args: argparse.Namespace) -> int:
    from nodes import transport

    assoc = await transport.connect([REGISTRAR_ADDRESS], PORT, local=[CLIENT_ADDRESS], backend=args.backend)
    ppid = Protocol.ASAP.ppid if assoc.backend.is_sctp else assoc.ppid  # type: ignore[attr-defined]
    current: list[Phase] = []

    async def read() -> None:
        try:
            while True:
                delivery = await assoc.receive()
                if current:
                    current[0].on_response(delivery.data)
        finally:  # the association ended: wake a sender waiting for the window
            if current:
                for _ in range(args.window + 1):
                    current[0].window.release()

    reader = asyncio.get_running_loop().create_task(read())

    async def run(name: str, policy: str, messages: list[bytes], expected: int, *, count: int = 0) -> None:
        phase = Phase(expected, args.window, min(ITEMS, args.size))
        current[:] = [phase]
        cpu_reg, cpu_own = cpu_seconds(args.registrar_pid), time.process_time()
        start = time.perf_counter()
        phase.marks.append((0, start))
        deadline = start + args.seconds
        i, total = 0, len(messages)
        while (phase.sent < count) if count else (time.perf_counter() < deadline):
            await phase.window.acquire()
            if reader.done():
                break
            await assoc.send(messages[i], ppid)
            phase.sent += 1
            i = i + 1 if i + 1 < total else 0
        phase.sending = False
        if phase.received >= phase.sent:
            phase.complete.set()
        try:
            await asyncio.wait_for(phase.complete.wait(), 30)
        except TimeoutError:
            phase.errors.append(f"{phase.sent - phase.received} of {phase.sent} responses missing after 30 s")
        if reader.done() and reader.exception() is not None:
            phase.errors.append(f"association ended: {reader.exception()}")
        elapsed = max(phase.last - start, 1e-9)
        if phase.marks[-1][0] != phase.received:
            phase.marks.append((phase.received, phase.last))
        overall = phase.received / elapsed
        result = {
            "event": "phase", "operation": name, "policy": policy, "size": args.size,
            "sent": phase.sent, "received": phase.received, "rejected": phase.rejected,
            "rate": sliced_rate(phase.marks) or overall, "overall_rate": overall, "seconds": elapsed,
            "registrar_cpu": (cpu_seconds(args.registrar_pid) - cpu_reg) / elapsed,
            "client_cpu": (time.process_time() - cpu_own) / elapsed, "errors": phase.errors[:3],
        }  # fmt: skip
        print(json.dumps(result), flush=True)
        if phase.errors:
            raise BenchError(f"{name} {policy} N={args.size}: {phase.errors[0]}")

    try:
        for policy in POLICIES:
            regs = registrations(policy, args.size, args.backend)
            await run("register (fill)", policy, regs, AsapType.REGISTRATION_RESPONSE, count=len(regs))
            await run("re-register", policy, regs, AsapType.REGISTRATION_RESPONSE)
            await run("resolve(3)", policy, [resolution(policy)], AsapType.HANDLE_RESOLUTION_RESPONSE)
    except BenchError as exc:
        print(json.dumps({"event": "error", "error": str(exc)}), flush=True)
        return 1
    finally:
        reader.cancel()
        assoc.abort()
    return 0


# --- the lab: two namespaces, a registrar, the client -----------------------------------------


class Lab:
    def __init__(self, tmp: Path) -> None:
        from testbed import netns

        self.netns, self.tmp = netns, tmp
        self.server, self.client = netns.unique_name("rgs"), netns.unique_name("rgc")

    @contextlib.contextmanager
    def up(self):  # type: ignore[no-untyped-def]
        netns = self.netns
        with netns.namespaces(self.server, self.client):
            netns.add_veth(self.server, f"{self.server}v", self.client, f"{self.client}v")
            netns.run_ip("-n", self.server, "addr", "add", f"{REGISTRAR_ADDRESS}/24", "dev", f"{self.server}v")
            netns.run_ip("-n", self.client, "addr", "add", f"{CLIENT_ADDRESS}/24", "dev", f"{self.client}v")
            yield self

    def alive(self) -> bool:
        return {self.server, self.client} <= set(self.netns.testbed_namespaces())

    def measure(self, backend: str, n: int, args: argparse.Namespace) -> list[dict]:
        try:
            return self._measure(backend, n, args)
        except BenchError as exc:
            if not self.alive():
                raise LabGone(f"{backend}, {n:,} PEs: the namespaces {self.server} and {self.client} were "
                              "removed meanwhile (`testbed clean` removes every vtb* namespace)") from exc
            raise

    def _measure(self, backend: str, n: int, args: argparse.Namespace) -> list[dict]:
        log_path = self.tmp / f"registrar-{backend}-{n}.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", "nodes.registrar", "--backend", backend, "--local", REGISTRAR_ADDRESS,
                "--port", str(PORT), "--server-id", "0x5eed", "--keepalive-interval", str(KEEPALIVE_INTERVAL),
                "--keepalive-timeout", "60", "--no-announce", "--name", "bench-registrar"]  # fmt: skip
        with open(log_path, "wb") as log:
            registrar = subprocess.Popen(self.netns.in_netns(self.server, argv), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, cwd=ROOT)  # fmt: skip
        try:
            _wait_listening(registrar, log_path)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--client", "--backend", backend,
                   "--size", str(n), "--seconds", str(args.seconds), "--window", str(args.window),
                   "--registrar-pid", str(registrar.pid)]  # fmt: skip
            budget = 60 + 10 * args.seconds + n / 200
            try:
                done = subprocess.run(self.netns.in_netns(self.client, cmd), capture_output=True, text=True,
                                      env=env, cwd=ROOT, timeout=budget)  # fmt: skip
            except subprocess.TimeoutExpired:
                raise BenchError(f"the client did not finish within {budget:.0f} s") from None
            lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
            errors = [line["error"] for line in lines if line.get("event") == "error"]
            if errors or done.returncode != 0:
                why = errors[0] if errors else (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise BenchError(f"{backend}, {n:,} PEs: client (exit {done.returncode}): {why}; "
                                 f"registrar log ends: {_tail(log_path)}")
            if registrar.poll() is not None:
                raise BenchError(f"the registrar exited ({registrar.returncode}); its log ends: {_tail(log_path)}")
            return [line for line in lines if line.get("event") == "phase"]
        finally:
            _stop(registrar)


def _tail(path: Path, lines: int = 3) -> str:
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])[-1500:]


def _wait_listening(proc: subprocess.Popen, log_path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the registrar exited ({proc.returncode}): {_tail(log_path)}")
        if '"event": "listening"' in log_path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise BenchError(f"the registrar did not listen within {timeout:.0f} s: {_tail(log_path)}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- main -------------------------------------------------------------------------------------


def print_table(sizes: list[int], backends: list[str], core: dict, network: dict[str, dict | str], load: float) -> None:
    print("Requests per second at one registrar; network = load client in another namespace over veth,")
    print("core = RegistrarCore.receive in-process; ratio = network / core; cpu = registrar % / client %")
    print(f"({os.cpu_count()} CPUs; 1-minute load average {load:.2f} at the start, "
          f"{os.getloadavg()[0]:.2f} at the end)\n")
    _table(sizes, backends, core, network, per_cpu=False)
    print("The same per CPU-second of the registrar (core: of this process), which other load on the machine")
    print("does not change: the cost of a request; ratio = network / core\n")
    _table(sizes, backends, core, network, per_cpu=True)
    for backend in backends:
        if isinstance(network[backend], str):
            print(f"{backend}: not measured: {network[backend]}")
    other = [b for b in backends if not isinstance(network[b], str)]
    if len(other) == 2:
        a, b = other
        for per_cpu in (False, True):
            pairs = sorted(_network_rate(network[a][k], per_cpu) / _network_rate(network[b][k], per_cpu)
                           for k in network[a] if k[0] != "register (fill)")  # fmt: skip
            what = "per registrar CPU-second" if per_cpu else "per second"
            print(f"{a}/{b}, requests {what}, median over the timed rows: {pairs[len(pairs) // 2]:.2f}")


def _network_rate(m: dict, per_cpu: bool) -> float:
    if not per_cpu:
        return m["rate"]
    return m["overall_rate"] / m["registrar_cpu"] if m["registrar_cpu"] > 0 else float("nan")


def _table(sizes: list[int], backends: list[str], core: dict, network: dict[str, dict | str], per_cpu: bool) -> None:
    unit = "/cpu-s" if per_cpu else "/s"
    head = f"{'operation':<16}{'pol':<4}{'PEs':>7} {'core' + unit:>11}"
    for backend in backends:
        head += f" | {backend + unit:>14} {'ratio':>5}" + ("" if per_cpu else f" {'cpu':>7}")
    print(head)
    print("-" * len(head))
    for op in ("register (fill)", "re-register", "resolve(3)"):
        if per_cpu and op == "register (fill)":
            continue  # too short to read a CPU time from /proc at small N
        for policy in POLICIES:
            for n in sizes:
                c = core[op, policy, n][1 if per_cpu else 0]
                row = f"{op:<16}{policy:<4}{n:>7,} {c:>11,.0f}"
                for backend in backends:
                    result = network[backend]
                    if isinstance(result, str):
                        row += f" | {'-':>14} {'-':>5}" + ("" if per_cpu else f" {'-':>7}")
                        continue
                    m = result[op, policy, n]
                    rate = _network_rate(m, per_cpu)
                    row += f" | {rate:>14,.0f} {rate / c:>5.2f}"
                    if not per_cpu:
                        cpu = f"{m['registrar_cpu'] * 100:.0f}/{m['client_cpu'] * 100:.0f}"
                        row += f" {'-' if m['seconds'] < 0.2 else cpu:>7}"
                print(row)
        print()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1_000, 10_000], help="pool sizes (PEs)")
    parser.add_argument("--backends", nargs="+", default=["usrsctp", "tcp"], help="transport backends")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per timed measurement")
    parser.add_argument("--window", type=int, default=64, help="outstanding requests on the association")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--registrar-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return asyncio.run(client(args))
    if os.geteuid() != 0:
        print("bench_registrar.py needs root (it creates network namespaces): run it with sudo", file=sys.stderr)
        return 2
    if any(n < 1 for n in args.sizes) or args.seconds <= 0 or args.window < 1:
        parser.error("sizes and --window must be >= 1, --seconds > 0")
    from nodes.transport import backend_status

    status = {b.value: s for b, s in backend_status().items()}
    for backend in args.backends:
        if backend not in status or backend == "mptcp":
            parser.error(f"unknown backend {backend!r} (choose from usrsctp, kernel-sctp, tcp)")
    # SIGTERM takes the same path as Ctrl-C: the namespaces and processes go in `finally`.
    signal.signal(signal.SIGTERM, _interrupt)
    started, load = time.monotonic(), os.getloadavg()[0]
    print(f"measuring the core in-process ({len(args.sizes)} sizes x {len(POLICIES)} policies) ...", file=sys.stderr)
    core = core_rates(args.sizes, args.seconds)
    network: dict[str, dict | str] = {}
    pending = []
    for backend in args.backends:
        ok, reason = status[backend]
        network[backend] = {} if ok else reason
        pending += [(backend, n) for n in args.sizes] if ok else []
    with tempfile.TemporaryDirectory(prefix="bench-registrar-") as tmp:
        lab, rebuilt = Lab(Path(tmp)), 0
        while pending:
            with lab.up():
                try:
                    while pending:
                        backend, n = pending[0]
                        print(f"measuring {backend}, {n:,} PEs ...", file=sys.stderr)
                        for phase in lab.measure(backend, n, args):
                            network[backend][phase["operation"], phase["policy"], n] = phase  # type: ignore[index]
                        pending.pop(0)
                except LabGone as exc:
                    rebuilt += 1
                    if rebuilt > 2:
                        raise
                    print(f"{exc}; building them again and measuring {backend}, {n:,} PEs again", file=sys.stderr)
    print_table(args.sizes, args.backends, core, network, load)
    print(f"\n(took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    run_cli(main, "bench_registrar.py", "namespaces removed")
