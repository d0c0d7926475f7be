"""Pure logic of the capability probe: result shape, fallbacks, lookup, JSON, the non-root path.

The real probes are checked against the kernel in tests/integration/test_doctor.py; here the
kernel is kept out so that these run anywhere, as any user, in milliseconds.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from nodes import transport
from testbed import capabilities
from testbed.capabilities import Capability


def test_results_are_frozen():
    cap = Capability("netem", False, "unknown qdisc", "delay line")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cap.available = True  # type: ignore[misc]


def test_fallback_only_for_what_is_missing():
    assert capabilities.capability("kernel-sctp", True, "works").fallback == ""
    assert capabilities.capability("kernel-sctp", False, "no").fallback == "userland SCTP (usrsctp, raw IP)"
    netem = capabilities.capability("netem", False, "no")
    assert "NFQUEUE" in netem.fallback and "statistic" in netem.fallback and "HTB/TBF" in netem.fallback
    assert capabilities.capability("openvswitch-module", False, "no").fallback == (
        "OVS userspace datapath (datapath_type=netdev)"
    )
    assert capabilities.capability("no-such-thing", False, "no").fallback == ""


def test_lookup_by_name():
    found = [Capability("netem", False, "no", "delay line"), Capability("htb", True, "ok")]
    caps = capabilities.by_name(found)
    assert caps["netem"].fallback == "delay line"
    assert caps["htb"].available
    assert set(caps) == {"netem", "htb"}


def test_report_is_one_json_document_with_the_backend():
    found = [Capability("htb", True, "ok"), Capability("netem", False, "no", "delay line")]
    document = json.loads(json.dumps(capabilities.report(found, ("usrsctp", "userland SCTP: raw-IP mode"))))
    assert document == {
        "capabilities": [
            {"name": "htb", "available": True, "reason": "ok", "fallback": ""},
            {"name": "netem", "available": False, "reason": "no", "fallback": "delay line"},
        ],
        "sctp_backend": "usrsctp",
        "sctp_backend_reason": "userland SCTP: raw-IP mode",
    }


def test_no_sctp_backend_is_null_with_the_reason(monkeypatch):
    def refuse(requested: str = "auto") -> transport.Backend:
        raise transport.BackendUnavailable("no SCTP backend runs here: both refused")

    monkeypatch.setattr(transport, "select_backend", refuse)
    assert capabilities.sctp_backend() == (None, "no SCTP backend runs here: both refused")
    assert capabilities.report([])["sctp_backend"] is None


def test_without_root_namespace_probes_say_so_instead_of_crashing(monkeypatch):
    def no_namespaces(*names: str) -> None:
        raise AssertionError("a namespace was created without root")

    monkeypatch.setattr(capabilities.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(capabilities.netns, "namespaces", no_namespaces)
    caps = capabilities.by_name(capabilities.probe_all())
    for name in ("namespaces", "veth", *capabilities.NAMESPACE_PROBES):
        assert not caps[name].available
        assert "needs root" in caps[name].reason
    assert caps["netem"].fallback == capabilities.FALLBACKS["netem"]
    assert {"kernel-sctp", "usrsctp", "mptcp", "openvswitch-module", "ovs-userspace", "tshark"} <= set(caps)


def test_every_named_probe_has_a_fallback_text():
    for name in capabilities.NAMESPACE_PROBES:
        assert capabilities.FALLBACKS[name]
