"""`testbed doctor --json` against independent checks of the same kernel features."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from testbed import capabilities, netns

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for the namespace probes")


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def socket_works(proto: int) -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def doctor() -> dict:
    before = namespaces()
    out = subprocess.run([sys.executable, "-m", "testbed.cli", "doctor", "--json"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert namespaces() == before  # the throwaway probe namespace is gone
    return json.loads(out)


def entry(doctor: dict, name: str) -> dict:
    return next(c for c in doctor["capabilities"] if c["name"] == name)


def test_sctp_and_mptcp_match_a_socket_of_our_own(doctor):
    assert entry(doctor, "kernel-sctp")["available"] is socket_works(socket.IPPROTO_SCTP)
    assert entry(doctor, "mptcp")["available"] is socket_works(262)
    expected = "kernel-sctp" if socket_works(socket.IPPROTO_SCTP) else "usrsctp"
    assert doctor["sctp_backend"] == expected
    if not entry(doctor, "kernel-sctp")["available"]:
        assert entry(doctor, "kernel-sctp")["fallback"] == "userland SCTP (usrsctp, raw IP)"


def test_netem_matches_an_independent_qdisc(doctor):
    ns = netns.unique_name("dr")
    with netns.namespaces(ns):
        works = subprocess.run(netns.in_netns(ns, ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "5ms"]),
                               capture_output=True).returncode == 0  # fmt: skip
    netem = entry(doctor, "netem")
    assert netem["available"] is works
    assert bool(netem["fallback"]) is not works


def test_every_capability_has_a_reason_and_missing_ones_are_explained(doctor):
    names = {c["name"] for c in doctor["capabilities"]}
    assert {"kernel-sctp", "usrsctp", "netem", "openvswitch-module", "mptcp", "ipv4-multicast", "ipv6-multicast",
            "nfqueue", "htb", "tbf", "iptables-statistic"} <= names  # fmt: skip
    assert all(c["reason"] for c in doctor["capabilities"])
    assert entry(doctor, "openvswitch-module")["available"] is os.path.isdir("/sys/module/openvswitch")


def test_lookup_by_name_and_report_shape():
    found = [capabilities.Capability("netem", False, "no", "delay line"), capabilities.Capability("htb", True, "ok")]
    assert capabilities.by_name(found)["netem"].fallback == "delay line"
    document = capabilities.report(found)
    assert document["capabilities"][1] == {"name": "htb", "available": True, "reason": "ok", "fallback": ""}
