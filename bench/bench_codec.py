"""Codec speed, side by side with scapy on the same bytes.

    .venv/bin/python bench/bench_codec.py [--seconds 1.0]

Messages: an ASAP_HANDLE_RESOLUTION_RESPONSE with 128 PEs (RSPLIB's cap) and an
ENRP_HANDLE_TABLE_RESPONSE with 128 PEs in 8 pools (RSPLIB's MaxElementsPerHTRequest).
Each PE is multi-homed (SCTP, two addresses) with a least-used policy, as in a
testbed run. Prints messages per second and the ratio codec : scapy.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from captures.rserpool import ASAP, ENRP  # noqa: E402
from nodes import wire  # noqa: E402
from nodes.wire import policies as pol  # noqa: E402


def pool_element(i: int, registrator: bool) -> wire.PoolElement:
    return wire.PoolElement(
        identifier=0x10000 + i,
        home_registrar=0x1A2B3C4D,
        registration_life=90000,
        user_transport=wire.SctpTransport(
            port=20000 + i, addresses=(ip_address(f"10.1.{i // 250}.{i % 250 + 1}"), ip_address(f"fd00:2::{i + 1:x}"))
        ),
        policy=pol.LeastUsed(load=pol.load_value(i / 128)),
        registrator_transport=(
            wire.SctpTransport(port=3863, addresses=(ip_address(f"10.1.{i // 250}.{i % 250 + 1}"),)) if registrator else None
        ),
    )


def messages() -> dict[str, wire.Message]:
    hrr = wire.HandleResolutionResponse(
        pool_handle=b"EchoPool", policy=pol.LeastUsed(load=0), pool_elements=tuple(pool_element(i, False) for i in range(128))
    )
    htr = wire.HandleTableResponse(
        sender_id=1,
        receiver_id=2,
        flags=0x02,
        entries=tuple(
            wire.PoolEntry(f"Pool{p}".encode(), tuple(pool_element(p * 16 + i, True) for i in range(16))) for p in range(8)
        ),
    )
    return {"HANDLE_RESOLUTION_RESPONSE, 128 PEs": hrr, "HANDLE_TABLE_RESPONSE, 128 PEs": htr}


def rate(work: Callable[[], object], seconds: float) -> float:
    """Calls per second, measured over at least `seconds`."""
    work()
    calls, start = 0, time.perf_counter()
    batch = 1
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(batch):
            work()
        calls += batch
        batch = min(batch * 2, 256)
    return calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="measuring time per figure")
    args = parser.parse_args()
    print(f"{'message':38} {'bytes':>6} {'operation':8} {'codec msg/s':>12} {'scapy msg/s':>12} {'codec/scapy':>12}")
    for label, message in messages().items():
        data = message.encode()
        layer = ASAP if message.PROTOCOL is wire.Protocol.ASAP else ENRP
        parsed = layer(data)
        assert bytes(parsed) == data and wire.decode(data, message.PROTOCOL) == message
        decode = rate(lambda: wire.decode(data, message.PROTOCOL), args.seconds)
        dissect = rate(lambda: layer(data), args.seconds)
        encode = rate(message.encode, args.seconds)
        build = rate(lambda: (parsed.clear_cache(), bytes(parsed)), args.seconds)
        print(f"{label:38} {len(data):6} {'decode':8} {decode:12.0f} {dissect:12.0f} {decode / dissect:11.1f}x")
        print(f"{'':38} {'':6} {'encode':8} {encode:12.0f} {build:12.0f} {encode / build:11.1f}x")
    print("scapy encode: bytes() of the dissected packet tree with its raw caches cleared.")


if __name__ == "__main__":
    main()
