"""UDP probe traffic for service function chains: what went through which SF instances.

    python -m sdn.probe send DEST_IP --port 5000 [--count N | --duration S] [--rate PPS]
                                     [--size BYTES] [--source-port P]
    python -m sdn.probe receive --port 5000 [--count N] [--timeout S] [--json]

A probe's UDP payload is `VTB-SFC seq=<n> t=<unix time ns>`, padded with "." to --size.
Every SF instance on the way appends ` >NAME` (nodes/pe/forwarder.py), so the receiver reads
the path off the payload: `VTB-SFC seq=7 t=... >sf1-as1-1 >sf2-as2-1`.  Sequence numbers
start at 1; a number missing below the highest one received counts as lost (losses after
the last datagram received cannot be seen).  The namespaces of a testbed share one clock,
so `delay_ms` (receive time - send time) is the one-way delay through the chain.

Both ends print JSON: the sender a summary when it is done; the receiver (with --json) one
line per datagram, flushed as it arrives, and a summary line at the end either way.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

MAGIC = b"VTB-SFC "
STAMP = b" >"  #: what each SF puts before its name
PAD = b"."
DEFAULT_COUNT = 10  #: datagrams sent when neither --count nor --duration is given
DEFAULT_RATE = 10.0  #: datagrams per second
DEFAULT_TIMEOUT = 5.0  #: s without a datagram before the receiver gives up


# --------------------------------------------------------------------------- payloads


@dataclass(frozen=True)
class Probe:
    seq: int
    t_sent: int | None  #: unix time, ns, when the sender sent it
    stamps: tuple[str, ...]  #: the SF names, in the order the probe went through them


def payload(seq: int, t_ns: int, size: int = 0) -> bytes:
    """The probe's UDP payload, padded with "." up to `size` bytes (never cut: the receiver
    must still read seq and t)."""
    text = MAGIC + f"seq={seq} t={t_ns}".encode()
    return text + PAD * max(0, size - len(text))


def parse(data: bytes) -> Probe | None:
    """The probe in a UDP payload, or None when it is not one (no magic, no seq)."""
    if not data.startswith(MAGIC):
        return None
    head, *stamps = data[len(MAGIC) :].split(STAMP)
    fields = dict(_pair(token) for token in head.rstrip(PAD).split())
    seq, t_sent = _int(fields.get("seq")), _int(fields.get("t"))
    if seq is None:
        return None
    return Probe(seq, t_sent, tuple(s.decode("utf-8", "replace") for s in stamps))


def _pair(token: bytes) -> tuple[str, str]:
    key, _, value = token.decode("ascii", "replace").partition("=")
    return key, value


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def path_key(stamps: Sequence[str]) -> str:
    """"sf1-as1-1>sf2-as2-1": the key of a path in the summary ("" for no SF at all)."""
    return ">".join(stamps)


# --------------------------------------------------------------------------- the receiver's tally


@dataclass
class Tally:
    """What the receiver has seen; `arrival` times are monotonic seconds."""

    received: int = 0
    other: int = 0  #: datagrams that were not probes
    duplicates: int = 0
    reordered: int = 0  #: arrived after a higher sequence number
    seqs: set[int] = field(default_factory=set)
    paths: Counter[str] = field(default_factory=Counter)
    max_gap: float = 0.0
    last_arrival: float | None = None

    def add(self, probe: Probe | None, arrival: float) -> None:
        if self.last_arrival is not None:
            self.max_gap = max(self.max_gap, arrival - self.last_arrival)
        self.last_arrival = arrival
        if probe is None:
            self.other += 1
            return
        self.received += 1
        if probe.seq in self.seqs:
            self.duplicates += 1
        elif self.seqs and probe.seq < max(self.seqs):
            self.reordered += 1
        self.seqs.add(probe.seq)
        self.paths[path_key(probe.stamps)] += 1

    @property
    def lost(self) -> int:
        """Sequence numbers from 1 to the highest received that never came."""
        return max(self.seqs) - len(self.seqs) if self.seqs else 0

    def summary(self) -> dict[str, Any]:
        return {"summary": True, "received": self.received, "lost": self.lost,
                "max_gap_ms": round(self.max_gap * 1000, 3), "paths": dict(self.paths),
                "duplicates": self.duplicates, "reordered": self.reordered, "other": self.other}  # fmt: skip


def record(probe: Probe, source: tuple[Any, ...], t_received: int) -> dict[str, Any]:
    """The JSON line for one probe received."""
    line: dict[str, Any] = {"seq": probe.seq, "stamps": list(probe.stamps), "t_sent": probe.t_sent,
                            "t_received": t_received, "source": _endpoint(source)}  # fmt: skip
    if probe.t_sent is not None:
        line["delay_ms"] = round((t_received - probe.t_sent) / 1e6, 3)
    return line


def _endpoint(address: tuple[Any, ...]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


# --------------------------------------------------------------------------- stopping


class Stopped(Exception):
    """SIGTERM or SIGINT: finish with the summary."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


def _catch_signals() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


# --------------------------------------------------------------------------- send


def send(args: argparse.Namespace) -> int:
    sock = socket.socket(_family(args.dest), socket.SOCK_DGRAM)
    if args.source_port:
        sock.bind(("::" if sock.family == socket.AF_INET6 else "0.0.0.0", args.source_port))
    count = args.count if args.count is not None else (None if args.duration is not None else DEFAULT_COUNT)
    result = {"summary": True, "destination": _endpoint((args.dest, args.port)), "sent": 0, "errors": 0,
              "t_first_sent": None, "t_last_sent": None}  # fmt: skip
    _catch_signals()
    try:
        _send_loop(sock, args, count, result)
    except Stopped:
        pass
    finally:
        sock.close()
    _emit(result)
    return 0


def _send_loop(
    sock: socket.socket, args: argparse.Namespace, count: int | None, result: dict[str, Any]
) -> None:
    """Paced on an absolute schedule (start + n / rate), so a late datagram does not delay the rest."""
    start = time.monotonic()
    seq = 0
    while count is None or seq < count:
        due = start + seq / args.rate if args.rate > 0 else time.monotonic()
        if args.duration is not None and due - start >= args.duration:
            return
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        seq += 1
        t_ns = time.time_ns()
        try:
            sock.sendto(payload(seq, t_ns, args.size), (args.dest, args.port))
        except OSError:  # no route yet, a full queue: counted, and the next one tried
            result["errors"] += 1
            continue
        result["sent"] += 1
        result["t_first_sent"] = result["t_first_sent"] or t_ns
        result["t_last_sent"] = t_ns


# --------------------------------------------------------------------------- receive


def receive(args: argparse.Namespace) -> int:
    sock = socket.socket(_family(args.bind), socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.bind, args.port))
    sock.settimeout(args.timeout)
    if args.json:  # so a harness knows when the first datagram can be sent
        _emit({"listening": f"{args.bind}:{args.port}"})
    tally = Tally()
    _catch_signals()
    try:
        _receive_loop(sock, args, tally)
    except Stopped:
        pass
    finally:
        sock.close()
    _emit(tally.summary())
    return 0


def _receive_loop(sock: socket.socket, args: argparse.Namespace, tally: Tally) -> None:
    while args.count is None or tally.received < args.count:
        try:
            data, source = sock.recvfrom(65535)
        except TimeoutError:
            return
        t_received, arrival = time.time_ns(), time.monotonic()
        probe = parse(data)
        tally.add(probe, arrival)
        if probe is None:
            continue
        line = record(probe, source, t_received)
        if args.json:
            _emit(line)
        else:
            path = " > ".join(probe.stamps) or "(no SF)"
            delay = line.get("delay_ms", "?")
            print(f"seq={probe.seq} from {line['source']} {delay} ms via {path}", flush=True)


# --------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sdn.probe", description="UDP probe traffic through SF chains")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("send", help="send probes; a JSON summary at the end")
    s.add_argument("dest", metavar="DEST_IP", help="destination address")
    s.add_argument("--port", type=int, default=5000, help="destination UDP port (default 5000)")
    how_long = s.add_mutually_exclusive_group()
    how_long.add_argument("--count", type=_positive_int, help=f"datagrams to send (default {DEFAULT_COUNT})")
    how_long.add_argument("--duration", type=float, help="s to send for (at --rate)")
    s.add_argument("--rate", type=float, default=DEFAULT_RATE, help=f"datagrams/s (default {DEFAULT_RATE:g}; 0: at once)")
    s.add_argument("--size", type=int, default=0, help="UDP payload bytes ('.' padding)")
    s.add_argument("--source-port", type=int, default=0, help="UDP source port (default: any)")
    s.set_defaults(run=send)
    r = sub.add_parser("receive", help="receive probes; per-datagram lines and a JSON summary")
    r.add_argument("--port", type=int, default=5000, help="UDP port to listen on (default 5000)")
    r.add_argument("--bind", default="0.0.0.0", help="local address (default: all IPv4)")
    r.add_argument("--count", type=_positive_int, help="exit after this many probes")
    r.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help=f"s without a datagram to exit (default {DEFAULT_TIMEOUT:g})")
    r.add_argument("--json", action="store_true", help="one JSON line per probe")
    r.set_defaults(run=receive)
    return p


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        ipaddress.ip_address(args.dest if args.command == "send" else args.bind)
    except ValueError as exc:
        p.error(str(exc))
    try:
        return int(args.run(args))
    except OSError as exc:  # a port in use, an address not here: a message, not a traceback
        print(f"{p.prog} {args.command}: {exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
