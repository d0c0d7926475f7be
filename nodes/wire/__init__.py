"""The ASAP/ENRP wire codec: pure Python, no I/O.

    from nodes.wire import decode, Protocol, Registration
    message = decode(data, Protocol.ASAP)
    data = message.encode()
"""

from .checksum import pe_checksum
from .constants import (
    ASAP_ANNOUNCE_GROUP,
    ENRP_PRESENCE_GROUP,
    AsapType,
    CauseCode,
    EnrpType,
    ParamType,
    Protocol,
    TransportUse,
    UnknownParamAction,
    UpdateAction,
)
from .errors import (
    DecodeError,
    EncodeError,
    IllegalParameterError,
    InvalidValueError,
    MessageLengthError,
    MissingParameterError,
    PaddingError,
    ParameterLengthError,
    TruncatedError,
    UnexpectedParameterError,
    UnknownMessageTypeError,
    UnrecognizedParameterError,
    WireError,
)
from .messages import (
    MESSAGE_CLASSES,
    AsapError,
    AsapMessage,
    BusinessCard,
    Cookie,
    CookieEcho,
    Deregistration,
    DeregistrationResponse,
    EndpointKeepAlive,
    EndpointKeepAliveAck,
    EndpointUnreachable,
    EnrpError,
    EnrpMessage,
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
    decode,
    encode,
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
)
from .policies import POLICY_CLASSES, Policy, PolicyType
from . import policies

__all__ = [name for name in dir() if not name.startswith("_")]
