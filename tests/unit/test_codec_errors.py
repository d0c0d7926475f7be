"""Strict decoding: each kind of malformation raises its own error naming field and offset."""

from __future__ import annotations

import struct
from ipaddress import ip_address

import pytest

from nodes import wire
from nodes.wire import ParamType, Protocol, decode
from nodes.wire import policies as pol
from nodes.wire.params import encode_param

PE = wire.PoolElement(
    identifier=7,
    home_registrar=0,
    registration_life=90000,
    user_transport=wire.SctpTransport(port=5000, addresses=(ip_address("10.0.0.1"),)),
    policy=pol.LeastUsed(load=1),
)
REGISTRATION = wire.Registration(pool_handle=b"EchoPool", pool_element=PE).encode()


def message(mtype: int, body: bytes, flags: int = 0) -> bytes:
    """A message header around `body` with the right length."""
    return struct.pack("!BBH", mtype, flags, 4 + len(body)) + body


def tlv(ptype: int, value: bytes, length: int | None = None, pad: bytes | None = None) -> bytes:
    length = 4 + len(value) if length is None else length
    padding = b"\0" * (-(4 + len(value)) % 4) if pad is None else pad
    return struct.pack("!HH", ptype, length) + value + padding


PH = tlv(ParamType.POOL_HANDLE, b"EchoPool")
PEID = tlv(ParamType.PE_IDENTIFIER, b"\0\0\0\7")


def fails(data: bytes, error: type[wire.DecodeError], protocol: Protocol = Protocol.ASAP) -> wire.DecodeError:
    with pytest.raises(error) as info:
        decode(data, protocol)
    return info.value


def test_message_length_larger_than_data() -> None:
    err = fails(REGISTRATION[:-4], wire.MessageLengthError)
    assert (err.field, err.offset) == ("message length", 2)
    assert str(len(REGISTRATION)) in err.reason


def test_message_length_smaller_than_data() -> None:
    err = fails(REGISTRATION + b"\0\0\0\0", wire.MessageLengthError)
    assert err.offset == 2


def test_header_shorter_than_four_bytes() -> None:
    err = fails(b"\x01\x00", wire.TruncatedError)
    assert err.field == "message header"


def test_unknown_message_type() -> None:
    err = fails(message(0x0F, b""), wire.UnknownMessageTypeError)
    assert err.offset == 0 and err.cause == wire.CauseCode.UNRECOGNIZED_MESSAGE
    fails(message(0x0B, b""), wire.UnknownMessageTypeError, Protocol.ENRP)


def test_enrp_fixed_fields_truncated() -> None:
    err = fails(message(wire.EnrpType.LIST_REQUEST, b"\0\0\0\1"), wire.TruncatedError, Protocol.ENRP)
    assert err.field == "receiver_id" and err.offset == 8
    err = fails(message(wire.EnrpType.HANDLE_UPDATE, b"\0" * 10), wire.TruncatedError, Protocol.ENRP)
    assert err.field == "reserved"


def test_parameter_length_below_four() -> None:
    err = fails(message(1, tlv(ParamType.POOL_HANDLE, b"", length=2)), wire.ParameterLengthError)
    assert (err.field, err.offset) == ("Pool Handle length", 6)


def test_parameter_running_past_the_message() -> None:
    err = fails(message(2, PH + tlv(ParamType.PE_IDENTIFIER, b"\0\0\0\7", length=12)), wire.ParameterLengthError)
    assert err.field == "PE Identifier length" and err.offset == 4 + len(PH) + 2
    assert "past the end" in err.reason


def test_nonzero_padding() -> None:
    err = fails(message(2, tlv(ParamType.POOL_HANDLE, b"abc", pad=b"\x01") + PEID), wire.PaddingError)
    assert (err.field, err.offset) == ("Pool Handle padding", 11)


def test_missing_padding_at_end_of_message() -> None:
    err = fails(message(0x0B, tlv(ParamType.COOKIE, b"abc", pad=b"")), wire.PaddingError)
    assert "missing" in err.reason


def test_wrong_fixed_size_parameter() -> None:
    err = fails(message(2, PH + tlv(ParamType.PE_IDENTIFIER, b"\0\0\0\0\7")), wire.ParameterLengthError)
    assert err.field == "PE Identifier length" and "expected 8" in err.reason
    err = fails(message(1, PH + tlv(ParamType.POOL_ELEMENT, b"\0" * 8)), wire.ParameterLengthError)
    assert "fixed part" in err.reason


def test_missing_mandatory_parameter_at_end() -> None:
    err = fails(message(1, PH), wire.MissingParameterError)
    assert err.field == "Pool Element" and err.offset == 4 + len(PH)


def test_missing_mandatory_parameter_before_another() -> None:
    err = fails(message(2, PEID), wire.MissingParameterError)
    assert err.field == "Pool Handle" and err.offset == 4


def test_parameter_not_legal_in_message() -> None:
    err = fails(message(2, PH + tlv(ParamType.COOKIE, b"c") + PEID), wire.IllegalParameterError)
    assert err.field == "Cookie" and err.offset == 4 + len(PH)
    assert "ASAP_DEREGISTRATION" in err.reason


def test_duplicate_parameter() -> None:
    err = fails(message(2, PH + PEID + PEID), wire.UnexpectedParameterError)
    assert err.field == "PE Identifier" and err.offset == 4 + len(PH) + len(PEID)


def test_parameters_out_of_order() -> None:
    err = fails(message(2, PEID + PH), wire.MissingParameterError)
    assert err.field == "Pool Handle"
    response = wire.HandleResolutionResponse(pool_handle=b"P", policy=pol.RoundRobin(), pool_elements=(PE,)).encode()
    ph, pol_tlv, pe_tlv = response[4:12], response[12:20], response[20:]
    err = fails(message(6, ph + pe_tlv + pol_tlv), wire.UnexpectedParameterError)
    assert err.field == "Pool Member Selection Policy"


def test_illegal_parameter_nested_in_transport() -> None:
    transport = tlv(ParamType.SCTP_TRANSPORT, b"\x13\x88\0\0" + PH)
    pe = tlv(ParamType.POOL_ELEMENT, b"\0\0\0\7\0\0\0\0\0\0\0\1" + transport + encode_param(ParamType.POLICY, pol.Random()))
    err = fails(message(1, PH + pe), wire.IllegalParameterError)
    assert err.field == "Pool Handle" and "SCTP Transport" in err.reason


def test_transport_without_address() -> None:
    transport = tlv(ParamType.SCTP_TRANSPORT, b"\x13\x88\0\0")
    pe = tlv(ParamType.POOL_ELEMENT, b"\0\0\0\7\0\0\0\0\0\0\0\1" + transport + encode_param(ParamType.POLICY, pol.Random()))
    err = fails(message(1, PH + pe), wire.MissingParameterError)
    assert err.field == "addresses"


def test_single_address_transport_with_two_addresses() -> None:
    addresses = encode_param(ParamType.IPV4_ADDRESS, ip_address("10.0.0.1")) * 2
    transport = tlv(ParamType.TCP_TRANSPORT, b"\x13\x88\0\0" + addresses)
    pe = tlv(ParamType.POOL_ELEMENT, b"\0\0\0\7\0\0\0\0\0\0\0\1" + transport + encode_param(ParamType.POLICY, pol.Random()))
    err = fails(message(1, PH + pe), wire.UnexpectedParameterError)
    assert "carries one" in err.reason


def test_invalid_transport_use() -> None:
    address = encode_param(ParamType.IPV4_ADDRESS, ip_address("10.0.0.1"))
    transport = tlv(ParamType.SCTP_TRANSPORT, b"\x13\x88\0\7" + address)
    pe = tlv(ParamType.POOL_ELEMENT, b"\0\0\0\7\0\0\0\0\0\0\0\1" + transport + encode_param(ParamType.POLICY, pol.Random()))
    err = fails(message(1, PH + pe), wire.InvalidValueError)
    assert err.field == "SCTP Transport transport use"


def test_unknown_policy_type() -> None:
    body = PH + tlv(ParamType.POLICY, b"\x12\x34\x56\x78")
    err = fails(message(6, body), wire.InvalidValueError)
    assert err.field == "Policy type" and "0x12345678" in err.reason


def test_policy_type_without_wire_encoding() -> None:
    err = fails(message(6, PH + tlv(ParamType.POLICY, b"\xb0\x00\x20\x04" + b"\0" * 12)), wire.InvalidValueError)
    assert "no wire encoding" in err.reason


def test_policy_with_wrong_length() -> None:
    err = fails(message(6, PH + tlv(ParamType.POLICY, b"\x40\0\0\x01")), wire.ParameterLengthError)
    assert err.field == "LeastUsed policy length" and "expected 12" in err.reason


def test_empty_pool_handle() -> None:
    err = fails(message(2, tlv(ParamType.POOL_HANDLE, b"") + PEID), wire.InvalidValueError)
    assert err.field == "Pool Handle"


def test_operation_error_cause_overrunning_parameter() -> None:
    causes = struct.pack("!HH", 3, 40) + b"\0" * 4
    err = fails(message(0x0E, tlv(ParamType.OPERATION_ERROR, causes)), wire.ParameterLengthError)
    assert "error cause INVALID_VALUES" in err.field


def test_invalid_update_action() -> None:
    good = wire.HandleUpdate(
        sender_id=1, update_action=wire.UpdateAction.ADD_PE, pool_handle=b"P", pool_element=PE
    ).encode()
    err = fails(good[:12] + b"\0\7" + good[14:], wire.InvalidValueError, Protocol.ENRP)
    assert err.field == "update action" and err.offset == 12


def test_handle_table_response_groups() -> None:
    pe = encode_param(ParamType.POOL_ELEMENT, PE)
    ids = b"\0\0\0\1\0\0\0\2"
    err = fails(message(3, ids + pe), wire.MissingParameterError, Protocol.ENRP)
    assert err.field == "Pool Handle"
    err = fails(message(3, ids + PH + PH + pe), wire.MissingParameterError, Protocol.ENRP)
    assert err.field == "Pool Element" and err.offset == 12 + len(PH)
    err = fails(message(3, ids + PH + pe + PEID), wire.IllegalParameterError, Protocol.ENRP)
    assert err.field == "PE Identifier"


@pytest.mark.parametrize(
    ("ptype", "report"),
    [(0x0040, False), (0x4040, True)],
    ids=["stop-silently", "stop-and-report"],
)
def test_unknown_parameter_that_stops_processing(ptype: int, report: bool) -> None:
    unknown = tlv(ptype, b"\1\2\3\4\5")
    err = fails(message(2, PH + unknown + PEID), wire.UnrecognizedParameterError)
    assert err.offset == 4 + len(PH)
    assert err.report is report
    assert err.tlv == unknown[:9]
    assert err.cause == wire.CauseCode.UNRECOGNIZED_PARAMETER


@pytest.mark.parametrize(("ptype", "reported"), [(0x8040, False), (0xC040, True)], ids=["skip", "skip-and-report"])
def test_unknown_parameter_that_is_skipped(ptype: int, reported: bool) -> None:
    unknown = tlv(ptype, b"\1\2\3")
    decoded = decode(message(2, PH + unknown + PEID), Protocol.ASAP)
    assert decoded == wire.Deregistration(pool_handle=b"EchoPool", pe_id=7)
    assert decoded.unrecognized == ((unknown[:7],) if reported else ())


def test_unknown_parameter_nested_in_pool_element_is_skipped() -> None:
    pe = wire.params.encode_param(ParamType.POOL_ELEMENT, PE)
    unknown = tlv(0x8099, b"zz")
    grown = pe[:2] + struct.pack("!H", len(pe) + len(unknown)) + pe[4:] + unknown
    decoded = decode(message(1, PH + grown), Protocol.ASAP)
    assert decoded.pool_element == PE


def test_error_to_dict_names_the_class() -> None:
    err = fails(message(1, PH), wire.MissingParameterError)
    assert err.to_dict() == {
        "error": "MissingParameterError",
        "field": "Pool Element",
        "offset": 16,
        "reason": "ASAP_REGISTRATION ends without it",
    }
