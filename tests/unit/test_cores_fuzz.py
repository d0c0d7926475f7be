"""No peer's bytes can break a core: random and mutated messages into every receive().

A core that raised would only be caught by the runtime's guard (and logged as an internal
error); here the cores themselves must turn every input into actions, and whatever they
send back must encode.  After the abuse, the registrar still serves a well-behaved PE.
"""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.cookie import CookieSealer
from nodes.pe.core import PoolElementCore, PoolElementOptions
from nodes.pe.service import ServiceCore
from nodes.pu.core import PoolUserCore, PoolUserOptions
from nodes.registrar.core import RegistrarCore, RegistrarOptions
from nodes.registrars import RegistrarAddress
from nodes.sansio import Send, SendData
from nodes.wire import PoolElement, Registration, RegistrationResponse, SctpTransport, decode, Protocol
from nodes.wire.examples import example_messages
from nodes.wire.policies import RoundRobin

ASAP_EXAMPLES = [m.encode() for m in example_messages() if m.PROTOCOL is Protocol.ASAP]
PEER = "10.0.0.2"


def mutated() -> st.SearchStrategy[bytes]:
    """Valid ASAP messages with bytes flipped, cut or appended, and plain random bytes."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(ASAP_EXAMPLES)))
        for _ in range(draw(st.integers(1, 4))):
            if data and draw(st.booleans()):
                data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
            else:
                data = data[: draw(st.integers(0, len(data)))] + draw(st.binary(max_size=8))
        return bytes(data)

    return st.one_of(mutate(), st.binary(max_size=64))


def check(actions: list) -> None:
    for action in actions:
        if isinstance(action, Send):
            action.message.encode()
        elif isinstance(action, SendData):
            assert isinstance(action.data, bytes)


def pe_registration(pe_id: int) -> bytes:
    transport = SctpTransport(port=4000, addresses=(ipaddress.ip_address(PEER),))
    return Registration(pool_handle=b"P", pool_element=PoolElement(pe_id, 0, 30000, transport, RoundRobin())).encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(mutated(), min_size=1, max_size=6), st.sampled_from([11, 12, 0]))
def test_registrar_survives_anything(messages: list[bytes], ppid: int) -> None:
    core = RegistrarCore(RegistrarOptions(server_id=0x10))
    core.association_up(1, 0.0, peer_addresses=(PEER,))
    core.association_up(2, 0.0, peer_addresses=(PEER,))
    for data in messages:
        check(core.receive(1, data, ppid, 1.0))
    replies = [a.message for a in core.receive(2, pe_registration(0x77), 11, 2.0) if isinstance(a, Send)]
    assert isinstance(replies[0], RegistrationResponse) and not replies[0].has_flag("reject")


@settings(max_examples=200, deadline=None)
@given(st.lists(mutated(), min_size=1, max_size=6))
def test_pool_element_survives_anything(messages: list[bytes]) -> None:
    core = PoolElementCore(PoolElementOptions(b"P", 5, RoundRobin(), (PEER,), 4000,
                                              registrars=(RegistrarAddress(("10.0.0.1",), 3863),)))  # fmt: skip
    core.start(0.0)
    core.association_up(1, 0.1, key=core.connecting, peer_addresses=("10.0.0.1",))
    for data in messages:
        check(core.receive(1, data, 11, 1.0))
        check(core.datagram(data, "10.0.0.1", 3863, "eth0", 1.0))


@settings(max_examples=200, deadline=None)
@given(st.lists(mutated(), min_size=1, max_size=6))
def test_pool_user_survives_anything(messages: list[bytes]) -> None:
    core = PoolUserCore(PoolUserOptions(registrars=(RegistrarAddress(("10.0.0.1",), 3863),)))
    core.resolve("t", b"P", None, 0.0)
    core.association_up(1, 0.1, key=core.connecting)
    for data in messages:
        check(core.receive(1, data, 11, 1.0))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(mutated(), st.binary(min_size=1, max_size=40).map(lambda b: bytes([0x81]) + b)), max_size=6))
def test_service_survives_anything(messages: list[bytes]) -> None:
    core = ServiceCore("calc", 5, CookieSealer(b"secret", b"P"))
    core.association_up(1, 0.0)
    for data in messages:
        check(core.receive(1, data, 11, 1.0))
    assert all(decode(m.encode(), Protocol.ASAP) for a in core.receive(1, b"", 11, 1.0) if isinstance(a, Send) for m in [a.message])
