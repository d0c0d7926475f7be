#!/usr/bin/env python3
"""SFC failover: from a fault to traffic flowing again through the chain's new path.

    sudo .venv/bin/python bench/bench_sfc_failover.py [--repeats 3] [--rate 200]

What is measured.  One multi-domain testbed (topologies/multi-domain.yaml, free ports), the
chain `web` (classifier-as1 -> dest-as3 through SF1, SF2, SF3) installed on the draft's best
path AS1:SF1->AS2:SF2->AS2:SF3.  A sender in the classifier sends --rate datagrams/s; the
receiver in the destination records, for each datagram, its arrival time and the instances
that stamped it.  Each repeat injects one fault, then undoes it and waits for the best path:
  instance  SIGKILL of the SF2 instance in use (the registrar must notice: keep-alive
            interval + timeout, 1 s + 1 s), the chain moves to the pool's other instance;
  domain    SIGKILL of AS2's only SF3 instance: AS2 stops offering SF3, the chain moves to
            AS1:SF1->AS2:SF2->AS3:SF3;
  cost      AS2's intra-domain routingcost raised to 50 (no loss expected: the new rules go
            in before the old are deleted);
  switch    AS2's SFF restarted (connection dropped, flow table lost).
For each: fault -> the controller's move (its REST view), fault -> first datagram through the
new instances (or, for `switch`, the first after the outage), the datagrams lost, and the
ratio of the recovery to the detection bound the timers set (keep-alive 1 + 1 s, IBE poll
1 s, controller poll 0.5 s: 3.5 s for an instance; plus the platform's 1 s poll, 4.5 s, for a
domain losing its SF).  Figures, not asserts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed import schema  # noqa: E402
from testbed.api import Testbed  # noqa: E402
from tests.sfclab import chain_spec, placement, received, start_receiver, start_sender, wait_installed  # noqa: E402

BEST = "AS1:SF1->AS2:SF2->AS2:SF3"
#: Worst-case detection from the timers: keep-alive interval + timeout, the IBE's poll, (for a
#: lost SF, the platform's poll,) the controller's poll.
BOUND = {"instance": 1.0 + 1.0 + 1.0 + 0.5, "domain": 1.0 + 1.0 + 1.0 + 1.0 + 0.5}


def testbed(run_root: Path) -> Testbed:
    topo = schema.load(ROOT / "topologies/multi-domain.yaml")
    topo = topo.model_copy(update={"name": "bench-sfc",
                                   "controller": topo.controller.model_copy(update={"port": 0, "rest_port": 0}),
                                   "sfc": topo.sfc.model_copy(update={"port": 0})})  # fmt: skip
    return Testbed(topo, run_root=run_root)


def inject(tb: Testbed, case: str, before: dict) -> tuple[float, callable]:
    """Inject the fault; return its wall-clock time and how to undo it."""
    if case == "instance":
        victim = before["hops"][1]["instance"]
        t = time.time()
        tb.kill(victim)
        return t, lambda: tb.restart(victim)
    if case == "domain":
        t = time.time()
        tb.kill("sf3-as2-1")
        return t, lambda: tb.restart("sf3-as2-1")
    if case == "cost":
        t = time.time()
        tb.sfc_cost("AS2", "AS2", 50)
        return t, lambda: tb.sfc_cost("AS2", "AS2", None)
    t = time.time()
    tb.switch_restart("AS2/a")
    return t, lambda: None


def moved_at(tb: Testbed, after: float, timeout: float = 30.0) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chain = tb.sfc_chains()[0]
        moves = [m for m in chain["moves"] if m["t"] > after and m["to"]]
        if moves and chain["state"] == "installed":
            return moves[0]["t"]
        time.sleep(0.1)
    return None


def one(tb: Testbed, case: str, rate: float, seconds: float) -> dict:
    before = wait_installed(tb, BEST, timeout=60)
    old = tuple(h["instance"] for h in before["hops"])
    chain = chain_spec(tb)
    rx = start_receiver(tb, chain, timeout=3.0)
    tx = start_sender(tb, chain, count=int(rate * seconds), rate=rate)
    time.sleep(2.0)
    t_fault, undo = inject(tb, case, before)
    t_move = moved_at(tb, t_fault) if case != "switch" else None
    tx.communicate(timeout=seconds + 30)
    packets, summary = received(rx)
    undo()
    after = [p for p in packets if p["t_received"] / 1e9 > t_fault]
    if case == "switch":
        gaps = [b["t_received"] - a["t_received"] for a, b in zip(after, after[1:])]
        first_new = after[gaps.index(max(gaps)) + 1]["t_received"] / 1e9 if gaps and max(gaps) > 5e8 / rate else None
    else:
        new = [p for p in after if tuple(p["stamps"]) != old]
        first_new = new[0]["t_received"] / 1e9 if new else None
    sent = int(rate * seconds)
    return {"case": case, "move": None if t_move is None else t_move - t_fault,
            "flowing": None if first_new is None else first_new - t_fault,
            "lost": sent - summary["received"], "sent": sent}  # fmt: skip


def row(name: str, values: list[float | None], unit: str = "s", bound: float | None = None) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return f"  {name:<22} n/a"
    text = f"  {name:<22} {min(got):7.2f} / {statistics.median(got):7.2f} / {max(got):7.2f} {unit}"
    if bound:
        text += f"   ratio to bound {statistics.median(got) / bound:.2f}"
    return text + ("" if len(got) == len(values) else f"   ({len(values) - len(got)} missing)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rate", type=float, default=200.0, help="datagrams per second")
    p.add_argument("--seconds", type=float, default=10.0, help="traffic per repeat")
    p.add_argument("--cases", default="instance,domain,cost,switch")
    args = p.parse_args()
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp, testbed(Path(tmp)).up() as tb:
        wait_installed(tb, BEST, timeout=60)
        for case in args.cases.split(","):
            for _ in range(args.repeats):
                results.setdefault(case, []).append(one(tb, case, args.rate, args.seconds))
                wait_installed(tb, BEST, timeout=60)
                time.sleep(1.0)
        print(f"SFC failover, {args.repeats} repeats, {args.rate:g} datagrams/s, min / median / max")
        for case, runs in results.items():
            bound = BOUND.get(case)
            print(f"{case}:")
            print(row("fault -> chain moved", [r["move"] for r in runs], bound=bound))
            print(row("fault -> traffic on new", [r["flowing"] for r in runs], bound=bound))
            print(row("datagrams lost", [float(r["lost"]) for r in runs], unit="", bound=None)
                  + f"   of {runs[0]['sent']} sent")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
