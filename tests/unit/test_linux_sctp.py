"""Linux's SCTP API as `linux_sctp` packs and parses it, checked against byte strings built here
by hand from include/uapi/linux/sctp.h (offsets written out) and against the C layout rules
(ctypes lays the same structs out independently); then the logic of the backend on top
(`kernel_sctp`) driven through a scripted socket, as the kernel running the tests may have
no SCTP (real associations: tests/integration/test_kernel_sctp.py)."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodes.transport import kernel_sctp
from nodes.transport import linux_sctp as lk
from nodes.transport.base import (
    AssociationClosed, AssociationEvent, ConnectError, Delivery, EventKind, MessageTooLarge, TransportOptions,
)  # fmt: skip
from nodes.transport.kernel_sctp import KernelAssociation, KernelListener

u8, u16, u32, s32 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_int32


def sockaddr_in(address: str, port: int) -> bytes:  # family (host order), port (network), addr, zero[8]
    return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(address) + bytes(8)


def sockaddr_in6(address: str, port: int, scope: int = 0) -> bytes:  # family, port, flowinfo, addr, scope
    return (struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, 0)
            + socket.inet_pton(socket.AF_INET6, address) + struct.pack("=I", scope))  # fmt: skip


def header(kind: int, length: int, flags: int = 0) -> bytes:
    return struct.pack("=HHI", kind, flags, length)


def assoc_change(state: int, error: int = 0, assoc_id: int = 9, info: bytes = b"") -> bytes:
    return header(0x8001, 20 + len(info)) + struct.pack("=HHHHi", state, error, 4, 3, assoc_id) + info


def paddr_change(storage: bytes, state: int, error: int = 0, assoc_id: int = 9) -> bytes:
    data = bytearray(148)  # 8 + sockaddr_storage (128) + state, error, assoc_id; packed, aligned(4)
    data[0:8] = header(0x8002, 148)
    data[8 : 8 + len(storage)] = storage
    struct.pack_into("=iii", data, 136, state, error, assoc_id)
    return bytes(data)


def shutdown_event(assoc_id: int = 9) -> bytes:
    return header(0x8005, 12) + struct.pack("=i", assoc_id)


# --- layouts -------------------------------------------------------------------------------------
class SndRcvInfoC(ctypes.Structure):
    _fields_ = [("stream", u16), ("ssn", u16), ("flags", u16), ("ppid", u32), ("context", u32),
                ("ttl", u32), ("tsn", u32), ("cumtsn", u32), ("assoc_id", s32)]  # fmt: skip


class RcvInfoC(ctypes.Structure):
    _fields_ = [("sid", u16), ("ssn", u16), ("flags", u16), ("ppid", u32), ("tsn", u32), ("cumtsn", u32),
                ("context", u32), ("assoc_id", s32)]  # fmt: skip


class SendFailedC(ctypes.Structure):
    _fields_ = [("type", u16), ("flags", u16), ("length", u32), ("error", u32), ("info", SndRcvInfoC),
                ("assoc_id", s32)]  # fmt: skip


class RemoteErrorC(ctypes.Structure):
    _fields_ = [("type", u16), ("flags", u16), ("length", u32), ("error", u16), ("assoc_id", s32)]


class AssocParamsC(ctypes.Structure):
    _fields_ = [("assoc_id", s32), ("asocmaxrxt", u16), ("peer_destinations", u16), ("peer_rwnd", u32),
                ("local_rwnd", u32), ("cookie_life", u32)]  # fmt: skip


class PaddrParamsOldC(ctypes.Structure):  # __attribute__((packed)); aligned(4) rounds 150 up to 152
    _pack_ = 1
    _fields_ = [("assoc_id", s32), ("address", u8 * 128), ("hbinterval", u32), ("pathmaxrxt", u16),
                ("pathmtu", u32), ("sackdelay", u32), ("flags", u32)]  # fmt: skip


class PaddrChangeC(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("type", u16), ("flags", u16), ("length", u32), ("address", ctypes.c_uint64 * 16),
                ("state", s32), ("error", s32), ("assoc_id", s32)]  # fmt: skip


def aligned4(size: int) -> int:
    return (size + 3) & ~3


def test_struct_sizes_follow_the_c_layout_rules():
    assert lk.SNDRCVINFO.size == ctypes.sizeof(SndRcvInfoC) == 32 and SndRcvInfoC.ppid.offset == 8
    assert lk.RCVINFO.size == ctypes.sizeof(RcvInfoC) == 28 and RcvInfoC.ppid.offset == 8
    assert lk.SEND_FAILED_SIZE == ctypes.sizeof(SendFailedC) == 48 and SendFailedC.assoc_id.offset == 44
    assert lk.REMOTE_ERROR.size == ctypes.sizeof(RemoteErrorC) == 16 and RemoteErrorC.assoc_id.offset == 12
    assert lk.ASSOCPARAMS.size == ctypes.sizeof(AssocParamsC) == 20 and AssocParamsC.asocmaxrxt.offset == 4
    assert lk.PADDRPARAMS.size == aligned4(ctypes.sizeof(PaddrParamsOldC)) == 152
    c = PaddrParamsOldC
    assert (c.hbinterval.offset, c.pathmaxrxt.offset, c.flags.offset) == (132, 136, 146)
    assert lk.PADDR_CHANGE_SIZE == aligned4(ctypes.sizeof(PaddrChangeC)) == 148
    assert PaddrChangeC.state.offset == 136
    sizes = (lk.INITMSG.size, lk.SNDINFO.size, lk.RTOINFO.size, lk.ASSOC_CHANGE.size, lk.SHUTDOWN_EVENT.size)
    assert sizes == (8, 16, 16, 20, 12)
    assert (lk.SEND_FAILED_EVENT_SIZE, lk.GETADDRS.size, lk.MSG_EOR) == (32, 8, socket.MSG_EOR)


def test_sndrcv_cmsg_carries_stream_flags_and_ppid_in_network_order():
    level, kind, data = lk.sndrcv_cmsg(stream=3, ppid=11, unordered=True)
    ppid = b"\x00\x00\x00\x0b"  # 11, big-endian whatever the host
    expected = struct.pack("=HHH", 3, 0, 0x0001) + b"\0\0" + ppid + bytes(16) + struct.pack("=i", 0)
    assert (level, kind, data) == (132, 1, expected)
    sndinfo = struct.pack("=HH", 2, 1) + b"\0\0\0\x0c" + struct.pack("=Ii", 0, 5)
    assert lk.pack_sndinfo(2, 12, flags=0x0001, assoc_id=5) == sndinfo


@given(st.builds(lk.SndRcvInfo, *(st.integers(0, 0xFFFF),) * 3, *(st.integers(0, 0xFFFFFFFF),) * 5,
                 st.integers(-(2**31), 2**31 - 1)))  # fmt: skip
def test_sndrcvinfo_round_trip(info):
    assert lk.SndRcvInfo.unpack(info.pack()) == info


def test_receive_info_from_rcvinfo_or_sndrcv():
    rcvinfo = struct.pack("=HHH", 2, 5, 0) + b"\0\0" + b"\0\0\0\x0c" + struct.pack("=IIIi", 100, 99, 0, 7)
    assert rcvinfo == lk.pack_rcvinfo(2, 5, 0, 12, tsn=100, cumtsn=99, assoc_id=7)
    sndrcv = lk.SndRcvInfo(stream=1, flags=lk.SCTP_UNORDERED, ppid=11, assoc_id=7).pack()
    assert lk.receive_info([(132, 3, rcvinfo)]) == lk.ReceiveInfo(2, 12, 0, 7)
    assert lk.receive_info([(0, 1, sndrcv), (132, 1, sndrcv)]) == lk.ReceiveInfo(1, 11, 1, 7)
    assert lk.receive_info([(132, 1, sndrcv), (132, 3, rcvinfo)]).stream == 2  # RCVINFO wins
    assert lk.receive_info([(132, 1, sndrcv)]).unordered and lk.receive_info([]) is None


def test_option_values():
    params = bytearray(152)
    struct.pack_into("=I", params, 132, 1000)
    struct.pack_into("=H", params, 136, 2)
    struct.pack_into("=I", params, 146, lk.SPP_HB_ENABLE)
    assert lk.pack_paddrparams(1000, 2) == bytes(params)
    assert lk.pack_rtoinfo(1000, 2000, 200) == struct.pack("=iIII", 0, 1000, 2000, 200)
    assert lk.pack_assocparams(8) == struct.pack("=iHH", 0, 8, 0) + bytes(12)
    assert lk.pack_initmsg(4, 4, 4, 2000) == struct.pack("=HHHH", 4, 4, 4, 2000)
    assert lk.pack_linger(True, 0) == struct.pack("=ii", 1, 0)
    assert lk.pack_event_subscribe(lk.EVENT_SWITCHES) == b"\x01" * 7
    assert lk.pack_event_subscribe(["association", "shutdown"]) == b"\0\x01\0\0\0\x01\0"
    with pytest.raises(ValueError, match="RTO.Min 300 ms above RTO.Max 200 ms"):
        lk.pack_rtoinfo(100, 200, 300)
    with pytest.raises(ValueError, match="unknown SCTP event switch"):
        lk.pack_event_subscribe(["dry"])


def test_sockaddr_list_for_bindx_and_getaddrs():
    packed = lk.pack_sockaddrs(["10.1.0.1", "fd00::1", "10.2.0.1"], 3863)
    expected = [sockaddr_in("10.1.0.1", 3863), sockaddr_in6("fd00::1", 3863), sockaddr_in("10.2.0.1", 3863)]
    assert packed == b"".join(expected)
    assert len(packed) == 16 + 28 + 16
    assert lk.pack_sockaddr("fe80::1%3", 9) == sockaddr_in6("fe80::1", 9, scope=3)
    reply = struct.pack("=iI", 1, 3) + sockaddr_in6("::ffff:10.1.0.2", 9) + packed[16:]
    assert lk.parse_getaddrs(reply) == [("10.1.0.2", 9), ("fd00::1", 3863), ("10.2.0.1", 3863)]
    request = lk.pack_getaddrs_request(1, 100)
    assert len(request) == 100 and request[:8] == struct.pack("=iI", 1, 0)


# --- notifications ---------------------------------------------------------------------------
def test_assoc_change():
    assert lk.parse_notification(assoc_change(0)) == lk.AssocChange(0, 0, 4, 3, 9, b"")
    assert lk.to_event(lk.parse_notification(assoc_change(0))) == AssociationEvent(
        EventKind.UP, detail="4 outbound, 3 inbound streams")  # fmt: skip
    cause = b"\x00\x0c\x00\x04"  # User-Initiated Abort, as the ABORT chunk carried it
    lost = lk.parse_notification(assoc_change(1, error=12, info=cause))
    assert lost.info == cause and lk.to_event(lost).kind is EventKind.LOST and lk.to_event(lost).error == 12
    kinds = [lk.to_event(lk.parse_notification(assoc_change(s))).kind for s in (2, 3, 4)]
    assert kinds == [EventKind.RESTART, EventKind.SHUTDOWN, EventKind.CANT_START]
    assert lk.to_event(lk.parse_notification(assoc_change(9))) is None
    with pytest.raises(lk.NotificationError, match="truncated: 12 of 20"):
        lk.parse_notification(assoc_change(0)[:12])


@pytest.mark.parametrize(
    ("storage", "address"),
    [(sockaddr_in("10.2.0.2", 3863), "10.2.0.2"), (sockaddr_in6("fd00:2::2", 3863), "fd00:2::2"),
     (sockaddr_in6("::ffff:10.1.0.2", 3863), "10.1.0.2")],  # an AF_INET6 socket maps IPv4 peers
)  # fmt: skip
def test_peer_address_change(storage, address):
    note = lk.parse_notification(paddr_change(storage, state=1, error=0, assoc_id=4))
    assert note == lk.PaddrChange(address, 3863, 1, 0, 4)
    assert lk.to_event(note) == AssociationEvent(EventKind.ADDRESS_UNREACHABLE, address=address)
    states = {0: EventKind.ADDRESS_AVAILABLE, 2: EventKind.ADDRESS_REMOVED, 3: EventKind.ADDRESS_ADDED,
              4: EventKind.PRIMARY_CHANGED, 5: EventKind.ADDRESS_CONFIRMED}  # fmt: skip
    for state, kind in states.items():
        assert lk.to_event(lk.parse_notification(paddr_change(storage, state))).kind is kind
    assert lk.to_event(lk.parse_notification(paddr_change(storage, 6))) is None  # potentially failed


def test_send_failed_old_and_new_forms():
    info = struct.pack("=HHH", 1, 0, 0) + b"\0\0" + b"\0\0\0\x0b" + bytes(16) + struct.pack("=i", 4)
    old = header(0x8003, 48 + 5, flags=1) + struct.pack("=I", 7) + info + struct.pack("=i", 4) + b"hello"
    assert lk.parse_notification(old) == lk.SendFailed(1, 7, 1, 11, 4, b"hello")
    event = lk.to_event(lk.parse_notification(old))
    assert (event.kind, event.error) == (EventKind.SEND_FAILED, 7)
    assert event.detail == "a message with PPID 11 on stream 1 failed after being sent"
    sndinfo = struct.pack("=HH", 2, 0) + b"\0\0\0\x0c" + struct.pack("=Ii", 0, 4)
    new = header(0x800D, 32 + 2, flags=0) + struct.pack("=I", 7) + sndinfo + struct.pack("=i", 4) + b"hi"
    assert lk.parse_notification(new) == lk.SendFailed(0, 7, 2, 12, 4, b"hi")
    assert lk.to_event(lk.parse_notification(new)).detail.endswith("failed before being sent")


def test_shutdown_remote_error_and_others():
    assert lk.parse_notification(shutdown_event(4)) == lk.ShutdownEvent(4)
    shutdown = AssociationEvent(EventKind.SHUTDOWN, detail="peer started a graceful shutdown")
    assert lk.to_event(lk.ShutdownEvent(4)) == shutdown
    remote = header(0x8004, 20) + b"\x00\x0c" + b"\0\0" + struct.pack("=i", 4) + b"\x00\x0c\x00\x04"
    assert lk.parse_notification(remote) == lk.RemoteError(12, 4, b"\x00\x0c\x00\x04")
    assert lk.to_event(lk.parse_notification(remote)).kind is EventKind.REMOTE_ERROR
    pdapi = header(0x8006, 24) + struct.pack("=Ii", 0, 4) + bytes(8)
    assert lk.parse_notification(pdapi) == lk.PartialDelivery(0, 4)
    assert lk.to_event(lk.PartialDelivery(0, 4)) is None
    assert lk.parse_notification(header(0x8009, 12) + bytes(4)) is None  # sender dry: not handled
    with pytest.raises(lk.NotificationError, match="no header"):
        lk.parse_notification(b"\x01\x80")


# --- the backend over a scripted socket ------------------------------------------------------
NOTE, EOR = lk.MSG_NOTIFICATION, lk.MSG_EOR


class ScriptedSocket:
    """Plays a one-to-one SCTP socket: recvmsg_into() returns the scripted reads (data, ancillary,
    flags) in order; a socketpair gives the event loop a real descriptor to watch."""

    family, so_error = socket.AF_INET, 0

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self.reads: list[tuple[bytes, list, int]] = []
        self.sent: list[tuple[list, list, int]] = []
        self.options: list[tuple[int, int, object]] = []
        self.send_errors: list[OSError] = []
        self.on_shutdown: list[tuple[bytes, list, int]] = []
        self.pending: list[ScriptedSocket] = []  # for accept()
        self.shut = self.closed = False

    def feed(self, *reads) -> None:
        self.reads.extend(reads)
        self._w.send(b"!")

    def fileno(self) -> int:
        return self._r.fileno()

    def _nothing(self) -> BlockingIOError:
        while True:
            try:
                self._r.recv(4096)
            except BlockingIOError:
                return BlockingIOError(errno.EAGAIN, "nothing scripted")

    def recvmsg_into(self, buffers, ancbufsize):
        if not self.reads:
            raise self._nothing()
        data, ancillary, flags = self.reads.pop(0)
        buffers[0][: len(data)] = data
        return len(data), ancillary, flags, None

    def accept(self):
        if not self.pending:
            raise self._nothing()
        return self.pending.pop(0), ("10.1.0.2", 40000)

    def sendmsg(self, buffers, ancillary, flags):
        if self.send_errors:
            raise self.send_errors.pop(0)
        self.sent.append((buffers, ancillary, flags))

    def setsockopt(self, level, option, value):
        self.options.append((level, option, value))

    def getsockopt(self, level, option, size=0):
        return self.so_error if option == socket.SO_ERROR else 0

    def getpeername(self):
        return ("10.1.0.2", 3863)

    def getsockname(self):
        return ("10.1.0.1", 40000)

    def setblocking(self, flag):
        pass

    def shutdown(self, how):
        self.shut = how == socket.SHUT_WR
        self.feed(*self.on_shutdown)

    def close(self):
        self.closed = True
        self._r.close()
        self._w.close()


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_backend_joins_pieces_keeps_order_and_reads_ppid():
    async def scenario():
        sock = ScriptedSocket()
        assoc = KernelAssociation(sock, TransportOptions())
        anc, up = [(132, 1, lk.SndRcvInfo(stream=1, ppid=11).pack())], assoc_change(0)
        sock.feed((up[:10], [], NOTE), (up[10:], [], NOTE | EOR), (b"hel", anc, 0), (b"lo", anc, EOR),
                  (b"x", [(132, 1, lk.SndRcvInfo(ppid=12, flags=1).pack())], EOR))  # fmt: skip
        assert (await assoc.next_item()).detail == "4 outbound, 3 inbound streams"
        assert await assoc.next_item() == Delivery(b"hello", 11, 1)
        assert await assoc.next_item() == Delivery(b"x", 12, 0, unordered=True)
        assert (assoc.peer_addresses, assoc.local_addresses) == (("10.1.0.2",), ("10.1.0.1",))
        await assoc.send(b"ping", ppid=11, stream=2)
        assert sock.sent == [([b"ping"], [lk.sndrcv_cmsg(2, 11)], socket.MSG_NOSIGNAL)]

    run(scenario)


def test_backend_waits_for_room_and_maps_send_errors():
    async def scenario():
        sock = ScriptedSocket()
        assoc = KernelAssociation(sock, TransportOptions(max_message_size=100), established=True)
        sock.send_errors = [BlockingIOError(errno.EAGAIN, "full"), BlockingIOError(errno.EAGAIN, "full")]
        await assoc.send(b"a", 11)  # retried when the socket is writable again
        assert len(sock.sent) == 1
        with pytest.raises(MessageTooLarge, match="message of 101 bytes exceeds the limit of 100"):
            await assoc.send(b"a" * 101, 11)
        sock.send_errors = [OSError(errno.EMSGSIZE, "too long"), OSError(errno.EPIPE, "broken")]
        with pytest.raises(MessageTooLarge, match="exceeds the socket's send buffer"):
            await assoc.send(b"a", 11)
        with pytest.raises(AssociationClosed, match="EPIPE"):
            await assoc.send(b"a", 11)

    run(scenario)


def test_backend_lost_association_ends_and_closes_the_socket():
    async def scenario():
        sock = ScriptedSocket()
        assoc = KernelAssociation(sock, TransportOptions(), established=True)
        sock.feed((b"last", [], EOR), (assoc_change(1), [], NOTE | EOR), (b"never", [], EOR))
        assert (await assoc.receive()).data == b"last"
        with pytest.raises(AssociationClosed, match=r"association ended \(lost: aborted or timed out\)"):
            await assoc.receive()
        assert sock.closed and not assoc.is_open and assoc.events[0].kind is EventKind.LOST
        with pytest.raises(AssociationClosed, match="cannot send: association ended"):
            await assoc.send(b"late", 11)

    run(scenario)


def test_backend_peer_shutdown_close_and_abort():
    async def scenario():
        sock = ScriptedSocket()  # the peer shuts down: keep reading until the kernel is done
        assoc = KernelAssociation(sock, TransportOptions(), established=True)
        sock.feed((shutdown_event(), [], NOTE | EOR))
        assert (await assoc.next_item()).detail == "peer started a graceful shutdown"
        assert not assoc.is_open and not sock.closed
        sock.feed((assoc_change(3), [], NOTE | EOR))
        await assoc.close()
        assert sock.closed
        sock = ScriptedSocket()  # we shut down: shutdown(SHUT_WR), then SHUTDOWN_COMP
        assoc = KernelAssociation(sock, TransportOptions(), established=True)
        sock.on_shutdown = [(assoc_change(3), [], NOTE | EOR)]
        await assoc.close()
        assert sock.shut and sock.closed and assoc.closed_by.kind is EventKind.SHUTDOWN
        sock = ScriptedSocket()  # abort: SO_LINGER 0, then close
        assoc = KernelAssociation(sock, TransportOptions(), established=True)
        assoc.abort()
        assoc.abort()
        assert (socket.SOL_SOCKET, socket.SO_LINGER, lk.pack_linger(True, 0)) in sock.options
        assert sock.closed and assoc.closed_by is None

    run(scenario)


def test_connect_fails_fast_on_cant_start_and_within_the_timeout_on_silence(monkeypatch):
    sockets: list[ScriptedSocket] = []
    refused = [(assoc_change(4), [], NOTE | EOR)]

    def new_socket(family, options):
        sockets.append(ScriptedSocket())
        sockets[-1].so_error = errno.ECONNREFUSED  # what Linux sets when INIT is answered with ABORT
        return sockets[-1]

    monkeypatch.setattr(kernel_sctp, "_new_socket", new_socket)
    monkeypatch.setattr(ScriptedSocket, "setsockopt", lambda self, *a: a[1] == 110 and self.feed(*refused))

    async def scenario():
        refusal = r"to 10.1.0.2, 10.2.0.2 port 3863: association not established: INIT failed: ECONNREFUSED"
        with pytest.raises(ConnectError, match=refusal):
            await kernel_sctp.connect(("10.1.0.2", "10.2.0.2"), 3863, local=(), options=TransportOptions())
        refused.clear()
        with pytest.raises(ConnectError, match=r"no association within 0.2 s"):
            options = TransportOptions(connect_timeout_s=0.2)
            await kernel_sctp.connect(("10.1.0.2",), 3863, local=(), options=options)
        assert all(s.closed for s in sockets)

    run(scenario)


def test_listener_hands_out_established_associations():
    async def scenario():
        sock = ScriptedSocket()
        listener = KernelListener(sock, TransportOptions())
        conn = ScriptedSocket()
        sock.pending.append(conn)
        sock.feed()
        assoc = await listener.accept()
        await assoc.wait_up(0.1)  # accept() only returns established associations
        assert assoc.peer_addresses == ("10.1.0.2",) and listener.port == 40000
        assert (132, lk.SCTP_EVENTS, b"\x01" * 7) in conn.options
        conn.feed((assoc_change(0), [], NOTE | EOR))
        assert (await assoc.next_item()).kind is EventKind.UP
        await listener.close()
        assert sock.closed and conn.closed  # closing a listener ends what it accepted (base.Listener)
        assert not assoc.is_open

    run(scenario)
