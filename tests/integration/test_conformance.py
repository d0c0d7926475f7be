"""Independent decoders check our bytes: tshark (Wireshark's dissectors) and the scapy
layers must find the same message types, parameters and values as the codec, and
tshark must flag nothing as malformed."""

from __future__ import annotations

import functools
import ipaddress
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from scapy.utils import rdpcap

from captures.rserpool import ASAP, ENRP
from nodes import wire
from nodes.wire import Protocol
from nodes.wire.examples import example_messages

from ..fieldview import from_codec, from_scapy, parameter_types
from ..pcaps import udp_frame, write_sctp
from ..strategies import messages

pytestmark = pytest.mark.skipif(not shutil.which("tshark"), reason="tshark is not installed (scripts/install.sh)")

COMPARED = [
    "message_type", "message_flags", "message_length", "server_identifier", "sender_servers_id",
    "receiver_servers_id", "target_servers_id", "update_action", "reserved", "pool_handle_pool_handle",
    "pool_element_pe_identifier", "pool_element_home_enrp_server_identifier", "pool_element_registration_life",
    "sctp_transport_port", "tcp_transport_port", "udp_transport_port", "udp_lite_transport_port",
    "dccp_transport_port", "transport_use", "ipv4_address", "ipv6_address", "pool_member_selection_policy_type",
    "pool_member_selection_policy_weight", "pool_member_selection_policy_priority",
    "pool_member_selection_policy_load", "pool_member_selection_policy_degradation",
    "pool_member_selection_policy_load_dpf", "pool_member_selection_policy_weight_dpf",
    "pool_member_selection_policy_distance", "pool_member_selection_policy_value",
    "server_information_server_identifier", "cause_code", "cause_length", "cookie", "pe_identifier",
    "pe_checksum", "hropt_items",
]  # fmt: skip
FLOATS = {"load", "degradation", "load_dpf", "weight_dpf"}
EXTRA = ["parameter_type", "_ws.malformed", "_ws.expert.message"]


def _parse(key: str, text: str) -> object:
    if key.split("policy_")[-1] in FLOATS:
        return round(float(text), 6)
    if key.endswith("_address"):
        return str(ipaddress.ip_address(text))  # tshark writes IPv4-compatible IPv6 its own way
    if key in ("pool_handle_pool_handle", "cookie", "pool_member_selection_policy_value"):
        return text
    return int(text, 0)


@functools.cache
def tshark_field_names() -> frozenset[str]:
    out = subprocess.run(["tshark", "-G", "fields"], capture_output=True, text=True, check=True).stdout
    return frozenset(line.split("\t")[2] for line in out.splitlines() if line.count("\t") >= 2)


def tshark_fields(pcap: Path, protocol_of_frame: list[Protocol]) -> list[dict[str, list[object]]]:
    """For each frame, the compared fields of its ASAP or ENRP tree as tshark reports them."""
    known = tshark_field_names()
    columns = [f"{p}.{k}" for p in ("asap", "enrp") for k in COMPARED + ["parameter_type"] if f"{p}.{k}" in known]
    args = ["tshark", "-r", str(pcap), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|"]
    for column in columns + EXTRA[1:]:
        args += ["-e", column]
    lines = subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(lines) == len(protocol_of_frame)
    frames = []
    for line, protocol in zip(lines, protocol_of_frame):
        cells = dict(zip(columns + EXTRA[1:], line.split("\t")))
        prefix = protocol.name.lower()
        fields: dict[str, list[object]] = {
            key: [_parse(key, v) for v in cells.get(f"{prefix}.{key}", "").split("|") if v]
            for key in COMPARED + ["parameter_type"]
        }
        fields["_ws"] = [cells["_ws.malformed"], cells["_ws.expert.message"]]
        frames.append(fields)
    return frames


def expected(message: wire.Message) -> dict[str, list[object]]:
    view = from_codec(message)
    fields = {key: [round(v, 6) if isinstance(v, float) else v for v in view.get(key, [])] for key in COMPARED}
    fields["parameter_type"] = parameter_types(message)
    fields["_ws"] = ["", ""]
    return fields


def check_against_tshark(tmp_path: Path, batch: list[wire.Message], *, via_udp: bool = False) -> None:
    pcap = tmp_path / "batch.pcap"
    if via_udp:
        from scapy.utils import wrpcap

        wrpcap(str(pcap), [udp_frame(m.encode(), m.PROTOCOL) for m in batch])
    else:
        write_sctp(pcap, [(m.encode(), m.PROTOCOL) for m in batch])
    for message, seen in zip(batch, tshark_fields(pcap, [m.PROTOCOL for m in batch])):
        want = expected(message)
        assert seen == want, f"{message.NAME}: tshark disagrees"


def test_every_example_message_decodes_identically_in_tshark(tmp_path: Path) -> None:
    check_against_tshark(tmp_path, example_messages())


def test_examples_over_udp_ports_decode_in_tshark(tmp_path: Path) -> None:
    check_against_tshark(tmp_path, example_messages(), via_udp=True)


@settings(max_examples=4, deadline=None, phases=[Phase.explicit, Phase.generate], suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(st.lists(messages(), min_size=40, max_size=40))
def test_random_messages_decode_identically_in_tshark(tmp_path: Path, batch: list[wire.Message]) -> None:
    # Wireshark reads the DCCP service code into a 16-bit field; keep random ones in range.
    batch = [m for m in batch if "DccpTransport(" not in repr(m) or "service_code=" not in repr(m) or _small_dccp(m)]
    check_against_tshark(tmp_path, batch)


def _small_dccp(message: wire.Message) -> bool:
    import re

    return all(int(code) < 0x10000 for code in re.findall(r"service_code=(\d+)", repr(message)))


def test_scapy_layers_decode_the_same_values(tmp_path: Path) -> None:
    batch = example_messages()
    pcap = write_sctp(tmp_path / "examples.pcap", [(m.encode(), m.PROTOCOL) for m in batch])
    packets = rdpcap(str(pcap))
    for message, packet in zip(batch, packets):
        layer = packet[ASAP] if message.PROTOCOL is Protocol.ASAP else packet[ENRP]
        assert type(layer).__name__.upper().replace("_", "") == message.NAME.replace("_", "")
        assert from_scapy(layer) == from_codec(message), message.NAME
        assert bytes(layer) == message.encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_scapy_layers_agree_with_codec_on_random_messages(message: wire.Message) -> None:
    layer_cls = ASAP if message.PROTOCOL is Protocol.ASAP else ENRP
    layer = layer_cls(message.encode())
    assert from_scapy(layer) == from_codec(message)
    assert bytes(layer) == message.encode()


def test_scapy_builds_what_the_codec_decodes() -> None:
    from captures.rserpool import ASAPServerAnnounce, IPv4AddressParam, SCTPTransportParam

    built = bytes(ASAPServerAnnounce(server_identifier=7, params=[SCTPTransportParam(port=3863, addresses=[IPv4AddressParam(address="10.0.0.9")])]))
    decoded = wire.decode(built, Protocol.ASAP)
    assert decoded.server_id == 7
    assert decoded.transports[0].port == 3863 and str(decoded.transports[0].addresses[0]) == "10.0.0.9"
