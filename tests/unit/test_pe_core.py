"""PoolElementCore (nodes/pe/core.py): finding a registrar, registering, keep-alives, home changes.

The registrar side is played by hand with real ASAP messages; what the PE sends is decoded
from its wire bytes.  Expectations follow RFC 5352 and RSPLIB's PE (rserpool-wire.md, 8.6):
registration life = 3 x the re-registration interval in ms, no registrator transport, ACKs
on the home registrar's association, H flag = "take me as your home".
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_address

import pytest

from nodes.pe.core import PoolElementCore, PoolElementOptions
from nodes.registrars import RegistrarAddress
from nodes.sansio import Abort, Action, Close
from nodes.wire import (
    CauseCode,
    Deregistration,
    DeregistrationResponse,
    EndpointKeepAlive,
    EndpointKeepAliveAck,
    ErrorCause,
    HandleResolution,
    Message,
    Protocol,
    Registration,
    RegistrationResponse,
    SctpTransport,
    ServerAnnounce,
    TcpTransport,
    TransportUse,
)
from nodes.wire import policies as P
from nodes.wire.constants import MAX_LOAD
from tests.actions import cancelled, connects, sent, started

ASAP = Protocol.ASAP.ppid
H = b"EchoPool"
PE_ID = 0x00C0FFEE
REG = RegistrarAddress(("10.0.0.1",), 3863)
REG2 = RegistrarAddress(("10.0.0.2", "10.0.1.2"), 3864)
PR1, PR2 = 0x11111111, 0x22222222
HOME = 1  # the association to the first registrar


# ------------------------------------------------------------------ helpers


def make_core(**overrides: object) -> PoolElementCore:
    options: dict[str, object] = {
        "pool_handle": H,
        "pe_id": PE_ID,
        "policy": P.RoundRobin(),
        "user_addresses": ("10.0.1.5", "10.0.2.5"),
        "user_port": 7000,
        "registrars": (REG,),
        "reregistration_interval": 10.0,
        "registration_timeout": 3.0,
        "retry_delay": 1.5,
    }
    options.update(overrides)
    return PoolElementCore(PoolElementOptions(**options))  # type: ignore[arg-type]




def sent_of(actions: Sequence[Action], cls: type, assoc: int | None = None) -> list[Message]:
    return [m for m in sent(actions, assoc) if isinstance(m, cls)]








def feed(core: PoolElementCore, assoc: int, message: Message, now: float = 0.0) -> list[Action]:
    return core.receive(assoc, message.encode(), ASAP, now)


def registration_in(actions: Sequence[Action], assoc: int) -> Registration:
    registrations = sent_of(actions, Registration, assoc)
    assert len(registrations) == 1, sent(actions)
    message = registrations[0]
    assert isinstance(message, Registration)
    return message


def connect_and_register(core: PoolElementCore, assoc: int = HOME, now: float = 0.0) -> list[Action]:
    """From hunting (a Connect outstanding) to registered; returns the response's actions."""
    connect = connects(core.start(now) if core.phase == "idle" else core.timer(("hunt",), now))
    assert len(connect) == 1
    actions = core.association_up(assoc, now, key=connect[0].key, peer_addresses=connect[0].addresses)
    registration_in(actions, assoc)
    return feed(core, assoc, RegistrationResponse(pool_handle=H, pe_id=PE_ID), now)


def keepalive(
    server_id: int = PR1, pe_id: int | None = PE_ID, home: bool = False, handle: bytes = H
) -> EndpointKeepAlive:
    return EndpointKeepAlive(server_id=server_id, pool_handle=handle, pe_id=pe_id, flags=0x01 if home else 0)


def acks(actions: Sequence[Action], assoc: int) -> list[Message]:
    return sent_of(actions, EndpointKeepAliveAck, assoc)


# ------------------------------------------------------------------ finding a registrar and registering


def test_start_connects_to_the_static_registrar() -> None:
    core = make_core()
    actions = core.start(0.0)
    (connect,) = connects(actions)
    assert (connect.addresses, connect.port) == (("10.0.0.1",), 3863)
    assert not sent(actions)


def test_registration_on_association_up() -> None:
    core = make_core(policy=P.WeightedRoundRobin(weight=4), reregistration_interval=12.5)
    (connect,) = connects(core.start(0.0))
    actions = core.association_up(HOME, 0.1, key=connect.key, peer_addresses=("10.0.0.1",))
    message = registration_in(actions, HOME)
    assert message.pool_handle == H
    pe = message.pool_element
    assert pe.identifier == PE_ID
    assert pe.registration_life == 37500  # 3 x 12.5 s, in ms
    assert pe.registrator_transport is None
    assert pe.policy == P.WeightedRoundRobin(weight=4)
    assert pe.user_transport == SctpTransport(
        port=7000,
        addresses=(ip_address("10.0.1.5"), ip_address("10.0.2.5")),
        transport_use=TransportUse.DATA_PLUS_CONTROL,
    )
    assert started(actions) == {("registration-timeout",): 3.0}


def test_registration_over_tcp_without_control_channel() -> None:
    core = make_core(sctp=False, control_channel=False)
    (connect,) = connects(core.start(0.0))
    pe = registration_in(core.association_up(HOME, 0.1, key=connect.key), HOME).pool_element
    assert pe.user_transport == TcpTransport(port=7000, addresses=(ip_address("10.0.1.5"),))
    assert pe.user_transport.transport_use is TransportUse.DATA_ONLY  # type: ignore[attr-defined]


def test_registration_response_makes_it_registered_and_schedules_reregistration() -> None:
    core = make_core()
    actions = connect_and_register(core)
    assert core.phase == "registered" and core.home == HOME
    assert ("registration-timeout",) in cancelled(actions)
    assert started(actions)[("reregister",)] == 10.0
    # it also learns its pool mates (all of them) for business cards
    (resolution,) = sent_of(actions, HandleResolution, HOME)
    assert resolution.pool_handle == H and resolution.items == 0xFFFFFFFF

    again = core.timer(("reregister",), 10.0)
    assert registration_in(again, HOME).pool_element.identifier == PE_ID
    again = feed(core, HOME, RegistrationResponse(pool_handle=H, pe_id=PE_ID), 10.1)
    assert started(again)[("reregister",)] == 10.0


def test_registration_reject_closes_and_hunts_again() -> None:
    core = make_core()
    (connect,) = connects(core.start(0.0))
    core.association_up(HOME, 0.1, key=connect.key)
    reject = RegistrationResponse(
        pool_handle=H, pe_id=PE_ID, error=(ErrorCause(CauseCode.RSPLIB_NO_USABLE_USER_ADDRESSES),), flags=0x01
    )
    actions = feed(core, HOME, reject, 0.2)
    assert Close(HOME) in actions
    assert started(actions) == {("hunt",): 1.5}
    assert core.phase != "registered" and core.home is None
    assert len(connects(core.timer(("hunt",), 1.7))) == 1


def test_registration_timeout_aborts_and_hunts() -> None:
    core = make_core()
    (connect,) = connects(core.start(0.0))
    core.association_up(HOME, 0.1, key=connect.key)
    actions = core.timer(("registration-timeout",), 3.1)
    assert Abort(HOME) in actions
    assert started(actions) == {("hunt",): 1.5}
    assert core.home is None
    assert len(connects(core.timer(("hunt",), 4.6))) == 1


def test_connect_failure_tries_the_next_registrar() -> None:
    core = make_core(registrars=(REG, REG2))
    (first,) = connects(core.start(0.0))
    actions = core.connect_failed(first.key, "refused", 0.1)
    assert started(actions) == {("hunt",): 1.5}
    (second,) = connects(core.timer(("hunt",), 1.6))
    assert {first.addresses, second.addresses} == {REG.addresses, REG2.addresses}
    assert second.key != first.key


def test_late_association_for_an_abandoned_connect_is_closed() -> None:
    core = make_core(registrars=(REG, REG2))
    (first,) = connects(core.start(0.0))
    core.connect_failed(first.key, "timeout", 0.1)
    (second,) = connects(core.timer(("hunt",), 1.6))
    actions = core.association_up(7, 1.7, key=first.key)
    assert actions == [Close(7)]
    assert registration_in(core.association_up(8, 1.8, key=second.key), 8)


# ------------------------------------------------------------------ keep-alives and home changes


@pytest.mark.parametrize("pe_id", [PE_ID, None])
def test_keepalive_is_acknowledged_on_the_home_association(pe_id: int | None) -> None:
    core = make_core()
    connect_and_register(core)
    actions = feed(core, HOME, keepalive(pe_id=pe_id), 1.0)
    (ack,) = acks(actions, HOME)
    assert (ack.pool_handle, ack.pe_id) == (H, PE_ID)  # type: ignore[attr-defined]
    assert len(sent(actions)) == 1


def test_keepalive_teaches_the_home_registrar_id() -> None:
    core = make_core()
    connect_and_register(core)
    feed(core, HOME, keepalive(server_id=PR1), 1.0)
    registration = registration_in(core.timer(("reregister",), 10.0), HOME)
    assert registration.pool_element.home_registrar == PR1


@pytest.mark.parametrize("message", [keepalive(pe_id=PE_ID + 1), keepalive(handle=b"OtherPool")])
def test_keepalive_for_another_pe_is_ignored(message: EndpointKeepAlive) -> None:
    core = make_core()
    connect_and_register(core)
    assert sent(feed(core, HOME, message, 1.0)) == []


def test_home_flag_keepalive_from_another_registrar_moves_home() -> None:
    core = make_core()
    connect_and_register(core)
    core.association_up(5, 2.0, peer_addresses=("10.0.0.2",))  # the other registrar connects to the PE
    actions = feed(core, 5, keepalive(server_id=PR2, home=True), 2.1)
    assert Close(HOME) in actions
    assert acks(actions, 5) and not acks(actions, HOME)
    assert core.home == 5
    # from now on it re-registers at, and names, the new home
    registration = registration_in(core.timer(("reregister",), 10.0), 5)
    assert registration.pool_element.home_registrar == PR2
    # the old association going away afterwards is no loss of the home
    assert not connects(core.association_down(HOME, 10.1)) and core.home == 5


def test_keepalive_without_home_flag_from_another_registrar_keeps_home() -> None:
    core = make_core()
    connect_and_register(core)
    core.association_up(5, 2.0, peer_addresses=("10.0.0.2",))
    actions = feed(core, 5, keepalive(server_id=PR2), 2.1)
    assert Close(HOME) not in actions
    assert core.home == HOME
    assert acks(actions, HOME) and not acks(actions, 5)  # RSPLIB: the ACK goes on the home association


def test_home_flag_keepalive_while_hunting_keeps_the_pe_reregistering() -> None:
    core = make_core()
    connect_and_register(core)
    core.association_down(HOME, 5.0)  # hunting now
    core.association_up(5, 5.1, peer_addresses=("10.0.0.2",))  # a registrar that took the PE over
    actions = feed(core, 5, keepalive(server_id=PR2, home=True), 5.2)
    assert acks(actions, 5) and core.home == 5
    assert ("reregister",) in started(actions)


def test_home_association_loss_hunts_and_registers_again() -> None:
    core = make_core(registrars=(REG, REG2))
    connect_and_register(core)
    actions = core.association_down(HOME, 5.0)
    assert {("reregister",), ("registration-timeout",)} <= cancelled(actions)
    assert ("hunt",) in started(actions)
    assert core.home is None and core.phase != "registered"
    (connect,) = connects(core.timer(("hunt",), 5.1))
    assert connect.addresses == REG2.addresses  # the next registrar, not the one just lost
    up = core.association_up(2, 5.2, key=connect.key)
    assert registration_in(up, 2).pool_element.identifier == PE_ID
    feed(core, 2, RegistrationResponse(pool_handle=H, pe_id=PE_ID), 5.3)
    assert core.phase == "registered" and core.home == 2


def test_loss_of_another_association_changes_nothing() -> None:
    core = make_core()
    connect_and_register(core)
    core.association_up(5, 2.0)
    assert core.association_down(5, 3.0) == []
    assert core.home == HOME and core.phase == "registered"


# ------------------------------------------------------------------ load


def register_least_used(load: float = 0.0) -> PoolElementCore:
    core = make_core(policy=P.LeastUsed(load=round(load * MAX_LOAD)), load_threshold=0.05)
    connect_and_register(core)
    return core


def test_load_change_beyond_the_threshold_reregisters_with_the_new_load() -> None:
    core = register_least_used(0.1)
    actions = core.set_load(0.5, 1.0)
    delays = started(actions)
    assert ("load-update",) in delays and delays[("load-update",)] <= 0.5
    update = core.timer(("load-update",), 1.0 + delays[("load-update",)])
    policy = registration_in(update, HOME).pool_element.policy
    assert isinstance(policy, P.LeastUsed)
    assert policy.load / MAX_LOAD == pytest.approx(0.5, abs=1e-6)


def test_small_load_change_does_not_reregister() -> None:
    core = register_least_used(0.1)
    assert core.set_load(0.13, 1.0) == []
    assert sent(core.timer(("load-update",), 2.0)) == []


def test_load_under_a_non_adaptive_policy_is_not_registered() -> None:
    core = make_core(policy=P.RoundRobin())
    connect_and_register(core)
    assert core.set_load(0.9, 1.0) == []
    assert sent(core.timer(("load-update",), 2.0)) == []


def test_load_change_under_least_used_degradation() -> None:
    core = make_core(policy=P.LeastUsedDegradation(load=0, load_degradation=1000))
    connect_and_register(core)
    core.set_load(0.8, 1.0)
    policy = registration_in(core.timer(("load-update",), 1.0), HOME).pool_element.policy
    assert isinstance(policy, P.LeastUsedDegradation)
    assert policy.load / MAX_LOAD == pytest.approx(0.8, abs=1e-6)
    assert policy.load_degradation == 1000


# ------------------------------------------------------------------ shutdown


def test_shutdown_deregisters_then_closes() -> None:
    core = make_core()
    connect_and_register(core)
    actions = core.shutdown(20.0)
    (dereg,) = sent_of(actions, Deregistration, HOME)
    assert (dereg.pool_handle, dereg.pe_id) == (H, PE_ID)  # type: ignore[attr-defined]
    assert ("deregistration-timeout",) in started(actions)
    assert not core.finished
    done = feed(core, HOME, DeregistrationResponse(pool_handle=H, pe_id=PE_ID), 20.1)
    assert Close(HOME) in done
    assert ("deregistration-timeout",) in cancelled(done)
    assert core.finished


def test_shutdown_without_an_answer_finishes_at_the_timeout() -> None:
    core = make_core()
    connect_and_register(core)
    core.shutdown(20.0)
    core.timer(("deregistration-timeout",), 22.0)
    assert core.finished


def test_shutdown_when_not_registered_finishes_at_once() -> None:
    core = make_core()
    core.start(0.0)
    actions = core.shutdown(0.5)
    assert sent(actions) == []
    assert core.finished


# ------------------------------------------------------------------ announces


def announce(server_id: int, *transports: SctpTransport | TcpTransport) -> bytes:
    return ServerAnnounce(server_id=server_id, transports=transports).encode()


def test_announce_while_hunting_connects_to_the_announced_transport() -> None:
    core = make_core(registrars=())
    actions = core.start(0.0)
    assert not connects(actions) and ("hunt",) in started(actions)
    transport = SctpTransport(port=3999, addresses=(ip_address("10.0.0.7"), ip_address("10.0.1.7")))
    actions = core.datagram(announce(PR1, transport), "10.0.0.7", 40000, "eth0", 0.5)
    (connect,) = connects(actions)
    assert (connect.addresses, connect.port) == (("10.0.0.7", "10.0.1.7"), 3999)
    assert registration_in(core.association_up(3, 0.6, key=connect.key), 3)


def test_bare_announce_while_hunting_connects_to_the_udp_source() -> None:
    core = make_core(registrars=())
    core.start(0.0)
    (connect,) = connects(core.datagram(announce(PR1), "10.0.0.8", 3863, "eth0", 0.5))
    assert (connect.addresses, connect.port) == (("10.0.0.8",), 3863)


def test_announce_while_registered_does_not_connect() -> None:
    core = make_core()
    connect_and_register(core)
    assert not connects(core.datagram(announce(PR2), "10.0.0.9", 3863, "eth0", 1.0))


def test_garbage_on_the_announce_group_is_not_fatal() -> None:
    core = make_core(registrars=())
    core.start(0.0)
    assert not connects(core.datagram(b"\x0a\x00\x00", "10.0.0.8", 3863, "eth0", 0.5))
    keepalive_on_group = keepalive().encode()  # a valid ASAP message, but not an announce
    assert not connects(core.datagram(keepalive_on_group, "10.0.0.8", 3863, "eth0", 0.6))


def test_options_are_validated() -> None:
    with pytest.raises(ValueError):
        make_core(pe_id=0)
    with pytest.raises(ValueError):
        make_core(pe_id=0xFFFFFFFF)
    with pytest.raises(ValueError):
        make_core(user_addresses=())
    with pytest.raises(ValueError):
        make_core(reregistration_interval=0)
