"""The TLV layer shared by parameters and error causes: walking, padding, building.

A TLV's length counts its 4-byte header and its value but not its own trailing
padding; the padding (zero bytes up to the next multiple of 4) always follows, also
after the last TLV of a message. Offsets are counted from the start of the message,
which is 4-byte aligned, so alignment can be checked on absolute offsets.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

from .errors import PaddingError, ParameterLengthError, TruncatedError

_HEADER = struct.Struct("!HH")
_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")


def pad4(n: int) -> int:
    """`n` rounded up to a multiple of 4."""
    return (n + 3) & ~3


def build(ptype: int, value: bytes) -> bytes:
    """One TLV with its padding."""
    length = 4 + len(value)
    return _HEADER.pack(ptype, length) + value + _PADDING[length & 3]


def walk(
    buf: bytes, start: int, end: int, container: str, name_of: Callable[[int], str]
) -> Iterator[tuple[int, int, int, int]]:
    """Yield `(type, tlv_start, value_start, value_end)` for each TLV in buf[start:end].

    Raises a specific error for a short header, a length below 4, a TLV running past
    `end`, and padding that is missing or not zero.
    """
    pos = start
    unpack = _HEADER.unpack_from
    while pos < end:
        if end - pos < 4:
            raise TruncatedError(
                f"{container}: parameter header", pos, f"{end - pos} byte(s) left, a header needs 4"
            )
        ptype, length = unpack(buf, pos)
        if length < 4:
            raise ParameterLengthError(
                f"{name_of(ptype)} length", pos + 2, f"{length} is below the minimum of 4"
            )
        value_end = pos + length
        if value_end > end:
            raise ParameterLengthError(
                f"{name_of(ptype)} length",
                pos + 2,
                f"{length} runs {value_end - end} byte(s) past the end of the {container}",
            )
        padded_end = pos + pad4(length)
        if padded_end > end:
            raise PaddingError(
                f"{name_of(ptype)} padding",
                value_end,
                f"{padded_end - end} padding byte(s) missing at the end of the {container}",
            )
        if padded_end != value_end and any(buf[value_end:padded_end]):
            raise PaddingError(
                f"{name_of(ptype)} padding", value_end, f"not zero: {buf[value_end:padded_end].hex()}"
            )
        yield ptype, pos, pos + 4, value_end
        pos = padded_end
