"""scapy layers for ASAP (RFC 5352) and ENRP (RFC 5353), bound to SCTP PPIDs 11/12 and
to UDP ports 3863/9901, so that `rdpcap()` of a capture shows decoded messages.

The layer list is derived from the codec's declarations (`nodes.wire`): one class per
message type (`ASAPRegistration`, `ENRPPresence`, ...) with its fixed fields and named
flags, and one class per parameter type, nesting as on the wire (Pool Element ->
transport -> addresses). Every parameter shows its padding as a field, the way
Wireshark does. The codec, not these layers, is the strict validator: scapy shows
whatever is there.
"""

from __future__ import annotations

import struct
from typing import Any

from scapy.fields import (
    ByteEnumField,
    ConditionalField,
    Field,
    FlagsField,
    IntField,
    IP6Field,
    IPField,
    PacketListField,
    ShortEnumField,
    ShortField,
    SignedIntField,
    StrLenField,
    XIntField,
    XShortEnumField,
    XShortField,
)
from scapy.layers.inet import UDP
from scapy.layers.sctp import SCTPChunkData
from scapy.packet import Packet, bind_layers

from nodes.wire.constants import (
    PARAM_NAMES,
    AsapType,
    CauseCode,
    EnrpType,
    ParamType,
    Protocol,
    TransportUse,
    UpdateAction,
)
from nodes.wire.messages import MESSAGE_CLASSES
from nodes.wire.policies import POLICY_ABBREVIATIONS, POLICY_CLASSES

#: A 64 KiB message holds at most this many 4-byte parameters (scapy's default cap is 100).
MAX_ITEMS = 0x10000 // 4

_PARAM_TYPE_NAMES = {int(k): v for k, v in PARAM_NAMES.items()}
_CAUSE_NAMES = {int(c): c.name for c in CauseCode}
_POLICY_NAMES = {int(k): v for k, v in POLICY_ABBREVIATIONS.items()}
_TRANSPORT_USE = {int(u): u.name for u in TransportUse}
_UPDATE_ACTIONS = {int(a): a.name for a in UpdateAction}


class _PaddedTLV(Packet):
    """A TLV whose `len` excludes its trailing padding, which is the `padding` field."""

    def post_build(self, p: bytes, pay: bytes) -> bytes:
        if self.len is None:
            p = p[:2] + struct.pack("!H", len(p)) + p[4:]
        if self.padding is None:
            p += b"\0" * (-len(p) % 4)
        return p + pay

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s


def _padding() -> StrLenField:
    return StrLenField("padding", None, length_from=lambda p: -(p.len or 0) % 4)


def _tlv_header(ptype: int) -> list[Field[Any, Any]]:
    return [XShortEnumField("type", ptype, _PARAM_TYPE_NAMES), ShortField("len", None)]


def _value_len(fixed: int):  # type: ignore[no-untyped-def]
    return lambda p: max((p.len or 0) - 4 - fixed, 0)


class RSerPoolParam(_PaddedTLV):
    """Any ASAP/ENRP parameter; dissection picks the class by the type field."""

    name = "RSerPool Parameter"
    match_subclass = True
    fields_desc = _tlv_header(0) + [StrLenField("value", b"", length_from=_value_len(0)), _padding()]

    @classmethod
    def dispatch_hook(cls, _pkt: bytes | None = None, *args: Any, **kargs: Any) -> type[Packet]:
        if _pkt and len(_pkt) >= 2:
            return PARAM_LAYERS.get(struct.unpack("!H", _pkt[:2])[0], RSerPoolParam)
        return cls


def _nested(name: str, fixed: int) -> PacketListField:
    return PacketListField(name, [], RSerPoolParam, length_from=_value_len(fixed), max_count=MAX_ITEMS)


class IPv4AddressParam(RSerPoolParam):
    name = "IPv4 Address"
    fields_desc = _tlv_header(ParamType.IPV4_ADDRESS) + [IPField("address", "0.0.0.0"), _padding()]


class IPv6AddressParam(RSerPoolParam):
    name = "IPv6 Address"
    fields_desc = _tlv_header(ParamType.IPV6_ADDRESS) + [IP6Field("address", "::"), _padding()]


def _transport_fields(ptype: ParamType, *fixed: Field[Any, Any]) -> list[Field[Any, Any]]:
    """Header, port, the transport's own fixed fields, then its address parameters."""
    size = 2 + sum(f.sz for f in fixed)
    return _tlv_header(ptype) + [ShortField("port", 0), *fixed, _nested("addresses", size), _padding()]


class SCTPTransportParam(RSerPoolParam):
    name = "SCTP Transport"
    fields_desc = _transport_fields(ParamType.SCTP_TRANSPORT, ShortEnumField("transport_use", 0, _TRANSPORT_USE))


class TCPTransportParam(RSerPoolParam):
    name = "TCP Transport"
    fields_desc = _transport_fields(ParamType.TCP_TRANSPORT, ShortEnumField("transport_use", 0, _TRANSPORT_USE))


class UDPTransportParam(RSerPoolParam):
    name = "UDP Transport"
    fields_desc = _transport_fields(ParamType.UDP_TRANSPORT, XShortField("reserved", 0))


class UDPLiteTransportParam(RSerPoolParam):
    name = "UDP-Lite Transport"
    fields_desc = _transport_fields(ParamType.UDP_LITE_TRANSPORT, XShortField("reserved", 0))


class DCCPTransportParam(RSerPoolParam):
    name = "DCCP Transport"
    fields_desc = _transport_fields(ParamType.DCCP_TRANSPORT, XShortField("reserved", 0), IntField("service_code", 0))


#: Every policy field, in an order that matches the wire order of each policy type.
_POLICY_FIELD_ORDER = ("weight", "priority", "load", "load_degradation", "weight_dpf", "load_dpf", "distance")


def _policy_has(field: str):  # type: ignore[no-untyped-def]
    return lambda p: p.policy_type in POLICY_CLASSES and field in POLICY_CLASSES[p.policy_type].FIELDS


class PolicyParam(RSerPoolParam):
    name = "Pool Member Selection Policy"
    fields_desc = (
        _tlv_header(ParamType.POLICY)
        + [XIntField("policy_type", 1)]
        + [ConditionalField(IntField(f, 0), _policy_has(f)) for f in _POLICY_FIELD_ORDER]
        + [
            ConditionalField(
                StrLenField("value", b"", length_from=_value_len(4)),
                lambda p: p.policy_type not in POLICY_CLASSES,
            ),
            _padding(),
        ]
    )

    def mysummary(self) -> str:
        return f"policy {_POLICY_NAMES.get(self.policy_type, hex(self.policy_type))}"


class PoolHandleParam(RSerPoolParam):
    name = "Pool Handle"
    fields_desc = _tlv_header(ParamType.POOL_HANDLE) + [
        StrLenField("pool_handle", b"", length_from=_value_len(0)),
        _padding(),
    ]


class PoolElementParam(RSerPoolParam):
    name = "Pool Element"
    fields_desc = _tlv_header(ParamType.POOL_ELEMENT) + [
        XIntField("pe_identifier", 0),
        XIntField("home_registrar", 0),
        SignedIntField("registration_life", 0),
        _nested("params", 12),
        _padding(),
    ]


class ServerInformationParam(RSerPoolParam):
    name = "Server Information"
    fields_desc = _tlv_header(ParamType.SERVER_INFORMATION) + [
        XIntField("server_identifier", 0),
        _nested("params", 4),
        _padding(),
    ]


class ErrorCausePacket(_PaddedTLV):
    name = "Error Cause"
    fields_desc = [
        XShortEnumField("code", 0, _CAUSE_NAMES),
        ShortField("len", None),
        StrLenField("info", b"", length_from=_value_len(0)),
        _padding(),
    ]


class OperationErrorParam(RSerPoolParam):
    name = "Operation Error"
    fields_desc = _tlv_header(ParamType.OPERATION_ERROR) + [
        PacketListField("causes", [], ErrorCausePacket, length_from=_value_len(0), max_count=MAX_ITEMS),
        _padding(),
    ]


class CookieParam(RSerPoolParam):
    name = "Cookie"
    fields_desc = _tlv_header(ParamType.COOKIE) + [
        StrLenField("cookie", b"", length_from=_value_len(0)),
        _padding(),
    ]


class PEIdentifierParam(RSerPoolParam):
    name = "PE Identifier"
    fields_desc = _tlv_header(ParamType.PE_IDENTIFIER) + [XIntField("pe_identifier", 0), _padding()]


class PEChecksumParam(RSerPoolParam):
    name = "PE Checksum"
    fields_desc = _tlv_header(ParamType.PE_CHECKSUM) + [XShortField("checksum", 0xFFFF), _padding()]


class HandleResolutionOptionParam(RSerPoolParam):
    name = "Handle Resolution Option"
    fields_desc = _tlv_header(ParamType.HANDLE_RESOLUTION_OPTION) + [IntField("items", 0), _padding()]


PARAM_LAYERS: dict[int, type[RSerPoolParam]] = {
    cls.fields_desc[0].default: cls
    for cls in (
        IPv4AddressParam,
        IPv6AddressParam,
        SCTPTransportParam,
        TCPTransportParam,
        UDPTransportParam,
        UDPLiteTransportParam,
        DCCPTransportParam,
        PolicyParam,
        PoolHandleParam,
        PoolElementParam,
        ServerInformationParam,
        OperationErrorParam,
        CookieParam,
        PEIdentifierParam,
        PEChecksumParam,
        HandleResolutionOptionParam,
    )
}

# ------------------------------------------------------------------ messages


class _RSerPoolMessage(Packet):
    """Common header; `len` is filled in when building."""

    match_subclass = True

    def post_build(self, p: bytes, pay: bytes) -> bytes:
        if self.len is None:
            p = p[:2] + struct.pack("!H", len(p)) + p[4:]
        return p + pay

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s


_FIXED_FIELDS = {
    "server_id": lambda: XIntField("server_identifier", 0),
    "sender_id": lambda: XIntField("sender_server_id", 0),
    "receiver_id": lambda: XIntField("receiver_server_id", 0),
    "target_id": lambda: XIntField("target_server_id", 0),
    "update_action": lambda: ShortEnumField("update_action", 0, _UPDATE_ACTIONS),
    "reserved": lambda: XShortField("reserved", 0),
}


def _message_layer(protocol: Protocol, base: type[Packet], mtype: int, type_names: dict[int, str]) -> type[Packet]:
    codec_cls = MESSAGE_CLASSES[protocol][mtype]
    flag_names = ["flag_0x%02x" % (1 << bit) for bit in range(8)]
    for name, bit in codec_cls.FLAGS.items():
        flag_names[bit.bit_length() - 1] = name
    fixed = [_FIXED_FIELDS[f]() for f in codec_cls.FIXED]
    header_size = 4 + codec_cls.FIXED_STRUCT.size
    fields = [
        ByteEnumField("type", mtype, type_names),
        FlagsField("flags", 0, 8, flag_names),
        ShortField("len", None),
        *fixed,
        PacketListField(
            "params", [], RSerPoolParam, length_from=lambda p: max((p.len or 0) - header_size, 0), max_count=MAX_ITEMS
        ),
    ]
    class_name = protocol.label + "".join(w.capitalize() for w in type_names[mtype].split("_"))
    return type(class_name, (base,), {"name": f"{protocol.label} {type_names[mtype]}", "fields_desc": fields, "__module__": __name__})


def _dispatch(layers: dict[int, type[Packet]], fallback: type[Packet]):  # type: ignore[no-untyped-def]
    @classmethod  # type: ignore[misc]
    def dispatch_hook(cls, _pkt: bytes | None = None, *args: Any, **kargs: Any) -> type[Packet]:
        if _pkt:
            return layers.get(_pkt[0], fallback)
        return cls

    return dispatch_hook


_ASAP_TYPE_NAMES = {int(t): t.name for t in AsapType}
_ENRP_TYPE_NAMES = {int(t): t.name for t in EnrpType}


class ASAP(_RSerPoolMessage):
    """Any ASAP message; dissection picks the message class by the type byte."""

    name = "ASAP"
    fields_desc = [
        ByteEnumField("type", 0, _ASAP_TYPE_NAMES),
        FlagsField("flags", 0, 8, [f"flag_0x{1 << b:02x}" for b in range(8)]),
        ShortField("len", None),
        PacketListField(
            "params", [], RSerPoolParam, length_from=lambda p: max((p.len or 0) - 4, 0), max_count=MAX_ITEMS
        ),
    ]


class ENRP(_RSerPoolMessage):
    """Any ENRP message; dissection picks the message class by the type byte."""

    name = "ENRP"
    fields_desc = [
        ByteEnumField("type", 0, _ENRP_TYPE_NAMES),
        FlagsField("flags", 0, 8, [f"flag_0x{1 << b:02x}" for b in range(8)]),
        ShortField("len", None),
        XIntField("sender_server_id", 0),
        XIntField("receiver_server_id", 0),
        PacketListField(
            "params", [], RSerPoolParam, length_from=lambda p: max((p.len or 0) - 12, 0), max_count=MAX_ITEMS
        ),
    ]


ASAP_LAYERS = {t: _message_layer(Protocol.ASAP, ASAP, t, _ASAP_TYPE_NAMES) for t in _ASAP_TYPE_NAMES}
ENRP_LAYERS = {t: _message_layer(Protocol.ENRP, ENRP, t, _ENRP_TYPE_NAMES) for t in _ENRP_TYPE_NAMES}
ASAP.dispatch_hook = _dispatch(ASAP_LAYERS, ASAP)
ENRP.dispatch_hook = _dispatch(ENRP_LAYERS, ENRP)
globals().update({cls.__name__: cls for cls in (*ASAP_LAYERS.values(), *ENRP_LAYERS.values())})

bind_layers(SCTPChunkData, ASAP, proto_id=Protocol.ASAP.ppid)
bind_layers(SCTPChunkData, ENRP, proto_id=Protocol.ENRP.ppid)
for _protocol, _layer in ((Protocol.ASAP, ASAP), (Protocol.ENRP, ENRP)):
    bind_layers(UDP, _layer, dport=_protocol.port)
    bind_layers(UDP, _layer, sport=_protocol.port)
