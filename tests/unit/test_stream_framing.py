"""The TCP/MPTCP framer: messages cut out of a byte stream by their own length field."""

from __future__ import annotations

import pytest

from nodes.transport.stream import Framer, FramingError, mptcp_endpoint_commands, ppid_for_port
from nodes.wire.examples import example_messages
from nodes.wire.messages import encode


@pytest.fixture
def messages() -> list[bytes]:
    return [encode(m) for m in example_messages()]


def test_messages_come_out_whole_however_the_stream_is_cut(messages):
    stream = b"".join(messages)
    assert Framer(65535).feed(stream) == messages
    framer = Framer(65535)
    assert [m for i in range(len(stream)) for m in framer.feed(stream[i : i + 1])] == messages
    framer = Framer(65535)
    out = framer.feed(stream[:3]) + framer.feed(stream[3:101]) + framer.feed(stream[101:])
    assert out == messages and framer.buffer == b""


def test_a_partial_message_waits_for_the_rest(messages):
    framer = Framer(65535)
    assert framer.feed(messages[0][:-1]) == []
    assert framer.feed(messages[0][-1:]) == [messages[0]]


@pytest.mark.parametrize(("header", "text"), [
    (b"\x0b\x00\x00\x03", "message length 3 at the head of the stream is not between 4 and 2048"),
    (b"\x0b\x00\x08\x01", "message length 2049 at the head of the stream is not between 4 and 2048"),
])  # fmt: skip
def test_impossible_lengths_are_framing_errors(header, text):
    with pytest.raises(FramingError, match=f"^{text}$"):
        Framer(2048).feed(header + b"\0" * 8)


def test_ppid_by_port():
    assert ppid_for_port(3863, None) == 11
    assert ppid_for_port(9901, None) == 12
    assert ppid_for_port(5000, None) == 11
    assert ppid_for_port(9901, 11) == 11


def test_mptcp_endpoint_commands():
    ifs = [("10.1.0.1", "eth0"), ("10.2.0.1", "eth1")]
    assert mptcp_endpoint_commands(ifs, server=False) == [
        ["ip", "mptcp", "limits", "set", "subflow", "1", "add_addr_accepted", "1"],
        ["ip", "mptcp", "endpoint", "add", "10.2.0.1", "dev", "eth1", "subflow"],
    ]
    assert mptcp_endpoint_commands(ifs, server=True)[1][-1] == "signal"
