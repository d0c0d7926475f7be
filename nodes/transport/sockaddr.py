"""Packing and parsing of the C `struct sockaddr_in` / `sockaddr_in6` that SCTP APIs take.

Linux's and usrsctp's layouts agree (no BSD `sin_len` byte): a 16-bit family in host
order, the port in network order, then the address.  `bindx`/`connectx` take several of
them packed back to back, each as long as its family makes it.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

SOCKADDR_IN = struct.Struct("=HH4s8x")  # 16 bytes
SOCKADDR_IN6 = struct.Struct("=HHI16sI")  # 28 bytes


def pack(address: str, port: int) -> bytes:
    """One sockaddr for `address` (IPv4 or IPv6 text) and `port`."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return SOCKADDR_IN.pack(socket.AF_INET, socket.htons(port), ip.packed)
    return SOCKADDR_IN6.pack(socket.AF_INET6, socket.htons(port), 0, ip.packed, 0)


def pack_list(addresses: tuple[str, ...], port: int) -> bytes:
    """Several sockaddrs back to back, as `sctp_bindx()` and `sctp_connectx()` want them."""
    return b"".join(pack(a, port) for a in addresses)


def parse(data: bytes | memoryview, offset: int = 0) -> tuple[str, int, int]:
    """(address, port, size) of the sockaddr at `offset`; ValueError for other families."""
    (family,) = struct.unpack_from("=H", data, offset)
    if family == socket.AF_INET:
        _, port, packed = SOCKADDR_IN.unpack_from(data, offset)
        return str(ipaddress.IPv4Address(packed)), socket.ntohs(port), SOCKADDR_IN.size
    if family == socket.AF_INET6:
        _, port, _, packed, _ = SOCKADDR_IN6.unpack_from(data, offset)
        ip = ipaddress.IPv6Address(packed)
        text = str(ip.ipv4_mapped) if ip.ipv4_mapped else str(ip)
        return text, socket.ntohs(port), SOCKADDR_IN6.size
    raise ValueError(f"unsupported address family {family} in sockaddr")


def family_of(addresses: tuple[str, ...]) -> int:
    """AF_INET6 if any address is IPv6 (an IPv6 socket also serves IPv4), else AF_INET."""
    if any(ipaddress.ip_address(a).version == 6 for a in addresses):
        return socket.AF_INET6
    return socket.AF_INET
