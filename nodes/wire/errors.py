"""Errors of the wire codec.

Every decoding problem raises a subclass of :class:`DecodeError` that names the field
and its byte offset from the start of the message, so a log line or `testbed decode`
says exactly what is wrong. Each error also knows which Operation Error cause a
registrar would answer with, so the protocol cores can reply without guessing.
"""

from __future__ import annotations

from .constants import CauseCode


class WireError(Exception):
    """Base of every error raised by the codec."""


class EncodeError(WireError):
    """A message object cannot be put on the wire (a value out of range, a missing field)."""


class DecodeError(WireError):
    """Bytes that are not a valid message. `field` and `offset` say where."""

    cause: CauseCode = CauseCode.INVALID_VALUES

    def __init__(self, field: str, offset: int, reason: str) -> None:
        self.field = field
        self.offset = offset
        self.reason = reason
        super().__init__(f"{field} at byte {offset}: {reason}")

    def to_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "field": self.field,
            "offset": self.offset,
            "reason": self.reason,
        }


class TruncatedError(DecodeError):
    """The data ends before a header or a fixed field is complete."""


class MessageLengthError(DecodeError):
    """The message length field disagrees with the bytes received."""


class ParameterLengthError(DecodeError):
    """A parameter length below 4, past its container, or wrong for its type."""


class PaddingError(DecodeError):
    """Padding bytes that are not zero, or padding missing at the end of a message."""


class MissingParameterError(DecodeError):
    """A mandatory parameter is absent."""


class IllegalParameterError(DecodeError):
    """A known parameter that this message (or enclosing parameter) must not carry."""


class UnexpectedParameterError(DecodeError):
    """A parameter legal in this message, but duplicated or in the wrong position."""


class InvalidValueError(DecodeError):
    """A field whose value is not allowed (an unknown policy, an empty pool handle, ...)."""


class UnknownMessageTypeError(DecodeError):
    """A message type that the protocol does not define."""

    cause = CauseCode.UNRECOGNIZED_MESSAGE


class UnrecognizedParameterError(DecodeError):
    """An unknown parameter whose action bits say: stop processing the message.

    `report` tells whether the action asks for an "Unrecognized parameter" error to be
    sent back (action 01) or for silence (action 00); `tlv` is the offending
    parameter, the cause info of that report.
    """

    cause = CauseCode.UNRECOGNIZED_PARAMETER

    def __init__(self, field: str, offset: int, reason: str, *, report: bool, tlv: bytes) -> None:
        super().__init__(field, offset, reason)
        self.report = report
        self.tlv = tlv
