"""The standalone SF forwarder (`python -m nodes.pe.forwarder`) on a real veth.

Two namespaces joined by one veth: the forwarder runs in one (`ip netns exec`), the test
plays the SFF in the other through raw sockets opened inside it (a short-lived thread enters
the namespace to create them; the test process itself stays where it is).  Frames are built
with scapy and what comes back is checked with scapy and, independently, with tshark.
Namespaces are named `tfw<pid>...`, not with the testbed's prefix, so that nobody's
`testbed clean` removes them under a running test; they go at the end of each test, also
when it fails, and the forwarder with them.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from testbed import netns
from tests import netlab

pytestmark = [pytest.mark.netns, netlab.needs_root,
              pytest.mark.skipif(not shutil.which("ip"), reason="needs ip (iproute2)")]  # fmt: skip

ETH_P_ALL, ETH_P_MPLS = 0x0003, 0x8847
PACKET_OUTGOING = 4
CLONE_NEWNET = 0x40000000
SPI = 5
NAME = "sfX"
_labs = itertools.count(1)


def label(spi: int, si: int) -> int:
    return spi << 8 | si


def socket_in(ns: str, interface: str, proto: int) -> socket.socket:
    """A raw packet socket on `interface` of namespace `ns`, made by a thread that enters the
    namespace and ends: a socket keeps the namespace it was created in."""
    made: list[socket.socket | BaseException] = []

    def work() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {ns}")
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            sock.bind((interface, proto))
            made.append(sock)
        except BaseException as exc:  # handed to the caller
            made.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


@dataclass
class Lab:
    sf_ns: str
    client_ns: str
    sf_if: str
    client_if: str
    sf_mac: str
    client_mac: str
    forwarder: subprocess.Popen[str] | None = None
    tx: socket.socket | None = None
    rx: socket.socket | None = None

    def frame(self, si: int = 255, payload: bytes = b"VTB-SFC seq=1", *, spi: int = SPI, ttl: int = 64) -> bytes:
        return bytes(Ether(src=self.client_mac, dst=self.sf_mac) / MPLS(label=label(spi, si), s=1, ttl=ttl)
                     / IP(src="10.5.0.1", dst="10.5.0.2") / UDP(sport=4000, dport=5000) / Raw(payload))  # fmt: skip

    def send(self, *frames: bytes) -> None:
        assert self.tx is not None
        for f in frames:
            self.tx.send(f)

    def returned(self, wanted: Callable[[bytes], bool], *, count: int | None = None, timeout: float = 2.0) -> list[bytes]:
        """Frames arriving on the client's end (not the ones it sent) that `wanted` accepts,
        until `count` of them came or `timeout` s passed."""
        assert self.rx is not None
        got: list[bytes] = []
        deadline = time.monotonic() + timeout
        while (count is None or len(got) < count) and (left := deadline - time.monotonic()) > 0:
            self.rx.settimeout(left)
            try:
                data, address = self.rx.recvfrom(65535)
            except TimeoutError:
                break
            if address[2] != PACKET_OUTGOING and wanted(data):
                got.append(data)
        return got

    def counters(self, done: Callable[[dict], bool], timeout: float = 10.0) -> dict:
        """The first sf-counters event for which `done` holds (they come at most once a second)."""
        assert self.forwarder is not None
        deadline = time.monotonic() + timeout
        last: dict = {}
        while time.monotonic() < deadline:
            try:
                event, _ = netlab.wait_for_event(self.forwarder, "sf-counters", deadline - time.monotonic())
            except AssertionError:
                break
            last = event
            if done(event):
                return event
        raise AssertionError(f"no sf-counters event as expected within {timeout} s; last: {last}")


def mac_of(ns: str, interface: str) -> str:
    return json.loads(netns.run_ip("-n", ns, "-j", "link", "show", interface))[0]["address"]


def start_forwarder(lab: Lab, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(netlab.ROOT), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "nodes.pe.forwarder", "--interface", lab.sf_if, "--name", NAME, *extra]
    proc = subprocess.Popen(netns.in_netns(lab.sf_ns, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=netlab.ROOT)  # fmt: skip
    started, _ = netlab.wait_for_event(proc, "sf-forwarding", 15)
    assert started["max_ip"] == {lab.sf_if: 1496}  # the veth's MTU, 1500, less the label
    return proc


@pytest.fixture
def lab() -> Iterator[Lab]:
    tag = f"tfw{os.getpid() % 100000}{next(_labs)}"
    sf_ns, client_ns = f"{tag}s", f"{tag}c"
    with netns.namespaces(sf_ns, client_ns):
        sf_if, client_if = f"{tag}s0", f"{tag}c0"
        netns.add_veth(sf_ns, sf_if, client_ns, client_if)
        for ns, interface in ((sf_ns, sf_if), (client_ns, client_if)):  # no IPv6 chatter on the link
            subprocess.run(netns.in_netns(ns, ["sysctl", "-q", "-w", f"net.ipv6.conf.{interface}.disable_ipv6=1"]),
                           capture_output=True)  # fmt: skip
        lab = Lab(sf_ns, client_ns, sf_if, client_if, mac_of(sf_ns, sf_if), mac_of(client_ns, client_if))
        try:
            lab.rx = socket_in(client_ns, client_if, ETH_P_ALL)
            lab.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            lab.tx = socket_in(client_ns, client_if, ETH_P_MPLS)
            lab.forwarder = start_forwarder(lab)
            yield lab
        finally:
            for sock in (lab.rx, lab.tx):
                if sock is not None:
                    sock.close()
            if lab.forwarder is not None:
                netlab.stop(lab.forwarder)


def is_mpls_with(marker: bytes) -> Callable[[bytes], bool]:
    return lambda data: data[12:14] == b"\x88\x47" and marker in data


def checked(data: bytes) -> Ether:
    """The frame parsed, after scapy confirmed its IP and UDP lengths and checksums."""
    pkt = Ether(data)
    fresh = pkt.copy()
    for field in ("len", "chksum"):
        delattr(fresh[IP], field)
        delattr(fresh[UDP], field)
    again = Ether(bytes(fresh))
    assert (again[IP].len, again[IP].chksum) == (pkt[IP].len, pkt[IP].chksum)
    assert (again[UDP].len, again[UDP].chksum) == (pkt[UDP].len, pkt[UDP].chksum)
    return pkt


# ------------------------------------------------------------------ tests


def test_a_probe_comes_back_with_si_minus_one_and_stamped(lab: Lab):
    sent = lab.frame(payload=b"VTB-SFC seq=1", ttl=33)
    lab.send(sent)
    [back] = lab.returned(is_mpls_with(b"VTB-SFC seq=1"), count=1)
    pkt = checked(back)
    original = Ether(sent)
    assert (pkt[MPLS].label, pkt[MPLS].s, pkt[MPLS].ttl) == (label(SPI, 254), 1, 33)
    assert (pkt.src, pkt.dst) == (lab.client_mac, lab.sf_mac)
    assert pkt[Raw].load == b"VTB-SFC seq=1 >" + NAME.encode() and pkt[Raw].load.endswith(b" >sfX")
    assert pkt[IP].len == original[IP].len + 5 and pkt[UDP].len == original[UDP].len + 5
    assert len(back) == len(sent) + 5


def probe_of_ip_length(lab: Lab, ip_length: int, seq: int) -> bytes:
    text = f"VTB-SFC seq={seq} ".encode()
    return lab.frame(payload=text.ljust(ip_length - 28, b"."))


def test_a_stamp_never_makes_a_frame_the_link_cannot_carry(lab: Lab):
    """MTU 1500 and 4 bytes of label: a stamped datagram may reach 1496 bytes, not 1500."""
    fits, too_big = probe_of_ip_length(lab, 1491, 41), probe_of_ip_length(lab, 1492, 42)
    lab.send(fits, too_big)
    back = {Ether(d)[Raw].load.split()[1]: d for d in lab.returned(is_mpls_with(b"VTB-SFC seq=4"), count=2)}
    assert len(back[b"seq=41"]) == len(fits) + 5 and checked(back[b"seq=41"])[IP].len == 1496
    assert back[b"seq=42"][18:] == too_big[18:]  # as it came, but for the label
    event = lab.counters(lambda e: e["total"]["frames"] == 2)
    assert event["total"]["not_stamped"] == {"too big": 1} and event["total"]["stamped"] == 1


def test_drops_and_the_counters_that_say_so(lab: Lab):
    other_host = bytes(Ether(src=lab.client_mac, dst="02:aa:bb:cc:dd:ee") / MPLS(label=label(SPI, 9), s=1)
                       / IP(src="10.5.0.1", dst="10.5.0.2") / UDP() / Raw(b"VTB-SFC seq=4"))  # fmt: skip
    lab.send(lab.frame(payload=b"VTB-SFC seq=2"), lab.frame(payload=b"plain"), other_host)
    lab.send(lab.frame(si=0, payload=b"VTB-SFC seq=3 exhausted"))
    lab.send(bytes(Ether(src=lab.client_mac, dst=lab.sf_mac) / MPLS(label=label(7, 9), s=0) / MPLS(label=16, s=1)
                   / IP() / UDP() / Raw(b"VTB-SFC seq=5 deep")))  # fmt: skip
    plain_ip = bytes(Ether(src=lab.client_mac, dst=lab.sf_mac) / IP(src="10.5.0.1", dst="10.5.0.2") / UDP()
                     / Raw(b"VTB-SFC seq=6 not mpls"))  # fmt: skip
    lab.tx.send(plain_ip)  # type: ignore[union-attr]

    back = lab.returned(lambda d: b"VTB-SFC" in d or b"plain" in d, timeout=1.5)
    loads = sorted(Ether(d)[Raw].load for d in back)
    assert loads == [b"VTB-SFC seq=2 >sfX", b"VTB-SFC seq=4 >sfX", b"plain"]  # OTHERHOST is served too
    assert all(Ether(d)[MPLS].label in (label(SPI, 254), label(SPI, 8)) for d in back)

    event = lab.counters(lambda e: e["total"]["frames"] >= 5)
    total, spi5, spi7 = event["total"], event["spi"][str(SPI)], event["spi"]["7"]
    assert (total["frames"], total["passed"], total["stamped"]) == (5, 3, 2)  # the IPv4 frame never reached it
    assert total["dropped"] == {"service index exhausted": 1, "label stack deeper than one": 1}
    assert (spi5["frames"], spi5["passed"], spi5["stamped"], spi5["dropped"]) == (4, 3, 2, {"service index exhausted": 1})
    assert spi7["dropped"] == {"label stack deeper than one": 1} and spi7["passed"] == 0
    assert total["bytes_out"] == sum(len(d) for d in back) and total["bytes_in"] > total["bytes_out"] - 10


def garbage(rng: random.Random, lab: Lab, valid: bytes) -> bytes:
    """Random bytes after an Ethernet header for MPLS (so they reach the forwarder's socket),
    truncated valid frames, and valid frames with random bytes changed."""
    head = bytes(Ether(src=lab.client_mac, dst=lab.sf_mac, type=ETH_P_MPLS))
    kind = rng.randrange(3)
    if kind == 0:
        return head + rng.randbytes(rng.randrange(0, 1400))
    if kind == 1:
        return valid[: rng.randrange(14, len(valid))]
    mutated = bytearray(valid)
    for _ in range(rng.randrange(1, 8)):
        mutated[rng.randrange(14, len(mutated))] = rng.randrange(256)
    return bytes(mutated)


def test_it_survives_garbage_and_still_forwards(lab: Lab):
    rng = random.Random(8)
    valid = lab.frame(payload=b"VTB-SFC seq=10 t=1")
    sent = 0
    for _ in range(200):
        try:
            lab.send(garbage(rng, lab, valid))
            sent += 1
        except OSError:  # the kernel refuses some (too short for it): not the forwarder's business
            pass
    assert sent >= 150
    lab.returned(lambda d: False, timeout=0.5)  # let it chew
    assert lab.forwarder is not None and lab.forwarder.poll() is None
    lab.send(lab.frame(payload=b"VTB-SFC seq=11 after the garbage"))
    [back] = lab.returned(is_mpls_with(b"seq=11 after the garbage"), count=1, timeout=3)
    assert checked(back)[Raw].load.endswith(b" >sfX")
    event = lab.counters(lambda e: e["total"]["frames"] == sent + 1)
    assert event["total"]["passed"] >= 1 and "internal error" not in event["total"]["dropped"]


def test_a_wrong_interface_is_a_clear_error(lab: Lab):
    argv = [sys.executable, "-m", "nodes.pe.forwarder", "--interface", "nosuchif0", "--name", NAME]
    result = subprocess.run(netns.in_netns(lab.sf_ns, argv), capture_output=True, text=True, cwd=netlab.ROOT,
                            env={**os.environ, "PYTHONPATH": str(netlab.ROOT)}, timeout=30)  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot open a raw socket on nosuchif0: No such device" in result.stderr


@pytest.mark.tshark
@pytest.mark.skipif(not (shutil.which("tshark") and shutil.which("tcpdump")), reason="needs tshark and tcpdump")
def test_tshark_decodes_the_returned_frame(lab: Lab, tmp_path: Path):
    with netlab.capture(lab.client_ns, tmp_path / "sf.pcap", f"ether proto {ETH_P_MPLS:#x}") as pcap:
        lab.send(lab.frame(payload=b"VTB-SFC seq=21 t=7"))
        assert lab.returned(is_mpls_with(b"seq=21"), count=1)
    argv = ["tshark", "-r", str(pcap), "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
            "-Y", "mpls", "-T", "fields", "-E", "separator=;"]  # fmt: skip
    for field in ("mpls.label", "mpls.bottom", "mpls.ttl", "ip.len", "udp.length", "udp.payload",
                  "ip.checksum.status", "udp.checksum.status", "_ws.malformed"):  # fmt: skip
        argv += ["-e", field]
    rows = [line.split(";") for line in subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()]
    by_label = {int(r[0]): r for r in rows}
    assert set(by_label) == {label(SPI, 255), label(SPI, 254)}, rows
    sent, back = by_label[label(SPI, 255)], by_label[label(SPI, 254)]
    assert bytes.fromhex(back[5].replace(":", "")) == b"VTB-SFC seq=21 t=7 >sfX"
    assert (int(back[3]), int(back[4])) == (int(sent[3]) + 5, int(sent[4]) + 5)
    assert back[1:3] == sent[1:3] == ["1", "64"]
    assert back[6:9] == sent[6:9] == ["1", "1", ""]  # 1: "Good" for both checksums; nothing malformed


# ------------------------------------------------------------------ inside the pool element


def _node(lab: Lab, ns: str, module: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(netlab.ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(netns.in_netns(ns, [sys.executable, "-m", module, *args]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=netlab.ROOT)  # fmt: skip


def test_the_pe_service_forwarder_registers_serves_echo_and_forwards(lab: Lab):
    """A registrar and a PE (`--service forwarder`) in the SF namespace, a PU in the other:
    the PE registers, answers an echo session, forwards frames stamped with its own name,
    exposes the counters as Prometheus gauges and logs them once more at shutdown."""
    assert lab.forwarder is not None
    netlab.stop(lab.forwarder)  # the standalone one: the PE opens its own sockets
    lab.forwarder = None
    netns.run_ip("-n", lab.sf_ns, "addr", "add", "10.5.0.2/24", "dev", lab.sf_if)
    netns.run_ip("-n", lab.client_ns, "addr", "add", "10.5.0.1/24", "dev", lab.client_if)
    common = ["--backend", "tcp", "--local"]
    registrar = _node(lab, lab.sf_ns, "nodes.registrar", *common, "10.5.0.2", "--name", "reg", "--no-announce",
                      "--no-presence-multicast")  # fmt: skip
    metrics = 9300 + os.getpid() % 500
    pe = _node(lab, lab.sf_ns, "nodes.pe", *common, "10.5.0.2", "--name", "sf1-as1-1", "--service", "forwarder",
               "--handle", "SF1", "--registrar", "10.5.0.2:3863", "--interface", lab.sf_if, "--pe-id", "0x51",
               "--metrics-port", str(metrics), "--pool-secret", "s")  # fmt: skip
    try:
        netlab.wait_for_event(registrar, "listening")
        netlab.wait_for_event(pe, "sf-forwarding")
        netlab.wait_for_event(pe, "registered")
        lab.send(lab.frame(payload=b"VTB-SFC seq=31"))
        [back] = lab.returned(is_mpls_with(b"seq=31"), count=1, timeout=3)
        assert checked(back)[Raw].load == b"VTB-SFC seq=31 >sf1-as1-1"

        pu = _node(lab, lab.client_ns, "nodes.pu", "--backend", "tcp", "--local", "10.5.0.1", "--registrar",
                   "10.5.0.2:3863", "--pool", "SF1", "--service", "echo", "--requests", "3", "--rate", "20", "run")  # fmt: skip
        done, seen = netlab.wait_for_event(pu, "workload-done", 30)
        netlab.stop(pu)
        assert done["requests"] == 3 and sum(e["event"] == "reply" for e in seen) == 3

        text = subprocess.run(netns.in_netns(lab.sf_ns, ["python3", "-c", "import urllib.request as u; print("
                              f"u.urlopen('http://127.0.0.1:{metrics}/metrics').read().decode())"]),
                              capture_output=True, text=True, timeout=30).stdout  # fmt: skip
        assert 'vnfpool_sf_stamped{node="sf1-as1-1"} 1.0' in text and 'vnfpool_sf_spi5_passed{node="sf1-as1-1"} 1.0' in text
        assert 'vnfpool_requests{node="sf1-as1-1"} 3.0' in text  # the echo side counted too

        lab.send(lab.frame(si=0))
        time.sleep(0.3)
        pe.terminate()
        events = [json.loads(line) for line in netlab.stop(pe).splitlines() if line.startswith("{")]
        counters = [e for e in events if e["event"] == "sf-counters"]
        assert counters and counters[-1]["total"]["dropped"] == {"service index exhausted": 1}
        assert counters[-1]["total"]["passed"] == 1 and any(e["event"] == "deregistered" for e in events)
    finally:
        for proc in (pe, registrar):
            netlab.stop(proc)


def test_the_pe_reports_an_interface_it_cannot_use_and_exits(lab: Lab):
    pe = _node(lab, lab.sf_ns, "nodes.pe", "--backend", "tcp", "--local", "127.0.0.1", "--name", "sf9",
               "--service", "forwarder", "--registrar", "127.0.0.1:3863", "--interface", "nosuchif0")  # fmt: skip
    out, err = pe.communicate(timeout=30)
    assert pe.returncode == 1 and "Traceback" not in err
    assert err.strip() == "python -m nodes.pe: forwarder: cannot open a raw socket on nosuchif0: No such device"
    assert '"event": "sf-unavailable"' in out
