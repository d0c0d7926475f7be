"""The demo on real namespaces: every message crosses a veth (multicast for announces), is
captured by tcpdump and decoded by the codec and by tshark; nothing is left behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scapy.utils import rdpcap

from captures.report import decode_capture
from captures.rserpool import ASAP, ENRP
from nodes.wire.examples import example_messages
from testbed import netns

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("tcpdump") or not shutil.which("ip"),
    reason="needs root, iproute2 and tcpdump (scripts/install.sh, run as root)",
)


def cli(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def test_demo_exchanges_and_captures_every_message(tmp_path: Path) -> None:
    pcap = tmp_path / "demo.pcap"
    proc = cli("demo", "--pcap", str(pcap))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    records = list(decode_capture(pcap))
    expected = example_messages()
    assert [r["type_name"] for r in records] == [m.NAME for m in expected]
    multicast = [r["dst"] for r in records if r["type_name"] in ("ASAP_SERVER_ANNOUNCE", "ENRP_PRESENCE")]
    assert multicast and all(d.startswith(("239.0.0.50:3863", "239.0.0.51:9901")) for d in multicast)
    dissected = [p[ASAP] if p.haslayer(ASAP) else p[ENRP] for p in rdpcap(str(pcap))]
    assert [type(layer).__name__ for layer in dissected] == [
        m.PROTOCOL.label + "".join(w.capitalize() for w in m.NAME.split("_")[1:]) for m in expected
    ]
    if shutil.which("tshark"):
        assert "tshark: malformed frames" in out
    assert not [ns for ns in netns.testbed_namespaces() if ns.startswith(f"{netns.PREFIX}{proc.pid % 100000}")]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_demo_interrupted_leaves_nothing_behind(signum: int) -> None:
    proc = cli("demo")
    mine = f"{netns.PREFIX}{proc.pid % 100000}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(n.startswith(mine) for n in netns.testbed_namespaces()):
        time.sleep(0.01)
    assert any(n.startswith(mine) for n in netns.testbed_namespaces()), "the demo never built its namespaces"
    proc.send_signal(signum)
    proc.communicate(timeout=60)
    assert not [n for n in netns.testbed_namespaces() if n.startswith(mine)]
    assert not [link for link in netns.testbed_links() if link.startswith(mine)]


def test_clean_removes_what_a_crashed_run_left() -> None:
    ns = netns.unique_name("crash")
    netns.add_namespace(ns)
    veth = netns.unique_name("v0")
    netns.run_ip("link", "add", veth, "type", "veth", "peer", "name", netns.unique_name("v1"), "netns", ns)
    sleeper = subprocess.Popen(netns.in_netns(ns, ["sleep", "300"]))
    try:
        result = subprocess.run([sys.executable, "-m", "testbed.cli", "clean"], capture_output=True, text=True)
        assert result.returncode == 0
        assert f"removed netns {ns}" in result.stdout
        assert ns not in netns.testbed_namespaces()
        assert veth not in netns.testbed_links()
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
    finally:
        sleeper.kill()
        netns.delete_namespace(ns)
