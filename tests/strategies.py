"""hypothesis strategies for valid ASAP/ENRP messages, derived from the codec's declarations."""

from __future__ import annotations

import dataclasses
import ipaddress

from hypothesis import strategies as st

from nodes.wire import MESSAGE_CLASSES, CauseCode, ParamType, Protocol, TransportUse, UpdateAction
from nodes.wire.messages import HandleTableResponse, Message, PoolEntry
from nodes.wire.params import (
    TRANSPORT_CLASSES,
    ErrorCause,
    PoolElement,
    ServerInformation,
    encode_param,
)
from nodes.wire.policies import POLICY_CLASSES, Policy

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
i32 = st.integers(-(2**31), 2**31 - 1)
handles = st.binary(min_size=1, max_size=40)

addresses = st.one_of(
    st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
    st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
)


@st.composite
def transports(draw: st.DrawFn) -> object:
    cls = draw(st.sampled_from(sorted(TRANSPORT_CLASSES.values(), key=lambda c: c.PARAM)))
    count = draw(st.integers(1, 4)) if not cls.SINGLE_ADDRESS else 1
    fields = {"port": draw(u16), "addresses": tuple(draw(addresses) for _ in range(count))}
    for name in cls.FIXED:
        if name == "transport_use":
            fields[name] = draw(st.sampled_from(list(TransportUse)))
        elif name == "reserved":
            fields[name] = draw(st.sampled_from([0, 0, draw(u16)]))
        elif name == "service_code":
            fields[name] = draw(u32)
    return cls(**fields)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    cls = draw(st.sampled_from(sorted(POLICY_CLASSES.values(), key=lambda c: c.POLICY_TYPE)))
    return cls(*(draw(u32) for _ in cls.FIELDS))


@st.composite
def pool_elements(draw: st.DrawFn, registrator: bool | None = None) -> PoolElement:
    with_registrator = draw(st.booleans()) if registrator is None else registrator
    return PoolElement(
        identifier=draw(u32),
        home_registrar=draw(u32),
        registration_life=draw(i32),
        user_transport=draw(transports()),
        policy=draw(policies()),
        registrator_transport=draw(transports()) if with_registrator else None,
    )


server_infos = st.builds(ServerInformation, u32, transports())


_EMBEDDED_MESSAGE = {
    Protocol.ASAP: bytes.fromhex("0a00000800000001"),  # SERVER_ANNOUNCE
    Protocol.ENRP: bytes.fromhex("0500000c0000000100000002"),  # LIST_REQUEST
}


@st.composite
def error_causes(draw: st.DrawFn, protocol: Protocol = Protocol.ASAP) -> ErrorCause:
    """Causes with the info Wireshark expects: a parameter for 1, 3, 5, 7; a message for 2."""
    code = draw(st.sampled_from(list(CauseCode)))
    if code in (CauseCode.UNRECOGNIZED_PARAMETER, CauseCode.INVALID_VALUES):
        info = encode_param(ParamType.PE_IDENTIFIER, draw(u32))
    elif code == CauseCode.INCONSISTENT_POLICY:
        info = encode_param(ParamType.POLICY, draw(policies()))
    elif code == CauseCode.INCONSISTENT_TRANSPORT_TYPE:
        info = encode_param(ParamType.SCTP_TRANSPORT, TRANSPORT_CLASSES[ParamType.SCTP_TRANSPORT](1, (ipaddress.IPv4Address(1),)))
    elif code == CauseCode.UNRECOGNIZED_MESSAGE:
        info = _EMBEDDED_MESSAGE[protocol]
    else:
        info = draw(st.sampled_from([b"", draw(st.binary(max_size=9))]))
    return ErrorCause(int(code), info)


_SLOT_VALUES = {
    ParamType.POOL_HANDLE: handles,
    ParamType.PE_IDENTIFIER: u32,
    ParamType.PE_CHECKSUM: u16,
    ParamType.HANDLE_RESOLUTION_OPTION: u32,
    ParamType.COOKIE: st.binary(min_size=1, max_size=64),
    ParamType.POLICY: policies(),
    ParamType.SERVER_INFORMATION: server_infos,
}


def _slot_strategy(slot, protocol: Protocol) -> st.SearchStrategy[object]:  # type: ignore[no-untyped-def]
    types = slot.types
    registrator = protocol is Protocol.ENRP
    if ParamType.OPERATION_ERROR in types:
        base: st.SearchStrategy[object] = st.lists(error_causes(protocol), min_size=1, max_size=3).map(tuple)
    elif ParamType.POOL_ELEMENT in types:
        base = pool_elements(registrator)
    elif ParamType.SCTP_TRANSPORT in types:
        base = transports()
    else:
        base = _SLOT_VALUES[next(iter(types))]
    if slot.repeated:
        return st.lists(base, min_size=1 if slot.mandatory else 0, max_size=4).map(tuple)
    if not slot.mandatory:
        return st.one_of(st.none(), base)
    return base


@st.composite
def messages(draw: st.DrawFn, protocol: Protocol | None = None) -> Message:
    proto = protocol or draw(st.sampled_from(list(Protocol)))
    cls = draw(st.sampled_from([MESSAGE_CLASSES[proto][t] for t in sorted(MESSAGE_CLASSES[proto])]))
    fields: dict[str, object] = {"flags": draw(st.sampled_from([0, *cls.FLAGS.values(), draw(u8)]))}
    for name in cls.FIXED:
        fields[name] = draw(st.sampled_from(list(UpdateAction))) if name == "update_action" else draw(
            u16 if name == "reserved" else u32
        )
    if cls is HandleTableResponse:
        fields["entries"] = tuple(
            draw(st.lists(st.builds(PoolEntry, handles, st.lists(pool_elements(True), min_size=1, max_size=3).map(tuple)), max_size=3))
        )
    for slot in cls.SLOTS:
        fields[slot.attr] = draw(_slot_strategy(slot, proto))
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in fields.items() if k in names})
