"""`testbed decode` on captures: SCTP (fragmented, bundled, retransmitted), UDP, bad frames."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.sctp import SCTP, SCTPChunkData
from scapy.packet import Raw
from scapy.utils import wrpcap

from nodes import wire
from nodes.wire import Protocol
from nodes.wire.examples import example_pool_element

from ..pcaps import sctp_frame, udp_frame

REGISTRATION = wire.Registration(pool_handle=b"EchoPool", pool_element=example_pool_element(0))
BIG = wire.HandleResolutionResponse(
    pool_handle=b"EchoPool", pool_elements=tuple(example_pool_element(i) for i in range(128))
)
PRESENCE = wire.Presence(sender_id=0x11, checksum=0xFFFF)


def run_testbed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "testbed.cli", *args], capture_output=True, text=True, timeout=120)


def capture(tmp_path: Path) -> Path:
    big = BIG.encode()
    third = len(big) // 3
    broken = wire.Registration(pool_handle=b"EchoPool", pool_element=example_pool_element(0)).encode()
    broken = broken[:1] + b"\0" + (12 + 4).to_bytes(2, "big") + broken[4:16]  # pool handle only
    frames = [
        sctp_frame(REGISTRATION.encode(), Protocol.ASAP, tsn=1),  # 1
        sctp_frame(broken, Protocol.ASAP, tsn=2),  # 2: undecodable
        sctp_frame(big[:third], Protocol.ASAP, tsn=3, end=False),  # 3..5: one message in fragments
        sctp_frame(big[third : 2 * third], Protocol.ASAP, tsn=4, begin=False, end=False),
        sctp_frame(big[2 * third :], Protocol.ASAP, tsn=5, begin=False),
        udp_frame(PRESENCE.encode(), Protocol.ENRP),  # 6
        Ether() / IP() / UDP(sport=5353, dport=53) / Raw(b"\x01\x00\x00\x08abcd"),  # 7: not RSerPool
        Ether()
        / IP(src="10.99.0.1", dst="10.99.0.2")
        / SCTP(sport=40000, dport=9901)
        / SCTPChunkData(tsn=1, proto_id=0, data=PRESENCE.encode(), beginning=1, ending=1),  # 8: PPID 0, by port
        sctp_frame(REGISTRATION.encode(), Protocol.ASAP, tsn=1),  # 9: retransmission of frame 1
    ]
    path = tmp_path / "mixed.pcap"
    wrpcap(str(path), frames)
    return path


def test_json_lines_for_every_message_and_errors_in_place(tmp_path: Path) -> None:
    result = run_testbed("decode", str(capture(tmp_path)), "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["frame"] for r in records] == [1, 2, 5, 6, 8]
    first, bad, big, presence, by_port = records
    assert first["type_name"] == "ASAP_REGISTRATION" and first["ppid"] == 11
    assert first["fields"]["pool_handle"] == "EchoPool"
    assert first["fields"]["pool_element"]["user_transport"]["addresses"] == ["10.1.0.10", "10.2.0.10"]
    assert bad["error"] == {
        "error": "MissingParameterError",
        "field": "Pool Element",
        "offset": 16,
        "reason": "ASAP_REGISTRATION ends without it",
    }
    assert big["type_name"] == "ASAP_HANDLE_RESOLUTION_RESPONSE"
    assert len(big["fields"]["pool_elements"]) == 128
    assert presence["transport"] == "udp" and presence["fields"]["checksum"] == 0xFFFF
    assert by_port["protocol"] == "ENRP" and by_port["ppid"] == 0


def test_text_output_names_the_error_and_goes_on(tmp_path: Path) -> None:
    result = run_testbed("decode", str(capture(tmp_path)))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    undecodable = [line for line in lines if "UNDECODABLE" in line]
    assert len(undecodable) == 1 and "MissingParameterError: Pool Element at byte 16" in undecodable[0]
    assert any(line.startswith("#8 ") and "ENRP_PRESENCE" in line for line in lines)
    assert "5 ASAP/ENRP message(s), 1 undecodable" in result.stderr


def test_a_file_that_is_not_a_capture_gets_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.pcap"
    bogus.write_text("this is not a capture\n")
    result = run_testbed("decode", str(bogus))
    assert result.returncode == 2
    assert "not a readable capture" in result.stderr


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    result = run_testbed("decode", str(tmp_path / "absent.pcap"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr


@pytest.mark.skipif(not shutil.which("editcap"), reason="editcap (wireshark-common) is not installed")
def test_pcapng_gives_the_same_records(tmp_path: Path) -> None:
    pcap = capture(tmp_path)
    pcapng = tmp_path / "mixed.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(pcap), str(pcapng)], check=True)
    as_pcap = run_testbed("decode", str(pcap), "--json").stdout
    as_pcapng = run_testbed("decode", str(pcapng), "--json").stdout
    assert as_pcapng == as_pcap and as_pcap.count("\n") == 5
