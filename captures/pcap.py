"""Find the ASAP/ENRP messages in a capture: SCTP DATA chunks with PPID 11/12 (or PPID 0
on ports 3863/9901, as Wireshark does) reassembled from fragments, and UDP datagrams
to or from ports 3863/9901."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.sctp import SCTP, SCTPChunkData
from scapy.packet import NoPayload, Packet
from scapy.utils import PcapReader

import captures.rserpool  # noqa: F401  (binds the ASAP/ENRP layers)
from nodes.wire.constants import Protocol


@dataclasses.dataclass(frozen=True)
class CapturedMessage:
    """One ASAP/ENRP message as found in a capture (bytes not yet decoded)."""

    frame: int
    protocol: Protocol
    transport: str
    src: str
    dst: str
    sport: int
    dport: int
    data: bytes
    ppid: int | None = None
    stream: int | None = None


def _original(layer: Packet) -> bytes:
    """The bytes a layer was dissected from (a layer built from fields has none: rebuild it)."""
    return getattr(layer, "original", None) or bytes(layer)


def _protocol(ppid: int | None, sport: int, dport: int) -> Protocol | None:
    if ppid:
        return Protocol.from_ppid(ppid)
    return Protocol.from_port(dport) or Protocol.from_port(sport)


def _addresses(pkt: Packet) -> tuple[str, str] | None:
    for layer in (IP, IPv6):
        if pkt.haslayer(layer):
            return pkt[layer].src, pkt[layer].dst
    return None


class _Reassembler:
    """Joins fragmented SCTP user messages and drops retransmitted TSNs."""

    def __init__(self) -> None:
        self._seen: dict[tuple[object, ...], set[int]] = {}
        self._partial: dict[tuple[object, ...], list[bytes]] = {}

    def add(self, flow: tuple[object, ...], chunk: SCTPChunkData) -> bytes | None:
        seen = self._seen.setdefault(flow, set())
        if chunk.tsn in seen:
            return None
        seen.add(chunk.tsn)
        data = _original(chunk.data) if chunk.data is not None else b""
        if chunk.beginning and chunk.ending:
            return data
        key = (*flow, chunk.stream_id, chunk.unordered)
        if chunk.beginning:
            self._partial[key] = [data]
        elif key in self._partial:
            self._partial[key].append(data)
        if chunk.ending and key in self._partial:
            return b"".join(self._partial.pop(key))
        return None


def _sctp_messages(number: int, pkt: Packet, ends: tuple[str, str], reassembler: _Reassembler) -> Iterator[CapturedMessage]:
    sctp = pkt[SCTP]
    flow = (*ends, sctp.sport, sctp.dport)
    chunk = sctp.payload
    while not isinstance(chunk, NoPayload):
        if isinstance(chunk, SCTPChunkData):
            protocol = _protocol(chunk.proto_id, sctp.sport, sctp.dport)
            data = reassembler.add(flow, chunk) if protocol else None
            if protocol and data is not None:
                yield CapturedMessage(number, protocol, "sctp", *ends, sctp.sport, sctp.dport, data,
                                      chunk.proto_id, chunk.stream_id)
        chunk = chunk.payload


def messages_in(path: str | Path) -> Iterator[CapturedMessage]:
    """Every ASAP/ENRP message in a pcap or pcapng file, in capture order (frames from 1)."""
    reassembler = _Reassembler()
    with PcapReader(str(path)) as reader:
        for number, pkt in enumerate(reader, start=1):
            ends = _addresses(pkt)
            if ends is None:
                continue
            if pkt.haslayer(SCTP):
                yield from _sctp_messages(number, pkt, ends, reassembler)
            elif pkt.haslayer(UDP):
                udp = pkt[UDP]
                protocol = _protocol(None, udp.sport, udp.dport)
                if protocol:
                    yield CapturedMessage(number, protocol, "udp", *ends, udp.sport, udp.dport,
                                          _original(udp)[8 : udp.len])
