"""Plain-data views of decoded messages, for JSON output, logs and tests.

Bytes become text when they are printable ASCII (pool handles usually are) and
"0x..." hex otherwise; enums become their names; policies carry their short name.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from typing import Any

from .messages import Message
from .params import ErrorCause, Transport
from .policies import Policy


def printable(data: bytes) -> str:
    """Text if `data` is printable ASCII, else 0x-prefixed hex."""
    if data and all(0x20 <= b < 0x7F for b in data) and not data.startswith(b"0x"):
        return data.decode("ascii")
    return "0x" + data.hex()


def to_plain(value: Any) -> Any:
    """A JSON-serialisable view of any codec value."""
    if isinstance(value, enum.Enum):  # before int: IntEnum values are ints too
        return value.name
    if value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return printable(bytes(value))
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [to_plain(v) for v in value]
    if isinstance(value, Policy):
        return {"policy": value.name, "policy_type": f"0x{value.POLICY_TYPE:08x}", **_fields(value)}
    if isinstance(value, Transport):
        return {"transport": value.name, **_fields(value)}
    if isinstance(value, ErrorCause):
        return {"cause": value.name, "code": value.code, "info": "0x" + value.info.hex()}
    if dataclasses.is_dataclass(value):
        return _fields(value)
    raise TypeError(f"no plain view for {type(value).__name__}")


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name != "unrecognized"}


def describe(message: Message) -> dict[str, Any]:
    """Type, flags and every field of a message as plain data."""
    fields = _fields(message)
    fields.pop("flags")
    return {
        "protocol": message.PROTOCOL.label,
        "type": message.TYPE,
        "type_name": message.NAME,
        "flags": message.flags,
        "flag_names": message.flag_names(),
        "fields": fields,
        **({"unrecognized": ["0x" + p.hex() for p in message.unrecognized]} if message.unrecognized else {}),
    }
