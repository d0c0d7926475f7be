"""The 16-bit PE checksum that ENRP_PRESENCE carries (RFC 5353; RSPLIB's algorithm).

Registrars audit each other's ownership with it: the Internet checksum (RFC 1071) over,
for every PE that the sender owns, its pool handle zero-padded to an even length
followed by its PE identifier in network byte order.
"""

from __future__ import annotations

from collections.abc import Iterable


def pe_checksum(pool_elements: Iterable[tuple[bytes, int]]) -> int:
    """Checksum of (pool handle, PE identifier) pairs; the empty set gives 0xffff."""
    total = 0
    for handle, identifier in pool_elements:
        total += _word_sum(handle) + (identifier >> 16) + (identifier & 0xFFFF)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _word_sum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    return sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
