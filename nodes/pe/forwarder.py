"""The service function of the PE service `forwarder`: MPLS-labelled frames in, SI - 1 out.

The design is in docs/sfc.md ("SF forwarder").  A frame carries exactly one MPLS label stack
entry whose label is `SPI << 8 | SI`; the SF decrements SI and sends the frame back out the
interface it came in on (the SFF rewrites the MACs).  A probe datagram (IPv4/UDP whose payload
starts with `VTB-SFC `, see sdn/probe.py) gets ` >NAME` appended, so that the receiver sees
which instances a packet went through.  Everything else is counted and dropped.

Two layers:

* `process(frame, name)`: pure, no sockets, total (it never raises on any input): the
  verdict for one frame.  `Counters` adds verdicts up per SPI.
* `Forwarder`: the asyncio driver, one raw AF_PACKET socket per interface, used by the PE
  (nodes/pe/server.py) and standalone: `python -m nodes.pe.forwarder --interface eth0 --name sf1`.

Checksums: a frame from a sender on the same machine can still carry a checksum "for the NIC
to fill" (veth offload; the kernel flags it TP_STATUS_CSUMNOTREADY in the packet's auxdata).
Such a frame, once sent again from this raw socket, would reach its destination with a wrong
checksum, so the driver passes `checksum_ready=False` and the SF fills in the UDP or TCP
checksum itself.  A checksum that is ready but wrong is kept as it is: stamping would launder
a corrupted packet into a valid one.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import re
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from nodes import node
from nodes.runtime import EventLog

ETH_P_MPLS = 0x8847  #: MPLS unicast
ETH_HLEN = 14
MPLS_HLEN = 4
MAGIC = b"VTB-SFC "  #: the start of a probe's UDP payload
MAX_IP = 1500  #: a stamped datagram may not grow beyond this (nor beyond its link's MTU - the label)
UDP, TCP = 17, 6

# Drop reasons (also the keys of `Counts.dropped` and of the sf-counters event).
TRUNCATED = "truncated"
NOT_MPLS = "not MPLS"
STACK_TOO_DEEP = "label stack deeper than one"
SI_EXHAUSTED = "service index exhausted"
MALFORMED = "malformed: no payload after the label"
SEND_FAILED = "send failed"
# Why a probe went on unstamped (keys of `Counts.not_stamped`).
TOO_BIG = "too big"
BAD_IP_CHECKSUM = "bad IP checksum"
BAD_UDP_CHECKSUM = "bad UDP checksum"

# Linux <linux/if_packet.h>
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_IGNORE_OUTGOING = 23
TP_STATUS_CSUMNOTREADY = 1 << 3
SIOCGIFMTU = 0x8921
PACKET_HOST, PACKET_OTHERHOST = 0, 3
RECV_SIZE = 1 << 17  #: a GRO/GSO frame can exceed 64 KiB; anything larger is counted truncated
AUX_SIZE = socket.CMSG_SPACE(20)  #: struct tpacket_auxdata
RCVBUF_BYTES = 4 << 20
BATCH = 64  #: frames read per wake-up before the event loop gets a turn
LOG_INTERVAL = 1.0  #: s between sf-counters events


# --------------------------------------------------------------------------- the verdict


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one frame.  `frame` is what to send back (None: drop, for `drop`);
    `spi`/`si` come from the label when the frame had one; `not_stamped` says why a probe
    went on unstamped."""

    frame: bytes | None
    drop: str | None = None
    spi: int | None = None
    si: int | None = None
    stamped: bool = False
    not_stamped: str | None = None


def label_entry(spi: int, si: int, *, tc: int = 0, bottom: bool = True, ttl: int = 64) -> bytes:
    """One MPLS label stack entry for label `spi << 8 | si` (tests and tools build frames with it)."""
    label = (spi & 0xFFF) << 8 | (si & 0xFF)
    return struct.pack("!I", label << 12 | (tc & 7) << 9 | int(bottom) << 8 | (ttl & 0xFF))


def parse_entry(entry: bytes) -> tuple[int, int, int, bool, int]:
    """(SPI, SI, TC, bottom of stack, TTL) of a 4-byte label stack entry."""
    (value,) = struct.unpack("!I", entry)
    label = value >> 12
    return label >> 8, label & 0xFF, value >> 9 & 7, bool(value >> 8 & 1), value & 0xFF


def process(frame: bytes, name: str, *, checksum_ready: bool = True, max_ip: int = MAX_IP) -> Verdict:
    """The verdict for one Ethernet frame; see the module docstring.  Total: any input gives
    a verdict (tests/unit/test_forwarder.py fuzzes it), since whatever arrives on the wire
    must cost at most itself.  A probe is stamped only while its IP datagram stays within
    `max_ip` bytes: the driver passes the interface's MTU less the label when that is smaller
    (a frame over the MTU could not be sent at all)."""
    stamp = b" >" + name.encode("utf-8", "replace")
    if len(frame) < ETH_HLEN:
        return Verdict(None, drop=TRUNCATED)
    if frame[12:14] != b"\x88\x47":
        return Verdict(None, drop=NOT_MPLS)
    if len(frame) < ETH_HLEN + MPLS_HLEN:
        return Verdict(None, drop=TRUNCATED)
    (entry,) = struct.unpack_from("!I", frame, ETH_HLEN)
    spi, si = entry >> 20, entry >> 12 & 0xFF
    if not entry & 0x100:
        return Verdict(None, drop=STACK_TOO_DEEP, spi=spi, si=si)
    if si == 0:
        return Verdict(None, drop=SI_EXHAUSTED, spi=spi, si=si)
    if len(frame) == ETH_HLEN + MPLS_HLEN:
        return Verdict(None, drop=MALFORMED, spi=spi, si=si)
    head = frame[:ETH_HLEN] + struct.pack("!I", entry - (1 << 12))  # SI - 1; TC, S, TTL as they were
    inner, stamped, why = _inner(frame[ETH_HLEN + MPLS_HLEN :], stamp, checksum_ready, max_ip)
    return Verdict(head + inner, spi=spi, si=si, stamped=stamped, not_stamped=why)


# --------------------------------------------------------------------------- IPv4 and UDP


class _Ip(NamedTuple):
    hlen: int  #: header length, bytes
    total: int  #: total length
    proto: int


def _ipv4(packet: bytes) -> _Ip | None:
    """The header of an unfragmented IPv4 datagram that fits in `packet` (trailing bytes
    beyond its total length are Ethernet padding), else None: nothing to touch."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    hlen = (packet[0] & 0x0F) * 4
    total, fragment = struct.unpack_from("!H2xH", packet, 2)
    if hlen < 20 or not hlen <= total <= len(packet) or fragment & 0x3FFF:
        return None
    return _Ip(hlen, total, packet[9])


def _is_probe(packet: bytes, ip: _Ip) -> bool:
    """A whole UDP datagram (its length the IP payload's) whose payload starts with MAGIC."""
    if ip.proto != UDP or ip.total - ip.hlen < 8:
        return False
    (udp_length,) = struct.unpack_from("!H", packet, ip.hlen + 4)
    return udp_length == ip.total - ip.hlen and packet.startswith(MAGIC, ip.hlen + 8, ip.total)


def _inner(packet: bytes, stamp: bytes, checksum_ready: bool, max_ip: int) -> tuple[bytes, bool, str | None]:
    """(the MPLS payload to send, stamped?, why a probe was not stamped)."""
    ip = _ipv4(packet)
    if ip is None:
        return packet, False, None
    why = None
    if _is_probe(packet, ip):
        why = _unstampable(packet, ip, len(stamp), checksum_ready, max_ip)
        if why is None:
            return _stamp(packet, ip, stamp), True, None
    if not checksum_ready and ip.proto in (UDP, TCP):
        packet = _fill_checksum(packet, ip)
    return packet, False, why


def _unstampable(packet: bytes, ip: _Ip, grow: int, checksum_ready: bool, max_ip: int) -> str | None:
    if ip.total + grow > max_ip:
        return TOO_BIG
    if ones_sum(packet[: ip.hlen]) != 0xFFFF:
        return BAD_IP_CHECKSUM
    udp = packet[ip.hlen : ip.total]
    if checksum_ready and udp[6:8] != b"\0\0" and ones_sum(_pseudo(packet, UDP, len(udp)) + udp) != 0xFFFF:
        return BAD_UDP_CHECKSUM
    return None


def _stamp(packet: bytes, ip: _Ip, stamp: bytes) -> bytes:
    """`stamp` appended to the UDP payload; lengths and checksums fixed (a UDP checksum of
    0, "none", stays 0)."""
    total = ip.total + len(stamp)
    header = bytearray(packet[: ip.hlen])
    struct.pack_into("!H", header, 2, total)
    struct.pack_into("!H", header, 10, 0)
    struct.pack_into("!H", header, 10, 0xFFFF - ones_sum(header))
    udp = bytearray(packet[ip.hlen : ip.total] + stamp)
    struct.pack_into("!H", udp, 4, len(udp))
    if udp[6:8] != b"\0\0":
        udp[6:8] = l4_checksum(bytes(header), UDP, udp)
    return bytes(header) + bytes(udp) + packet[ip.total :]


def _fill_checksum(packet: bytes, ip: _Ip) -> bytes:
    """The UDP or TCP checksum the sender left for its NIC, computed."""
    offset = 6 if ip.proto == UDP else 16
    segment = bytearray(packet[ip.hlen : ip.total])
    if len(segment) < offset + 2:
        return packet
    segment[offset : offset + 2] = l4_checksum(packet[: ip.hlen], ip.proto, segment, offset)
    return packet[: ip.hlen] + bytes(segment) + packet[ip.total :]


def ones_sum(data: bytes | bytearray) -> int:
    """The 16-bit ones'-complement sum of RFC 1071, via one big integer: 2**16 is 1 modulo
    0xFFFF, so the sum of the words is the number modulo 0xFFFF (0xFFFF for a non-zero 0)."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total = int.from_bytes(data, "big") % 0xFFFF
    return total if total or not any(data) else 0xFFFF


def _pseudo(header: bytes | bytearray, proto: int, length: int) -> bytes:
    """The pseudo header of RFC 768 / RFC 9293: addresses from the IPv4 header, protocol, length."""
    return bytes(header[12:20]) + struct.pack("!BBH", 0, proto, length)


def l4_checksum(header: bytes, proto: int, segment: bytearray, offset: int = 6) -> bytes:
    """The checksum of a UDP/TCP `segment` (its checksum field at `offset` counted as 0)
    under the IPv4 `header`; UDP sends a computed 0 as 0xFFFF (0 means "no checksum")."""
    zeroed = bytes(segment[:offset]) + b"\0\0" + bytes(segment[offset + 2 :])
    value = 0xFFFF - ones_sum(_pseudo(header, proto, len(segment)) + zeroed)
    return struct.pack("!H", 0xFFFF if value == 0 and proto == UDP else value)


# --------------------------------------------------------------------------- counters


@dataclass
class Counts:
    """One set of counters, the totals or one SPI's: frames and bytes in, what passed (bytes
    out, how many stamped, why probes were not), what was dropped by reason."""

    frames: int = 0
    bytes_in: int = 0
    passed: int = 0
    bytes_out: int = 0
    stamped: int = 0
    not_stamped: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)

    def add(self, verdict: Verdict, size: int, send_error: str | None) -> None:
        self.frames += 1
        self.bytes_in += size
        if verdict.frame is None or send_error is not None:
            self.dropped[verdict.drop or send_error or "?"] += 1
            return
        self.passed += 1
        self.bytes_out += len(verdict.frame)
        self.stamped += verdict.stamped
        if verdict.not_stamped:
            self.not_stamped[verdict.not_stamped] += 1

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "bytes_in": self.bytes_in, "passed": self.passed,
                "bytes_out": self.bytes_out, "stamped": self.stamped,
                "not_stamped": dict(self.not_stamped), "dropped": dict(self.dropped)}  # fmt: skip


class Counters:
    """Totals and counts per SPI (frames without a label count in the totals only)."""

    def __init__(self) -> None:
        self.total = Counts()
        self.spis: dict[int, Counts] = {}
        self.version = 0  #: bumped on every change: the event is logged only when it moved

    def add(self, verdict: Verdict, size: int, send_error: str | None = None) -> None:
        self.version += 1
        self.total.add(verdict, size, send_error)
        if verdict.spi is not None:
            self.spis.setdefault(verdict.spi, Counts()).add(verdict, size, send_error)

    def to_dict(self) -> dict[str, Any]:
        spis = {str(spi): counts.to_dict() for spi, counts in sorted(self.spis.items())}
        return {"total": self.total.to_dict(), "spi": spis}

    def gauges(self) -> dict[str, float]:
        """Flat names for the PE's Prometheus gauges (vnfpool_sf_passed, vnfpool_sf_spi5_passed, ...):
        the node's collector labels by node only, so the SPI and the reason go into the name.
        Called from the metrics thread: it works on copies (`to_dict`, `list`), taken whole."""
        out = _flat("sf", self.total.to_dict())
        for spi, counts in list(self.spis.items()):
            out |= _flat(f"sf_spi{spi}", counts.to_dict())
        return out


def _flat(prefix: str, counts: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {f"{prefix}_{k}": v for k, v in counts.items() if isinstance(v, int)}
    out[f"{prefix}_dropped"] = sum(counts["dropped"].values())
    for reason, n in counts["dropped"].items():
        out[f"{prefix}_dropped_{_slug(reason)}"] = n
    for reason, n in counts["not_stamped"].items():
        out[f"{prefix}_not_stamped_{_slug(reason)}"] = n
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


# --------------------------------------------------------------------------- the driver


class ForwarderError(RuntimeError):
    """A raw socket could not be opened; the message names the interface and the cause."""


@dataclass
class _Port:
    interface: str
    sock: socket.socket
    max_ip: int  #: the largest IP datagram a stamp may make: what fits in the MTU after the label


def open_raw(interface: str) -> socket.socket:
    """A non-blocking raw socket for MPLS frames on `interface` only.  Created with protocol
    0 and given ETH_P_MPLS at bind: a socket created with the protocol would receive the
    frames of every interface until bound, and send them back out the wrong one."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except OSError as exc:
        raise ForwarderError(f"cannot open a raw socket on {interface}: {exc.strerror or exc}") from None
    try:
        sock.bind((interface, ETH_P_MPLS))
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ForwarderError(f"cannot open a raw socket on {interface}: {exc.strerror or exc}") from None
    try:  # Linux >= 4.20; the packet type check in `_readable` does the same on older kernels
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        pass
    _receive_buffer(sock)
    return sock


def _receive_buffer(sock: socket.socket) -> None:
    """RCVBUF_BYTES to absorb a burst while Python catches up (the default holds a few
    hundred small frames): beyond net.core.rmem_max if allowed (CAP_NET_ADMIN), else up to it."""
    for option in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, RCVBUF_BYTES)
            return
        except OSError:
            continue


def mtu(sock: socket.socket, interface: str) -> int:
    """The interface's MTU, asked through the socket (so in the socket's namespace: /sys may
    show another one's), read once at the start."""
    request = struct.pack("16si", interface.encode()[:15], 0)
    try:
        return int(struct.unpack("16si", fcntl.ioctl(sock.fileno(), SIOCGIFMTU, request))[1])
    except OSError:
        return MAX_IP + MPLS_HLEN


def checksum_ready(ancdata: list[tuple[int, int, bytes]]) -> bool:
    """False when the kernel says the frame's L4 checksum is still to be filled in."""
    for level, kind, data in ancdata:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= 4:
            return not struct.unpack_from("I", data)[0] & TP_STATUS_CSUMNOTREADY
    return True


class Forwarder:
    """The data plane on `interfaces`: every MPLS frame received is processed and its result
    sent back out the interface it came from.  `start()` needs a running event loop."""

    def __init__(self, name: str, interfaces: Sequence[str], log: EventLog, *, interval: float = LOG_INTERVAL):
        self.name, self.interfaces, self.log, self.interval = name, list(interfaces), log, interval
        self.counters = Counters()
        self.ports: list[_Port] = []
        self._buffer = bytearray(RECV_SIZE)
        self._logged_version, self._logged_at = 0, float("-inf")
        self._pending: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Open every socket first (all or none: raises ForwarderError), then read them."""
        if not self.interfaces:
            raise ForwarderError("the forwarder needs at least one interface (--interface)")
        try:
            for interface in self.interfaces:
                sock = open_raw(interface)
                self.ports.append(_Port(interface, sock, min(MAX_IP, mtu(sock, interface) - MPLS_HLEN)))
        except ForwarderError:
            self._close_sockets()
            raise
        loop = asyncio.get_running_loop()
        for port in self.ports:
            loop.add_reader(port.sock.fileno(), self._readable, port)
        self.log("sf-forwarding", interfaces=self.interfaces, sf=self.name,
                 max_ip={port.interface: port.max_ip for port in self.ports})  # fmt: skip

    def stop(self) -> None:
        """Stop reading; log the counts not logged yet."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self.ports:
            loop = asyncio.get_running_loop()
            for port in self.ports:
                loop.remove_reader(port.sock.fileno())
        self._close_sockets()
        if self.counters.version != self._logged_version:
            self._log_counters(final=True)

    def gauges(self) -> dict[str, float]:
        return self.counters.gauges()

    def _close_sockets(self) -> None:
        for port in self.ports:
            port.sock.close()
        self.ports = []

    def _readable(self, port: _Port) -> None:
        for _ in range(BATCH):
            try:
                size, ancdata, flags, address = port.sock.recvmsg_into([self._buffer], AUX_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.log("sf-receive-error", interface=port.interface, error=str(exc))
                break
            if address[2] in (PACKET_HOST, PACKET_OTHERHOST):  # never our own transmissions
                self._forward(port, bytes(self._buffer[:size]), flags, ancdata)
        self._changed()

    def _forward(self, port: _Port, frame: bytes, flags: int, ancdata: list[tuple[int, int, bytes]]) -> None:
        if flags & socket.MSG_TRUNC:
            self.counters.add(Verdict(None, drop=TRUNCATED), len(frame))
            return
        try:
            verdict = process(frame, self.name, checksum_ready=checksum_ready(ancdata), max_ip=port.max_ip)
        except Exception as exc:  # a bug must cost this frame, not the data plane
            self.log("internal-error", input="sf-frame", error=repr(exc), frame=frame[:64].hex())
            verdict = Verdict(None, drop="internal error")
        error = None
        if verdict.frame is not None:
            try:
                port.sock.send(verdict.frame)
            except OSError as exc:  # a full queue (ENOBUFS, EAGAIN) or a frame over the MTU
                error = f"{SEND_FAILED}: {exc.strerror or exc}"
        self.counters.add(verdict, len(frame), error)

    def _changed(self) -> None:
        """Log sf-counters now if the last one is a second old, else when it will be."""
        if self._pending is not None or self.counters.version == self._logged_version:
            return
        delay = max(0.0, self._logged_at + self.interval - time.monotonic())
        self._pending = asyncio.get_running_loop().call_later(delay, self._log_counters)

    def _log_counters(self, final: bool = False) -> None:
        self._pending = None
        self._logged_version, self._logged_at = self.counters.version, time.monotonic()
        self.log("sf-counters", sf=self.name, **self.counters.to_dict(), **({"final": True} if final else {}))


# --------------------------------------------------------------------------- standalone


def parser() -> argparse.ArgumentParser:
    description = "The SF data plane alone (no RSerPool): MPLS frames in, SI - 1 out"
    p = argparse.ArgumentParser(prog="python -m nodes.pe.forwarder", description=description)
    p.add_argument("--interface", action="append", required=True, metavar="IF", help="interface (repeatable)")
    p.add_argument("--name", default="sf", help="the name stamped into probes (' >NAME') and logged")
    p.add_argument("--interval", type=float, default=LOG_INTERVAL, help="s between sf-counters events at most")
    return p


async def run(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    log = EventLog(args.name)
    forwarder = Forwarder(args.name, args.interface, log, interval=args.interval)
    try:
        forwarder.start()
    except ForwarderError as exc:
        print(f"python -m nodes.pe.forwarder: {exc}", file=sys.stderr)
        return 1
    try:
        await node.until_signalled()
    finally:
        forwarder.stop()
        log("sf-stopped", sf=args.name)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(run()))
