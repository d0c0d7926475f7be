"""Pure parts of the transport layer: backend choice, sockaddr packing, usrsctp notifications."""

from __future__ import annotations

import socket
import struct

import pytest

from nodes import transport
from nodes.transport import sockaddr
from nodes.transport import usrsctp_api as api
from nodes.transport.base import AssociationEvent, EventKind


def test_auto_takes_kernel_sctp_where_present_else_userland(monkeypatch):
    status = {
        transport.Backend.KERNEL_SCTP: (False, "kernel SCTP: no"),
        transport.Backend.USRSCTP: (True, "userland SCTP: yes"),
        transport.Backend.TCP: (True, ""),
        transport.Backend.MPTCP: (False, "MPTCP: no"),
    }
    monkeypatch.setattr(transport, "backend_status", lambda: status)
    assert transport.select_backend() is transport.Backend.USRSCTP
    status[transport.Backend.KERNEL_SCTP] = (True, "")
    assert transport.select_backend("auto") is transport.Backend.KERNEL_SCTP
    with pytest.raises(transport.BackendUnavailable, match="^MPTCP: no$"):
        transport.select_backend("mptcp")
    status[transport.Backend.KERNEL_SCTP] = (False, "kernel SCTP: no")
    status[transport.Backend.USRSCTP] = (False, "userland SCTP: no")
    with pytest.raises(transport.BackendUnavailable, match="no SCTP backend runs here: kernel SCTP: no; userland"):
        transport.select_backend()
    with pytest.raises(transport.BackendUnavailable, match="unknown transport backend 'sctp'"):
        transport.select_backend("sctp")


@pytest.mark.parametrize("address", ["10.1.0.2", "fd00::1:2", "::ffff:10.0.0.1"])
def test_sockaddr_round_trip(address):
    packed = sockaddr.pack(address, 3863)
    parsed, port, size = sockaddr.parse(packed)
    assert (port, size) == (3863, len(packed))
    assert parsed == ("10.0.0.1" if address.startswith("::ffff") else address)


def test_sockaddr_list_is_packed_back_to_back():
    packed = sockaddr.pack_list(("10.1.0.1", "fd00::1", "10.2.0.1"), 9901)
    assert len(packed) == 16 + 28 + 16
    assert sockaddr.parse(packed, 16)[:2] == ("fd00::1", 9901)
    assert sockaddr.parse(packed, 44)[:2] == ("10.2.0.1", 9901)
    assert sockaddr.family_of(("10.1.0.1", "fd00::1")) == socket.AF_INET6
    with pytest.raises(ValueError, match="unsupported address family 99"):
        sockaddr.parse(struct.pack("=H14x", 99))


def assoc_change(state: int, error: int = 0, assoc_id: int = 7) -> bytes:
    return struct.pack("=HHIHHHHI", api.SCTP_ASSOC_CHANGE, 0, 20, state, error, 4, 3, assoc_id)


def test_assoc_change_notifications():
    assert api.parse_notification(assoc_change(0x0001)) == (
        7, AssociationEvent(EventKind.UP, detail="4 outbound, 3 inbound streams"))  # fmt: skip
    assoc_id, lost = api.parse_notification(assoc_change(0x0002, error=12))
    assert (assoc_id, lost.kind, lost.error) == (7, EventKind.LOST, 12)
    assert lost.kind.ends_association
    assert api.parse_notification(assoc_change(0x0005))[1].kind is EventKind.CANT_START
    assert api.parse_notification(assoc_change(0x0009)) is None  # an unknown state is ignored
    assert api.parse_notification(assoc_change(0x0001)[:12]) is None  # truncated


def test_peer_address_change_carries_the_address():
    storage = sockaddr.pack("10.2.0.2", 3863).ljust(128, b"\0")
    data = struct.pack("=HHI", api.SCTP_PEER_ADDR_CHANGE, 0, 152) + storage + struct.pack("=IIII", 2, 0, 9, 0)
    assert api.parse_notification(data) == (9, AssociationEvent(EventKind.ADDRESS_UNREACHABLE, address="10.2.0.2"))


def test_send_failed_and_remote_error():
    sndinfo = struct.pack("=HHIII", 0, 0, socket.htonl(11), 0, 0)
    data = struct.pack("=HHII", api.SCTP_SEND_FAILED_EVENT, 0, 32, 5) + sndinfo + struct.pack("=I", 3)
    assoc_id, event = api.parse_notification(data)
    assert (assoc_id, event.kind, event.detail) == (3, EventKind.SEND_FAILED, "a message with PPID 11 was not delivered")
    remote = struct.pack("=HHIH2xI", api.SCTP_REMOTE_ERROR, 0, 16, socket.htons(6), 4)
    assert api.parse_notification(remote)[1].error == 6
    assert api.parse_notification(struct.pack("=HHI", 0x0B, 0, 8)) is None  # not subscribed
