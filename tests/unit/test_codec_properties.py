"""Property tests: random valid messages round-trip; random corruptions raise only the
codec's own errors (never IndexError, struct.error, ValueError...)."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nodes import wire
from nodes.wire import Protocol, decode

from ..strategies import messages

SETTINGS = settings(
    max_examples=max(400, settings.default.max_examples), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@SETTINGS
@given(messages())
def test_random_valid_messages_round_trip(message: wire.Message) -> None:
    data = message.encode()
    decoded = decode(data, message.PROTOCOL)
    assert decoded == message
    assert decoded.encode() == data


def _decodes_or_raises_codec_error(data: bytes, protocol: Protocol) -> None:
    try:
        decoded = decode(data, protocol)
    except wire.DecodeError as exc:
        assert 0 <= exc.offset <= len(data), exc
        return
    # Whatever is accepted must be stable: its canonical encoding decodes to the same message.
    assert decode(decoded.encode(), protocol) == decoded


@SETTINGS
@given(messages(), st.data())
def test_flipped_bytes_raise_only_codec_errors(message: wire.Message, data: st.DataObject) -> None:
    raw = bytearray(message.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    _decodes_or_raises_codec_error(bytes(raw), message.PROTOCOL)


@SETTINGS
@given(messages(), st.data())
def test_truncated_or_extended_messages_raise(message: wire.Message, data: st.DataObject) -> None:
    raw = message.encode()
    cut = data.draw(st.integers(0, len(raw) - 1))
    extra = data.draw(st.binary(min_size=1, max_size=8))
    for broken in (raw[:cut], raw + extra):
        try:
            decode(broken, message.PROTOCOL)
        except wire.DecodeError:
            continue
        raise AssertionError(f"accepted {broken.hex()}")


@SETTINGS
@given(messages(), st.data())
def test_consistent_length_but_cut_body_raises_codec_errors(message: wire.Message, data: st.DataObject) -> None:
    """Cut inside the body and fix the length field, so the parameter walk itself meets the cut."""
    raw = message.encode()
    cut = data.draw(st.integers(4, len(raw)))
    broken = raw[:2] + cut.to_bytes(2, "big") + raw[4:cut]
    _decodes_or_raises_codec_error(broken, message.PROTOCOL)


@settings(max_examples=max(2000, settings.default.max_examples), deadline=None)
@given(st.binary(max_size=96), st.sampled_from(list(Protocol)))
@example(b"\x01\x00\x00\x08\x00\x09\x00\x03", Protocol.ASAP)
def test_arbitrary_bytes_raise_only_codec_errors(blob: bytes, protocol: Protocol) -> None:
    # Give random bodies a plausible header so that they reach the parameter walk.
    for candidate in (blob, blob[:1] + b"\0" + (len(blob) + 2).to_bytes(2, "big") + blob[2:]):
        _decodes_or_raises_codec_error(candidate, protocol)
