"""Numbers of the RSerPool wire format (RFC 5352-5356, IANA, RSPLIB).

ASAP and ENRP share the type numbering space of their messages, so the protocol
(told apart by SCTP PPID or by port) is part of every message's identity.
"""

from __future__ import annotations

import enum


class Protocol(enum.Enum):
    """The two RSerPool protocols with their IANA PPIDs and well-known ports."""

    ASAP = ("ASAP", 11, 3863)
    ENRP = ("ENRP", 12, 9901)

    def __init__(self, label: str, ppid: int, port: int) -> None:
        self.label = label
        self.ppid = ppid
        self.port = port

    @classmethod
    def from_ppid(cls, ppid: int) -> Protocol | None:
        return next((p for p in cls if p.ppid == ppid), None)

    @classmethod
    def from_port(cls, port: int) -> Protocol | None:
        return next((p for p in cls if p.port == port), None)


#: rsplib's default multicast groups for SERVER_ANNOUNCE and ENRP_PRESENCE.
ASAP_ANNOUNCE_GROUP = ("239.0.0.50", 3863)
ENRP_PRESENCE_GROUP = ("239.0.0.51", 9901)


class AsapType(enum.IntEnum):
    REGISTRATION = 0x01
    DEREGISTRATION = 0x02
    REGISTRATION_RESPONSE = 0x03
    DEREGISTRATION_RESPONSE = 0x04
    HANDLE_RESOLUTION = 0x05
    HANDLE_RESOLUTION_RESPONSE = 0x06
    ENDPOINT_KEEP_ALIVE = 0x07
    ENDPOINT_KEEP_ALIVE_ACK = 0x08
    ENDPOINT_UNREACHABLE = 0x09
    SERVER_ANNOUNCE = 0x0A
    COOKIE = 0x0B
    COOKIE_ECHO = 0x0C
    BUSINESS_CARD = 0x0D
    ERROR = 0x0E


class EnrpType(enum.IntEnum):
    PRESENCE = 0x01
    HANDLE_TABLE_REQUEST = 0x02
    HANDLE_TABLE_RESPONSE = 0x03
    HANDLE_UPDATE = 0x04
    LIST_REQUEST = 0x05
    LIST_RESPONSE = 0x06
    INIT_TAKEOVER = 0x07
    INIT_TAKEOVER_ACK = 0x08
    TAKEOVER_SERVER = 0x09
    ERROR = 0x0A  # IANA's registry text says 0x10; rsplib, Wireshark and sctp-refimpl use 0x0a


class ParamType(enum.IntEnum):
    IPV4_ADDRESS = 0x0001
    IPV6_ADDRESS = 0x0002
    DCCP_TRANSPORT = 0x0003
    SCTP_TRANSPORT = 0x0004
    TCP_TRANSPORT = 0x0005
    UDP_TRANSPORT = 0x0006
    UDP_LITE_TRANSPORT = 0x0007
    POLICY = 0x0008
    POOL_HANDLE = 0x0009
    POOL_ELEMENT = 0x000A
    SERVER_INFORMATION = 0x000B
    OPERATION_ERROR = 0x000C
    COOKIE = 0x000D
    PE_IDENTIFIER = 0x000E
    PE_CHECKSUM = 0x000F
    HANDLE_RESOLUTION_OPTION = 0x803F  # draft-dreibholz-rserpool-asap-hropt, action bits 10


PARAM_NAMES = {
    ParamType.IPV4_ADDRESS: "IPv4 Address",
    ParamType.IPV6_ADDRESS: "IPv6 Address",
    ParamType.DCCP_TRANSPORT: "DCCP Transport",
    ParamType.SCTP_TRANSPORT: "SCTP Transport",
    ParamType.TCP_TRANSPORT: "TCP Transport",
    ParamType.UDP_TRANSPORT: "UDP Transport",
    ParamType.UDP_LITE_TRANSPORT: "UDP-Lite Transport",
    ParamType.POLICY: "Pool Member Selection Policy",
    ParamType.POOL_HANDLE: "Pool Handle",
    ParamType.POOL_ELEMENT: "Pool Element",
    ParamType.SERVER_INFORMATION: "Server Information",
    ParamType.OPERATION_ERROR: "Operation Error",
    ParamType.COOKIE: "Cookie",
    ParamType.PE_IDENTIFIER: "PE Identifier",
    ParamType.PE_CHECKSUM: "PE Checksum",
    ParamType.HANDLE_RESOLUTION_OPTION: "Handle Resolution Option",
}


def param_name(ptype: int) -> str:
    """A readable name for a parameter type, known or not."""
    try:
        return PARAM_NAMES[ParamType(ptype)]
    except ValueError:
        return f"unknown parameter 0x{ptype:04x}"


class UnknownParamAction(enum.IntEnum):
    """The top two bits of a parameter type: what to do when the type is unknown."""

    STOP = 0b00
    STOP_AND_REPORT = 0b01
    SKIP = 0b10
    SKIP_AND_REPORT = 0b11

    @classmethod
    def of(cls, ptype: int) -> UnknownParamAction:
        return cls(ptype >> 14)


class TransportUse(enum.IntEnum):
    DATA_ONLY = 0
    DATA_PLUS_CONTROL = 1


class UpdateAction(enum.IntEnum):
    ADD_PE = 0x0000
    DEL_PE = 0x0001


class CauseCode(enum.IntEnum):
    """Error causes of the Operation Error parameter (RFC 5354) and rsplib's own codes."""

    UNRECOGNIZED_PARAMETER = 0x0001
    UNRECOGNIZED_MESSAGE = 0x0002
    INVALID_VALUES = 0x0003
    NON_UNIQUE_PE_IDENTIFIER = 0x0004
    INCONSISTENT_POLICY = 0x0005
    LACK_OF_RESOURCES = 0x0006
    INCONSISTENT_TRANSPORT_TYPE = 0x0007
    INCONSISTENT_DATA_CONTROL = 0x0008
    UNKNOWN_POOL_HANDLE = 0x0009
    REJECTED_SECURITY = 0x000A
    # rsplib puts its internal error numbers on the wire; peers must tolerate them.
    RSPLIB_INVALID_MESSAGE = 0x0010
    RSPLIB_INVALID_VALUE = 0x0011
    RSPLIB_WRONG_PROTOCOL = 0x100A
    RSPLIB_UNSUPPORTED_POOL_POLICY = 0x100B
    RSPLIB_INVALID_ID = 0xF000
    RSPLIB_INVALID_POOL_POLICY = 0xF003
    RSPLIB_INVALID_POOL_HANDLE = 0xF004
    RSPLIB_INVALID_ADDRESSES = 0xF005
    RSPLIB_INVALID_REGISTRATOR = 0xF006
    RSPLIB_NO_USABLE_ASAP_ADDRESSES = 0xF007
    RSPLIB_NO_USABLE_USER_ADDRESSES = 0xF008


#: Causes whose info is an embedded parameter (Wireshark dissects it and flags it when absent).
CAUSES_WITH_PARAMETER = frozenset(
    {
        CauseCode.UNRECOGNIZED_PARAMETER,
        CauseCode.INVALID_VALUES,
        CauseCode.INCONSISTENT_POLICY,
        CauseCode.INCONSISTENT_TRANSPORT_TYPE,
    }
)
#: Causes whose info is an embedded message.
CAUSES_WITH_MESSAGE = frozenset({CauseCode.UNRECOGNIZED_MESSAGE})

#: The Handle Resolution option's item count for "as many as possible" (hropt draft).
ALL_ITEMS = 0xFFFFFFFF

#: Load-type policy values are fractions of this (0xffffffff = 100 %).
MAX_LOAD = 0xFFFFFFFF
