"""ctypes declarations for Debian's libusrsctp2 (usrsctp 0.9.5) and parsing of its notifications.

Only what the asyncio backend (`usrsctp.py`) uses is declared.  Layouts follow usrsctp.h;
sizes were checked against the C compiler on x86-64 (noted next to each struct) and are
asserted at import time where ctypes computes them.  usrsctp's constants differ from
Linux's: notification types start at 0x0001 (Linux: 0x8001), MSG_NOTIFICATION is 0x2000.
"""

from __future__ import annotations

import ctypes
import socket
import struct

from . import sockaddr
from .base import AssociationEvent, EventKind

# --- constants (usrsctp.h) -----------------------------------------------------------------
MSG_NOTIFICATION = 0x2000
MSG_EOR = 0x80  # the host's MSG_EOR (Linux)
SCTP_FUTURE_ASSOC, SCTP_CURRENT_ASSOC, SCTP_ALL_ASSOC = 0, 1, 2
SCTP_BINDX_ADD_ADDR = 0x8001
SCTP_SENDV_SNDINFO = 1
SCTP_UNORDERED, SCTP_EOF, SCTP_ABORT = 0x0400, 0x0100, 0x0200

SCTP_RTOINFO, SCTP_ASSOCINFO, SCTP_INITMSG, SCTP_NODELAY = 0x01, 0x02, 0x03, 0x04
SCTP_PEER_ADDR_PARAMS, SCTP_EVENT, SCTP_RECVRCVINFO = 0x0A, 0x1E, 0x1F
SCTP_REMOTE_UDP_ENCAPS_PORT = 0x24
SCTP_GET_ASSOC_NUMBER = 0x104
SPP_HB_ENABLE = 0x01

SCTP_ASSOC_CHANGE, SCTP_PEER_ADDR_CHANGE, SCTP_REMOTE_ERROR = 0x0001, 0x0002, 0x0003
SCTP_SHUTDOWN_EVENT, SCTP_SEND_FAILED_EVENT = 0x0005, 0x000E
SUBSCRIBED_EVENTS = (
    SCTP_ASSOC_CHANGE, SCTP_PEER_ADDR_CHANGE, SCTP_REMOTE_ERROR, SCTP_SHUTDOWN_EVENT, SCTP_SEND_FAILED_EVENT,
)  # fmt: skip

ASSOC_STATES = {
    0x0001: EventKind.UP,
    0x0002: EventKind.LOST,
    0x0003: EventKind.RESTART,
    0x0004: EventKind.SHUTDOWN,
    0x0005: EventKind.CANT_START,
}
ADDRESS_STATES = {
    0x0001: EventKind.ADDRESS_AVAILABLE,
    0x0002: EventKind.ADDRESS_UNREACHABLE,
    0x0003: EventKind.ADDRESS_REMOVED,
    0x0004: EventKind.ADDRESS_ADDED,
    0x0005: EventKind.PRIMARY_CHANGED,
    0x0006: EventKind.ADDRESS_CONFIRMED,
}


# --- structures --------------------------------------------------------------------------
class SockStore(ctypes.Structure):
    """union sctp_sockstore: 32 bytes, 8-aligned (sockaddr_conn holds a pointer).  Passed by
    value to the receive callback; declared as opaque words because ctypes' support for
    unions passed by value is not dependable."""

    _fields_ = [("words", ctypes.c_uint64 * 4)]


class RcvInfo(ctypes.Structure):  # struct sctp_rcvinfo: 28 bytes
    _fields_ = [
        ("sid", ctypes.c_uint16), ("ssn", ctypes.c_uint16), ("flags", ctypes.c_uint16),
        ("ppid", ctypes.c_uint32), ("tsn", ctypes.c_uint32), ("cumtsn", ctypes.c_uint32),
        ("context", ctypes.c_uint32), ("assoc_id", ctypes.c_uint32),
    ]  # fmt: skip


class SndInfo(ctypes.Structure):  # struct sctp_sndinfo: 16 bytes
    _fields_ = [
        ("sid", ctypes.c_uint16), ("flags", ctypes.c_uint16), ("ppid", ctypes.c_uint32),
        ("context", ctypes.c_uint32), ("assoc_id", ctypes.c_uint32),
    ]  # fmt: skip


class Event(ctypes.Structure):  # struct sctp_event: 8 bytes
    _fields_ = [("assoc_id", ctypes.c_uint32), ("type", ctypes.c_uint16), ("on", ctypes.c_uint8)]


class InitMsg(ctypes.Structure):  # struct sctp_initmsg: 8 bytes
    _fields_ = [
        ("num_ostreams", ctypes.c_uint16), ("max_instreams", ctypes.c_uint16),
        ("max_attempts", ctypes.c_uint16), ("max_init_timeo", ctypes.c_uint16),
    ]  # fmt: skip


class RtoInfo(ctypes.Structure):  # struct sctp_rtoinfo: 16 bytes
    _fields_ = [
        ("assoc_id", ctypes.c_uint32), ("initial", ctypes.c_uint32),
        ("max", ctypes.c_uint32), ("min", ctypes.c_uint32),
    ]  # fmt: skip


class AssocParams(ctypes.Structure):  # struct sctp_assocparams: 20 bytes
    _fields_ = [
        ("assoc_id", ctypes.c_uint32), ("peer_rwnd", ctypes.c_uint32), ("local_rwnd", ctypes.c_uint32),
        ("cookie_life", ctypes.c_uint32), ("asocmaxrxt", ctypes.c_uint16),
        ("number_peer_destinations", ctypes.c_uint16),
    ]  # fmt: skip


class PaddrParams(ctypes.Structure):  # struct sctp_paddrparams: 152 bytes
    _fields_ = [
        ("address", ctypes.c_uint8 * 128), ("assoc_id", ctypes.c_uint32), ("hbinterval", ctypes.c_uint32),
        ("pathmtu", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("ipv6_flowlabel", ctypes.c_uint32),
        ("pathmaxrxt", ctypes.c_uint16), ("dscp", ctypes.c_uint8),
    ]  # fmt: skip
    _pack_ = 4


class UdpEncaps(ctypes.Structure):  # struct sctp_udpencaps: 136 bytes
    _fields_ = [("address", ctypes.c_uint8 * 128), ("assoc_id", ctypes.c_uint32), ("port", ctypes.c_uint16)]
    _pack_ = 4


for _struct, _size in ((SockStore, 32), (RcvInfo, 28), (SndInfo, 16), (Event, 8), (InitMsg, 8),
                       (RtoInfo, 16), (AssocParams, 20), (PaddrParams, 152), (UdpEncaps, 136)):  # fmt: skip
    assert ctypes.sizeof(_struct) == _size, (_struct.__name__, ctypes.sizeof(_struct))

RECEIVE_CB = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, SockStore, ctypes.c_void_p, ctypes.c_size_t, RcvInfo, ctypes.c_int,
    ctypes.c_void_p,
)
SEND_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)


def load(soname: str) -> ctypes.CDLL:
    """The library with the prototypes used here.  CDLL releases the GIL around every call,
    which matters: usrsctp's own threads take it in the callbacks while we call in."""
    lib = ctypes.CDLL(soname, use_errno=True)
    v, p, i, u32, sz = ctypes.c_void_p, ctypes.POINTER, ctypes.c_int, ctypes.c_uint32, ctypes.c_size_t
    prototypes = {
        "usrsctp_init": (None, [ctypes.c_uint16, v, v]),
        "usrsctp_init_nothreads": (None, [ctypes.c_uint16, v, v]),
        "recv_thread_init": (None, []),
        "sctp_start_timer_thread": (None, []),
        "usrsctp_socket": (v, [i, i, i, RECEIVE_CB, SEND_CB, u32, v]),
        "usrsctp_setsockopt": (i, [v, i, i, v, u32]),
        "usrsctp_getsockopt": (i, [v, i, i, v, p(u32)]),
        "usrsctp_bind": (i, [v, v, u32]),
        "usrsctp_bindx": (i, [v, v, i, i]),
        "usrsctp_listen": (i, [v, i]),
        "usrsctp_connectx": (i, [v, v, i, p(u32)]),
        "usrsctp_sendv": (ctypes.c_ssize_t, [v, v, sz, v, i, v, u32, ctypes.c_uint, i]),
        "usrsctp_getpaddrs": (i, [v, u32, p(v)]),
        "usrsctp_freepaddrs": (None, [v]),
        "usrsctp_getladdrs": (i, [v, u32, p(v)]),
        "usrsctp_freeladdrs": (None, [v]),
        "usrsctp_set_non_blocking": (i, [v, i]),
        "usrsctp_close": (None, [v]),
        "usrsctp_finish": (i, []),
        "usrsctp_sysctl_set_sctp_blackhole": (i, [u32]),
        "usrsctp_sysctl_set_sctp_debug_on": (i, [u32]),
    }
    for name, (restype, argtypes) in prototypes.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


# --- notifications -----------------------------------------------------------------------
HEADER = struct.Struct("=HHI")  # sn_type, sn_flags, sn_length


def parse_notification(data: bytes) -> tuple[int, AssociationEvent] | None:
    """(association id, event) for a notification usrsctp delivered; None for kinds we
    neither subscribe to nor map (and for a truncated one, which usrsctp never sends)."""
    if len(data) < HEADER.size:
        return None
    kind, _flags, _length = HEADER.unpack_from(data)
    try:
        return _PARSERS[kind](data) if kind in _PARSERS else None
    except (struct.error, ValueError):
        return None


def _assoc_change(data: bytes) -> tuple[int, AssociationEvent]:
    state, error, outbound, inbound, assoc_id = struct.unpack_from("=HHHHI", data, 8)
    kind = ASSOC_STATES.get(state)
    if kind is None:
        raise ValueError(f"assoc change state {state}")
    detail = f"{outbound} outbound, {inbound} inbound streams" if kind is EventKind.UP else ""
    if error:
        detail = f"SCTP error cause {error}"
    return assoc_id, AssociationEvent(kind, error=error, detail=detail)


def _paddr_change(data: bytes) -> tuple[int, AssociationEvent]:
    address, _port, _size = sockaddr.parse(data, 8)
    state, error, assoc_id = struct.unpack_from("=III", data, 136)
    kind = ADDRESS_STATES.get(state)
    if kind is None:
        raise ValueError(f"peer address state {state}")
    return assoc_id, AssociationEvent(kind, address=address, error=error)


def _remote_error(data: bytes) -> tuple[int, AssociationEvent]:
    cause, assoc_id = struct.unpack_from("=H2xI", data, 8)
    return assoc_id, AssociationEvent(EventKind.REMOTE_ERROR, error=socket.ntohs(cause),
                                      detail=f"peer reported SCTP error cause {socket.ntohs(cause)}")  # fmt: skip


def _shutdown(data: bytes) -> tuple[int, AssociationEvent]:
    (assoc_id,) = struct.unpack_from("=I", data, 8)
    return assoc_id, AssociationEvent(EventKind.SHUTDOWN, detail="peer started a graceful shutdown")


def _send_failed(data: bytes) -> tuple[int, AssociationEvent]:
    (error,) = struct.unpack_from("=I", data, 8)
    _sid, _flags, ppid, _context, _aid = struct.unpack_from("=HHIII", data, 12)
    (assoc_id,) = struct.unpack_from("=I", data, 28)
    return assoc_id, AssociationEvent(EventKind.SEND_FAILED, error=error,
                                      detail=f"a message with PPID {socket.ntohl(ppid)} was not delivered")  # fmt: skip


_PARSERS = {
    SCTP_ASSOC_CHANGE: _assoc_change,
    SCTP_PEER_ADDR_CHANGE: _paddr_change,
    SCTP_REMOTE_ERROR: _remote_error,
    SCTP_SHUTDOWN_EVENT: _shutdown,
    SCTP_SEND_FAILED_EVENT: _send_failed,
}
