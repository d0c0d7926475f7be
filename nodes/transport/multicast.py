"""UDP multicast for RSerPool announces: ASAP SERVER_ANNOUNCE and ENRP PRESENCE.

Registrars announce themselves to PEs and PUs (239.0.0.50:3863) and to each other
(239.0.0.51:9901) by multicast; that is how a component finds registrars in its operation
scope without configuration.  Here a multi-homed host picks the interfaces to use: it sends
one copy out of each and listens on each, and learns which interface each announce came in
on (a node on two domains must know where a registrar lives).  The hop limit defaults to 1,
so announces stay on the emulated LAN of their domain.

IPv6 defaults: ff05::50 and ff05::51 (site-local scope, the same group ids as IPv4); a
site is the closest IPv6 scope to "one administrative domain".  The hop limit still keeps
them on the link unless raised.

    python -m nodes.transport.multicast listen --group 239.0.0.50:3863 --iface eth0
    python -m nodes.transport.multicast send --group 239.0.0.50:3863 --iface eth0 --count 3
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import json
import socket
import struct
import sys

from nodes.wire.constants import Protocol

ASAP_GROUP_V4, ENRP_GROUP_V4 = "239.0.0.50", "239.0.0.51"
ASAP_GROUP_V6, ENRP_GROUP_V6 = "ff05::50", "ff05::51"
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)  # Linux, not in Python 3.11


@dataclasses.dataclass(frozen=True)
class MulticastConfig:
    group: str
    port: int
    interfaces: tuple[str, ...]
    ttl: int = 1
    loop: bool = True

    def __post_init__(self) -> None:
        try:
            address = ipaddress.ip_address(self.group)
        except ValueError:
            raise ValueError(f"multicast group {self.group!r} is not an IP address") from None
        if not address.is_multicast:
            raise ValueError(f"{self.group} is not a multicast address (IPv4 224.0.0.0/4, IPv6 ff00::/8)")
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is out of range 1-65535")
        if not self.interfaces:
            raise ValueError("a multicast channel needs at least one interface")
        if not 0 < self.ttl < 256:
            raise ValueError(f"TTL {self.ttl} is out of range 1-255")

    @property
    def ipv6(self) -> bool:
        return ":" in self.group

    @classmethod
    def asap(cls, interfaces: tuple[str, ...], ipv6: bool = False) -> MulticastConfig:
        return cls(ASAP_GROUP_V6 if ipv6 else ASAP_GROUP_V4, Protocol.ASAP.port, tuple(interfaces))

    @classmethod
    def enrp(cls, interfaces: tuple[str, ...], ipv6: bool = False) -> MulticastConfig:
        return cls(ENRP_GROUP_V6 if ipv6 else ENRP_GROUP_V4, Protocol.ENRP.port, tuple(interfaces))

    @classmethod
    def parse(cls, text: str, interfaces: tuple[str, ...], **kwargs: int | bool) -> MulticastConfig:
        """From "239.0.0.50:3863" or "[ff05::50]:3863"."""
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"{text!r}: expected GROUP:PORT, such as 239.0.0.50:3863 or [ff05::50]:3863")
        if host.startswith("["):
            if not host.endswith("]"):
                raise ValueError(f"{text!r}: an IPv6 group goes in brackets, such as [ff05::50]:3863")
            host = host[1:-1]
        return cls(host, int(port), tuple(interfaces), **kwargs)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class Datagram:
    data: bytes
    source: str
    source_port: int
    interface: str


def _index(name: str) -> int:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise ValueError(f"no network interface named {name!r} in this namespace") from None


class MulticastChannel:
    """One socket joined to the group on every chosen interface; sends out of each."""

    def __init__(self, config: MulticastConfig, sock: socket.socket, indexes: dict[int, str]) -> None:
        self.config, self.sock, self.indexes = config, sock, indexes
        self.queue: asyncio.Queue[Datagram] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    async def open(cls, config: MulticastConfig) -> MulticastChannel:
        indexes = {_index(name): name for name in config.interfaces}
        family = socket.AF_INET6 if config.ipv6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if config.ipv6:
                _setup_v6(sock, config, indexes)
            else:
                _setup_v4(sock, config, indexes)
        except BaseException:
            sock.close()
            raise
        return cls(config, sock, indexes)

    async def send(self, data: bytes) -> None:
        """One copy out of each chosen interface."""
        for index in self.indexes:
            if self.config.ipv6:
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
                destination: tuple = (self.config.group, self.config.port, 0, index)
            else:
                self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, struct.pack("4s4si", b"", b"", index))
                destination = (self.config.group, self.config.port)
            await self.loop.sock_sendto(self.sock, data, destination)

    async def receive(self) -> Datagram:
        return await self.queue.get()

    def _readable(self) -> None:
        while True:
            try:
                data, ancillary, _flags, source = self.sock.recvmsg(65535, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. an ICMP error queued on the socket: not the peer's datagram
            index = _arrival_interface(ancillary)
            if index in self.indexes:  # joined on several interfaces: only ours count
                self.queue.put_nowait(Datagram(data, source[0], source[1], self.indexes[index]))

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()

    async def __aenter__(self) -> MulticastChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _setup_v4(sock: socket.socket, config: MulticastConfig, indexes: dict[int, str]) -> None:
    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, config.ttl)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(config.loop))
    sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)  # only groups joined here
    sock.bind(("", config.port))
    group = socket.inet_aton(config.group)
    for index in indexes:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("4s4si", group, b"\0" * 4, index))


def _setup_v6(sock: socket.socket, config: MulticastConfig, indexes: dict[int, str]) -> None:
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, config.ttl)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, int(config.loop))
    sock.bind(("::", config.port))
    group = socket.inet_pton(socket.AF_INET6, config.group)
    for index in indexes:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group + struct.pack("@I", index))


def _arrival_interface(ancillary: list[tuple[int, int, bytes]]) -> int:
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            return struct.unpack_from("@i", data)[0]  # struct in_pktinfo: ipi_ifindex first
        if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO:
            return struct.unpack_from("@I", data, 16)[0]  # struct in6_pktinfo: address, then index
    return -1


# --- command line ------------------------------------------------------------------------
def _describe(data: bytes, port: int) -> dict[str, object]:
    from nodes.wire.errors import DecodeError
    from nodes.wire.messages import decode

    protocol = Protocol.ENRP if port == Protocol.ENRP.port else Protocol.ASAP
    try:
        return {"type": type(decode(data, protocol)).__name__}
    except DecodeError as exc:
        return {"error": str(exc)}


def _announce(port: int, seq: int) -> bytes:
    from nodes.wire.messages import Presence, ServerAnnounce, encode

    if port == Protocol.ENRP.port:
        return encode(Presence(sender_id=0x5EED0000 + seq, checksum=0))
    return encode(ServerAnnounce(server_id=0x5EED0000 + seq))


async def _listen(config: MulticastConfig, count: int, timeout: float) -> int:
    async with await MulticastChannel.open(config) as channel:
        print(json.dumps({"event": "listening", "group": config.group, "port": config.port,
                          "interfaces": list(config.interfaces)}), flush=True)  # fmt: skip
        got = 0
        while count == 0 or got < count:
            try:
                d = await asyncio.wait_for(channel.receive(), timeout)
            except TimeoutError:
                break
            got += 1
            print(json.dumps({"event": "datagram", "source": d.source, "interface": d.interface,
                              "bytes": len(d.data), **_describe(d.data, config.port)}), flush=True)  # fmt: skip
    return 0


async def _send(config: MulticastConfig, count: int, interval_ms: float) -> int:
    async with await MulticastChannel.open(config) as channel:
        for seq in range(count):
            await channel.send(_announce(config.port, seq))
            await asyncio.sleep(interval_ms / 1000)
    print(json.dumps({"event": "sent", "count": count, "interfaces": list(config.interfaces)}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nodes.transport.multicast", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("listen", "send"):
        p = sub.add_parser(name)
        p.add_argument("--group", default=f"{ASAP_GROUP_V4}:{Protocol.ASAP.port}", help="GROUP:PORT")
        p.add_argument("--iface", action="append", required=True, help="an interface (repeatable)")
        p.add_argument("--ttl", type=int, default=1)
        p.add_argument("--count", type=int, default=0 if name == "listen" else 1)
    sub.choices["listen"].add_argument("--timeout", type=float, default=30.0, help="stop after this silence")
    sub.choices["send"].add_argument("--interval-ms", type=float, default=100.0)
    args = parser.parse_args(argv)
    try:
        config = MulticastConfig.parse(args.group, tuple(args.iface), ttl=args.ttl)
        if args.command == "listen":
            return asyncio.run(_listen(config, args.count, args.timeout))
        return asyncio.run(_send(config, args.count, args.interval_ms))
    except (ValueError, OSError) as exc:
        print(f"multicast: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
