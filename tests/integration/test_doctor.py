"""`testbed doctor` against independent checks of the same kernel features.

Every assertion compares doctor's answer with a probe made here, in the test process, by other
means (our own socket, our own qdisc in our own namespace), so a probe that always says "yes"
or always says "no" fails on some machine rather than passing everywhere.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import pytest

from testbed import capabilities, netns

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for the namespace probes")


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def probe_namespaces() -> set[str]:
    """Doctor's namespaces (`vtb<pid>probe`): other testbed runs may come and go meanwhile."""
    return {n for n in namespaces() if n.startswith(netns.PREFIX) and n.endswith("probe")}


def run_doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "testbed.cli", "doctor", *args], capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def socket_works(proto: int) -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto).close()
    except OSError:
        return False
    return True


def qdisc_works(*kind: str) -> bool:
    ns = netns.unique_name("dr")
    with netns.namespaces(ns):
        argv = netns.in_netns(ns, ["tc", "qdisc", "add", "dev", "lo", "root", *kind])
        return subprocess.run(argv, capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def doctor() -> dict[str, Any]:
    before = probe_namespaces()
    result = run_doctor("--json")
    assert result.returncode == 0, result.stderr
    assert probe_namespaces() <= before  # the throwaway probe namespace is gone
    return json.loads(result.stdout)


def entry(doctor: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in doctor["capabilities"] if c["name"] == name)


def test_kernel_sctp_matches_a_socket_of_our_own(doctor):
    works = socket_works(socket.IPPROTO_SCTP)
    assert entry(doctor, "kernel-sctp")["available"] is works
    assert (entry(doctor, "kernel-sctp")["fallback"] == "userland SCTP (usrsctp, raw IP)") is not works
    assert doctor["sctp_backend"] == ("kernel-sctp" if works else "usrsctp" if entry(doctor, "usrsctp")["available"]
                                      else None)  # fmt: skip


def test_mptcp_matches_a_socket_of_our_own(doctor):
    assert entry(doctor, "mptcp")["available"] is socket_works(262)


def test_netem_matches_an_independent_qdisc(doctor):
    works = qdisc_works("netem", "delay", "5ms")
    netem = entry(doctor, "netem")
    assert netem["available"] is works
    assert ("NFQUEUE" in netem["fallback"]) is not works


def test_htb_matches_an_independent_qdisc(doctor):
    assert entry(doctor, "htb")["available"] is qdisc_works("htb")


def test_openvswitch_module_and_tools(doctor):
    assert entry(doctor, "openvswitch-module")["available"] is os.path.isdir("/sys/module/openvswitch")
    for tool in ("tcpdump", "tshark", "mnexec"):
        assert entry(doctor, tool)["available"] is bool(capabilities.shutil.which(tool))


def test_every_capability_is_reported_and_missing_ones_are_explained(doctor):
    names = [c["name"] for c in doctor["capabilities"]]
    assert len(names) == len(set(names))
    assert {"kernel-sctp", "usrsctp", "mptcp", "netem", "htb", "tbf", "openvswitch-module", "ovs-userspace",
            "ovs-vswitchd", "ipv4-multicast", "ipv6-multicast", "nfqueue", "netfilterqueue-python",
            "iptables-statistic", "namespaces", "veth", "tcpdump", "tshark", "mnexec"} <= set(names)  # fmt: skip
    assert all(c["reason"] for c in doctor["capabilities"])
    assert entry(doctor, "namespaces")["available"]  # we are root and the tests above made namespaces


def test_table_names_the_same_backend_and_every_capability(doctor):
    before = probe_namespaces()
    result = run_doctor()
    assert result.returncode == 0, result.stderr
    assert probe_namespaces() <= before
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("SCTP backend for `auto`: ")
    assert last.split(": ", 1)[1].startswith(doctor["sctp_backend"] or "none")
    for cap in doctor["capabilities"]:
        assert cap["name"] in result.stdout


def test_probe_namespace_is_removed_when_a_probe_fails(monkeypatch):
    def explode(ns: str) -> list[capabilities.Capability]:
        assert ns in namespaces()
        raise RuntimeError("probe crashed")

    monkeypatch.setattr(capabilities, "_namespace_probes", explode)
    with pytest.raises(RuntimeError, match="probe crashed"):
        capabilities.probe_all()
    assert netns.unique_name("probe") not in namespaces()
