"""What this kernel and machine can do for an emulation, and what stands in for what is missing.

Each probe tries the real thing (open the socket, add the qdisc, insert the rule) because
minimal kernels and containers differ from what `uname` or the module list suggest.  Probes
that change kernel state do it inside one throwaway namespace, removed afterwards, so the
host is never touched.  The Mininet builder and the link shaper choose their fallbacks from
`probe_all()`; `testbed doctor` prints it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

from nodes import transport
from nodes.transport import availability

from . import netns

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Capability:
    name: str
    available: bool
    reason: str
    fallback: str = ""  #: what the testbed uses instead when it is missing


FALLBACKS = {
    "kernel-sctp": "userland SCTP (usrsctp, raw IP)",
    "netem": "userspace delay line (NFQUEUE) and iptables statistic loss; HTB/TBF for rate",
    "openvswitch-module": "OVS userspace datapath (datapath_type=netdev)",
    "ovs-userspace": "Linux bridge (no OpenFlow steering)",
    "nfqueue": "no delay emulation: links run at veth speed (reported per link)",
    "netfilterqueue-python": "no userspace delay line",
    "mptcp": "TCP (one path)",
    "usrsctp": "TCP or MPTCP (no SCTP on the wire)",
}


def _in(ns: str, *argv: str) -> tuple[bool, str]:
    """Run `argv` in namespace `ns`: (succeeded, its last line of complaint)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(netns.in_netns(ns, argv), capture_output=True, text=True, env=env)
    lines = (result.stderr or result.stdout).strip().splitlines()
    return result.returncode == 0, lines[-1] if lines else ""


def _tried(name: str, ok: bool, detail: str, what: str) -> Capability:
    reason = f"{what}: works" if ok else f"{what}: {detail or 'refused'}"
    return Capability(name, ok, reason, "" if ok else FALLBACKS.get(name, ""))


def _namespace_probes(ns: str) -> list[Capability]:
    """Probes that need a namespace of their own (qdiscs, firewall rules, group joins)."""
    results = []
    qdiscs = {"netem": ["netem", "delay", "1ms"], "htb": ["htb"],
              "tbf": ["tbf", "rate", "1mbit", "burst", "32kbit", "latency", "50ms"]}  # fmt: skip
    for name, kind in qdiscs.items():
        ok, detail = _in(ns, "tc", "qdisc", "add", "dev", "lo", "root", *kind)
        results.append(_tried(name, ok, detail, f"tc qdisc {kind[0]}"))
        if ok:
            _in(ns, "tc", "qdisc", "del", "dev", "lo", "root")
    ok, detail = _in(ns, "iptables", "-A", "OUTPUT", "-p", "udp", "--dport", "9", "-j", "NFQUEUE", "--queue-num", "7")
    results.append(_tried("nfqueue", ok, detail, "iptables -j NFQUEUE"))
    ok, detail = _in(ns, "iptables", "-A", "OUTPUT", "-m", "statistic", "--mode", "random", "--probability", "0.1",
                     "-j", "DROP")  # fmt: skip
    results.append(_tried("iptables-statistic", ok, detail, "iptables -m statistic"))
    for family, group in (("ipv4", "239.0.0.50:3863"), ("ipv6", "[ff05::50]:3863")):
        ok, detail = _in(ns, sys.executable, "-m", "nodes.transport.multicast", "listen", "--iface", "lo",
                         "--group", group, "--timeout", "0.05")  # fmt: skip
        results.append(_tried(f"{family}-multicast", ok, detail, f"join {group.rpartition(':')[0].strip('[]')} on lo"))
    return results


def _sctp() -> list[Capability]:
    kernel, user = availability.kernel_sctp(), availability.usrsctp()
    return [Capability("kernel-sctp", kernel[0], kernel[1], "" if kernel[0] else FALLBACKS["kernel-sctp"]),
            Capability("usrsctp", user[0], user[1], "" if user[0] else FALLBACKS["usrsctp"])]  # fmt: skip


def _mptcp() -> Capability:
    ok, reason = availability.mptcp()
    return Capability("mptcp", ok, reason, "" if ok else FALLBACKS["mptcp"])


def _openvswitch() -> list[Capability]:
    module = os.path.isdir("/sys/module/openvswitch")
    caps = [Capability("openvswitch-module", module,
                       "openvswitch kernel module loaded" if module else "no openvswitch kernel module (/sys/module/openvswitch)",
                       "" if module else FALLBACKS["openvswitch-module"])]  # fmt: skip
    if not shutil.which("ovs-vsctl"):
        caps.append(Capability("ovs-userspace", False, "ovs-vsctl not installed (Debian openvswitch-switch)",
                               FALLBACKS["ovs-userspace"]))  # fmt: skip
    else:
        running = subprocess.run(["ovs-vsctl", "--timeout=2", "show"], capture_output=True).returncode == 0
        reason = ("ovs-vswitchd answers" if running else
                  "installed, not running: `/usr/share/openvswitch/scripts/ovs-ctl start` (the harness starts it)")
        caps.append(Capability("ovs-userspace", True, reason))
    return caps


def _tools() -> list[Capability]:
    caps = []
    for tool in ("tcpdump", "tshark", "mnexec"):
        path = shutil.which(tool)
        caps.append(Capability(tool, bool(path), path or f"{tool} not found on PATH"))
    try:
        import netfilterqueue  # type: ignore[import-not-found]  # noqa: F401
        caps.append(Capability("netfilterqueue-python", True, "python module netfilterqueue imports"))
    except ImportError:
        caps.append(Capability("netfilterqueue-python", False, "python module netfilterqueue not installed",
                               FALLBACKS["netfilterqueue-python"]))  # fmt: skip
    return caps


def probe_all() -> list[Capability]:
    """Every capability, in a few seconds.  Without root, namespace probes say so."""
    results = [*_sctp(), _mptcp(), *_openvswitch()]
    if os.geteuid() != 0:
        results.append(Capability("namespaces", False, "needs root: netem, HTB/TBF, NFQUEUE and multicast not probed"))
    else:
        ns = netns.unique_name("probe")
        try:
            with netns.namespaces(ns):
                results.append(Capability("namespaces", True, "network namespaces and veth can be created"))
                results += _namespace_probes(ns)
        except netns.NetnsError as exc:
            results.append(Capability("namespaces", False, str(exc)))
    return results + _tools()


def sctp_backend() -> str:
    """The backend `auto` picks, or why none runs."""
    try:
        return transport.select_backend("auto").value
    except transport.BackendUnavailable as exc:
        return f"none ({exc})"


def report(capabilities: list[Capability]) -> dict[str, object]:
    return {"capabilities": [dataclasses.asdict(c) for c in capabilities], "sctp_backend": sctp_backend()}


def by_name(capabilities: list[Capability]) -> dict[str, Capability]:
    return {c.name: c for c in capabilities}
