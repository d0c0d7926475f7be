"""A test peer for the transports: `python -m nodes.transport.peer listen|connect ...`.

It plays the part that iperf plays for TCP: one side listens (and echoes on request), the
other connects and sends real ASAP messages (ASAP_COOKIE, PPID 11, carrying a sequence
number) so that a capture of the run decodes as ASAP.  Both sides print one JSON line per
message and per association event, so a test or a benchmark can check, message by message,
that nothing was lost or duplicated, whatever the backend.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import struct
import sys
import time

from nodes.wire.constants import Protocol
from nodes.wire.errors import DecodeError
from nodes.wire.messages import Cookie, decode, encode

from . import Association, AssociationClosed, AssociationEvent, TransportError, TransportOptions
from . import connect as open_association
from . import listen as open_listener

SEQ = struct.Struct("!Q")


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def cookie(seq: int, size: int) -> bytes:
    """An encoded ASAP_COOKIE of `size` bytes in all (at most 65535, the length field's
    limit) whose cookie starts with `seq`."""
    body = SEQ.pack(seq)
    overhead = len(encode(Cookie(cookie=body)))
    return encode(Cookie(cookie=body + b"\0" * max(0, size - overhead)))


def sequence_of(data: bytes, ppid: int) -> tuple[int | None, str]:
    """The sequence number and message type of a received message (None if not a cookie)."""
    try:
        message = decode(data, Protocol.ENRP if ppid == Protocol.ENRP.ppid else Protocol.ASAP)
    except DecodeError as exc:
        return None, f"undecodable: {exc}"
    if isinstance(message, Cookie) and len(message.cookie) >= SEQ.size:
        return SEQ.unpack_from(message.cookie)[0], type(message).__name__
    return None, type(message).__name__


def describe_event(event: AssociationEvent) -> dict[str, object]:
    return {"kind": event.kind.value, "address": event.address, "error": event.error, "detail": event.detail}


def options_from(args: argparse.Namespace) -> TransportOptions:
    return TransportOptions(
        rto_initial_ms=args.rto_initial_ms, rto_min_ms=args.rto_min_ms, rto_max_ms=args.rto_max_ms,
        heartbeat_interval_ms=args.heartbeat_ms, path_max_retrans=args.path_max_retrans,
        connect_timeout_s=args.connect_timeout, max_message_size=args.max_message_size,
        udp_encapsulation_port=args.udp_encaps_port,
    )  # fmt: skip


async def serve_association(assoc: Association, echo: bool) -> None:
    emit("accepted", peer=list(assoc.peer_addresses), local=list(assoc.local_addresses))
    try:
        while True:
            item = await assoc.next_item()
            if isinstance(item, AssociationEvent):
                emit("association", **describe_event(item))
                continue
            seq, kind = sequence_of(item.data, item.ppid)
            emit("data", seq=seq, t=round(time.monotonic(), 4), type=kind, ppid=item.ppid, stream=item.stream, bytes=len(item.data))
            if echo:
                await assoc.send(item.data, item.ppid, item.stream)
    except AssociationClosed as exc:
        emit("closed", reason=str(exc))
    except TransportError as exc:
        emit("error", error=type(exc).__name__, message=str(exc))


async def run_listen(args: argparse.Namespace) -> int:
    listener = await open_listener(args.bind, args.port, backend=args.backend, options=options_from(args))
    emit("listening", backend=listener.backend.value, port=listener.port, addresses=args.bind)
    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            assoc = await listener.accept()
            task = asyncio.create_task(serve_association(assoc, args.echo))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        emit("stopped", open_associations=len(tasks))
        await listener.close()


async def run_connect(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        assoc = await open_association(
            args.to, args.port, local=args.bind, backend=args.backend, options=options_from(args)
        )
    except TransportError as exc:
        emit("error", error=type(exc).__name__, message=str(exc), seconds=round(time.perf_counter() - started, 3))
        return 1
    emit("connected", backend=assoc.backend.value, peer=list(assoc.peer_addresses), local=list(assoc.local_addresses))
    sender = Sender(assoc, args)
    try:
        summary = await sender.run()
    except TransportError as exc:
        emit("error", error=type(exc).__name__, message=str(exc))
        return 1
    emit("summary", sent=args.count, **summary)
    if args.abort:
        assoc.abort()
    else:
        await assoc.close()
    return 0


class Sender:
    """Sends `--count` cookies; with `--echo` counts them coming back, with `--rtt` keeps one
    in flight at a time and times each round trip."""

    def __init__(self, assoc: Association, args: argparse.Namespace) -> None:
        self.assoc, self.args = assoc, args
        self.echoed = asyncio.Event()
        self.sent_at = 0.0
        self.rtts: list[float] = []
        self.received: list[int] = []

    async def run(self) -> dict[str, object]:
        reader = asyncio.create_task(self._read())
        try:
            first = time.perf_counter()
            await self._send_all()
            if self.args.echo:
                await asyncio.wait_for(asyncio.shield(reader), self.args.drain_timeout)
            elapsed = time.perf_counter() - first
        finally:
            reader.cancel()
        return self._summary(elapsed) if self.args.echo else {}

    async def _send_all(self) -> None:
        for seq in range(self.args.count):
            self.sent_at = time.perf_counter()
            await self.assoc.send(cookie(seq, self.args.size), Protocol.ASAP.ppid, stream=seq % self.args.streams)
            if self.args.verbose:
                emit("sent", seq=seq)
            if self.args.rtt:
                await self.echoed.wait()
                self.echoed.clear()
            if self.args.interval_ms:
                await asyncio.sleep(self.args.interval_ms / 1000)

    async def _read(self) -> None:
        """Print events as they come; record echoes until all came back."""
        while not self.args.echo or len(self.received) < self.args.count:
            item = await self.assoc.next_item()
            if isinstance(item, AssociationEvent):
                emit("association", **describe_event(item))
                continue
            seq, kind = sequence_of(item.data, item.ppid)
            self.received.append(-1 if seq is None else seq)
            if self.args.rtt:
                self.rtts.append((time.perf_counter() - self.sent_at) * 1000)
                self.echoed.set()
            if self.args.verbose:
                emit("echo", seq=seq, type=kind)

    def _summary(self, elapsed: float) -> dict[str, object]:
        received = self.received
        result: dict[str, object] = {
            "echoed": len(received), "distinct": len(set(received)), "in_order": received == sorted(received),
            "seconds": round(elapsed, 4), "messages_per_s": round(len(received) / elapsed, 1) if elapsed else None,
        }  # fmt: skip
        if self.rtts:
            rtts = sorted(self.rtts)
            result["rtt_ms"] = {
                "median": round(statistics.median(rtts), 4), "mean": round(statistics.fmean(rtts), 4),
                "p99": round(rtts[int(0.99 * (len(rtts) - 1))], 4), "min": round(rtts[0], 4),
            }  # fmt: skip
        return result


def message_size(text: str) -> int:
    size = int(text)
    if not 16 <= size <= 65535:
        raise argparse.ArgumentTypeError(f"{size}: an ASAP message has 16 to 65535 bytes")
    return size


def addresses(text: str) -> list[str]:
    return [a for a in text.split(",") if a]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nodes.transport.peer", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--backend", default="auto", help="auto, kernel-sctp, usrsctp, tcp or mptcp")
    common.add_argument("--port", type=int, default=Protocol.ASAP.port)
    common.add_argument("--bind", type=addresses, default=[], help="local addresses, comma separated")
    common.add_argument("--rto-initial-ms", type=int, default=TransportOptions.rto_initial_ms)
    common.add_argument("--rto-min-ms", type=int, default=TransportOptions.rto_min_ms)
    common.add_argument("--rto-max-ms", type=int, default=TransportOptions.rto_max_ms)
    common.add_argument("--heartbeat-ms", type=int, default=TransportOptions.heartbeat_interval_ms)
    common.add_argument("--path-max-retrans", type=int, default=TransportOptions.path_max_retrans)
    common.add_argument("--connect-timeout", type=float, default=TransportOptions.connect_timeout_s)
    common.add_argument("--max-message-size", type=int, default=TransportOptions.max_message_size)
    common.add_argument("--udp-encaps-port", type=int, default=0, help="usrsctp: SCTP over UDP (RFC 6951)")
    listen = sub.add_parser("listen", parents=[common], help="accept associations, print what arrives")
    listen.add_argument("--echo", action="store_true", help="send every message back")
    conn = sub.add_parser("connect", parents=[common], help="connect and send ASAP_COOKIE messages")
    conn.add_argument("--to", type=addresses, required=True, help="peer addresses, comma separated")
    conn.add_argument("--count", type=int, default=10)
    conn.add_argument("--size", type=message_size, default=64, help="bytes per message (16 to 65535)")
    conn.add_argument("--interval-ms", type=float, default=0)
    conn.add_argument("--streams", type=int, default=1, help="spread messages over this many streams")
    conn.add_argument("--echo", action="store_true", help="expect every message back; print a summary")
    conn.add_argument("--rtt", action="store_true", help="one message in flight at a time; time each echo")
    conn.add_argument("--abort", action="store_true", help="end with ABORT instead of a graceful shutdown")
    conn.add_argument("--drain-timeout", type=float, default=60)
    conn.add_argument("--verbose", action="store_true", help="a line per sent and echoed message")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "rtt", False):
        args.echo = True
    runner = run_listen if args.command == "listen" else run_connect

    async def guarded() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        try:
            return await runner(args)
        except asyncio.CancelledError:
            return 0
        except TransportError as exc:
            emit("error", error=type(exc).__name__, message=str(exc))
            return 1

    return asyncio.run(guarded())


if __name__ == "__main__":
    sys.exit(main())
