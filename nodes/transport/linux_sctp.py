"""Linux's SCTP socket API (include/uapi/linux/sctp.h, RFC 6458): constants, struct packing, parsing.

Pure functions only, so that every layout can be checked on a machine whose kernel has no
SCTP (the backend itself is `kernel_sctp.py`).  The layouts were checked field by field
against the uapi header of current Linux (and of 4.x, where they agree); the size of each
struct, as the C compiler lays it out, is noted next to its format.  They differ from
usrsctp's (`usrsctp_api.py`): notification types start at 0x8001, MSG_NOTIFICATION is
0x8000, SCTP_ABORT is 0x0004, and sctp_assocparams puts asocmaxrxt right after the id.

Byte order: every field is in host order except `ppid` (the kernel copies those four bytes
into the DATA chunk untouched, so the API carries them in network order) and the cause code
of SCTP_REMOTE_ERROR (`sre_error`, a __be16 copied off the wire).  The functions here take
and return the PPID and the cause as plain numbers and do the swapping.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable
from typing import NamedTuple

from . import sockaddr
from .base import AssociationEvent, EventKind

SOL_SCTP = socket.IPPROTO_SCTP  # 132: the level of every option and cmsg below

# --- socket options (setsockopt/getsockopt names) --------------------------------------------
SCTP_RTOINFO, SCTP_ASSOCINFO, SCTP_INITMSG, SCTP_NODELAY = 0, 1, 2, 3
SCTP_PEER_ADDR_PARAMS, SCTP_EVENTS, SCTP_STATUS = 9, 11, 14
SCTP_RECVRCVINFO = 32
SCTP_SOCKOPT_BINDX_ADD, SCTP_SOCKOPT_BINDX_REM = 100, 101
SCTP_SOCKOPT_CONNECTX_OLD, SCTP_SOCKOPT_CONNECTX = 107, 110
SCTP_GET_PEER_ADDRS, SCTP_GET_LOCAL_ADDRS = 108, 109
OPTION_NAMES = {
    SCTP_RTOINFO: "SCTP_RTOINFO", SCTP_ASSOCINFO: "SCTP_ASSOCINFO", SCTP_INITMSG: "SCTP_INITMSG",
    SCTP_NODELAY: "SCTP_NODELAY", SCTP_PEER_ADDR_PARAMS: "SCTP_PEER_ADDR_PARAMS", SCTP_EVENTS: "SCTP_EVENTS",
    SCTP_RECVRCVINFO: "SCTP_RECVRCVINFO", SCTP_SOCKOPT_BINDX_ADD: "SCTP_SOCKOPT_BINDX_ADD",
    SCTP_SOCKOPT_CONNECTX: "SCTP_SOCKOPT_CONNECTX", SCTP_SOCKOPT_CONNECTX_OLD: "SCTP_SOCKOPT_CONNECTX_OLD",
    SCTP_GET_PEER_ADDRS: "SCTP_GET_PEER_ADDRS", SCTP_GET_LOCAL_ADDRS: "SCTP_GET_LOCAL_ADDRS",
}  # fmt: skip

# --- cmsg types (enum sctp_cmsg_type) and flags -----------------------------------------------
SCTP_INIT, SCTP_SNDRCV, SCTP_SNDINFO, SCTP_RCVINFO, SCTP_NXTINFO = 0, 1, 2, 3, 4
MSG_NOTIFICATION = 0x8000  # in msg_flags of recvmsg
MSG_EOR = 0x80  # <bits/socket.h>; == socket.MSG_EOR on Linux
SCTP_UNORDERED, SCTP_ADDR_OVER, SCTP_ABORT, SCTP_SACK_IMMEDIATELY = 0x1, 0x2, 0x4, 0x8
SCTP_EOF = 0x200  # MSG_FIN.  One-to-one sockets refuse SCTP_EOF and SCTP_ABORT (EINVAL):
# they end associations with shutdown(2) and close(2) with SO_LINGER 0 instead.
SPP_HB_ENABLE, SPP_HB_DISABLE = 0x1, 0x2

# --- notifications (enum sctp_sn_type, SCTP_SN_TYPE_BASE = 1 << 15) ---------------------------
SCTP_ASSOC_CHANGE, SCTP_PEER_ADDR_CHANGE, SCTP_SEND_FAILED = 0x8001, 0x8002, 0x8003
SCTP_REMOTE_ERROR, SCTP_SHUTDOWN_EVENT, SCTP_PARTIAL_DELIVERY_EVENT = 0x8004, 0x8005, 0x8006
SCTP_SENDER_DRY_EVENT, SCTP_SEND_FAILED_EVENT = 0x8009, 0x800D
SCTP_COMM_UP, SCTP_COMM_LOST, SCTP_RESTART, SCTP_SHUTDOWN_COMP, SCTP_CANT_STR_ASSOC = range(5)
SCTP_ADDR_AVAILABLE, SCTP_ADDR_UNREACHABLE, SCTP_ADDR_REMOVED = 0, 1, 2
SCTP_ADDR_ADDED, SCTP_ADDR_MADE_PRIM, SCTP_ADDR_CONFIRMED, SCTP_ADDR_POTENTIALLY_FAILED = 3, 4, 5, 6
SCTP_DATA_UNSENT, SCTP_DATA_SENT = 0, 1  # ssf_flags (Linux numbers them from 0; RFC 6458 from 1)

ASSOC_STATES = {
    SCTP_COMM_UP: EventKind.UP, SCTP_COMM_LOST: EventKind.LOST, SCTP_RESTART: EventKind.RESTART,
    SCTP_SHUTDOWN_COMP: EventKind.SHUTDOWN, SCTP_CANT_STR_ASSOC: EventKind.CANT_START,
}  # fmt: skip
# POTENTIALLY_FAILED is sent only when SCTP_EXPOSE_PF_STATE asks for it; the API has no word for it.
ADDRESS_STATES = {
    SCTP_ADDR_AVAILABLE: EventKind.ADDRESS_AVAILABLE, SCTP_ADDR_UNREACHABLE: EventKind.ADDRESS_UNREACHABLE,
    SCTP_ADDR_REMOVED: EventKind.ADDRESS_REMOVED, SCTP_ADDR_ADDED: EventKind.ADDRESS_ADDED,
    SCTP_ADDR_MADE_PRIM: EventKind.PRIMARY_CHANGED, SCTP_ADDR_CONFIRMED: EventKind.ADDRESS_CONFIRMED,
}  # fmt: skip

# --- struct layouts ('=' : host order, no implicit padding; pads written out) ----------------
INITMSG = struct.Struct("=HHHH")  # sctp_initmsg: 8 bytes
SNDRCVINFO = struct.Struct("=HHH2xIIIIIi")  # sctp_sndrcvinfo: 32 (2 pad bytes after sinfo_flags)
SNDINFO = struct.Struct("=HHIIi")  # sctp_sndinfo: 16
RCVINFO = struct.Struct("=HHH2xIIIIi")  # sctp_rcvinfo: 28 (2 pad bytes after rcv_flags)
RTOINFO = struct.Struct("=iIII")  # sctp_rtoinfo: 16
ASSOCPARAMS = struct.Struct("=iHHIII")  # sctp_assocparams: 20 (asocmaxrxt, peer dests, rwnds, life)
# sctp_paddrparams is packed, aligned(4): id@0, sockaddr_storage@4 (128), hbinterval@132,
# pathmaxrxt@136 (u16), pathmtu@138, sackdelay@142, flags@146; newer kernels append
# ipv6_flowlabel@150 and dscp@154 (156 in all).  They still accept the older size,
# ALIGN(offsetof(spp_ipv6_flowlabel), 4) = 152, as long as SPP_IPV6_FLOWLABEL/SPP_DSCP are
# not set: that form works on old and new kernels alike, so it is the one written here.
PADDRPARAMS = struct.Struct("=i128sIHIII2x")  # 152
LINGER = struct.Struct("=ii")  # struct linger: 8
GETADDRS = struct.Struct("=iI")  # sctp_getaddrs header: assoc_id (in), addr_num (out); 8
SOCKADDR_STORAGE_SIZE = 128

HEADER = struct.Struct("=HHI")  # sn_type, sn_flags, sn_length: 8
ASSOC_CHANGE = struct.Struct("=HHIHHHHi")  # sctp_assoc_change: 20, then sac_info[] (ABORT causes)
PADDR_CHANGE_TAIL = struct.Struct("=iii")  # spc_state, spc_error, spc_assoc_id at 136
PADDR_CHANGE_SIZE = 8 + SOCKADDR_STORAGE_SIZE + PADDR_CHANGE_TAIL.size  # packed: 148, no tail padding
REMOTE_ERROR = struct.Struct("=HHIH2xi")  # sctp_remote_error: 16 (sre_error@8, pad, assoc_id@12)
SEND_FAILED_SIZE = 8 + 4 + SNDRCVINFO.size + 4  # sctp_send_failed: 48 (ssf_assoc_id@44, data@48)
SEND_FAILED_EVENT_SIZE = 8 + 4 + SNDINFO.size + 4  # sctp_send_failed_event: 32 (id@28, data@32)
SHUTDOWN_EVENT = struct.Struct("=HHIi")  # sctp_shutdown_event: 12
PDAPI_EVENT = struct.Struct("=HHIIi")  # sctp_pdapi_event: 16 (newer kernels append stream, seq: 24)

# sctp_event_subscribe is an array of u8 switches; a kernel takes any prefix of it (optlen <=
# sizeof), so only the first seven are sent: that length works on every kernel since 2.6.
EVENT_SWITCHES = ("data_io", "association", "address", "send_failure", "peer_error", "shutdown",
                  "partial_delivery")  # fmt: skip


def pack_event_subscribe(enabled: Iterable[str]) -> bytes:
    """The SCTP_EVENTS value switching on the named events (see EVENT_SWITCHES)."""
    wanted = set(enabled)
    unknown = wanted - set(EVENT_SWITCHES)
    if unknown:
        raise ValueError(f"unknown SCTP event switch(es): {', '.join(sorted(unknown))}")
    return bytes(1 if name in wanted else 0 for name in EVENT_SWITCHES)


class SndRcvInfo(NamedTuple):
    """struct sctp_sndrcvinfo with the PPID in host terms."""

    stream: int = 0
    ssn: int = 0
    flags: int = 0
    ppid: int = 0
    context: int = 0
    timetolive: int = 0
    tsn: int = 0
    cumtsn: int = 0
    assoc_id: int = 0

    def pack(self) -> bytes:
        return SNDRCVINFO.pack(self.stream, self.ssn, self.flags, socket.htonl(self.ppid), self.context,
                               self.timetolive, self.tsn, self.cumtsn, self.assoc_id)  # fmt: skip

    @classmethod
    def unpack(cls, data: bytes, offset: int = 0) -> SndRcvInfo:
        stream, ssn, flags, ppid, context, ttl, tsn, cumtsn, assoc_id = SNDRCVINFO.unpack_from(data, offset)
        return cls(stream, ssn, flags, socket.ntohl(ppid), context, ttl, tsn, cumtsn, assoc_id)


def sndrcv_cmsg(stream: int, ppid: int, unordered: bool = False) -> tuple[int, int, bytes]:
    """The ancillary data item that gives one sendmsg() its stream, PPID and flags.  SCTP_SNDRCV
    rather than RFC 6458's SCTP_SNDINFO: every Linux since 2.6 takes it, SNDINFO only newer ones."""
    info = SndRcvInfo(stream=stream, flags=SCTP_UNORDERED if unordered else 0, ppid=ppid)
    return SOL_SCTP, SCTP_SNDRCV, info.pack()


def pack_sndinfo(stream: int, ppid: int, flags: int = 0, context: int = 0, assoc_id: int = 0) -> bytes:
    return SNDINFO.pack(stream, flags, socket.htonl(ppid), context, assoc_id)


def pack_rcvinfo(stream: int, ssn: int, flags: int, ppid: int, tsn: int = 0, cumtsn: int = 0,
                 context: int = 0, assoc_id: int = 0) -> bytes:  # fmt: skip
    """What the kernel writes for SCTP_RCVINFO; for tests (the kernel is the only writer)."""
    return RCVINFO.pack(stream, ssn, flags, socket.htonl(ppid), tsn, cumtsn, context, assoc_id)


class ReceiveInfo(NamedTuple):
    stream: int
    ppid: int
    flags: int
    assoc_id: int

    @property
    def unordered(self) -> bool:
        return bool(self.flags & SCTP_UNORDERED)


def receive_info(ancdata: Iterable[tuple[int, int, bytes]]) -> ReceiveInfo | None:
    """Stream, PPID and flags of a received message from recvmsg()'s ancillary data: from
    SCTP_RCVINFO or SCTP_SNDRCV, whichever the socket asked for (RCVINFO wins if both)."""
    found: ReceiveInfo | None = None
    for level, kind, data in ancdata:
        if level != SOL_SCTP:
            continue
        if kind == SCTP_RCVINFO and len(data) >= RCVINFO.size:
            sid, _ssn, flags, ppid, _tsn, _cum, _ctx, assoc_id = RCVINFO.unpack_from(data)
            return ReceiveInfo(sid, socket.ntohl(ppid), flags, assoc_id)
        if kind == SCTP_SNDRCV and len(data) >= SNDRCVINFO.size:
            info = SndRcvInfo.unpack(data)
            found = ReceiveInfo(info.stream, info.ppid, info.flags, info.assoc_id)
    return found


# --- option values ---------------------------------------------------------------------------
def pack_initmsg(ostreams: int, max_instreams: int, max_attempts: int, max_init_timeo_ms: int) -> bytes:
    return INITMSG.pack(ostreams, max_instreams, max_attempts, max_init_timeo_ms)


def pack_rtoinfo(initial_ms: int, max_ms: int, min_ms: int, assoc_id: int = 0) -> bytes:
    if min_ms > max_ms:
        raise ValueError(f"RTO.Min {min_ms} ms above RTO.Max {max_ms} ms (the kernel says EINVAL)")
    return RTOINFO.pack(assoc_id, initial_ms, max_ms, min_ms)


def pack_assocparams(asocmaxrxt: int, cookie_life_ms: int = 0, assoc_id: int = 0) -> bytes:
    """Zero leaves a field as it is; the peer count and both rwnds are read-only."""
    return ASSOCPARAMS.pack(assoc_id, asocmaxrxt, 0, 0, 0, cookie_life_ms)


def pack_paddrparams(hbinterval_ms: int, pathmaxrxt: int, flags: int = SPP_HB_ENABLE,
                     address: tuple[str, int] | None = None, assoc_id: int = 0) -> bytes:  # fmt: skip
    """Heartbeat interval and Path.Max.Retrans; without `address` (an all-zero storage, which
    the kernel reads as the wildcard) they become the defaults of every path."""
    storage = pack_sockaddr(*address) if address else b""
    return PADDRPARAMS.pack(assoc_id, storage.ljust(SOCKADDR_STORAGE_SIZE, b"\0"), hbinterval_ms,
                            pathmaxrxt, 0, 0, flags)  # fmt: skip


def pack_linger(on: bool, seconds: int) -> bytes:
    return LINGER.pack(1 if on else 0, seconds)


# --- addresses -------------------------------------------------------------------------------
def pack_sockaddr(address: str, port: int) -> bytes:
    """A sockaddr_in (16 bytes) or sockaddr_in6 (28) as the kernel reads it; an IPv6 scope
    ("fe80::1%eth0" or "%3") goes into sin6_scope_id, which link-local addresses need."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        scope = int(ip.scope_id) if ip.scope_id.isdigit() else socket.if_nametoindex(ip.scope_id)
        return sockaddr.SOCKADDR_IN6.pack(socket.AF_INET6, socket.htons(port), 0, ip.packed, scope)
    return sockaddr.pack(address, port)


def pack_sockaddrs(addresses: Iterable[str], port: int) -> bytes:
    """The packed array that SCTP_SOCKOPT_BINDX_ADD and SCTP_SOCKOPT_CONNECTX take: each
    sockaddr as long as its family makes it, back to back, no count (the kernel walks it)."""
    return b"".join(pack_sockaddr(a, port) for a in addresses)


def parse_sockaddrs(data: bytes, count: int, offset: int = 0) -> list[tuple[str, int]]:
    """`count` packed sockaddrs from `offset`; IPv4-mapped IPv6 addresses come back as IPv4."""
    found = []
    for _ in range(count):
        address, port, size = sockaddr.parse(data, offset)
        found.append((address, port))
        offset += size
    return found


def pack_getaddrs_request(assoc_id: int, buffer_size: int) -> bytes:
    """The in/out buffer for SCTP_GET_PEER_ADDRS/SCTP_GET_LOCAL_ADDRS: the kernel reads the
    association id from it (0 asks for the socket's bound addresses) and overwrites the rest."""
    return GETADDRS.pack(assoc_id, 0).ljust(buffer_size, b"\0")


def parse_getaddrs(data: bytes) -> list[tuple[str, int]]:
    _assoc_id, count = GETADDRS.unpack_from(data)
    return parse_sockaddrs(data, count, GETADDRS.size)


# --- notifications ---------------------------------------------------------------------------
class AssocChange(NamedTuple):
    state: int
    error: int  # an ABORT's cause code as it came (network order) or 0; the reason is in SO_ERROR
    outbound_streams: int
    inbound_streams: int
    assoc_id: int
    info: bytes = b""  # the ABORT chunk's causes, if an ABORT ended it


class PaddrChange(NamedTuple):
    address: str
    port: int
    state: int
    error: int
    assoc_id: int


class RemoteError(NamedTuple):
    cause: int
    assoc_id: int
    data: bytes = b""


class SendFailed(NamedTuple):
    """SCTP_SEND_FAILED (with a sndrcvinfo) and SCTP_SEND_FAILED_EVENT (with a sndinfo) alike."""

    flags: int
    error: int
    stream: int
    ppid: int
    assoc_id: int
    data: bytes = b""


class ShutdownEvent(NamedTuple):
    assoc_id: int


class PartialDelivery(NamedTuple):
    indication: int
    assoc_id: int


Notification = AssocChange | PaddrChange | RemoteError | SendFailed | ShutdownEvent | PartialDelivery


class NotificationError(ValueError):
    """A notification shorter than its type's fixed part (the kernel never sends one)."""


def parse_notification(data: bytes) -> Notification | None:
    """The notification in `data` (one whole MSG_NOTIFICATION read); None for types not
    handled here (sender dry, adaptation, authentication, stream reset ...)."""
    if len(data) < HEADER.size:
        raise NotificationError(f"notification of {len(data)} bytes has no header")
    kind, _flags, _length = HEADER.unpack_from(data)
    need = {SCTP_ASSOC_CHANGE: ASSOC_CHANGE.size, SCTP_PEER_ADDR_CHANGE: PADDR_CHANGE_SIZE,
            SCTP_REMOTE_ERROR: REMOTE_ERROR.size, SCTP_SEND_FAILED: SEND_FAILED_SIZE,
            SCTP_SEND_FAILED_EVENT: SEND_FAILED_EVENT_SIZE, SCTP_SHUTDOWN_EVENT: SHUTDOWN_EVENT.size,
            SCTP_PARTIAL_DELIVERY_EVENT: PDAPI_EVENT.size}.get(kind)  # fmt: skip
    if need is None:
        return None
    if len(data) < need:
        raise NotificationError(f"notification {kind:#06x} truncated: {len(data)} of {need} bytes")
    if kind == SCTP_ASSOC_CHANGE:
        _, _, _, state, error, outbound, inbound, assoc_id = ASSOC_CHANGE.unpack_from(data)
        return AssocChange(state, error, outbound, inbound, assoc_id, bytes(data[ASSOC_CHANGE.size :]))
    if kind == SCTP_PEER_ADDR_CHANGE:
        address, port, _size = sockaddr.parse(data, HEADER.size)
        state, error, assoc_id = PADDR_CHANGE_TAIL.unpack_from(data, HEADER.size + SOCKADDR_STORAGE_SIZE)
        return PaddrChange(address, port, state, error, assoc_id)
    if kind == SCTP_REMOTE_ERROR:
        _, _, _, cause, assoc_id = REMOTE_ERROR.unpack_from(data)
        return RemoteError(socket.ntohs(cause), assoc_id, bytes(data[REMOTE_ERROR.size :]))
    if kind == SCTP_SEND_FAILED:
        _, flags, _, error = struct.unpack_from("=HHII", data)
        info = SndRcvInfo.unpack(data, 12)
        (assoc_id,) = struct.unpack_from("=i", data, 44)
        return SendFailed(flags, error, info.stream, info.ppid, assoc_id, bytes(data[SEND_FAILED_SIZE:]))
    if kind == SCTP_SEND_FAILED_EVENT:
        _, flags, _, error = struct.unpack_from("=HHII", data)
        sid, _sflags, ppid, _context, _aid = SNDINFO.unpack_from(data, 12)
        (assoc_id,) = struct.unpack_from("=i", data, 28)
        data_part = bytes(data[SEND_FAILED_EVENT_SIZE:])
        return SendFailed(flags, error, sid, socket.ntohl(ppid), assoc_id, data_part)
    if kind == SCTP_SHUTDOWN_EVENT:
        return ShutdownEvent(SHUTDOWN_EVENT.unpack_from(data)[3])
    _, _, _, indication, assoc_id = PDAPI_EVENT.unpack_from(data)
    return PartialDelivery(indication, assoc_id)


def to_event(note: Notification) -> AssociationEvent | None:
    """The backend-independent event for a notification; None for what the API has no word for
    (an unknown state, a potentially-failed path, an aborted partial delivery)."""
    if isinstance(note, AssocChange):
        kind = ASSOC_STATES.get(note.state)
        if kind is None:
            return None
        detail = {
            EventKind.UP: f"{note.outbound_streams} outbound, {note.inbound_streams} inbound streams",
            EventKind.LOST: "aborted or timed out",
            EventKind.RESTART: "the peer restarted",
            EventKind.SHUTDOWN: "shutdown complete",
            EventKind.CANT_START: "INIT failed",
        }[kind]
        if note.error:
            detail += f" (sac_error {note.error})"
        return AssociationEvent(kind, error=note.error, detail=detail)
    if isinstance(note, PaddrChange):
        kind = ADDRESS_STATES.get(note.state)
        return None if kind is None else AssociationEvent(kind, address=note.address, error=note.error)
    if isinstance(note, RemoteError):
        return AssociationEvent(EventKind.REMOTE_ERROR, error=note.cause,
                                detail=f"peer reported SCTP error cause {note.cause}")  # fmt: skip
    if isinstance(note, SendFailed):
        when = "after being sent" if note.flags == SCTP_DATA_SENT else "before being sent"
        detail = f"a message with PPID {note.ppid} on stream {note.stream} failed {when}"
        return AssociationEvent(EventKind.SEND_FAILED, error=note.error, detail=detail)
    if isinstance(note, ShutdownEvent):
        return AssociationEvent(EventKind.SHUTDOWN, detail="peer started a graceful shutdown")
    return None
