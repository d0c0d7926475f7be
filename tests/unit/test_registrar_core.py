"""RegistrarCore (nodes/registrar/core.py) driven as the network would drive it.

Every input is a real ASAP message encoded with nodes.wire (or deliberately broken bytes);
every Send the core returns is encoded and decoded again, so a test also fails when the core
asks for a message that cannot go on the wire.  The expected values come from RFC 5352 and
RSPLIB's registrar as summarised in ../shared/reference/rserpool-wire.md, section 8.1.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from ipaddress import ip_address

import pytest

from nodes.registrar.core import RegistrarCore, RegistrarOptions
from nodes.registrar.enrp import EnrpOptions
from nodes.sansio import Abort, Action, Announce, StartTimer
from nodes.wire import (
    AsapError,
    EnrpError,
    CauseCode,
    Deregistration,
    DeregistrationResponse,
    EndpointKeepAlive,
    EndpointKeepAliveAck,
    EndpointUnreachable,
    ErrorCause,
    HandleResolution,
    HandleResolutionResponse,
    Message,
    PoolElement,
    Protocol,
    Registration,
    RegistrationResponse,
    SctpTransport,
    ServerAnnounce,
    TcpTransport,
    TransportUse,
    decode,
)
from nodes.wire import policies as P
from tests.actions import cancelled, sent, started

ASAP = Protocol.ASAP.ppid
SERVER_ID = 0x1A2B3C4D
H = b"EchoPool"
PEER = "10.0.1.5"
PEER2 = "10.0.2.5"
OTHER = "10.0.9.9"
NOW = 100.0


# ------------------------------------------------------------------ helpers


def make_core(**overrides: object) -> RegistrarCore:
    options = {"server_id": SERVER_ID, "keepalive_interval": 7.0, "keepalive_timeout": 2.5, "announce": False,
               "enrp": EnrpOptions(multicast=False)}  # alone in its scope: these are ASAP tests
    options.update(overrides)
    return RegistrarCore(RegistrarOptions(**options), rng=random.Random(5))  # type: ignore[arg-type]


def make_pe(
    ident: int,
    *addresses: str,
    port: int = 5000,
    policy: P.Policy | None = None,
    home: int = 0,
    life: int = 90000,
    registrator: SctpTransport | None = None,
    tcp: bool = False,
) -> PoolElement:
    addrs = tuple(ip_address(a) for a in (addresses or (PEER,)))
    use = TransportUse.DATA_PLUS_CONTROL
    transport = (
        TcpTransport(port=port, addresses=addrs[:1], transport_use=use)
        if tcp
        else SctpTransport(port=port, addresses=addrs, transport_use=use)
    )
    return PoolElement(ident, home, life, transport, policy or P.RoundRobin(), registrator)


def registration(pe: PoolElement, handle: bytes = H) -> bytes:
    return Registration(pool_handle=handle, pool_element=pe).encode()


def up(core: RegistrarCore, assoc: int, *peers: str, sctp: bool = True, port: int = 0) -> None:
    core.association_up(assoc, NOW, peer_addresses=peers or (PEER,), sctp=sctp, peer_port=port)


def feed(core: RegistrarCore, assoc: int, data: bytes, now: float = NOW) -> list[Action]:
    return core.receive(assoc, data, ASAP, now)




def one(actions: Sequence[Action], cls: type, assoc: int | None = None) -> Message:
    messages = sent(actions, assoc)
    assert len(messages) == 1, messages
    assert isinstance(messages[0], cls), messages[0]
    return messages[0]






def causes(message: Message) -> list[int]:
    return [c.code for c in message.error or ()]  # type: ignore[attr-defined]


def register(core: RegistrarCore, assoc: int, pe: PoolElement, handle: bytes = H) -> list[Action]:
    actions = feed(core, assoc, registration(pe, handle))
    response = one(actions, RegistrationResponse, assoc)
    assert not response.has_flag("reject") and response.error is None, response
    return actions


def resolve(
    core: RegistrarCore, assoc: int, items: int | None = None, handle: bytes = H
) -> HandleResolutionResponse:
    actions = feed(core, assoc, HandleResolution(pool_handle=handle, items=items).encode())
    message = one(actions, HandleResolutionResponse, assoc)
    assert isinstance(message, HandleResolutionResponse)
    return message


def ka(handle: bytes, pe_id: int) -> tuple[str, bytes, int]:
    return ("keepalive", handle, pe_id)


def ka_timeout(handle: bytes, pe_id: int) -> tuple[str, bytes, int]:
    return ("keepalive-timeout", handle, pe_id)


# ------------------------------------------------------------------ registration


def test_registration_is_answered_stored_and_supervised() -> None:
    core = make_core()
    up(core, 1, PEER, PEER2, port=4711)
    pe = make_pe(0x1234, PEER, PEER2, home=0xDEADBEEF, policy=P.LeastUsed(load=77))
    actions = feed(core, 1, registration(pe))

    response = one(actions, RegistrationResponse, 1)
    assert (response.pool_handle, response.pe_id) == (H, 0x1234)
    assert not response.has_flag("reject") and response.error is None
    assert started(actions) == {ka(H, 0x1234): 7.0}

    node = core.handlespace.find(H, 0x1234)
    assert node is not None and node.owner == 1
    stored = node.pe
    assert stored.home_registrar == SERVER_ID  # the PE's own idea of its home is overwritten
    assert stored.policy == P.LeastUsed(load=77)
    assert stored.user_transport == pe.user_transport
    # the registrator transport is written from the association: its peer addresses and port
    expected = SctpTransport(port=4711, addresses=(ip_address(PEER), ip_address(PEER2)))
    assert stored.registrator_transport == expected


def test_registrator_transport_over_tcp_is_a_tcp_transport_with_one_address() -> None:
    core = make_core()
    up(core, 1, PEER, sctp=False, port=3999)
    register(core, 1, make_pe(7, tcp=True))
    node = core.handlespace.find(H, 7)
    assert node is not None
    assert node.pe.registrator_transport == TcpTransport(port=3999, addresses=(ip_address(PEER),))


def test_user_addresses_are_filtered_to_the_association_peers() -> None:
    core = make_core()
    up(core, 1, PEER, PEER2)
    register(core, 1, make_pe(5, PEER, OTHER, PEER2, port=6000))
    node = core.handlespace.find(H, 5)
    assert node is not None
    assert node.pe.user_transport.addresses == (ip_address(PEER), ip_address(PEER2))
    assert node.pe.user_transport.port == 6000  # ports are not compared, nor changed


def test_no_user_address_of_the_association_is_rejected() -> None:
    core = make_core()
    up(core, 1, PEER)
    actions = feed(core, 1, registration(make_pe(5, OTHER)))
    response = one(actions, RegistrationResponse, 1)
    assert response.has_flag("reject")
    assert causes(response) == [CauseCode.RSPLIB_NO_USABLE_USER_ADDRESSES]
    assert (response.pool_handle, response.pe_id) == (H, 5)
    assert core.handlespace.find(H, 5) is None
    assert not started(actions)


def test_registration_carrying_a_registrator_transport_is_rejected() -> None:
    core = make_core()
    up(core, 1, PEER)
    forged = SctpTransport(port=1, addresses=(ip_address(PEER),))
    response = one(feed(core, 1, registration(make_pe(5, registrator=forged))), RegistrationResponse, 1)
    assert response.has_flag("reject")
    assert causes(response) == [CauseCode.RSPLIB_INVALID_REGISTRATOR]
    assert core.handlespace.find(H, 5) is None


def test_inconsistent_policy_in_one_pool_is_rejected() -> None:
    core = make_core()
    up(core, 1, PEER)
    register(core, 1, make_pe(1, policy=P.RoundRobin()))
    actions = feed(core, 1, registration(make_pe(2, policy=P.LeastUsed(load=0))))
    response = one(actions, RegistrationResponse, 1)
    assert response.has_flag("reject")
    assert causes(response) == [CauseCode.INCONSISTENT_POLICY]
    assert core.handlespace.find(H, 2) is None
    assert not started(actions)
    # another pool may use another policy
    register(core, 1, make_pe(2, policy=P.LeastUsed(load=0)), handle=b"OtherPool")


def test_pe_id_of_another_live_association_is_refused_until_that_one_is_gone() -> None:
    core = make_core()
    up(core, 1, PEER)
    up(core, 2, PEER2)
    register(core, 1, make_pe(9, PEER, port=1111))

    hijack = make_pe(9, PEER2, port=2222)
    response = one(feed(core, 2, registration(hijack)), RegistrationResponse, 2)
    assert response.has_flag("reject")
    assert causes(response) == [CauseCode.NON_UNIQUE_PE_IDENTIFIER]
    node = core.handlespace.find(H, 9)
    assert node is not None and node.owner == 1 and node.pe.user_transport.port == 1111

    core.association_down(1, NOW + 1)
    actions = register(core, 2, hijack)
    node = core.handlespace.find(H, 9)
    assert node is not None and node.owner == 2 and node.pe.user_transport.port == 2222
    assert ka(H, 9) in started(actions)


def test_reregistration_updates_values_and_resets_unreachable_reports() -> None:
    core = make_core()
    up(core, 1, PEER)
    up(core, 2, OTHER)  # a pool user
    register(core, 1, make_pe(3, policy=P.LeastUsed(load=10), life=30000))
    for _ in range(2):
        feed(core, 2, EndpointUnreachable(pool_handle=H, pe_id=3).encode())
    node = core.handlespace.find(H, 3)
    assert node is not None and node.unreachable_reports == 2

    register(core, 1, make_pe(3, policy=P.LeastUsed(load=99), life=60000, port=5001))
    node = core.handlespace.find(H, 3)
    assert node is not None
    assert node.pe.policy == P.LeastUsed(load=99)
    assert node.pe.registration_life == 60000
    assert node.pe.user_transport.port == 5001
    assert node.unreachable_reports == 0
    assert len(core.handlespace) == 1

    # two more reports are now not enough to remove it (3 would have been before the reset)
    for _ in range(2):
        feed(core, 2, EndpointUnreachable(pool_handle=H, pe_id=3).encode())
    assert core.handlespace.find(H, 3) is not None


# ------------------------------------------------------------------ deregistration


def test_deregistration_by_the_owner_removes_the_pe() -> None:
    core = make_core()
    up(core, 1, PEER)
    register(core, 1, make_pe(4))
    actions = feed(core, 1, Deregistration(pool_handle=H, pe_id=4).encode())
    response = one(actions, DeregistrationResponse, 1)
    assert (response.pool_handle, response.pe_id) == (H, 4)
    assert not response.has_flag("reject") and response.error is None
    assert core.handlespace.find(H, 4) is None
    assert {ka(H, 4), ka_timeout(H, 4)} <= cancelled(actions)


def test_deregistration_by_another_association_is_refused() -> None:
    core = make_core()
    up(core, 1, PEER)
    up(core, 2, PEER2)
    register(core, 1, make_pe(4))
    actions = feed(core, 2, Deregistration(pool_handle=H, pe_id=4).encode())
    response = one(actions, DeregistrationResponse, 2)
    assert response.has_flag("reject")
    assert causes(response) == [CauseCode.REJECTED_SECURITY]
    assert core.handlespace.find(H, 4) is not None
    assert not cancelled(actions)


def test_deregistration_of_an_unknown_pe_succeeds() -> None:
    core = make_core()
    up(core, 1, PEER)
    actions = feed(core, 1, Deregistration(pool_handle=b"Nowhere", pe_id=77).encode())
    response = one(actions, DeregistrationResponse)
    assert (response.pool_handle, response.pe_id) == (b"Nowhere", 77)
    assert not response.has_flag("reject") and response.error is None


# ------------------------------------------------------------------ handle resolution


def pool_of(core: RegistrarCore, count: int, assoc: int = 1) -> None:
    up(core, assoc, PEER)
    for ident in range(1, count + 1):
        register(core, assoc, make_pe(ident, port=10000 + ident))


def test_handle_resolution_default_item_count_is_max_hres_items() -> None:
    core = make_core(max_hres_items=4)
    pool_of(core, 6)
    up(core, 9, OTHER)
    response = resolve(core, 9)
    assert len(response.pool_elements) == 4
    assert len({pe.identifier for pe in response.pool_elements}) == 4
    assert response.policy == P.RoundRobin()
    assert not response.has_flag("reject") and response.error is None
    for pe in response.pool_elements:  # what a PU gets: home set, no registrator transport
        assert pe.home_registrar == SERVER_ID
        assert pe.registrator_transport is None


def test_handle_resolution_default_of_three() -> None:
    core = make_core()  # RSPLIB's default MaxHResItems
    pool_of(core, 5)
    up(core, 9, OTHER)
    assert len(resolve(core, 9).pool_elements) == 3


@pytest.mark.parametrize("items, expected", [(1, 1), (2, 2), (5, 5), (9, 5)])
def test_handle_resolution_explicit_items(items: int, expected: int) -> None:
    core = make_core(max_hres_items=3)
    pool_of(core, 5)
    up(core, 9, OTHER)
    assert len(resolve(core, 9, items).pool_elements) == expected


@pytest.mark.parametrize("items", [0xFFFFFFFF, 129, 1000])
def test_handle_resolution_is_capped_at_128(items: int) -> None:
    core = make_core()
    pool_of(core, 130)
    up(core, 9, OTHER)
    response = resolve(core, 9, items)
    assert len(response.pool_elements) == 128
    assert len({pe.identifier for pe in response.pool_elements}) == 128


def test_handle_resolution_policy_is_a_copy_of_the_first_pe_policy() -> None:
    core = make_core()
    up(core, 1, PEER)
    register(core, 1, make_pe(1, policy=P.LeastUsed(load=500)))
    register(core, 1, make_pe(2, policy=P.LeastUsed(load=100)))
    up(core, 9, OTHER)
    response = resolve(core, 9, 2)
    assert [pe.identifier for pe in response.pool_elements] == [2, 1]  # least used first
    assert response.policy == P.LeastUsed(load=100)


def test_handle_resolution_of_an_unknown_pool() -> None:
    core = make_core()
    pool_of(core, 1)
    up(core, 9, OTHER)
    response = resolve(core, 9, handle=b"NoSuchPool")
    assert response.pool_handle == b"NoSuchPool"
    assert causes(response) == [CauseCode.UNKNOWN_POOL_HANDLE]
    assert response.pool_elements == ()


# ------------------------------------------------------------------ keep-alive


def test_keepalive_cycle() -> None:
    core = make_core()
    up(core, 1, PEER)
    up(core, 2, PEER2)
    register(core, 1, make_pe(6))

    actions = core.timer(ka(H, 6), NOW + 7)
    keepalive = one(actions, EndpointKeepAlive, 1)
    assert isinstance(keepalive, EndpointKeepAlive)
    assert (keepalive.server_id, keepalive.pool_handle, keepalive.pe_id) == (SERVER_ID, H, 6)
    assert not keepalive.has_flag("home")
    assert started(actions) == {ka_timeout(H, 6): 2.5}

    # an ACK for that PE from another association changes nothing
    ignored = feed(core, 2, EndpointKeepAliveAck(pool_handle=H, pe_id=6).encode())
    assert not started(ignored) and not cancelled(ignored) and not sent(ignored)

    actions = feed(core, 1, EndpointKeepAliveAck(pool_handle=H, pe_id=6).encode(), now=NOW + 8)
    assert cancelled(actions) == {ka_timeout(H, 6)}
    assert started(actions) == {ka(H, 6): 7.0}
    assert not sent(actions)
    assert core.handlespace.find(H, 6) is not None


def test_keepalive_timeout_removes_the_pe_and_aborts_its_empty_association() -> None:
    core = make_core()
    up(core, 1, PEER)
    register(core, 1, make_pe(6))
    core.timer(ka(H, 6), NOW + 7)
    actions = core.timer(ka_timeout(H, 6), NOW + 9.5)
    assert core.handlespace.find(H, 6) is None
    assert Abort(1) in actions
    assert {ka(H, 6), ka_timeout(H, 6)} <= cancelled(actions)
    assert not sent(actions)


def test_keepalive_timeout_keeps_an_association_that_still_has_pes() -> None:
    core = make_core()
    up(core, 1, PEER)
    register(core, 1, make_pe(6))
    register(core, 1, make_pe(7))
    actions = core.timer(ka_timeout(H, 6), NOW + 9.5)
    assert core.handlespace.find(H, 6) is None
    assert core.handlespace.find(H, 7) is not None
    assert not any(isinstance(a, Abort) for a in actions)


def test_reregistration_while_a_keepalive_is_outstanding_restarts_supervision() -> None:
    core = make_core()
    up(core, 1, PEER)
    register(core, 1, make_pe(6))
    core.timer(ka(H, 6), NOW + 7)  # keep-alive sent, timeout armed; the ACK is lost
    actions = register(core, 1, make_pe(6))  # ... but the PE re-registers: it is alive
    assert ka_timeout(H, 6) in cancelled(actions)
    assert started(actions).get(ka(H, 6)) == 7.0


def test_keepalive_timer_of_a_removed_pe_sends_nothing() -> None:
    core = make_core()
    up(core, 1, PEER)
    register(core, 1, make_pe(6))
    feed(core, 1, Deregistration(pool_handle=H, pe_id=6).encode())
    assert core.timer(ka(H, 6), NOW + 7) == []
    assert core.timer(ka_timeout(H, 6), NOW + 9) == []


# ------------------------------------------------------------------ failure reports and losses


def test_endpoint_unreachable_removes_the_pe_at_max_bad_pe_reports() -> None:
    core = make_core()  # default max_bad_pe_reports = 3
    up(core, 1, PEER)
    for assoc, host in ((2, "10.0.9.2"), (3, "10.0.9.3"), (4, "10.0.9.4")):  # three pool users
        up(core, assoc, host)
    register(core, 1, make_pe(8))
    report = EndpointUnreachable(pool_handle=H, pe_id=8).encode()
    for assoc, count in ((2, 1), (3, 2)):
        actions = feed(core, assoc, report)
        assert not sent(actions)
        node = core.handlespace.find(H, 8)
        assert node is not None and node.unreachable_reports == count
    actions = feed(core, 4, report)
    assert core.handlespace.find(H, 8) is None
    assert {ka(H, 8), ka_timeout(H, 8)} <= cancelled(actions)
    assert not sent(actions)


def test_one_host_cannot_remove_a_pe_by_reporting_it_again_and_again() -> None:
    core = make_core()
    up(core, 1, PEER)
    up(core, 2, "10.0.9.2")
    up(core, 3, "10.0.9.2")  # the same host on a second association
    register(core, 1, make_pe(8))
    report = EndpointUnreachable(pool_handle=H, pe_id=8).encode()
    for assoc in (2, 2, 3, 2, 3):
        feed(core, assoc, report)
    assert core.handlespace.find(H, 8) is not None


def test_max_bad_pe_reports_is_configurable() -> None:
    core = make_core(max_bad_pe_reports=1)
    up(core, 1, PEER)
    register(core, 1, make_pe(8))
    feed(core, 1, EndpointUnreachable(pool_handle=H, pe_id=8).encode())
    assert core.handlespace.find(H, 8) is None


def test_unreachable_report_for_an_unknown_pe_is_harmless() -> None:
    core = make_core()
    up(core, 2, OTHER)
    actions = feed(core, 2, EndpointUnreachable(pool_handle=H, pe_id=1).encode())
    assert not sent(actions)


def test_association_down_removes_its_pes_only() -> None:
    core = make_core()
    up(core, 1, PEER)
    up(core, 2, PEER2)
    register(core, 1, make_pe(1))
    register(core, 1, make_pe(2))
    register(core, 2, make_pe(3, PEER2))
    actions = core.association_down(1, NOW + 1)
    assert core.handlespace.find(H, 1) is None and core.handlespace.find(H, 2) is None
    assert core.handlespace.find(H, 3) is not None
    assert {ka(H, 1), ka(H, 2)} <= cancelled(actions)
    assert ka(H, 3) not in cancelled(actions)
    assert 1 not in core.assocs


# ------------------------------------------------------------------ malformed input


def valid_registration_from_another_association_works(core: RegistrarCore) -> None:
    up(core, 5, PEER2)
    register(core, 5, make_pe(0x55, PEER2))
    assert core.handlespace.find(H, 0x55) is not None


def asap_error(actions: Sequence[Action], assoc: int) -> AsapError:
    message = one(actions, AsapError, assoc)
    assert isinstance(message, AsapError)
    return message


def test_bad_message_length_is_answered() -> None:
    core = make_core()
    up(core, 1, PEER)
    data = bytearray(registration(make_pe(1)))
    struct.pack_into("!H", data, 2, len(data) + 4)
    error = asap_error(feed(core, 1, bytes(data)), 1)
    assert [c.code for c in error.error] == [CauseCode.INVALID_VALUES]
    assert core.handlespace.find(H, 1) is None
    valid_registration_from_another_association_works(core)


def test_truncated_message_is_answered() -> None:
    core = make_core()
    up(core, 1, PEER)
    data = registration(make_pe(1))[:20]
    data = data[:2] + struct.pack("!H", len(data)) + data[4:]  # consistent length, cut parameters
    error = asap_error(feed(core, 1, data), 1)
    assert [c.code for c in error.error] == [CauseCode.INVALID_VALUES]
    assert core.handlespace.find(H, 1) is None
    valid_registration_from_another_association_works(core)


def test_short_header_is_answered() -> None:
    core = make_core()
    up(core, 1, PEER)
    error = asap_error(feed(core, 1, b"\x01\x00"), 1)
    assert [c.code for c in error.error] == [CauseCode.INVALID_VALUES]


def test_unknown_message_type_is_answered_with_the_message() -> None:
    core = make_core()
    up(core, 1, PEER)
    data = bytes([0x7F, 0, 0, 8]) + b"\0\0\0\0"
    error = asap_error(feed(core, 1, data), 1)
    assert [c.code for c in error.error] == [CauseCode.UNRECOGNIZED_MESSAGE]
    assert error.error[0].info == data
    valid_registration_from_another_association_works(core)


def with_parameter(message: bytes, tlv: bytes) -> bytes:
    """`message` with `tlv` appended and its length fixed."""
    data = message + tlv
    return data[:2] + struct.pack("!H", len(data)) + data[4:]


def test_stop_and_report_unknown_parameter_is_answered_with_the_parameter() -> None:
    core = make_core()
    up(core, 1, PEER)
    tlv = struct.pack("!HH", 0x4123, 8) + b"abcd"  # action bits 01: stop and report
    error = asap_error(feed(core, 1, with_parameter(registration(make_pe(1)), tlv)), 1)
    assert [c.code for c in error.error] == [CauseCode.UNRECOGNIZED_PARAMETER]
    assert error.error[0].info == tlv
    assert core.handlespace.find(H, 1) is None  # processing stopped
    valid_registration_from_another_association_works(core)


def test_silent_unknown_parameter_is_not_answered() -> None:
    core = make_core()
    up(core, 1, PEER)
    tlv = struct.pack("!HH", 0x0123, 8) + b"abcd"  # action bits 00: stop silently
    actions = feed(core, 1, with_parameter(registration(make_pe(1)), tlv))
    assert sent(actions) == []
    assert core.handlespace.find(H, 1) is None
    valid_registration_from_another_association_works(core)


def test_skipped_unknown_parameter_does_not_stop_the_registration() -> None:
    core = make_core()
    up(core, 1, PEER)
    tlv = struct.pack("!HH", 0x8123, 8) + b"abcd"  # action bits 10: skip
    register(core, 1, make_pe(1))  # warm-up: same PE, no change expected from the extra TLV
    actions = feed(core, 1, with_parameter(registration(make_pe(1, port=5999)), tlv))
    response = one(actions, RegistrationResponse, 1)
    assert not response.has_flag("reject")
    node = core.handlespace.find(H, 1)
    assert node is not None and node.pe.user_transport.port == 5999


def test_incoming_asap_error_is_not_answered() -> None:
    core = make_core()
    up(core, 1, PEER)
    valid = AsapError(error=(ErrorCause(CauseCode.INVALID_VALUES),)).encode()
    assert sent(feed(core, 1, valid)) == []
    broken = valid[:2] + struct.pack("!H", len(valid) + 4) + valid[4:]  # an ERROR we cannot decode
    assert sent(feed(core, 1, broken)) == []


def test_a_malformed_enrp_message_is_answered_with_enrp_error_not_asap() -> None:
    core = make_core()
    up(core, 1, PEER)
    [answer] = sent(core.receive(1, b"\x01\x00\x00\x04", Protocol.ENRP.ppid, NOW))
    assert isinstance(answer, EnrpError) and answer.sender_id == SERVER_ID
    assert answer.error[0].code == CauseCode.INVALID_VALUES and answer.error[0].info == b"\x01\x00\x00\x04"


# ------------------------------------------------------------------ announces


def announce_of(actions: Sequence[Action]) -> ServerAnnounce:
    announces = [a for a in actions if isinstance(a, Announce)]
    assert len(announces) == 1
    message = decode(announces[0].message.encode(), Protocol.ASAP)
    assert isinstance(message, ServerAnnounce)
    return message


def test_announce_timer_announces_the_sctp_transport_and_restarts() -> None:
    addresses = ("10.0.0.1", "10.0.1.1")
    core = make_core(announce=True, asap_addresses=addresses, asap_port=3999, announce_cycle=2.0)
    for _ in range(20):  # the cycle is randomised by +-12.5 % each time
        actions = core.timer(("announce",), NOW)
        announce = announce_of(actions)
        assert announce.server_id == SERVER_ID
        assert announce.transports == (
            SctpTransport(port=3999, addresses=(ip_address("10.0.0.1"), ip_address("10.0.1.1"))),
        )
        delays = started(actions)
        assert list(delays) == [("announce",)]
        assert 2.0 * 0.875 <= delays[("announce",)] <= 2.0 * 1.125


def test_announce_over_tcp_names_one_tcp_transport_per_address() -> None:
    core = make_core(announce=True, asap_addresses=("10.0.0.1", "10.0.1.1"), sctp=False)
    announce = announce_of(core.timer(("announce",), NOW))
    assert announce.transports == (
        TcpTransport(port=3863, addresses=(ip_address("10.0.0.1"),)),
        TcpTransport(port=3863, addresses=(ip_address("10.0.1.1"),)),
    )


def test_announce_without_addresses_is_bare() -> None:
    core = make_core(announce=True)
    assert announce_of(core.timer(("announce",), NOW)).transports == ()


def test_start_announces_only_when_asked() -> None:
    announcing = make_core(announce=True, asap_addresses=("10.0.0.1",))
    assert announce_of(announcing.start(NOW)).server_id == SERVER_ID
    assert not any(isinstance(a, Announce | StartTimer) for a in make_core(announce=False).start(NOW))


def test_options_are_validated() -> None:
    with pytest.raises(ValueError):
        RegistrarOptions(server_id=0)
    with pytest.raises(ValueError):
        RegistrarOptions(server_id=1, keepalive_timeout=0)
    with pytest.raises(ValueError):
        RegistrarOptions(server_id=1, max_bad_pe_reports=0)


def test_zero_items_for_an_unknown_pool_is_still_unknown() -> None:
    core = make_core()
    up(core, 1)
    assert causes(resolve(core, 1, items=0, handle=b"NoSuchPool")) == [CauseCode.UNKNOWN_POOL_HANDLE]


def test_ipv4_peers_of_a_dual_stack_listener_count_as_ipv4() -> None:
    core = make_core()
    core.association_up(1, NOW, peer_addresses=(f"::ffff:{PEER}",), sctp=False)
    register(core, 1, make_pe(8))  # its user transport says PEER, the socket said ::ffff:PEER


def test_a_resolution_too_large_for_one_message_is_cut_to_fit() -> None:
    addresses = [f"10.0.{i // 200}.{i % 200 + 1}" for i in range(60)]  # 60 homes each: 128 PEs > 64 KiB
    core = make_core()
    up(core, 1, *addresses)
    for pe_id in range(1, 129):
        register(core, 1, make_pe(pe_id, *addresses))
    response = resolve(core, 1, items=128)
    assert 0 < len(response.pool_elements) < 128 and len(response.encode()) <= 65535
