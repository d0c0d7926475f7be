"""A raw ASAP peer for hostile-input tests: sends the bytes it is given, prints what comes back.

    python -m tests.asap_probe --backend usrsctp --connect 10.1.1.10:3863 \\
        --send 0155000c... --send ... --expect 2 [--enrp]

It opens one association (any backend), sends each `--send` hex string as one message
(PPID 11, or the `nodes.runtime.APP_PPID` for application messages, types >= 0x80; with
`--enrp`, ENRP's PPID 12 and ENRP decoding, to play a peer registrar at port 9901), and
prints one JSON line per message received until `--expect` have arrived or `--timeout`
passes: the codec's plain view, or the app message, or the decoding error.  The last line is
`{"event": "done", "received": N, "open": bool}`, so a test sees whether the peer kept the
association up after the abuse.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from nodes import app, transport
from nodes.node import parse_endpoint
from nodes.runtime import APP_PPID
from nodes.wire import DecodeError, Protocol, decode
from nodes.wire.describe import describe


def show(data: bytes, protocol: Protocol = Protocol.ASAP) -> dict:
    if app.is_app(data):
        try:
            m = app.decode(data)
            return {"event": "app", "type": m.type.name, "seq": m.seq, "value": m.value}
        except app.AppError as exc:
            return {"event": "bad-app", "error": str(exc)}
    try:
        return {"event": "message", **describe(decode(data, protocol))}
    except DecodeError as exc:
        return {"event": "undecodable", **exc.to_dict()}


async def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.asap_probe")
    p.add_argument("--backend", default="auto")
    p.add_argument("--connect", required=True)
    p.add_argument("--send", action="append", default=[], help="hex of one message")
    p.add_argument("--expect", type=int, default=1)
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--gap", type=float, default=0.05, help="s between messages")
    p.add_argument("--raw", action="store_true", help="TCP: write the bytes as they are, framing or not")
    p.add_argument("--enrp", action="store_true", help="ENRP messages (PPID 12) instead of ASAP")
    args = p.parse_args(argv)
    protocol = Protocol.ENRP if args.enrp else Protocol.ASAP
    addresses, port = parse_endpoint(args.connect, 3863)
    assoc = await transport.connect(addresses, port, backend=args.backend, ppid=protocol.ppid)
    for text in args.send:
        data = bytes.fromhex(text)
        ppid = APP_PPID if app.is_app(data) and not args.enrp else protocol.ppid
        if args.raw and not assoc.backend.is_sctp:
            assoc.transport.write(data)  # type: ignore[attr-defined]  # past send()'s own framing check
        else:
            await assoc.send(data, ppid if assoc.backend.is_sctp else assoc.ppid)  # type: ignore[attr-defined]
        await asyncio.sleep(args.gap)
    received = 0
    try:
        while received < args.expect:
            delivery = await asyncio.wait_for(assoc.receive(), args.timeout)
            print(json.dumps(show(delivery.data, protocol)), flush=True)
            received += 1
    except (TimeoutError, transport.AssociationClosed):
        pass
    print(json.dumps({"event": "done", "received": received, "open": assoc.is_open}), flush=True)
    await assoc.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
