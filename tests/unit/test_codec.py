"""Round trips, hand-written byte vectors and the checksum of the wire codec."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from nodes import wire
from nodes.wire import MESSAGE_CLASSES, ParamType, Protocol, decode, pe_checksum
from nodes.wire import policies as pol
from nodes.wire.constants import CAUSES_WITH_MESSAGE, CAUSES_WITH_PARAMETER
from nodes.wire.examples import EXAMPLE_POLICIES, EXAMPLE_TRANSPORTS, example_messages
from nodes.wire.tlv import walk

EXAMPLES = example_messages()

# Parameters that contain other parameters, and the size of their fixed part.
_CONTAINERS = {
    ParamType.POOL_ELEMENT: 12,
    ParamType.SERVER_INFORMATION: 4,
    ParamType.SCTP_TRANSPORT: 4,
    ParamType.TCP_TRANSPORT: 4,
    ParamType.UDP_TRANSPORT: 4,
    ParamType.UDP_LITE_TRANSPORT: 4,
    ParamType.DCCP_TRANSPORT: 8,
}


def param_types_in(data: bytes, start: int, end: int) -> set[int]:
    """Every parameter type in a region, nested ones included (independent of the decoder)."""
    found = set()
    for ptype, _, vs, ve in walk(data, start, end, "test", hex):
        found.add(ptype)
        if ptype in _CONTAINERS:
            found |= param_types_in(data, vs + _CONTAINERS[ptype], ve)
    return found


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.NAME)
def test_example_round_trips_byte_exact(message: wire.Message) -> None:
    data = message.encode()
    decoded = decode(data, message.PROTOCOL)
    assert decoded == message
    assert decoded.encode() == data
    assert len(data) % 4 == 0
    assert int.from_bytes(data[2:4], "big") == len(data)


def test_examples_cover_every_message_type() -> None:
    covered = {(m.PROTOCOL, m.TYPE) for m in EXAMPLES}
    expected = {(p, t) for p, classes in MESSAGE_CLASSES.items() for t in classes}
    assert covered == expected
    assert len(MESSAGE_CLASSES[Protocol.ASAP]) == 14
    assert len(MESSAGE_CLASSES[Protocol.ENRP]) == 10


def test_examples_cover_every_parameter_type_policy_and_transport() -> None:
    seen: set[int] = set()
    for message in EXAMPLES:
        data = message.encode()
        seen |= param_types_in(data, 4 + message.FIXED_STRUCT.size, len(data))
    assert seen == set(ParamType)
    assert {p.POLICY_TYPE for p in EXAMPLE_POLICIES} == set(pol.POLICY_CLASSES)
    assert {type(t) for t in EXAMPLE_TRANSPORTS} == set(wire.params.TRANSPORT_CLASSES.values())


def test_server_announce_matches_hand_built_bytes() -> None:
    data = bytes.fromhex("0a000008" "1a2b3c4d")
    assert decode(data, Protocol.ASAP) == wire.ServerAnnounce(server_id=0x1A2B3C4D)
    assert wire.ServerAnnounce(server_id=0x1A2B3C4D).encode() == data


def test_registration_matches_hand_built_bytes() -> None:
    data = bytes.fromhex(
        "01000038"  # REGISTRATION, flags 0, length 56
        "0009000b" "45636850" "6f6f6c00"  # Pool Handle "EchPool" (length 11) and one padding byte
        "000a0028" "00000007" "00000000" "00015f90"  # Pool Element: PE 7, home 0, life 90000 ms
        "00040010" "13880000" "00010008" "0a000001"  # SCTP transport: port 5000, data only, 10.0.0.1
        "00080008" "00000001"  # policy: round robin
    )
    message = wire.Registration(
        pool_handle=b"EchPool",
        pool_element=wire.PoolElement(
            identifier=7,
            home_registrar=0,
            registration_life=90000,
            user_transport=wire.SctpTransport(port=5000, addresses=(ip_address("10.0.0.1"),)),
            policy=pol.RoundRobin(),
        ),
    )
    assert message.encode() == data
    assert decode(data, Protocol.ASAP) == message


def test_pe_checksum_matches_rsplib_examples() -> None:
    assert pe_checksum([]) == 0xFFFF
    assert pe_checksum([(b"EchoPool", 0x12345678)]) == 0x29A5


def test_pe_checksum_is_order_independent_and_pads_odd_handles() -> None:
    pes = [(b"A", 1), (b"BB", 0xFFFFFFFF), (b"CCC", 0x8000)]
    assert pe_checksum(pes) == pe_checksum(list(reversed(pes)))
    # An odd handle is padded with a zero byte: "A" counts as the word 0x4100.
    assert pe_checksum([(b"A", 0)]) == (~0x4100) & 0xFFFF


def test_pe_checksum_parameter_is_six_bytes_plus_padding() -> None:
    data = wire.Presence(sender_id=1, checksum=0xBEEF).encode()
    assert data[12:20] == bytes.fromhex("000f0006beef0000")


def test_handle_resolution_option_has_skip_action_bits() -> None:
    data = wire.HandleResolution(pool_handle=b"P", items=3).encode()
    assert data[12:20] == bytes.fromhex("803f000800000003")
    assert wire.UnknownParamAction.of(ParamType.HANDLE_RESOLUTION_OPTION) is wire.UnknownParamAction.SKIP


def test_flags_are_named_per_message() -> None:
    reject = wire.RegistrationResponse(pool_handle=b"P", pe_id=1, flags=0x01)
    assert reject.flag_names() == ["reject"]
    more = wire.HandleTableResponse(sender_id=1, flags=0x03)
    assert more.flag_names() == ["reject", "more_to_send"]
    assert wire.EndpointKeepAlive(server_id=1, pool_handle=b"P", flags=0x01).has_flag("home")


def test_reserved_flag_bits_are_kept_for_byte_exactness() -> None:
    message = wire.Cookie(cookie=b"x", flags=0x80)
    assert decode(message.encode(), Protocol.ASAP).flags == 0x80


def test_wireshark_cause_sets_are_disjoint() -> None:
    assert not CAUSES_WITH_MESSAGE & CAUSES_WITH_PARAMETER


def test_encode_rejects_out_of_range_values() -> None:
    with pytest.raises(wire.EncodeError, match="ASAP_DEREGISTRATION"):
        wire.Deregistration(pool_handle=b"P", pe_id=2**32).encode()
    with pytest.raises(wire.EncodeError, match="one address"):
        wire.Registration(
            pool_handle=b"P",
            pool_element=wire.PoolElement(
                1, 0, 1, wire.TcpTransport(port=1, addresses=(ip_address("10.0.0.1"), ip_address("10.0.0.2"))), pol.Random()
            ),
        ).encode()


def test_encode_rejects_messages_longer_than_65535_bytes() -> None:
    with pytest.raises(wire.EncodeError):
        wire.Cookie(cookie=b"x" * 70000).encode()
