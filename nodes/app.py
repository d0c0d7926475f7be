"""The application protocol between pool users and the PEs' services (pure codec).

Messages share ASAP's header shape (type, flags, 16-bit length of the whole message), so the
TCP mapping's framer cuts them too; their types start at 0x80, above every ASAP type, which
is how a receiver tells them from ASAP control messages (COOKIE, COOKIE_ECHO, BUSINESS_CARD)
on the same association whatever the transport.  Over SCTP they travel with
`nodes.runtime.APP_PPID`, and ASAP with PPID 11.

    ECHO_REQUEST  seq u32 | payload              -> ECHO_REPLY  seq u32 | served u32 | payload
    CALC_REQUEST  seq u32 | work u32             -> CALC_REPLY  seq u32 | served u32 | digest (8)

`served` is the number of requests of this session served so far, by whichever PE: it is the
session state that cookies carry across a failover, so a test can see that it survived.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

HEADER = struct.Struct("!BBH")
_SEQ_WORK = struct.Struct("!II")
MAX_MESSAGE = 65535
FIRST_APP_TYPE = 0x80


class AppType(enum.IntEnum):
    ECHO_REQUEST = 0x81
    ECHO_REPLY = 0x82
    CALC_REQUEST = 0x83
    CALC_REPLY = 0x84


class AppError(ValueError):
    """Bytes that are not an application message."""


@dataclass(frozen=True)
class AppMessage:
    type: AppType
    seq: int
    value: int = 0  #: work units (CALC_REQUEST) or served count (replies)
    payload: bytes = b""

    def encode(self) -> bytes:
        body = _SEQ_WORK.pack(self.seq, self.value) + self.payload
        if HEADER.size + len(body) > MAX_MESSAGE:
            raise AppError(f"message of {HEADER.size + len(body)} bytes exceeds {MAX_MESSAGE}")
        return HEADER.pack(self.type, 0, HEADER.size + len(body)) + body


def is_app(data: bytes) -> bool:
    return bool(data) and data[0] >= FIRST_APP_TYPE


def decode(data: bytes) -> AppMessage:
    if len(data) < HEADER.size + _SEQ_WORK.size:
        raise AppError(f"{len(data)} bytes: shorter than an application message ({HEADER.size + _SEQ_WORK.size})")
    mtype, _flags, length = HEADER.unpack_from(data)
    if length != len(data):
        raise AppError(f"length field {length}, but {len(data)} bytes")
    try:
        kind = AppType(mtype)
    except ValueError:
        raise AppError(f"unknown application message type 0x{mtype:02x}") from None
    seq, value = _SEQ_WORK.unpack_from(data, HEADER.size)
    return AppMessage(kind, seq, value, bytes(data[HEADER.size + _SEQ_WORK.size :]))
