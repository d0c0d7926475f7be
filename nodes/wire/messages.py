"""ASAP (RFC 5352) and ENRP (RFC 5353) messages: typed objects, encode and decode.

Each message class declares its wire layout: the fixed fields after the common
header (`FIXED`, packed with `FIXED_STRUCT`), its parameters as ordered slots
(`SLOTS`), and the names of its flag bits (`FLAGS`). `decode(data, protocol)` is
strict: every deviation raises a :class:`~nodes.wire.errors.DecodeError` that names the
field and its byte offset. Encoding writes the canonical form (RSPLIB's): the message
length counts every parameter's padding, so `encode(decode(b)) == b` for valid `b`.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any, ClassVar

from .constants import AsapType, EnrpType, ParamType, Protocol, UpdateAction, param_name
from .errors import (
    EncodeError,
    IllegalParameterError,
    InvalidValueError,
    MessageLengthError,
    MissingParameterError,
    TruncatedError,
    UnknownMessageTypeError,
)
from .params import (
    CODECS,
    TRANSPORT_TYPES,
    Card,
    ErrorCause,
    Schema,
    PoolElement,
    ServerInformation,
    Slot,
    Transport,
    decode_slots,
    encode_param,
    encode_slots,
    handle_unknown,
    slot,
)
from .policies import Policy
from .tlv import walk

_HEADER = struct.Struct("!BBH")
_NO_FIXED = struct.Struct("!")

MESSAGE_CLASSES: dict[Protocol, dict[int, type[Message]]] = {Protocol.ASAP: {}, Protocol.ENRP: {}}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of all messages. `flags` keeps every bit as received (reserved ones too);
    `unrecognized` holds skipped unknown parameters whose action bits ask for a report."""

    PROTOCOL: ClassVar[Protocol]
    TYPE: ClassVar[int]
    NAME: ClassVar[str]
    FLAGS: ClassVar[dict[str, int]] = {}
    FIXED: ClassVar[tuple[str, ...]] = ()
    FIXED_STRUCT: ClassVar[struct.Struct] = _NO_FIXED
    SLOTS: ClassVar[Schema] = Schema(())

    flags: int = 0
    unrecognized: tuple[bytes, ...] = dataclasses.field(default=(), compare=False, repr=False)

    def has_flag(self, name: str) -> bool:
        return bool(self.flags & self.FLAGS[name])

    def flag_names(self) -> list[str]:
        """The names of the defined flags that are set."""
        return [name for name, bit in self.FLAGS.items() if self.flags & bit]

    def encode(self) -> bytes:
        try:
            body = self.FIXED_STRUCT.pack(*(getattr(self, f) for f in self.FIXED)) + self._encode_params()
            return _HEADER.pack(self.TYPE, self.flags, 4 + len(body)) + body
        except struct.error as exc:
            raise EncodeError(f"{self.NAME}: {exc}") from exc
        except (AttributeError, TypeError, KeyError) as exc:
            raise EncodeError(f"{self.NAME}: a field has the wrong type ({exc})") from exc

    def _encode_params(self) -> bytes:
        return encode_slots(self, self.SLOTS)

    @classmethod
    def _decode_params(cls, buf: bytes, start: int, end: int, reports: list[bytes]) -> dict[str, Any]:
        return decode_slots(buf, start, end, cls.NAME, cls.SLOTS, reports)


def _message(protocol: Protocol, mtype: int, *slots: Slot, flags: dict[str, int] | None = None):  # type: ignore[no-untyped-def]
    """Register a message class and derive its wire layout from its declaration."""

    def register(cls: type[Message]) -> type[Message]:
        cls.PROTOCOL = protocol
        cls.TYPE = mtype
        cls.NAME = f"{protocol.label}_{(AsapType if protocol is Protocol.ASAP else EnrpType)(mtype).name}"
        cls.FLAGS = flags or {}
        cls.SLOTS = Schema(slots)
        if cls.FIXED:
            cls.FIXED_STRUCT = struct.Struct("!" + "".join(_FIXED_FORMATS[f] for f in cls.FIXED))
        MESSAGE_CLASSES[protocol][mtype] = cls
        return cls

    return register


#: Width of each fixed field that some message carries between header and parameters.
_FIXED_FORMATS = {
    "server_id": "I",
    "sender_id": "I",
    "receiver_id": "I",
    "target_id": "I",
    "update_action": "H",
    "reserved": "H",
}

_PH = slot("pool_handle", ParamType.POOL_HANDLE)
_PEID = slot("pe_id", ParamType.PE_IDENTIFIER)
_ERROR = slot("error", ParamType.OPERATION_ERROR, card=Card.OPTIONAL)
_COOKIE = slot("cookie", ParamType.COOKIE)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AsapMessage(Message):
    pass


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EnrpMessage(Message):
    """Every ENRP message starts with the sender's and the receiver's server IDs
    (receiver 0: unknown or everybody)."""

    FIXED = ("sender_id", "receiver_id")
    sender_id: int
    receiver_id: int = 0


# ------------------------------------------------------------------ ASAP


@_message(Protocol.ASAP, AsapType.REGISTRATION, _PH, slot("pool_element", ParamType.POOL_ELEMENT))
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Registration(AsapMessage):
    pool_handle: bytes
    pool_element: PoolElement


@_message(Protocol.ASAP, AsapType.DEREGISTRATION, _PH, _PEID)
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Deregistration(AsapMessage):
    pool_handle: bytes
    pe_id: int


@_message(Protocol.ASAP, AsapType.REGISTRATION_RESPONSE, _PH, _PEID, _ERROR, flags={"reject": 0x01})
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationResponse(AsapMessage):
    pool_handle: bytes
    pe_id: int
    error: tuple[ErrorCause, ...] | None = None


@_message(Protocol.ASAP, AsapType.DEREGISTRATION_RESPONSE, _PH, _PEID, _ERROR, flags={"reject": 0x01})
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeregistrationResponse(AsapMessage):
    pool_handle: bytes
    pe_id: int
    error: tuple[ErrorCause, ...] | None = None


@_message(
    Protocol.ASAP,
    AsapType.HANDLE_RESOLUTION,
    _PH,
    slot("items", ParamType.HANDLE_RESOLUTION_OPTION, card=Card.OPTIONAL),
)
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HandleResolution(AsapMessage):
    """`items` is the Handle Resolution option: how many PEs to return (0xffffffff: all)."""

    pool_handle: bytes
    items: int | None = None


@_message(
    Protocol.ASAP,
    AsapType.HANDLE_RESOLUTION_RESPONSE,
    _PH,
    slot("policy", ParamType.POLICY, card=Card.OPTIONAL),
    slot("pool_elements", ParamType.POOL_ELEMENT, card=Card.MANY),
    _ERROR,
    flags={"reject": 0x01},
)
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HandleResolutionResponse(AsapMessage):
    pool_handle: bytes
    policy: Policy | None = None
    pool_elements: tuple[PoolElement, ...] = ()
    error: tuple[ErrorCause, ...] | None = None


@_message(
    Protocol.ASAP,
    AsapType.ENDPOINT_KEEP_ALIVE,
    _PH,
    slot("pe_id", ParamType.PE_IDENTIFIER, card=Card.OPTIONAL),
    flags={"home": 0x01},
)
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EndpointKeepAlive(AsapMessage):
    """Sent by a registrar to its PE; H (home) asks the PE to take the sender as home."""

    FIXED = ("server_id",)
    server_id: int
    pool_handle: bytes
    pe_id: int | None = None


@_message(Protocol.ASAP, AsapType.ENDPOINT_KEEP_ALIVE_ACK, _PH, _PEID)
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EndpointKeepAliveAck(AsapMessage):
    pool_handle: bytes
    pe_id: int


@_message(Protocol.ASAP, AsapType.ENDPOINT_UNREACHABLE, _PH, _PEID)
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EndpointUnreachable(AsapMessage):
    pool_handle: bytes
    pe_id: int


@_message(Protocol.ASAP, AsapType.SERVER_ANNOUNCE, slot("transports", *TRANSPORT_TYPES, card=Card.MANY))
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ServerAnnounce(AsapMessage):
    """A registrar's multicast announce; without transports the UDP source address and
    port stand for its ASAP endpoint (RSPLIB's behaviour)."""

    FIXED = ("server_id",)
    server_id: int
    transports: tuple[Transport, ...] = ()


@_message(Protocol.ASAP, AsapType.COOKIE, _COOKIE)
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Cookie(AsapMessage):
    cookie: bytes


@_message(Protocol.ASAP, AsapType.COOKIE_ECHO, _COOKIE)
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CookieEcho(AsapMessage):
    cookie: bytes


@_message(
    Protocol.ASAP,
    AsapType.BUSINESS_CARD,
    _PH,
    slot("policy", ParamType.POLICY, card=Card.OPTIONAL),
    slot("pool_elements", ParamType.POOL_ELEMENT, card=Card.ONE_OR_MORE),
)
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BusinessCard(AsapMessage):
    pool_handle: bytes
    pool_elements: tuple[PoolElement, ...]
    policy: Policy | None = None


@_message(Protocol.ASAP, AsapType.ERROR, slot("error", ParamType.OPERATION_ERROR))
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AsapError(AsapMessage):
    error: tuple[ErrorCause, ...]


# ------------------------------------------------------------------ ENRP


@_message(
    Protocol.ENRP,
    EnrpType.PRESENCE,
    slot("checksum", ParamType.PE_CHECKSUM),
    slot("server_info", ParamType.SERVER_INFORMATION, card=Card.OPTIONAL),
    flags={"reply_required": 0x01},
)
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Presence(EnrpMessage):
    checksum: int
    server_info: ServerInformation | None = None


@_message(Protocol.ENRP, EnrpType.HANDLE_TABLE_REQUEST, flags={"own_children_only": 0x01})
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HandleTableRequest(EnrpMessage):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class PoolEntry:
    """One pool of a handle table: its handle and the PEs sent for it."""

    pool_handle: bytes
    pool_elements: tuple[PoolElement, ...]


@_message(Protocol.ENRP, EnrpType.HANDLE_TABLE_RESPONSE, flags={"reject": 0x01, "more_to_send": 0x02})
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HandleTableResponse(EnrpMessage):
    """Groups of (pool handle, one or more PEs); M says more responses follow."""

    entries: tuple[PoolEntry, ...] = ()

    def _encode_params(self) -> bytes:
        out = []
        for entry in self.entries:
            if not entry.pool_elements:
                raise EncodeError(f"{self.NAME}: pool {entry.pool_handle!r} has no pool element")
            out.append(encode_param(ParamType.POOL_HANDLE, entry.pool_handle))
            out.extend(encode_param(ParamType.POOL_ELEMENT, pe) for pe in entry.pool_elements)
        return b"".join(out)

    @classmethod
    def _decode_params(cls, buf: bytes, start: int, end: int, reports: list[bytes]) -> dict[str, Any]:
        entries: list[tuple[bytes, list[PoolElement], int]] = []
        for ptype, tlv_start, vs, ve in walk(buf, start, end, cls.NAME, param_name):
            if ptype == ParamType.POOL_HANDLE:
                if entries and not entries[-1][1]:
                    raise MissingParameterError("Pool Element", tlv_start, "the previous pool handle has none")
                entries.append((CODECS[ptype][0](buf, tlv_start, vs, ve, reports), [], tlv_start))
            elif ptype == ParamType.POOL_ELEMENT:
                if not entries:
                    raise MissingParameterError("Pool Handle", tlv_start, "a Pool Element must follow a Pool Handle")
                entries[-1][1].append(CODECS[ptype][0](buf, tlv_start, vs, ve, reports))
            elif ptype in CODECS:
                raise IllegalParameterError(param_name(ptype), tlv_start, f"not allowed in {cls.NAME}")
            else:
                handle_unknown(buf, ptype, tlv_start, ve, reports)
        if entries and not entries[-1][1]:
            raise MissingParameterError("Pool Element", end, "the last pool handle has none")
        return {"entries": tuple(PoolEntry(handle, tuple(pes)) for handle, pes, _ in entries)}


@_message(
    Protocol.ENRP,
    EnrpType.HANDLE_UPDATE,
    _PH,
    slot("pool_element", ParamType.POOL_ELEMENT),
    flags={"takeover_suggested": 0x01},
)
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HandleUpdate(EnrpMessage):
    FIXED = ("sender_id", "receiver_id", "update_action", "reserved")
    update_action: UpdateAction
    pool_handle: bytes
    pool_element: PoolElement
    reserved: int = 0


@_message(Protocol.ENRP, EnrpType.LIST_REQUEST)
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ListRequest(EnrpMessage):
    pass


@_message(
    Protocol.ENRP,
    EnrpType.LIST_RESPONSE,
    slot("servers", ParamType.SERVER_INFORMATION, card=Card.MANY),
    flags={"reject": 0x01},
)
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ListResponse(EnrpMessage):
    servers: tuple[ServerInformation, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _TakeoverMessage(EnrpMessage):
    FIXED = ("sender_id", "receiver_id", "target_id")
    target_id: int


@_message(Protocol.ENRP, EnrpType.INIT_TAKEOVER)
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class InitTakeover(_TakeoverMessage):
    pass


@_message(Protocol.ENRP, EnrpType.INIT_TAKEOVER_ACK)
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class InitTakeoverAck(_TakeoverMessage):
    pass


@_message(Protocol.ENRP, EnrpType.TAKEOVER_SERVER)
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TakeoverServer(_TakeoverMessage):
    pass


@_message(Protocol.ENRP, EnrpType.ERROR, slot("error", ParamType.OPERATION_ERROR))
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EnrpError(EnrpMessage):
    error: tuple[ErrorCause, ...]


# ------------------------------------------------------------------ entry points


def decode(data: bytes, protocol: Protocol) -> Message:
    """Decode one complete message of `protocol`; raise a DecodeError saying what is wrong."""
    size = len(data)
    if size < 4:
        raise TruncatedError("message header", 0, f"{size} byte(s), a header needs 4")
    mtype, flags, length = _HEADER.unpack_from(data, 0)
    cls = MESSAGE_CLASSES[protocol].get(mtype)
    if cls is None:
        raise UnknownMessageTypeError("message type", 0, f"0x{mtype:02x} is not an {protocol.label} message type")
    if length != size:
        raise MessageLengthError("message length", 2, f"{length}, but the message has {size} bytes")
    fixed = cls.FIXED_STRUCT
    body = 4 + fixed.size
    if size < body:
        raise TruncatedError(
            _fixed_field_at(cls, size), size, f"{cls.NAME} needs {body} bytes before its parameters, got {size}"
        )
    fields = dict(zip(cls.FIXED, fixed.unpack_from(data, 4)))
    if "update_action" in fields:
        try:
            fields["update_action"] = UpdateAction(fields["update_action"])
        except ValueError:
            raise InvalidValueError("update action", 12, f"{fields['update_action']} is neither ADD_PE nor DEL_PE") from None
    reports: list[bytes] = []
    fields.update(cls._decode_params(data, body, size, reports))
    return cls(flags=flags, unrecognized=tuple(reports), **fields)


def _fixed_field_at(cls: type[Message], offset: int) -> str:
    """The name of the fixed field that covers `offset`."""
    position = 4
    for name in cls.FIXED:
        position += struct.calcsize("!" + _FIXED_FORMATS[name])
        if offset < position:
            return name
    return cls.FIXED[-1]


def encode(message: Message) -> bytes:
    return message.encode()
