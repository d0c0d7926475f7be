"""What this kernel and machine can do for an emulation, and what stands in for what is missing.

Each probe tries the real thing (open the socket, add the qdisc, insert the rule, join the
group) because minimal kernels and containers differ from what `uname` or the module list
suggest.  Probes that change kernel state do it inside one throwaway namespace, removed
afterwards, so the host is never touched.  The Mininet builder and the link shaper choose
their fallbacks from `probe_all()` (look one up with `by_name`); `testbed doctor` prints it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from nodes import transport
from nodes.transport import availability

from . import netns

ROOT = Path(__file__).resolve().parent.parent
OVS_CTL = "/usr/share/openvswitch/scripts/ovs-ctl start"
PROBE_TIMEOUT = 10.0  #: seconds for one command in the namespace; a hung `tc` must not hang doctor


@dataclasses.dataclass(frozen=True)
class Capability:
    """One feature: whether it works here, why (not), and what the testbed uses instead."""

    name: str
    available: bool
    reason: str
    fallback: str = ""  #: what the testbed uses instead when it is missing; "" when available


FALLBACKS = {
    "kernel-sctp": "userland SCTP (usrsctp, raw IP)",
    "usrsctp": "TCP or MPTCP (no SCTP on the wire)",
    "mptcp": "TCP (one path)",
    "netem": "userspace delay line (NFQUEUE) and iptables statistic loss; HTB/TBF for rate",
    "htb": "TBF for rate (one class per link)",
    "tbf": "HTB for rate",
    "openvswitch-module": "OVS userspace datapath (datapath_type=netdev)",
    "ovs-userspace": "Linux bridge (no OpenFlow steering)",
    "ovs-vswitchd": "Linux bridge until ovs-vswitchd runs",
    "nfqueue": "no delay emulation: links run at veth speed (reported per link)",
    "netfilterqueue-python": "no userspace delay line",
    "iptables-statistic": "no random loss emulation",
    "ipv4-multicast": "unicast to statically configured registrars",
    "ipv6-multicast": "IPv4 multicast",
    "vxlan": "none: SFC chains across domains cannot be built (controller: os-ken refuses to start)",
    "tcpdump": "tshark (dumpcap) for captures",
    "tshark": "testbed decode (scapy) only, no dissector cross-check",
    "mnexec": "plain namespaces (ip netns exec) instead of Mininet hosts",
}

#: What the throwaway namespace is needed for; without root each is reported as not probed.
NAMESPACE_PROBES = (
    "netem",
    "htb",
    "tbf",
    "nfqueue",
    "iptables-statistic",
    "ipv4-multicast",
    "ipv6-multicast",
    "vxlan",
)


def capability(name: str, available: bool, reason: str) -> Capability:
    """A result with the standard fallback filled in when (and only when) it is missing."""
    return Capability(name, available, reason, "" if available else FALLBACKS.get(name, ""))


def _in(ns: str, *argv: str) -> tuple[bool, str]:
    """Run `argv` in namespace `ns`: (succeeded, its last line of complaint)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        result = subprocess.run(
            netns.in_netns(ns, argv), capture_output=True, text=True, env=env, timeout=PROBE_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return False, f"no answer within {PROBE_TIMEOUT:g} s"
    lines = (result.stderr or result.stdout).strip().splitlines()
    return result.returncode == 0, lines[-1] if lines else ""


def _tried(name: str, ok: bool, detail: str, what: str) -> Capability:
    return capability(name, ok, f"{what}: works" if ok else f"{what}: {detail or 'refused'}")


def _namespace_probes(ns: str) -> list[Capability]:
    """Probes that need a namespace of their own (qdiscs, firewall rules, group joins)."""
    results = []
    qdiscs = {"netem": ["netem", "delay", "1ms"], "htb": ["htb"],
              "tbf": ["tbf", "rate", "1mbit", "burst", "32kbit", "latency", "50ms"]}  # fmt: skip
    for name, kind in qdiscs.items():
        ok, detail = _in(ns, "tc", "qdisc", "add", "dev", "lo", "root", *kind)
        results.append(_tried(name, ok, detail, f"tc qdisc {kind[0]}"))
        if ok:  # the next qdisc needs the root slot free
            _in(ns, "tc", "qdisc", "del", "dev", "lo", "root")
    ok, detail = _in(
        ns, "iptables", "-A", "OUTPUT", "-p", "udp", "--dport", "9", "-j", "NFQUEUE", "--queue-num", "7"
    )
    results.append(_tried("nfqueue", ok, detail, "iptables -j NFQUEUE"))
    ok, detail = _in(ns, "iptables", "-A", "OUTPUT", "-m", "statistic", "--mode", "random", "--probability", "0.1",
                     "-j", "DROP")  # fmt: skip
    results.append(_tried("iptables-statistic", ok, detail, "iptables -m statistic"))
    ok, detail = _in(ns, "ip", "link", "add", "vtbvx0", "type", "vxlan", "id", "1", "dstport", "4789",
                     "local", "127.0.0.1")  # fmt: skip
    results.append(_tried("vxlan", ok, detail, "ip link add type vxlan"))
    for family, group in (("ipv4", "239.0.0.50:3863"), ("ipv6", "[ff05::50]:3863")):
        # The project's own multicast listener: a real IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP on lo.
        ok, detail = _in(ns, sys.executable, "-m", "nodes.transport.multicast", "listen", "--iface", "lo",
                         "--group", group, "--timeout", "0.05")  # fmt: skip
        results.append(
            _tried(f"{family}-multicast", ok, detail, f"join {group.rpartition(':')[0].strip('[]')} on lo")
        )
    return results


def _not_probed(why: str) -> list[Capability]:
    return [capability(name, False, f"not probed: {why}") for name in ("veth", *NAMESPACE_PROBES)]


def _with_namespace() -> list[Capability]:
    """The namespace capability and everything probed inside one shared throwaway namespace."""
    if os.geteuid() != 0:
        why = "needs root (network namespaces)"
        return [capability("namespaces", False, why), *_not_probed(why)]
    ns = netns.unique_name("probe")
    try:
        with netns.namespaces(ns):  # removed on exit, exception or Ctrl-C
            return [capability("namespaces", True, "network namespaces can be created"), *_veth(ns),
                    *_namespace_probes(ns)]  # fmt: skip
    except (netns.NetnsError, OSError) as exc:
        return [capability("namespaces", False, str(exc)), *_not_probed("no namespace")]


def _veth(ns: str) -> list[Capability]:
    """A veth pair inside the namespace, so it goes when the namespace goes."""
    ok, detail = _in(ns, "ip", "link", "add", "vtbprobe0", "type", "veth", "peer", "name", "vtbprobe1")
    return [_tried("veth", ok, detail, "ip link add type veth")]


def _sctp() -> list[Capability]:
    return [
        capability("kernel-sctp", *availability.kernel_sctp()),
        capability("usrsctp", *availability.usrsctp()),
    ]


def _vswitchd_pid() -> int | None:
    """The pid of a live ovs-vswitchd from its pidfile, without talking to it."""
    for rundir in filter(None, (os.environ.get("OVS_RUNDIR"), "/run/openvswitch", "/var/run/openvswitch")):
        try:
            pid = int(Path(rundir, "ovs-vswitchd.pid").read_text().strip())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{pid}").exists():
            return pid
    return None


def _openvswitch() -> list[Capability]:
    """Kernel module by /sys (never loaded here), userspace by binary and pidfile (never started)."""
    module = os.path.isdir("/sys/module/openvswitch")
    caps = [capability("openvswitch-module", module, "openvswitch kernel module loaded" if module
                       else "no openvswitch kernel module (/sys/module/openvswitch); not loaded by doctor")]  # fmt: skip
    vsctl = shutil.which("ovs-vsctl")
    caps.append(
        capability(
            "ovs-userspace", bool(vsctl), vsctl or "ovs-vsctl not installed (Debian openvswitch-switch)"
        )
    )
    pid = _vswitchd_pid()
    if pid is not None:
        caps.append(capability("ovs-vswitchd", True, f"running (pid {pid})"))
    elif vsctl:
        caps.append(capability("ovs-vswitchd", False, f"not running; start it as root: {OVS_CTL}"))
    else:
        caps.append(capability("ovs-vswitchd", False, "not installed"))
    return caps


def _tools() -> list[Capability]:
    caps = []
    for tool in ("tcpdump", "tshark", "mnexec"):
        path = shutil.which(tool)
        caps.append(capability(tool, bool(path), path or f"{tool} not found on PATH"))
    try:
        import netfilterqueue  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as exc:
        caps.append(capability("netfilterqueue-python", False, f"python module netfilterqueue: {exc}"))
    else:
        caps.append(capability("netfilterqueue-python", True, "python module netfilterqueue imports"))
    return caps


def probe_all() -> list[Capability]:
    """Every capability, in a few seconds.  Without root, namespace probes say so."""
    mptcp = capability("mptcp", *availability.mptcp())
    return [*_sctp(), mptcp, *_openvswitch(), *_with_namespace(), *_tools()]


def sctp_backend() -> tuple[str | None, str]:
    """The backend `auto` picks (None when neither SCTP stack runs), and why."""
    try:
        chosen = transport.select_backend("auto")
    except transport.BackendUnavailable as exc:
        return None, str(exc)
    return chosen.value, transport.backend_status()[chosen][1]


def report(
    capabilities: Iterable[Capability], backend: tuple[str | None, str] | None = None
) -> dict[str, object]:
    """The `doctor --json` document; `backend` defaults to a fresh `sctp_backend()`."""
    chosen, why = backend if backend is not None else sctp_backend()
    return {"capabilities": [dataclasses.asdict(c) for c in capabilities], "sctp_backend": chosen,
            "sctp_backend_reason": why}  # fmt: skip


def by_name(capabilities: Iterable[Capability]) -> dict[str, Capability]:
    """Results keyed by name, for `caps["netem"].available` style choices."""
    return {c.name: c for c in capabilities}
