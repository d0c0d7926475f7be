"""The SF forwarder's frame logic (nodes/pe/forwarder.py): labels, stamps, checksums, drops, counters.

Frames are built with scapy, an independent implementation of Ethernet/MPLS/IPv4/UDP, and
what comes back is checked with it: a checksum is right when scapy, asked to compute it
afresh, writes the same value.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Padding, Raw

from nodes.pe import forwarder as fw
from nodes.pe.forwarder import Counters, Forwarder, ForwarderError, Verdict, process

ROOT = Path(__file__).resolve().parents[2]
MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


def label(spi: int, si: int) -> int:
    return spi << 8 | si


def frame(spi: int = 5, si: int = 255, payload: bytes = b"VTB-SFC seq=1", *, ttl: int = 64, cos: int = 0,
          udp: dict | None = None, ip: dict | None = None, inner=None) -> bytes:  # fmt: skip
    if inner is None:
        inner = IP(src="10.0.0.1", dst="10.0.0.2", **(ip or {})) / UDP(sport=4000, dport=5000, **(udp or {}))
        inner = inner / Raw(payload)
    return bytes(Ether(**MACS) / MPLS(label=label(spi, si), s=1, ttl=ttl, cos=cos) / inner)


def checksums_valid(pkt: Ether) -> bool:
    """scapy recomputes both checksums; equal to what is in the frame?"""
    fresh = pkt.copy()
    del fresh[IP].chksum
    del fresh[IP].len
    if fresh.haslayer(UDP):
        if pkt[UDP].chksum == 0:
            fresh[UDP].chksum = 0
        else:
            del fresh[UDP].chksum
        del fresh[UDP].len
    rebuilt = Ether(bytes(fresh))
    ok = rebuilt[IP].chksum == pkt[IP].chksum and rebuilt[IP].len == pkt[IP].len
    return ok and (not pkt.haslayer(UDP) or (rebuilt[UDP].chksum, rebuilt[UDP].len) == (pkt[UDP].chksum, pkt[UDP].len))


# ------------------------------------------------------------------ labels


def test_the_service_index_goes_down_by_one_and_the_rest_of_the_entry_stays():
    v = process(frame(spi=4095, si=1, ttl=7, cos=5, payload=b"other"), "sf1")
    assert (v.drop, v.spi, v.si) == (None, 4095, 1)
    out = Ether(v.frame)
    assert (out[MPLS].label, out[MPLS].cos, out[MPLS].s, out[MPLS].ttl) == (label(4095, 0), 5, 1, 7)
    assert (out.src, out.dst) == (MACS["src"], MACS["dst"])  # the SFF rewrites the MACs, not the SF
    assert v.frame[18:] == frame(payload=b"other")[18:]  # a non-probe payload is left alone


def test_label_entry_round_trip():
    entry = fw.label_entry(5, 255, tc=3, ttl=9)
    assert fw.parse_entry(entry) == (5, 255, 3, True, 9)
    assert entry == bytes(MPLS(label=label(5, 255), cos=3, s=1, ttl=9))[:4]


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", fw.TRUNCATED),
        (bytes(13), fw.TRUNCATED),
        (bytes(Ether(**MACS) / IP() / UDP()), fw.NOT_MPLS),
        (bytes(Ether(**MACS, type=0x8848) / MPLS(s=1, label=label(5, 9)) / IP()), fw.NOT_MPLS),  # multicast
        (frame()[:17], fw.TRUNCATED),
        (frame()[:18], fw.MALFORMED),
        (frame(si=0), fw.SI_EXHAUSTED),
        (bytes(Ether(**MACS) / MPLS(label=label(5, 9), s=0) / MPLS(label=16, s=1) / IP() / UDP()), fw.STACK_TOO_DEEP),
    ],
)
def test_drops(data: bytes, reason: str):
    v = process(data, "sf1")
    assert v.frame is None and v.drop == reason


def test_a_drop_with_a_label_still_counts_for_its_spi():
    v = process(frame(spi=7, si=0), "sf1")
    assert (v.spi, v.si, v.drop) == (7, 0, fw.SI_EXHAUSTED)


# ------------------------------------------------------------------ stamps


def test_a_probe_is_stamped_and_its_lengths_and_checksums_fixed():
    original = Ether(frame(payload=b"VTB-SFC seq=1 t=5"))
    v = process(bytes(original), "sf2-as2-1")
    assert v.stamped and v.not_stamped is None
    out = Ether(v.frame)
    assert out[Raw].load == b"VTB-SFC seq=1 t=5 >sf2-as2-1"
    assert out[IP].len == original[IP].len + len(b" >sf2-as2-1")
    assert out[UDP].len == original[UDP].len + len(b" >sf2-as2-1")
    assert out[UDP].chksum != 0 and checksums_valid(out)
    assert out[MPLS].label == label(5, 254)


def test_stamps_accumulate_along_a_chain():
    data = frame()
    for name in ("sf1-as1-1", "sf2-as2-1", "sf3-as3-2"):
        data = process(data, name).frame
    out = Ether(data)
    assert out[Raw].load == b"VTB-SFC seq=1 >sf1-as1-1 >sf2-as2-1 >sf3-as3-2"
    assert out[MPLS].label == label(5, 252) and checksums_valid(out)


def test_a_zero_udp_checksum_stays_zero():
    out = Ether(process(frame(udp={"chksum": 0}), "sf1").frame)
    assert out[UDP].chksum == 0 and out[Raw].load.endswith(b" >sf1") and checksums_valid(out)


def test_ethernet_padding_is_kept_after_the_datagram():
    padded = frame(payload=b"VTB-SFC ") + bytes(6)  # 54 bytes padded to the 60 of Ethernet
    assert len(padded) == 60
    v = process(padded, "s")
    out = Ether(v.frame)
    assert out[Raw].load == b"VTB-SFC  >s" and out[Padding].load == bytes(6) and checksums_valid(out)


def test_ip_options_are_kept():
    original = frame(ip={"options": [b"\x01\x01\x01\x00"]})  # NOPs, IHL 6
    out = Ether(process(original, "sf1").frame)
    assert out[IP].ihl == 6 and out[Raw].load.endswith(b" >sf1") and checksums_valid(out)


@pytest.mark.parametrize("grow, stamped", [(0, True), (1, False)])
def test_a_probe_is_stamped_only_while_it_fits_in_1500_bytes_of_ip(grow: int, stamped: bool):
    stamp = len(b" >sf1")
    payload = b"VTB-SFC " + b"." * (fw.MAX_IP - 28 - 8 - stamp + grow)
    v = process(frame(payload=payload), "sf1")
    assert v.frame is not None and v.stamped is stamped
    assert v.not_stamped == (None if stamped else fw.TOO_BIG)
    assert len(Ether(v.frame)[IP]) == (fw.MAX_IP if stamped else fw.MAX_IP - stamp + grow)  # one byte over: as it came


def test_the_driver_can_lower_the_limit_to_what_its_link_carries():
    payload = b"VTB-SFC " + b"." * (1490 - 28 - 8)  # IP 1490: 1495 stamped
    assert process(frame(payload=payload), "sf1", max_ip=1496).stamped
    v = process(frame(payload=payload), "sf1", max_ip=1494)
    assert v.frame is not None and v.not_stamped == fw.TOO_BIG


@pytest.mark.parametrize(
    "inner",
    [
        IP(src="10.0.0.1", dst="10.0.0.2", flags="MF") / UDP() / Raw(b"VTB-SFC seq=1"),  # first fragment
        IP(src="10.0.0.1", dst="10.0.0.2", frag=3) / Raw(b"VTB-SFC seq=1 more"),  # a later one
        IP(src="10.0.0.1", dst="10.0.0.2") / TCP() / Raw(b"VTB-SFC seq=1"),
        IP(src="10.0.0.1", dst="10.0.0.2", len=200) / UDP() / Raw(b"VTB-SFC seq=1"),  # longer than the frame
        IP(src="10.0.0.1", dst="10.0.0.2", ihl=4) / UDP() / Raw(b"VTB-SFC seq=1"),
        IP(src="10.0.0.1", dst="10.0.0.2", version=6) / UDP() / Raw(b"VTB-SFC seq=1"),
        IP(src="10.0.0.1", dst="10.0.0.2") / UDP(len=9) / Raw(b"VTB-SFC seq=1"),  # UDP shorter than IP says
        IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / Raw(b"VTB-SFC"),  # no space after the magic
        Raw(b"\x00" * 30),  # not IP at all
    ],
)
def test_what_is_not_a_whole_probe_goes_on_unchanged(inner):
    original = frame(inner=inner)
    v = process(original, "sf1")
    assert v.frame is not None and not v.stamped
    assert v.frame[18:] == original[18:]


def test_a_corrupted_probe_goes_on_unstamped_with_its_error():
    bad_ip = bytearray(frame())
    bad_ip[18 + 10] ^= 0xFF  # IP header checksum
    v = process(bytes(bad_ip), "sf1")
    assert (v.stamped, v.not_stamped, v.frame[18:]) == (False, fw.BAD_IP_CHECKSUM, bytes(bad_ip[18:]))
    bad_udp = bytearray(frame())
    bad_udp[-1] ^= 0x01  # a payload bit: the UDP checksum no longer matches
    v = process(bytes(bad_udp), "sf1")
    assert (v.stamped, v.not_stamped, v.frame[18:]) == (False, fw.BAD_UDP_CHECKSUM, bytes(bad_udp[18:]))


def _partial(pkt_bytes: bytes, l4_offset: int) -> bytes:
    """The frame as a sender with checksum offload leaves it: the L4 checksum field holds
    only the pseudo header's sum, for the NIC to finish."""
    data = bytearray(pkt_bytes)
    data[18 + 20 + l4_offset : 18 + 20 + l4_offset + 2] = b"\x12\x34"
    return bytes(data)


def test_a_checksum_left_for_the_nic_is_filled_in():
    probe = _partial(frame(), 6)
    assert process(probe, "sf1").not_stamped == fw.BAD_UDP_CHECKSUM  # taken at its word: corrupt
    out = Ether(process(probe, "sf1", checksum_ready=False).frame)
    assert out[Raw].load.endswith(b" >sf1") and checksums_valid(out)
    for inner, offset in ((IP(src="10.0.0.1", dst="10.0.0.2") / UDP(dport=53) / Raw(b"dns"), 6),
                          (IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=80) / Raw(b"GET /"), 16)):  # fmt: skip
        original = frame(inner=inner)
        out = Ether(process(_partial(original, offset), "sf1", checksum_ready=False).frame)
        assert bytes(out[IP]) == original[18:]  # exactly the packet with its checksum computed


def test_checksum_ready_reads_the_auxdata_status():
    aux = struct.pack("IIIHHHH", fw.TP_STATUS_CSUMNOTREADY | 1, 60, 60, 0, 0, 0, 0)
    assert fw.checksum_ready([(fw.SOL_PACKET, fw.PACKET_AUXDATA, aux)]) is False
    assert fw.checksum_ready([(fw.SOL_PACKET, fw.PACKET_AUXDATA, aux[:0] + struct.pack("I", 1))]) is True
    assert fw.checksum_ready([]) is True


@given(st.binary(max_size=300))
def test_ones_sum_is_rfc_1071s(data: bytes):
    padded = data + b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    assert fw.ones_sum(data) == total


# ------------------------------------------------------------------ never raises


def _check(v: Verdict) -> None:
    assert isinstance(v, Verdict)
    assert (v.frame is None) == (v.drop is not None)
    if v.frame is not None:
        assert len(v.frame) >= 19


@given(st.binary(max_size=200), st.text(max_size=20), st.booleans())
def test_any_bytes_give_a_verdict(data: bytes, name: str, ready: bool):
    _check(process(data, name, checksum_ready=ready))


@given(st.binary(max_size=120), st.integers(0, 0xFFFFFFFF), st.booleans())
def test_any_payload_after_a_label_gives_a_verdict(payload: bytes, entry: int, ready: bool):
    _check(process(frame()[:14] + struct.pack("!I", entry) + payload, "sf1", checksum_ready=ready))


@settings(max_examples=300)
@given(st.data())
def test_a_probe_with_bytes_changed_gives_a_verdict(data):
    original = bytearray(frame(payload=b"VTB-SFC seq=9 t=1"))
    for _ in range(data.draw(st.integers(1, 6))):
        original[data.draw(st.integers(0, len(original) - 1))] = data.draw(st.integers(0, 255))
    _check(process(bytes(original), "sf1", checksum_ready=data.draw(st.booleans())))


@pytest.mark.parametrize("base", [frame(), frame(ip={"options": [b"\x01\x01\x01\x00"]}), frame(udp={"chksum": 0})])
def test_every_truncation_of_a_valid_frame_gives_a_verdict(base: bytes):
    for n in range(len(base) + 1):
        for ready in (True, False):
            v = process(base[:n], "sf1", checksum_ready=ready)
            _check(v)
            assert not v.stamped or n == len(base)


# ------------------------------------------------------------------ counters


def test_counters_per_spi_and_in_total():
    c = Counters()
    for data in (frame(spi=5), frame(spi=5, si=0), frame(spi=6, payload=b"x"), b"junk"):
        c.add(process(data, "sf1"), len(data))
    c.add(process(frame(spi=6), "sf1"), 60, send_error="send failed: No buffer space available")
    d = c.to_dict()
    assert d["total"]["frames"] == 5 and d["total"]["passed"] == 2 and d["total"]["stamped"] == 1
    assert d["total"]["dropped"] == {fw.SI_EXHAUSTED: 1, fw.TRUNCATED: 1, "send failed: No buffer space available": 1}
    assert d["spi"]["5"]["passed"] == 1 and d["spi"]["5"]["dropped"] == {fw.SI_EXHAUSTED: 1}
    assert d["spi"]["6"]["stamped"] == 0 and d["spi"]["6"]["bytes_out"] == len(frame(spi=6, payload=b"x"))
    g = c.gauges()
    assert g["sf_passed"] == 2 and g["sf_dropped"] == 3 and g["sf_dropped_service_index_exhausted"] == 1
    assert g["sf_spi5_stamped"] == 1 and g["sf_spi6_dropped_send_failed_no_buffer_space_available"] == 1


def test_sf_counters_are_logged_at_most_once_an_interval_while_they_change():
    events: list[tuple[str, dict]] = []

    class Log:
        def __call__(self, event: str, **fields) -> None:
            events.append((event, fields))

    async def scenario() -> None:
        f = Forwarder("sf1", ["x"], Log(), interval=0.2)  # type: ignore[arg-type]
        for _ in range(3):  # a burst: one event now, one for the rest an interval later
            f.counters.add(process(frame(), "sf1"), 59)
            f._changed()
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert len(events) == 1 and events[0][1]["total"]["passed"] == 1
        await asyncio.sleep(0.25)
        assert len(events) == 2 and events[1][1]["total"]["passed"] == 3
        await asyncio.sleep(0.3)
        assert len(events) == 2  # nothing changed: nothing logged
        f.counters.add(process(frame(si=0), "sf1"), 59)
        f.stop()  # what was not logged yet goes out at the stop
        assert events[-1][1]["final"] is True and events[-1][1]["spi"]["5"]["dropped"] == {fw.SI_EXHAUSTED: 1}

    asyncio.run(scenario())


# ------------------------------------------------------------------ sockets


def test_no_interface_is_an_error():
    with pytest.raises(ForwarderError, match="at least one interface"):
        asyncio.run(_start(Forwarder("sf1", [], lambda *a, **k: None)))  # type: ignore[arg-type]


async def _start(f: Forwarder) -> None:
    f.start()


def test_a_socket_that_cannot_be_opened_names_the_interface_and_the_cause():
    missing = f"tfw{os.getpid() % 100000}none"[:15]
    with pytest.raises(ForwarderError) as info:
        fw.open_raw(missing)
    cause = "No such device" if os.geteuid() == 0 else "Operation not permitted"
    assert str(info.value) == f"cannot open a raw socket on {missing}: {cause}"


def test_the_standalone_forwarder_reports_it_without_a_traceback():
    missing = f"tfw{os.getpid() % 100000}none"[:15]
    result = subprocess.run([sys.executable, "-m", "nodes.pe.forwarder", "--interface", missing, "--name", "sf1"],
                            capture_output=True, text=True, cwd=ROOT, timeout=30)  # fmt: skip
    assert result.returncode == 1
    assert f"cannot open a raw socket on {missing}" in result.stderr and "Traceback" not in result.stderr


def test_socket_constants_match_the_kernel():
    assert socket.AF_PACKET == 17 and fw.ETH_P_MPLS == 0x8847
    assert getattr(socket, "SOL_PACKET", fw.SOL_PACKET) == fw.SOL_PACKET
    assert getattr(socket, "PACKET_OTHERHOST", fw.PACKET_OTHERHOST) == fw.PACKET_OTHERHOST
