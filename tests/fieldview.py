"""Flatten a message into the field lists that tshark prints (`-T fields -E occurrence=a`),
once from the codec's objects and once from the scapy layers, so that the three
decoders can be compared value by value."""

from __future__ import annotations

import ipaddress
from collections import defaultdict

from scapy.packet import Packet

from captures import rserpool as layers
from nodes import wire
from nodes.wire.constants import CAUSES_WITH_MESSAGE, CAUSES_WITH_PARAMETER, ParamType
from nodes.wire.params import CODECS
from nodes.wire.policies import Policy

#: Policy types whose fields Wireshark splits out; the others it shows raw or not at all.
WS_SPLIT_POLICIES = {0x1, 0x2, 0x3, 0x4, 0x5, 0x40000001, 0x40000002, 0x40000003, 0x40000004, 0xB0002001, 0xB0002002}
WS_RAW_POLICIES = {0xB0001001, 0xB0001002, 0xB0001003, 0xB0001004, 0xB0002003}
_TRANSPORT_PREFIX = {
    ParamType.SCTP_TRANSPORT: "sctp_transport",
    ParamType.TCP_TRANSPORT: "tcp_transport",
    ParamType.UDP_TRANSPORT: "udp_transport",
    ParamType.UDP_LITE_TRANSPORT: "udp_lite_transport",
    ParamType.DCCP_TRANSPORT: "dccp_transport",
}
_PCT_FIELDS = {"load": "load", "load_degradation": "degradation", "load_dpf": "load_dpf", "weight_dpf": "weight_dpf"}
POL = "pool_member_selection_policy_"

Fields = dict[str, list[object]]


def percent(value: int) -> float:
    """Wireshark shows load and degradation as %."""
    return round(value * 100.0 / 0xFFFFFFFF, 6)


def fraction(value: int) -> float:
    """... and the DPF values as fractions of 1."""
    return round(value / 0xFFFFFFFF, 6)


def _policy(out: Fields, ptype: int, values: dict[str, int], raw: bytes) -> None:
    out[POL + "type"].append(ptype)
    if ptype in WS_SPLIT_POLICIES:
        for name, value in values.items():
            key = POL + _PCT_FIELDS.get(name, name)
            if name.endswith("_dpf"):
                value = fraction(value)
            elif name in _PCT_FIELDS:
                value = percent(value)
            out[key].append(value)
    elif ptype in WS_RAW_POLICIES:
        out[POL + "value"].append(raw.hex())


def _transport(out: Fields, ptype: int, port: int, use: int | None, addresses: list[str]) -> None:
    out[_TRANSPORT_PREFIX[ptype] + "_port"].append(port)
    if use is not None:
        out["transport_use"].append(use)
    for text in addresses:
        address = ipaddress.ip_address(text)  # one spelling for IPv6 (scapy and tshark differ)
        out[f"ipv{address.version}_address"].append(str(address))


# ------------------------------------------------------------------ from the codec


def from_codec(message: wire.Message) -> Fields:
    out: Fields = defaultdict(list)
    protocol = message.PROTOCOL
    out["message_type"].append(message.TYPE)
    out["message_flags"].append(message.flags)
    out["message_length"].append(len(message.encode()))
    for name in message.FIXED:
        out[_FIXED_NAMES[name]].append(int(getattr(message, name)))
    if isinstance(message, wire.HandleTableResponse):
        for entry in message.entries:
            out["pool_handle_pool_handle"].append(entry.pool_handle.hex())
            for pe in entry.pool_elements:
                _codec_value(out, ParamType.POOL_ELEMENT, pe, protocol)
        return out
    for slot in message.SLOTS:
        value = getattr(message, slot.attr)
        if value is None:
            continue
        for item in value if slot.repeated else (value,):
            ptype = next(iter(slot.types)) if len(slot.types) == 1 else item.PARAM
            _codec_value(out, ptype, item, protocol)
    return out


_FIXED_NAMES = {
    "server_id": "server_identifier",
    "sender_id": "sender_servers_id",
    "receiver_id": "receiver_servers_id",
    "target_id": "target_servers_id",
    "update_action": "update_action",
    "reserved": "reserved",
}


def _codec_value(out: Fields, ptype: int, value: object, protocol: wire.Protocol) -> None:
    if ptype == ParamType.POOL_HANDLE:
        out["pool_handle_pool_handle"].append(value.hex())  # type: ignore[attr-defined]
    elif ptype == ParamType.POOL_ELEMENT:
        pe: wire.PoolElement = value  # type: ignore[assignment]
        out["pool_element_pe_identifier"].append(pe.identifier)
        out["pool_element_home_enrp_server_identifier"].append(pe.home_registrar)
        out["pool_element_registration_life"].append(pe.registration_life)
        _codec_value(out, pe.user_transport.PARAM, pe.user_transport, protocol)
        _codec_value(out, ParamType.POLICY, pe.policy, protocol)
        if pe.registrator_transport:
            _codec_value(out, pe.registrator_transport.PARAM, pe.registrator_transport, protocol)
    elif ptype in _TRANSPORT_PREFIX:
        t: wire.Transport = value  # type: ignore[assignment]
        _transport(out, ptype, t.port, getattr(t, "transport_use", None), [str(a) for a in t.addresses])
    elif ptype == ParamType.POLICY:
        p: Policy = value  # type: ignore[assignment]
        _policy(out, p.POLICY_TYPE, dict(zip(p.FIELDS, p.values())), p.encode_value()[4:])
    elif ptype == ParamType.SERVER_INFORMATION:
        si: wire.ServerInformation = value  # type: ignore[assignment]
        out["server_information_server_identifier"].append(si.server_id)
        _codec_value(out, si.transport.PARAM, si.transport, protocol)
    elif ptype == ParamType.OPERATION_ERROR:
        for cause in value:  # type: ignore[attr-defined]
            out["cause_code"].append(cause.code)
            out["cause_length"].append(4 + len(cause.info))
            if cause.code in CAUSES_WITH_PARAMETER and len(cause.info) >= 4:
                embedded = int.from_bytes(cause.info[:2], "big")
                length = int.from_bytes(cause.info[2:4], "big")
                if embedded in CODECS:
                    _codec_value(out, embedded, CODECS[embedded][0](cause.info, 0, 4, length, []), protocol)
            elif cause.code in CAUSES_WITH_MESSAGE and len(cause.info) >= 4:
                for key, values in from_codec(wire.decode(cause.info, protocol)).items():
                    out[key].extend(values)
    elif ptype == ParamType.COOKIE:
        out["cookie"].append(value.hex())  # type: ignore[attr-defined]
    elif ptype == ParamType.PE_IDENTIFIER:
        out["pe_identifier"].append(value)
    elif ptype == ParamType.PE_CHECKSUM:
        out["pe_checksum"].append(value)
    elif ptype == ParamType.HANDLE_RESOLUTION_OPTION:
        out["hropt_items"].append(value)


# ------------------------------------------------------------------ from scapy


def from_scapy(msg: Packet) -> Fields:
    out: Fields = defaultdict(list)
    base = layers.ASAP if isinstance(msg, layers.ASAP) else layers.ENRP
    out["message_type"].append(msg.type)
    out["message_flags"].append(int(msg.flags))
    out["message_length"].append(msg.len)
    for field in msg.fields_desc[3:-1]:
        out[_SCAPY_FIXED[field.name]].append(int(msg.getfieldval(field.name)))
    for param in msg.params:
        _scapy_param(out, param, base)
    return out


_SCAPY_FIXED = {
    "server_identifier": "server_identifier",
    "sender_server_id": "sender_servers_id",
    "receiver_server_id": "receiver_servers_id",
    "target_server_id": "target_servers_id",
    "update_action": "update_action",
    "reserved": "reserved",
}


def _scapy_param(out: Fields, p: Packet, base: type[Packet]) -> None:
    if isinstance(p, layers.PoolHandleParam):
        out["pool_handle_pool_handle"].append(p.pool_handle.hex())
    elif isinstance(p, layers.PoolElementParam):
        out["pool_element_pe_identifier"].append(p.pe_identifier)
        out["pool_element_home_enrp_server_identifier"].append(p.home_registrar)
        out["pool_element_registration_life"].append(p.registration_life)
        for inner in p.params:
            _scapy_param(out, inner, base)
    elif p.type in _TRANSPORT_PREFIX:
        _transport(out, p.type, p.port, getattr(p, "transport_use", None), [a.address for a in p.addresses])
    elif isinstance(p, layers.PolicyParam):
        cls = wire.POLICY_CLASSES[p.policy_type]
        values = {name: p.getfieldval(name) for name in cls.FIELDS}
        _policy(out, p.policy_type, values, cls(**values).encode_value()[4:])
    elif isinstance(p, layers.ServerInformationParam):
        out["server_information_server_identifier"].append(p.server_identifier)
        for inner in p.params:
            _scapy_param(out, inner, base)
    elif isinstance(p, layers.OperationErrorParam):
        for cause in p.causes:
            out["cause_code"].append(cause.code)
            out["cause_length"].append(cause.len)
            if cause.code in CAUSES_WITH_PARAMETER and len(cause.info) >= 4:
                _scapy_param(out, layers.RSerPoolParam(cause.info), base)
            elif cause.code in CAUSES_WITH_MESSAGE and len(cause.info) >= 4:
                for key, values in from_scapy(base(cause.info)).items():
                    out[key].extend(values)
    elif isinstance(p, layers.CookieParam):
        out["cookie"].append(p.cookie.hex())
    elif isinstance(p, layers.PEIdentifierParam):
        out["pe_identifier"].append(p.pe_identifier)
    elif isinstance(p, layers.PEChecksumParam):
        out["pe_checksum"].append(p.checksum)
    elif isinstance(p, layers.HandleResolutionOptionParam):
        out["hropt_items"].append(p.items)


# ------------------------------------------------------------------ parameter type order


def parameter_types(message: wire.Message) -> list[int]:
    """Every parameter type in wire (pre-)order, embedded cause parameters included, as
    Wireshark lists them; computed from the bytes with the TLV walker."""
    from nodes.wire.tlv import walk

    data = message.encode()
    containers = {ParamType.POOL_ELEMENT: 12, ParamType.SERVER_INFORMATION: 4, ParamType.DCCP_TRANSPORT: 8}

    def visit(start: int, end: int) -> list[int]:
        found: list[int] = []
        for ptype, _, vs, ve in walk(data, start, end, "test", hex):
            found.append(ptype)
            if ptype in containers:
                found += visit(vs + containers[ptype], ve)
            elif ptype in _TRANSPORT_PREFIX:
                found += visit(vs + 4, ve)
            elif ptype == ParamType.OPERATION_ERROR:
                for code, _, cvs, cve in walk(data, vs, ve, "cause", hex):
                    if code in CAUSES_WITH_PARAMETER and cve > cvs:
                        found += visit(cvs, cve)
        return found

    return visit(4 + message.FIXED_STRUCT.size, len(data))
