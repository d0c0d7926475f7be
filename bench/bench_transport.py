"""Transport speed: 1 KiB messages between two namespaces, every available backend side by side.

    .venv/bin/python bench/bench_transport.py [--messages 20000] [--pings 2000] [--size 1024]

For each backend (usrsctp, kernel SCTP, TCP, MPTCP) the same test peer
(`python -m nodes.transport.peer`) runs in two dual-homed namespaces joined by veth pairs:
one side echoes, the other measures
  * throughput: `--messages` ASAP messages sent back to back, echoed; messages per second
    counted over the round trip (each message crosses the link twice);
  * latency: `--pings` messages, one in flight at a time; round-trip median and 99th percentile.
A backend missing on this machine is listed with the reason.  Ratios are against TCP, the
kernel's own stack, in the same run.  Needs root (namespaces).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nodes.transport import Backend, backend_status  # noqa: E402
from tests.netlab import dual_homed_pair, stop, wait_for_event  # noqa: E402


def measure(pair, backend: Backend, args: argparse.Namespace) -> dict[str, object]:
    server = pair.peer(pair.b, "listen", "--backend", backend.value, "--echo", "--port", "5001")
    try:
        wait_for_event(server, "listening")
        to = ",".join(pair.addresses(pair.b))
        common = ["connect", "--backend", backend.value, "--port", "5001", "--to", to, "--size", str(args.size)]
        flood = _summary(pair, [*common, "--count", str(args.messages), "--echo"])
        ping = _summary(pair, [*common, "--count", str(args.pings), "--rtt"])
    finally:
        stop(server)
    return {"messages_per_s": flood["messages_per_s"], "complete": flood["distinct"] == args.messages,
            "rtt_median_ms": ping["rtt_ms"]["median"], "rtt_p99_ms": ping["rtt_ms"]["p99"]}  # fmt: skip


def _summary(pair, argv: list[str]) -> dict:
    proc = pair.peer(pair.a, *argv)
    out, err = proc.communicate(timeout=600)
    lines = [json.loads(line) for line in out.splitlines()]
    summary = [line for line in lines if line["event"] == "summary"]
    if not summary:
        raise RuntimeError(f"{argv}: {lines[-1] if lines else err}")
    return summary[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--pings", type=int, default=2000)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    results: dict[Backend, dict[str, object] | str] = {}
    with dual_homed_pair("bn") as pair:
        for backend, (ok, reason) in backend_status().items():
            if not ok:
                results[backend] = reason
                continue
            try:
                results[backend] = measure(pair, backend, args)
            except Exception as exc:  # noqa: BLE001 - one backend failing must not hide the others
                results[backend] = f"failed: {str(exc).strip().splitlines()[-1]}"
    print(f"{args.size}-byte ASAP messages between two namespaces (veth); ratios against TCP\n")
    print(f"{'backend':<12} {'msg/s':>9} {'ratio':>6} {'rtt median':>11} {'rtt p99':>9} {'ratio':>6}")
    tcp = results.get(Backend.TCP)
    for backend, result in results.items():
        if isinstance(result, str):
            print(f"{backend.value:<12} not measured: {result}")
            continue
        rate_ratio = result["messages_per_s"] / tcp["messages_per_s"] if isinstance(tcp, dict) else float("nan")
        rtt_ratio = result["rtt_median_ms"] / tcp["rtt_median_ms"] if isinstance(tcp, dict) else float("nan")
        flag = "" if result["complete"] else "  (messages missing!)"
        print(f"{backend.value:<12} {result['messages_per_s']:>9.0f} {rate_ratio:>6.2f} "
              f"{result['rtt_median_ms']:>9.3f}ms {result['rtt_p99_ms']:>7.3f}ms {rtt_ratio:>6.2f}{flag}")  # fmt: skip


if __name__ == "__main__":
    main()
