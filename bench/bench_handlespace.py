"""Handlespace speed by pool size: selections and registrations per second.

    .venv/bin/python bench/bench_handlespace.py [--seconds 0.25]

For pools of 10, 1,000, 10,000 and 100,000 PEs it prints handle resolutions per second (3 PEs per
request, RSPLIB's default MaxHResItems) for round robin, least used and randomized least used, and
registrations per second (a new PE registered into the pool, then deregistered again). A naive
least-used scan (min over the whole pool per request) runs alongside as the O(n) reference. The
last column is rate(10) / rate(100,000): a few times for O(log n), about 10,000 for O(n).
Nothing is asserted; the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nodes.registrar.handlespace import Handlespace  # noqa: E402
from nodes.wire import PoolElement, SctpTransport  # noqa: E402
from nodes.wire import policies as pol  # noqa: E402

SIZES = (10, 1_000, 10_000, 100_000)
HANDLE = b"BenchPool"
TRANSPORT = SctpTransport(port=9000, addresses=(ip_address("10.1.0.1"),))
POLICIES: dict[str, Callable[[random.Random], pol.Policy]] = {
    "RR": lambda r: pol.RoundRobin(),
    "LU": lambda r: pol.LeastUsed(r.randrange(pol.load_value(1.0))),
    "RLU": lambda r: pol.RandomizedLeastUsed(r.randrange(pol.load_value(1.0))),
}


def pool_elements(n: int, policy: Callable[[random.Random], pol.Policy], seed: int = 1) -> list[PoolElement]:
    r = random.Random(seed)
    return [PoolElement(i, 0x1234, 30000, TRANSPORT, policy(r)) for i in range(1, n + 1)]


def rate(op: Callable[[], object], seconds: float, batch: int = 100) -> float:
    """Calls of `op` per second, measured in batches until `seconds` have passed (no GC pauses)."""
    gc.collect()
    gc.disable()
    try:
        return _rate(op, seconds, batch)
    finally:
        gc.enable()


def _rate(op: Callable[[], object], seconds: float, batch: int) -> float:
    calls, start = 0, time.perf_counter()
    while True:
        for _ in range(batch):
            op()
        calls += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed


def build(pes: list[PoolElement]) -> Handlespace:
    hs = Handlespace(random.Random(7))
    for pe in pes:
        hs.register(HANDLE, pe)
    return hs


def selection_rate(hs: Handlespace, seconds: float) -> float:
    return rate(lambda: hs.select(HANDLE, 3), seconds)


def naive_lu_rate(pes: list[PoolElement], seconds: float) -> float:
    """The O(n) reference: scan the whole pool for the least-loaded PE (no sequence numbers)."""
    loads = [(pe.policy.load, pe.identifier) for pe in pes]  # type: ignore[attr-defined]
    return rate(lambda: min(loads), seconds, batch=1 if len(pes) > 1000 else 100)


def registration_rate(hs: Handlespace, n: int, seconds: float) -> float:
    """Register a new PE into a pool of n and deregister it again: two O(log n) operations."""
    extra = pool_elements(1, POLICIES["LU"], seed=n)[0]
    pe = PoolElement(n + 1, extra.home_registrar, extra.registration_life, TRANSPORT, extra.policy)

    def cycle() -> None:
        hs.register(HANDLE, pe)
        hs.deregister(HANDLE, pe.identifier)

    return 2 * rate(cycle, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.25, help="time per measurement")
    args = parser.parse_args()

    rows: dict[str, list[float]] = {}
    for n in SIZES:
        for name, make in POLICIES.items():
            pes = pool_elements(n, make)
            gc.collect()
            gc.disable()
            start = time.perf_counter()
            hs = build(pes)
            built = time.perf_counter() - start
            gc.enable()
            if name == "LU":
                rows.setdefault("registrations (bulk build)", []).append(n / built)
                cycle = registration_rate(hs, n, args.seconds)
                rows.setdefault("register+deregister at size", []).append(cycle)
                rows.setdefault("naive LU scan (O(n) ref.)", []).append(naive_lu_rate(pes, args.seconds))
            rows.setdefault(f"{name} select(3)", []).append(selection_rate(hs, args.seconds))

    order = ["RR select(3)", "LU select(3)", "RLU select(3)", "naive LU scan (O(n) ref.)"]
    order += ["registrations (bulk build)", "register+deregister at size"]
    header = f"{'operations per second':30}" + "".join(f"{n:>12,}" for n in SIZES) + f"{'10/100k':>10}"
    print(header)
    print("-" * len(header))
    for name in order:
        values = rows[name]
        print(f"{name:30}" + "".join(f"{v:>12,.0f}" for v in values) + f"{values[0] / values[-1]:>9.1f}x")


if __name__ == "__main__":
    main()
