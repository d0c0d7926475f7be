"""Write test captures: messages wrapped in SCTP DATA chunks (with their PPID) or UDP."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.sctp import SCTP, SCTPChunkData
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

from nodes.wire import Protocol


def sctp_frame(data: bytes, protocol: Protocol, tsn: int, *, begin: bool = True, end: bool = True) -> Packet:
    return (
        Ether()
        / IP(src="10.99.0.1", dst="10.99.0.2")
        / SCTP(sport=40000, dport=protocol.port, tag=1)
        / SCTPChunkData(tsn=tsn, stream_id=0, proto_id=protocol.ppid, data=data, beginning=int(begin), ending=int(end))
    )


def udp_frame(data: bytes, protocol: Protocol) -> Packet:
    return Ether() / IP(src="10.99.0.1", dst="10.99.0.2") / UDP(sport=40001, dport=protocol.port) / Raw(data)


def write_sctp(path: Path, items: Iterable[tuple[bytes, Protocol]]) -> Path:
    wrpcap(str(path), [sctp_frame(data, proto, tsn) for tsn, (data, proto) in enumerate(items, start=1)])
    return path
