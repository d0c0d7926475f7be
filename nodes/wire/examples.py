"""A set of well-formed messages that together use every message type, parameter type,
transport, policy and flag of the codec. The demo sends them, the conformance tests
feed them to tshark, and the benchmark sizes its messages on them.
"""

from __future__ import annotations

from ipaddress import ip_address

from . import policies as pol
from .constants import CauseCode, ParamType, TransportUse, UpdateAction
from .messages import (
    AsapError,
    BusinessCard,
    Cookie,
    CookieEcho,
    Deregistration,
    DeregistrationResponse,
    EndpointKeepAlive,
    EndpointKeepAliveAck,
    EndpointUnreachable,
    EnrpError,
    HandleResolution,
    HandleResolutionResponse,
    HandleTableRequest,
    HandleTableResponse,
    HandleUpdate,
    InitTakeover,
    InitTakeoverAck,
    ListRequest,
    ListResponse,
    Message,
    PoolEntry,
    Presence,
    Registration,
    RegistrationResponse,
    ServerAnnounce,
    TakeoverServer,
)
from .params import (
    DccpTransport,
    ErrorCause,
    PoolElement,
    SctpTransport,
    ServerInformation,
    TcpTransport,
    Transport,
    UdpLiteTransport,
    UdpTransport,
    encode_param,
)

HANDLE = b"EchoPool"
PR1, PR2, PR3 = 0x1A2B3C4D, 0x22222222, 0x33333333

EXAMPLE_POLICIES: tuple[pol.Policy, ...] = (
    pol.RoundRobin(),
    pol.WeightedRoundRobin(weight=3),
    pol.Random(),
    pol.WeightedRandom(weight=7),
    pol.Priority(priority=2),
    pol.LeastUsed(load=pol.load_value(0.25)),
    pol.LeastUsedDegradation(load=pol.load_value(0.5), load_degradation=pol.load_value(0.01)),
    pol.PriorityLeastUsed(load=pol.load_value(0.1), load_degradation=pol.load_value(0.02)),
    pol.RandomizedLeastUsed(load=pol.load_value(0.75)),
    pol.RandomizedPriorityLeastUsed(load=pol.load_value(0.3), load_degradation=pol.load_value(0.05)),
    pol.RandomizedLeastUsedDegradation(load=pol.load_value(0.4), load_degradation=pol.load_value(0.03)),
    pol.PriorityLeastUsedDegradation(load=pol.load_value(0.2), load_degradation=pol.load_value(0.04)),
    pol.RandomizedPriorityLeastUsedDegradation(load=pol.load_value(0.6), load_degradation=pol.load_value(0.06)),
    pol.WeightedRandomDpf(weight=5, weight_dpf=pol.load_value(0.5), distance=50),
    pol.LeastUsedDpf(load=pol.load_value(0.15), load_dpf=pol.load_value(0.1), distance=100),
    pol.LeastUsedDegradationDpf(
        load=pol.load_value(0.35), load_degradation=pol.load_value(0.01), load_dpf=pol.load_value(0.2), distance=150
    ),
)

EXAMPLE_TRANSPORTS: tuple[Transport, ...] = (
    SctpTransport(port=7000, addresses=(ip_address("10.1.0.10"), ip_address("10.2.0.10"))),
    SctpTransport(port=7001, addresses=(ip_address("fd00:1::10"),), transport_use=TransportUse.DATA_PLUS_CONTROL),
    TcpTransport(port=7002, addresses=(ip_address("10.1.0.11"),), transport_use=TransportUse.DATA_PLUS_CONTROL),
    UdpTransport(port=7003, addresses=(ip_address("10.1.0.12"),)),
    UdpLiteTransport(port=7004, addresses=(ip_address("fd00:1::13"),)),
    DccpTransport(port=7005, addresses=(ip_address("10.1.0.14"),), service_code=42),
)


def example_pool_element(
    index: int = 0, *, registrator: bool = False, transport: Transport | None = None, policy: pol.Policy | None = None
) -> PoolElement:
    """A PE; with `registrator` it carries the ASAP transport as ENRP messages need."""
    return PoolElement(
        identifier=0x10000000 + index,
        home_registrar=PR1,
        registration_life=90000,
        user_transport=transport or EXAMPLE_TRANSPORTS[index % len(EXAMPLE_TRANSPORTS)],
        policy=policy or EXAMPLE_POLICIES[index % len(EXAMPLE_POLICIES)],
        registrator_transport=(
            SctpTransport(port=40000 + index, addresses=(ip_address("10.1.0.10"),)) if registrator else None
        ),
    )


def _server_info(server_id: int, last_octet: int) -> ServerInformation:
    return ServerInformation(
        server_id,
        SctpTransport(port=9901, addresses=(ip_address(f"10.1.0.{last_octet}"), ip_address(f"10.2.0.{last_octet}"))),
    )


def example_messages() -> list[Message]:
    """Every ASAP and ENRP message type at least once, with every parameter type."""
    pe = example_pool_element(0)
    pe_enrp = example_pool_element(1, registrator=True)
    peid = pe.identifier
    bad_param = encode_param(ParamType.POLICY, pol.RoundRobin())
    return [
        Registration(pool_handle=HANDLE, pool_element=pe),
        Deregistration(pool_handle=HANDLE, pe_id=peid),
        RegistrationResponse(pool_handle=HANDLE, pe_id=peid),
        RegistrationResponse(
            pool_handle=HANDLE,
            pe_id=peid,
            flags=0x01,
            error=(ErrorCause(CauseCode.INCONSISTENT_POLICY, bad_param),),
        ),
        DeregistrationResponse(pool_handle=HANDLE, pe_id=peid),
        HandleResolution(pool_handle=HANDLE),
        HandleResolution(pool_handle=HANDLE, items=0xFFFFFFFF),
        HandleResolutionResponse(
            pool_handle=HANDLE,
            policy=EXAMPLE_POLICIES[5],
            pool_elements=tuple(example_pool_element(i) for i in range(len(EXAMPLE_POLICIES))),
        ),
        HandleResolutionResponse(
            pool_handle=b"NoSuchPool", error=(ErrorCause(CauseCode.UNKNOWN_POOL_HANDLE),)
        ),
        EndpointKeepAlive(server_id=PR1, pool_handle=HANDLE, pe_id=peid),
        EndpointKeepAlive(server_id=PR2, pool_handle=HANDLE, pe_id=peid, flags=0x01),
        EndpointKeepAliveAck(pool_handle=HANDLE, pe_id=peid),
        EndpointUnreachable(pool_handle=HANDLE, pe_id=peid),
        ServerAnnounce(server_id=PR1),
        ServerAnnounce(server_id=PR1, transports=EXAMPLE_TRANSPORTS[:3]),
        Cookie(cookie=b"session-state:42"),
        CookieEcho(cookie=b"session-state:42+"),
        BusinessCard(pool_handle=HANDLE, policy=EXAMPLE_POLICIES[0], pool_elements=(pe, example_pool_element(2))),
        AsapError(error=(ErrorCause(CauseCode.UNRECOGNIZED_PARAMETER, bytes.fromhex("7fff0008deadbeef")),)),
        Presence(sender_id=PR1, checksum=0x29A5, server_info=_server_info(PR1, 1), flags=0x01),
        HandleTableRequest(sender_id=PR2, receiver_id=PR1, flags=0x01),
        HandleTableResponse(
            sender_id=PR1,
            receiver_id=PR2,
            flags=0x02,
            entries=(
                PoolEntry(HANDLE, (pe_enrp, example_pool_element(3, registrator=True))),
                PoolEntry(b"CalcAppPool", (example_pool_element(4, registrator=True),)),
            ),
        ),
        HandleUpdate(
            sender_id=PR1, receiver_id=PR2, update_action=UpdateAction.ADD_PE, pool_handle=HANDLE, pool_element=pe_enrp
        ),
        HandleUpdate(
            sender_id=PR1,
            receiver_id=PR3,
            update_action=UpdateAction.DEL_PE,
            pool_handle=HANDLE,
            pool_element=pe_enrp,
            flags=0x01,
        ),
        ListRequest(sender_id=PR2, receiver_id=PR1),
        ListResponse(sender_id=PR1, receiver_id=PR2, servers=(_server_info(PR2, 2), _server_info(PR3, 3))),
        InitTakeover(sender_id=PR2, receiver_id=PR3, target_id=PR1),
        InitTakeoverAck(sender_id=PR3, receiver_id=PR2, target_id=PR1),
        TakeoverServer(sender_id=PR2, receiver_id=0, target_id=PR1),
        EnrpError(
            sender_id=PR1, receiver_id=PR2, error=(ErrorCause(CauseCode.INVALID_VALUES, encode_param(ParamType.PE_IDENTIFIER, 0)),)
        ),
    ]
