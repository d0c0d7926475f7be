"""The plain-data view used by `testbed decode --json`."""

from __future__ import annotations

import json

from nodes import wire
from nodes.wire.describe import describe, printable
from nodes.wire.examples import example_messages, example_pool_element


def test_printable_text_and_hex() -> None:
    assert printable(b"EchoPool") == "EchoPool"
    assert printable(b"\x00\x01") == "0x0001"
    assert printable(b"0xab") == "0x30786162"  # text that looks like hex is shown as hex
    assert printable(b"") == "0x"


def test_registration_view() -> None:
    view = describe(wire.Registration(pool_handle=b"EchoPool", pool_element=example_pool_element(5)))
    assert view["type_name"] == "ASAP_REGISTRATION" and view["protocol"] == "ASAP"
    pe = view["fields"]["pool_element"]
    assert pe["policy"] == {"policy": "LU", "policy_type": "0x40000001", "load": 1073741824}
    assert pe["user_transport"] == {"transport": "DCCP Transport", "port": 7005, "addresses": ["10.1.0.14"], "service_code": 42, "reserved": 0}
    assert pe["registrator_transport"] is None


def test_flags_and_unrecognized_are_shown() -> None:
    data = bytes.fromhex("0200001c" "0009000550000000" "c099000541000000" "000e000800000007")
    view = describe(wire.decode(data, wire.Protocol.ASAP))
    assert view["unrecognized"] == ["0xc099000541"]
    reject = describe(wire.RegistrationResponse(pool_handle=b"P", pe_id=1, flags=0x01))
    assert (reject["flags"], reject["flag_names"]) == (1, ["reject"])


def test_every_example_serialises_to_json() -> None:
    for message in example_messages():
        text = json.dumps(describe(message))
        assert message.NAME in text
