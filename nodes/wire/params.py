"""Parameters (RFC 5354 and the Handle Resolution option) and the slot matcher.

A message or a composite parameter declares its parameters as an ordered tuple of
:class:`Slot`; `decode_slots` walks the TLVs against it and raises a specific error
for a missing, illegal, duplicated or misplaced parameter, and follows the action bits
of unknown ones. Simple parameters map to plain Python values (a pool handle is
`bytes`, a PE identifier an `int`); composite ones to frozen dataclasses.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import struct
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Union

from . import tlv
from .constants import CauseCode, ParamType, TransportUse, UnknownParamAction, param_name
from .errors import (
    EncodeError,
    IllegalParameterError,
    InvalidValueError,
    MissingParameterError,
    ParameterLengthError,
    UnexpectedParameterError,
    UnrecognizedParameterError,
)
from .policies import POLICY_CLASSES, Policy, PolicyType

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")

# ---------------------------------------------------------------- value classes


@dataclasses.dataclass(frozen=True, slots=True)
class Transport:
    """Base of the transport parameters: a port and the addresses behind it."""

    PARAM: ClassVar[ParamType]
    FIXED: ClassVar[tuple[str, ...]]  # the fields before the addresses, in wire order
    SINGLE_ADDRESS: ClassVar[bool] = True

    port: int
    addresses: tuple[IPAddress, ...]

    @property
    def name(self) -> str:
        return param_name(self.PARAM)


@dataclasses.dataclass(frozen=True, slots=True)
class SctpTransport(Transport):
    PARAM = ParamType.SCTP_TRANSPORT
    FIXED = ("port", "transport_use")
    SINGLE_ADDRESS = False
    transport_use: TransportUse = TransportUse.DATA_ONLY


@dataclasses.dataclass(frozen=True, slots=True)
class TcpTransport(Transport):
    PARAM = ParamType.TCP_TRANSPORT
    FIXED = ("port", "transport_use")
    transport_use: TransportUse = TransportUse.DATA_ONLY


@dataclasses.dataclass(frozen=True, slots=True)
class UdpTransport(Transport):
    PARAM = ParamType.UDP_TRANSPORT
    FIXED = ("port", "reserved")
    reserved: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class UdpLiteTransport(Transport):
    PARAM = ParamType.UDP_LITE_TRANSPORT
    FIXED = ("port", "reserved")
    reserved: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class DccpTransport(Transport):
    PARAM = ParamType.DCCP_TRANSPORT
    FIXED = ("port", "reserved", "service_code")
    service_code: int = 0
    reserved: int = 0


TRANSPORT_CLASSES: dict[int, type[Transport]] = {
    c.PARAM: c for c in (SctpTransport, TcpTransport, UdpTransport, UdpLiteTransport, DccpTransport)
}
_TRANSPORT_STRUCTS = {
    ParamType.DCCP_TRANSPORT: struct.Struct("!HHI"),
}
_FIXED_HH = struct.Struct("!HH")


@dataclasses.dataclass(frozen=True, slots=True)
class PoolElement:
    """A PE as registered: identity, home registrar, lifetime (ms) and transports."""

    identifier: int
    home_registrar: int
    registration_life: int
    user_transport: Transport
    policy: Policy
    registrator_transport: Transport | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ServerInformation:
    """A registrar's identity and the transport of its ENRP endpoint."""

    server_id: int
    transport: Transport


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorCause:
    """One cause of an Operation Error. `info` is kept raw: it may hold the very bytes
    that failed to decode (the offending parameter or message)."""

    code: int
    info: bytes = b""

    @property
    def name(self) -> str:
        try:
            return CauseCode(self.code).name
        except ValueError:
            return f"UNKNOWN_0x{self.code:04x}"


# ---------------------------------------------------------------- slots


class Card(enum.Enum):
    """How many times a slot's parameter may occur."""

    ONE = "one"
    OPTIONAL = "optional"
    MANY = "zero or more"
    ONE_OR_MORE = "one or more"


@dataclasses.dataclass(frozen=True)
class Slot:
    """A named place for a parameter in a message or composite parameter."""

    attr: str
    types: frozenset[int]
    card: Card = Card.ONE
    # Derived once here, because the decoder asks for them for every parameter.
    mandatory: bool = dataclasses.field(init=False, repr=False, compare=False)
    repeated: bool = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mandatory", self.card in (Card.ONE, Card.ONE_OR_MORE))
        object.__setattr__(self, "repeated", self.card in (Card.MANY, Card.ONE_OR_MORE))

    @property
    def label(self) -> str:
        if len(self.types) == 1:
            return param_name(next(iter(self.types)))
        return self.attr.replace("_", " ")


class Schema(tuple[Slot, ...]):
    """The ordered slots of a message or parameter, with the union of their types."""

    legal: frozenset[int]

    def __new__(cls, slots: Iterable[Slot]) -> Schema:
        schema = super().__new__(cls, slots)
        schema.legal = frozenset().union(*(s.types for s in schema))
        return schema


def slot(attr: str, *types: int, card: Card = Card.ONE) -> Slot:
    return Slot(attr, frozenset(types), card)


TRANSPORT_TYPES = tuple(TRANSPORT_CLASSES)

_PE_SLOTS = Schema(
    (
        slot("user_transport", *TRANSPORT_TYPES),
        slot("policy", ParamType.POLICY),
        slot("registrator_transport", *TRANSPORT_TYPES, card=Card.OPTIONAL),
    )
)
_SERVER_INFO_SLOTS = Schema((slot("transport", *TRANSPORT_TYPES),))


def handle_unknown(buf: bytes, ptype: int, tlv_start: int, value_end: int, reports: list[bytes]) -> None:
    """Apply the action bits of an unknown parameter type: stop (raise) or skip."""
    action = UnknownParamAction.of(ptype)
    raw = bytes(buf[tlv_start:value_end])
    if action in (UnknownParamAction.STOP, UnknownParamAction.STOP_AND_REPORT):
        raise UnrecognizedParameterError(
            param_name(ptype),
            tlv_start,
            f"unknown type with action bits {action.value:02b} ({action.name.lower()})",
            report=action is UnknownParamAction.STOP_AND_REPORT,
            tlv=raw,
        )
    if action is UnknownParamAction.SKIP_AND_REPORT:
        reports.append(raw)


def decode_slots(
    buf: bytes, start: int, end: int, container: str, slots: Schema, reports: list[bytes]
) -> dict[str, Any]:
    """Decode the TLVs in buf[start:end] into `{slot.attr: value}`, strictly in slot order."""
    values: dict[str, Any] = {}
    legal = slots.legal
    index, count = 0, 0
    for ptype, tlv_start, value_start, value_end in tlv.walk(buf, start, end, container, param_name):
        codec = CODECS.get(ptype)
        if codec is None:
            handle_unknown(buf, ptype, tlv_start, value_end, reports)
            continue
        if ptype not in legal:
            raise IllegalParameterError(param_name(ptype), tlv_start, f"not allowed in {container}")
        while index < len(slots):
            current = slots[index]
            if ptype in current.types and (count == 0 or current.repeated):
                break
            if current.mandatory and count == 0:
                raise MissingParameterError(
                    current.label,
                    tlv_start,
                    f"{container} needs it before {param_name(ptype)}",
                )
            index, count = index + 1, 0
        else:
            raise UnexpectedParameterError(
                param_name(ptype), tlv_start, f"duplicated or out of order in {container}"
            )
        value = codec[0](buf, tlv_start, value_start, value_end, reports)
        if current.repeated:
            values.setdefault(current.attr, []).append(value)
        else:
            values[current.attr] = value
        count += 1
    for later in slots[index:]:
        if later.mandatory and later.attr not in values:
            raise MissingParameterError(later.label, end, f"{container} ends without it")
    for s in slots:
        if s.repeated:
            values[s.attr] = tuple(values.get(s.attr, ()))
    return values


def encode_slots(obj: object, slots: Schema) -> bytes:
    """The TLVs for the slot attributes of `obj`, in slot order."""
    out = []
    for s in slots:
        value = getattr(obj, s.attr)
        if value is None:
            continue
        for item in value if s.repeated else (value,):
            out.append(encode_param(_param_type(s, item), item))
    return b"".join(out)


def _param_type(s: Slot, value: object) -> int:
    if len(s.types) == 1:
        return next(iter(s.types))
    return value.PARAM  # type: ignore[attr-defined,no-any-return]


def encode_param(ptype: int, value: Any) -> bytes:
    """One parameter TLV, padded."""
    return tlv.build(ptype, CODECS[ptype][1](value))


# ---------------------------------------------------------------- codecs


def _exact_length(ptype: int, tlv_start: int, value_start: int, value_end: int, size: int) -> None:
    if value_end - value_start != size:
        raise ParameterLengthError(
            f"{param_name(ptype)} length",
            tlv_start + 2,
            f"{value_end - value_start + 4}, expected {size + 4}",
        )


def _opaque(ptype: int) -> tuple[Callable[..., bytes], Callable[[bytes], bytes]]:
    def decode(buf: bytes, tlv_start: int, vs: int, ve: int, reports: list[bytes]) -> bytes:
        if vs == ve:
            raise InvalidValueError(param_name(ptype), tlv_start, "empty; at least one byte is needed")
        return bytes(buf[vs:ve])

    def encode(value: bytes) -> bytes:
        return bytes(value)

    return decode, encode


def _integer(ptype: int, fmt: struct.Struct) -> tuple[Callable[..., int], Callable[[int], bytes]]:
    def decode(buf: bytes, tlv_start: int, vs: int, ve: int, reports: list[bytes]) -> int:
        _exact_length(ptype, tlv_start, vs, ve, fmt.size)
        return fmt.unpack_from(buf, vs)[0]  # type: ignore[no-any-return]

    return decode, fmt.pack


def _address(ptype: int, size: int, cls: type) -> tuple[Callable[..., IPAddress], Callable[[IPAddress], bytes]]:
    def decode(buf: bytes, tlv_start: int, vs: int, ve: int, reports: list[bytes]) -> IPAddress:
        _exact_length(ptype, tlv_start, vs, ve, size)
        return cls(bytes(buf[vs:ve]))  # type: ignore[no-any-return]

    def encode(value: IPAddress) -> bytes:
        return value.packed

    return decode, encode


def _transport(cls: type[Transport]) -> tuple[Callable[..., Transport], Callable[[Transport], bytes]]:
    fixed = _TRANSPORT_STRUCTS.get(cls.PARAM, _FIXED_HH)
    name = param_name(cls.PARAM)

    def decode(buf: bytes, tlv_start: int, vs: int, ve: int, reports: list[bytes]) -> Transport:
        if ve - vs < fixed.size:
            raise ParameterLengthError(
                f"{name} length", tlv_start + 2, f"{ve - vs + 4} is shorter than its fixed part ({fixed.size + 4})"
            )
        fields = dict(zip(cls.FIXED, fixed.unpack_from(buf, vs)))
        if "transport_use" in fields:
            try:
                fields["transport_use"] = TransportUse(fields["transport_use"])
            except ValueError:
                raise InvalidValueError(
                    f"{name} transport use", vs + 2, f"{fields['transport_use']} is neither 0 nor 1"
                ) from None
        addresses = _decode_addresses(buf, vs + fixed.size, ve, name, reports)
        if cls.SINGLE_ADDRESS and len(addresses) > 1:
            raise UnexpectedParameterError(
                f"{name} address", vs + fixed.size, f"{len(addresses)} addresses; this transport carries one"
            )
        return cls(addresses=addresses, **fields)

    def encode(value: Transport) -> bytes:
        addresses = value.addresses
        if not addresses or (value.SINGLE_ADDRESS and len(addresses) != 1):
            raise EncodeError(f"{name} needs {'one address' if value.SINGLE_ADDRESS else 'addresses'}, got {len(addresses)}")
        return fixed.pack(*(getattr(value, f) for f in cls.FIXED)) + b"".join(
            tlv.build(ParamType.IPV4_ADDRESS if a.version == 4 else ParamType.IPV6_ADDRESS, a.packed) for a in addresses
        )

    return decode, encode


def _decode_addresses(buf: bytes, start: int, end: int, container: str, reports: list[bytes]) -> tuple[IPAddress, ...]:
    """The address TLVs of a transport (the decoder's hot path: no slot matching)."""
    addresses = []
    for ptype, tlv_start, vs, ve in tlv.walk(buf, start, end, container, param_name):
        if ptype == ParamType.IPV4_ADDRESS or ptype == ParamType.IPV6_ADDRESS:
            addresses.append(CODECS[ptype][0](buf, tlv_start, vs, ve, reports))
        elif ptype in CODECS:
            raise IllegalParameterError(param_name(ptype), tlv_start, f"not allowed in {container}")
        else:
            handle_unknown(buf, ptype, tlv_start, ve, reports)
    if not addresses:
        raise MissingParameterError("addresses", end, f"{container} ends without an IPv4 or IPv6 address")
    return tuple(addresses)


_POLICY_TYPE = struct.Struct("!I")


def _decode_policy(buf: bytes, tlv_start: int, vs: int, ve: int, reports: list[bytes]) -> Policy:
    if ve - vs < 4:
        raise ParameterLengthError("Pool Member Selection Policy length", tlv_start + 2, f"{ve - vs + 4}, at least 8 needed")
    ptype = _POLICY_TYPE.unpack_from(buf, vs)[0]
    cls = POLICY_CLASSES.get(ptype)
    if cls is None:
        known = " (it has no wire encoding)" if ptype in PolicyType._value2member_map_ else ""
        raise InvalidValueError("Policy type", vs, f"unsupported policy type 0x{ptype:08x}{known}")
    layout = cls._STRUCT
    if ve - vs != layout.size:
        raise ParameterLengthError(
            f"{cls.__name__} policy length", tlv_start + 2, f"{ve - vs + 4}, expected {layout.size + 4}"
        )
    return cls(*layout.unpack_from(buf, vs)[1:])


def _encode_policy(value: Policy) -> bytes:
    return value.encode_value()


_PE_FIXED = struct.Struct("!IIi")


def _decode_pool_element(buf: bytes, tlv_start: int, vs: int, ve: int, reports: list[bytes]) -> PoolElement:
    if ve - vs < _PE_FIXED.size:
        raise ParameterLengthError("Pool Element length", tlv_start + 2, f"{ve - vs + 4} is shorter than its fixed part (16)")
    identifier, home, life = _PE_FIXED.unpack_from(buf, vs)
    parts = decode_slots(buf, vs + _PE_FIXED.size, ve, "Pool Element", _PE_SLOTS, reports)
    return PoolElement(identifier, home, life, **parts)


def _encode_pool_element(value: PoolElement) -> bytes:
    return _PE_FIXED.pack(value.identifier, value.home_registrar, value.registration_life) + encode_slots(
        value, _PE_SLOTS
    )


def _decode_server_information(
    buf: bytes, tlv_start: int, vs: int, ve: int, reports: list[bytes]
) -> ServerInformation:
    if ve - vs < 4:
        raise ParameterLengthError("Server Information length", tlv_start + 2, f"{ve - vs + 4}, at least 8 needed")
    server_id = _U32.unpack_from(buf, vs)[0]
    parts = decode_slots(buf, vs + 4, ve, "Server Information", _SERVER_INFO_SLOTS, reports)
    return ServerInformation(server_id, **parts)


def _encode_server_information(value: ServerInformation) -> bytes:
    return _U32.pack(value.server_id) + encode_slots(value, _SERVER_INFO_SLOTS)


def _cause_name(code: int) -> str:
    return f"error cause {ErrorCause(code).name}"


def _decode_operation_error(
    buf: bytes, tlv_start: int, vs: int, ve: int, reports: list[bytes]
) -> tuple[ErrorCause, ...]:
    causes = tuple(
        ErrorCause(code, bytes(buf[cvs:cve]))
        for code, _, cvs, cve in tlv.walk(buf, vs, ve, "Operation Error", _cause_name)
    )
    if not causes:
        raise InvalidValueError("Operation Error", tlv_start, "no error cause")
    return causes


def _encode_operation_error(causes: tuple[ErrorCause, ...]) -> bytes:
    return b"".join(tlv.build(c.code, c.info) for c in causes)


#: decode(buf, tlv_start, value_start, value_end, reports) and encode(value) per type.
CODECS: dict[int, tuple[Callable[..., Any], Callable[[Any], bytes]]] = {
    ParamType.IPV4_ADDRESS: _address(ParamType.IPV4_ADDRESS, 4, ipaddress.IPv4Address),
    ParamType.IPV6_ADDRESS: _address(ParamType.IPV6_ADDRESS, 16, ipaddress.IPv6Address),
    **{ptype: _transport(cls) for ptype, cls in TRANSPORT_CLASSES.items()},
    ParamType.POLICY: (_decode_policy, _encode_policy),
    ParamType.POOL_HANDLE: _opaque(ParamType.POOL_HANDLE),
    ParamType.POOL_ELEMENT: (_decode_pool_element, _encode_pool_element),
    ParamType.SERVER_INFORMATION: (_decode_server_information, _encode_server_information),
    ParamType.OPERATION_ERROR: (_decode_operation_error, _encode_operation_error),
    ParamType.COOKIE: _opaque(ParamType.COOKIE),
    ParamType.PE_IDENTIFIER: _integer(ParamType.PE_IDENTIFIER, _U32),
    ParamType.PE_CHECKSUM: _integer(ParamType.PE_CHECKSUM, _U16),
    ParamType.HANDLE_RESOLUTION_OPTION: _integer(ParamType.HANDLE_RESOLUTION_OPTION, _U32),
}
