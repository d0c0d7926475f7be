"""Build a plan into a running Mininet network, and take it down again.

Mininet gives the object model (hosts in namespaces, switches, veth links).  This module
chooses what this kernel can run and says what it chose:
- switches: Open vSwitch with the kernel datapath where the openvswitch module is loaded,
  the userspace datapath (`datapath_type=netdev`) otherwise, starting ovs-vswitchd when it is
  not running; or Linux bridges on request;
- link shaping: Mininet's TCLink (netem) where the kernel has sch_netem, otherwise the
  userspace fallback of `shaping` (an NFQUEUE delay line per namespace, iptables statistic
  loss, HTB rate), installed in the hosts' namespaces and read back for the report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mininet.link import Link, TCLink
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import Host, OVSSwitch, RemoteController, Switch

from . import shaping
from .capabilities import OVS_CTL
from .plan import Plan

RUN_ENV = "VTB_RUN"  #: set in every process a run starts, so `clean` finds them after a crash
#: A chain's classifier sends at most this much IP, so that its packets with the 4-byte MPLS
#: label still fit every 1500-byte link and SF interface on the way.
CLASSIFIER_MTU = 1496


class BuildError(RuntimeError):
    """The network could not be built; the message says which step and why."""


@dataclass
class Choices:
    """What the builder chose on this machine, and why: shown by `up` and `status`."""

    switch: str  # "ovs-kernel", "ovs-user" or "linux-bridge"
    switch_reason: str
    shaping: str  # "netem" or "userspace"
    shaping_reason: str
    started_ovs: bool = False


@dataclass
class ShapedEnd:
    host: str
    intf: str
    direction: str  # egress, ingress, or "egress (switch port)"
    description: str


@dataclass
class Network:
    """A built network: the Mininet object and what was installed on it."""

    plan: Plan
    net: Mininet
    choices: Choices
    shaped: list[ShapedEnd] = field(default_factory=list)
    delay_lines: dict[str, subprocess.Popen] = field(default_factory=dict)

    def host_pid(self, name: str) -> int:
        return self.net.nameToNode[name].pid

    def macs(self) -> dict[str, dict[str, str]]:
        """host -> interface -> MAC, as the built network has them."""
        return {h: {i.name: self.net.nameToNode[h].intf(i.name).MAC() for i in host.interfaces}
                for h, host in self.plan.hosts.items()}  # fmt: skip

    def run(self, host: str, argv: Sequence[str], check: bool = True, timeout: float = 30) -> str:
        return run_in(self.host_pid(host), argv, check=check, timeout=timeout)


def run_in(pid: int | None, argv: Sequence[str], check: bool = True, timeout: float = 30) -> str:
    """Run a command in the namespaces of process `pid` (None: here) and return its stdout."""
    full = ["mnexec", "-a", str(pid), *argv] if pid else list(argv)
    result = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise BuildError(f"{' '.join(argv)}: {(result.stderr or result.stdout).strip()}")
    return result.stdout


class LinuxBridge(Switch):
    """A Linux bridge made with `ip` (Mininet's LinuxBridge needs brctl), no OpenFlow."""

    def start(self, controllers: list) -> None:
        run_in(None, ["ip", "link", "add", self.name, "type", "bridge"])
        for intf in self.intfList():
            if intf.name != "lo":
                run_in(None, ["ip", "link", "set", intf.name, "master", self.name, "up"])
        run_in(None, ["ip", "link", "set", self.name, "up"])

    def stop(self, deleteIntfs: bool = True) -> None:  # noqa: N803 (Mininet's signature)
        run_in(None, ["ip", "link", "delete", self.name], check=False)
        super().stop(deleteIntfs)


def ovs_running() -> bool:
    if not shutil.which("ovs-vsctl"):
        return False
    return subprocess.run(["ovs-vsctl", "--timeout=5", "show"], capture_output=True).returncode == 0


def ensure_ovs() -> bool:
    """Start ovs-vswitchd and ovsdb-server when they are not running; True if we started them."""
    if ovs_running():
        return False
    if not shutil.which("ovs-vsctl"):
        raise BuildError("Open vSwitch is not installed (Debian: openvswitch-switch); "
                         "or use `switch: {kind: linux-bridge}`")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != RUN_ENV}  # a shared daemon, not the run's
    result = subprocess.run(OVS_CTL.split() + ["--system-id=random"], capture_output=True, text=True, env=env)
    if result.returncode != 0 or not ovs_running():
        raise BuildError(f"could not start Open vSwitch ({OVS_CTL}): {result.stderr.strip() or result.stdout}")
    return True


def choose(plan: Plan, capabilities: dict) -> Choices:
    """Switch and shaping choices from the topology's wishes and the capability probe."""
    opts = plan.topology.switch
    ctl = plan.topology.controller
    if ctl.kind != "none" and opts.kind == "linux-bridge":
        raise BuildError(f"an OpenFlow controller ({ctl.kind}) needs Open vSwitch, not Linux bridges")
    if ctl.kind == "os-ken" and plan.domain_links and not capabilities["vxlan"].available:
        raise BuildError("the SFC trunks between domains need VXLAN in the kernel: " + capabilities["vxlan"].reason)
    module = capabilities["openvswitch-module"].available
    if opts.kind == "linux-bridge":
        switch, why = "linux-bridge", "requested by the topology"
    elif opts.datapath == "kernel" and not module:
        raise BuildError("the topology asks for the OVS kernel datapath, but " +
                         capabilities["openvswitch-module"].reason)  # fmt: skip
    elif opts.datapath == "user" or not module:
        why = "requested by the topology" if opts.datapath == "user" else "no openvswitch kernel module"
        switch = "ovs-user"
    else:
        switch, why = "ovs-kernel", "openvswitch kernel module loaded"
    netem = capabilities["netem"]
    if netem.available:
        return Choices(switch, why, "netem", "sch_netem works (Mininet TCLink)")
    if not (capabilities["nfqueue"].available and capabilities["netfilterqueue-python"].available):
        missing = [c.reason for c in (capabilities["nfqueue"], capabilities["netfilterqueue-python"])
                   if not c.available]  # fmt: skip
        if _needs_delay(plan):
            raise BuildError("links ask for delay, but there is no netem and no NFQUEUE delay line: "
                             + "; ".join(missing))  # fmt: skip
    return Choices(switch, why, "userspace", f"no sch_netem ({netem.reason}); NFQUEUE delay line, "
                   "iptables statistic loss, HTB rate")  # fmt: skip


def _needs_delay(plan: Plan) -> bool:
    return any(i.shape.delay or i.shape.jitter for h in plan.hosts.values() for i in h.interfaces)


def _tc_params(shape) -> dict:
    params = {}
    if shape.delay:
        params["delay"] = f"{shape.delay}ms"
    if shape.jitter:
        params["jitter"] = f"{shape.jitter}ms"
    if shape.loss:
        params["loss"] = shape.loss
    if shape.bandwidth:
        params["bw"] = shape.bandwidth
    return params


def build(plan: Plan, choices: Choices, log_dir: Path, progress: Callable[[str], None] = print) -> Network:
    """Create every node and link, start the switches, configure addresses, routes and shaping.

    On any failure the partial network is stopped before the error propagates."""
    setLogLevel("error")
    if choices.switch.startswith("ovs"):
        choices.started_ovs = ensure_ovs()
    os.environ[RUN_ENV] = plan.run_id  # inherited by Mininet's shells and everything they start
    switch_cls: type[Switch] = LinuxBridge if choices.switch == "linux-bridge" else OVSSwitch
    net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False, waitConnected=False)
    network = Network(plan, net, choices)
    try:
        _add_nodes(network, switch_cls)
        progress(f"starting {len(plan.switches)} switches ({choices.switch})")
        net.build()
        net.start()
        progress("configuring addresses and routes")
        for host in plan.hosts.values():
            _configure_host(network, host)
        if plan.topology.controller.kind == "os-ken" and plan.domain_links:
            progress(f"SFC trunks between domains ({len(plan.domain_links)} VXLAN)")
            _build_trunks(network)
        for chain in plan.topology.sfc.chains if plan.topology.sfc else []:
            for intf in plan.hosts[chain.classifier].interfaces:  # room for the label on 1500-byte links
                network.run(chain.classifier, ["ip", "link", "set", intf.name, "mtu", str(CLASSIFIER_MTU)])
        progress(f"shaping links ({choices.shaping})")
        _shape(network, log_dir)
    except BaseException:
        stop(network)
        raise
    return network


def _add_nodes(network: Network, switch_cls: type[Switch]) -> None:
    plan, net = network.plan, network.net
    ctl = plan.topology.controller
    if ctl.kind != "none" and switch_cls is OVSSwitch:
        address, port = ("127.0.0.1", plan.ports["openflow"]) if ctl.kind == "os-ken" else (ctl.address, ctl.port)
        net.addController(f"{plan.switches[0].name}c" if plan.switches else "c0",
                          controller=RemoteController, ip=address, port=port)  # fmt: skip
    for sw in plan.switches:
        params = {"dpid": sw.dpid}
        if switch_cls is OVSSwitch:
            params |= {"failMode": "secure" if ctl.kind != "none" else "standalone",
                       "datapath": "user" if network.choices.switch == "ovs-user" else "kernel",
                       "protocols": "OpenFlow13"}  # fmt: skip
        net.addSwitch(sw.name, cls=switch_cls, **params)
    for host in plan.hosts.values():
        net.addHost(host.name, cls=Host, ip=None)
    netem = network.choices.shaping == "netem"
    for host in plan.hosts.values():
        for intf in host.interfaces:
            if intf.switch is None:
                continue
            tc = _tc_params(intf.shape) if netem else {}
            net.addLink(host.name, intf.switch, intfName1=intf.name, intfName2=intf.port,
                        cls=TCLink if tc else Link, **tc)  # fmt: skip
    for gw_a, if_a, gw_b, if_b, _ in plan.domain_links:
        shape = plan.hosts[gw_a].intf(if_a).shape
        tc = _tc_params(shape) if netem else {}
        net.addLink(gw_a, gw_b, intfName1=if_a, intfName2=if_b, cls=TCLink if tc else Link, **tc)


def _configure_host(network: Network, host) -> None:
    run = network.run
    sysctls = ["net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
               f"net.ipv4.ip_forward={1 if host.role == 'gateway' else 0}"]  # fmt: skip
    run(host.name, ["sysctl", "-q", "-w", *sysctls])
    for intf in host.interfaces:
        run(host.name, ["ip", "addr", "flush", "dev", intf.name])
        run(host.name, ["ip", "addr", "add", str(intf.address), "dev", intf.name])
        run(host.name, ["ip", "link", "set", intf.name, "up"])
        if network.choices.switch == "ovs-user":
            # OVS's userspace datapath reads packets with AF_PACKET: a checksum left for the
            # NIC to fill (veth offload) would reach the peer unfilled and be dropped.
            run(host.name, ["ethtool", "-K", intf.name, "tx", "off"], check=False)
    for route in host.routes:
        argv = ["ip", "route", "replace", route.destination, "via", route.via, "dev", route.dev]
        run(host.name, argv + (["metric", str(route.metric)] if route.metric else []))


def _build_trunks(network: Network) -> None:
    """For each domain link, an L2 trunk between the two domains' SFFs: a VXLAN device in each
    gateway over the (shaped) gateway link, bridged to a veth whose other end is an SFF port.
    The trunk so has the link's delay and loss and goes down with it.  The port's private
    access tag keeps OVS's NORMAL action from flooding onto it; the controller sends onto it
    only the chains' labelled frames."""
    from . import sfc

    for trunk in sfc.trunks(network.plan):
        k = trunk["index"]
        for end in trunk["ends"]:
            gw, port, pid = end["gateway"], end["port"], network.host_pid(end["gateway"])
            vx, tr, br = f"vx{k}", f"tr{k}", f"sfc{k}"
            run = network.run
            run(gw, ["ip", "link", "add", vx, "type", "vxlan", "id", str(k), "local", end["local"],
                     "remote", end["remote"], "dstport", str(sfc.VXLAN_PORT)])  # fmt: skip
            # Not bound to the link device, so it may keep a 1500-byte MTU: a full-size frame's
            # outer packet is fragmented on the gateway link rather than dropped.
            run(gw, ["ip", "link", "set", vx, "mtu", "1500"])
            run(gw, ["ip", "link", "add", br, "type", "bridge"])
            run_in(None, ["ip", "link", "add", port, "type", "veth", "peer", "name", tr, "netns", str(pid)])
            for dev in (vx, tr):
                run(gw, ["ip", "link", "set", dev, "master", br])
            for dev in (vx, tr, br):  # no IPv6 of their own: their router solicitations would ride the trunk
                run(gw, ["sysctl", "-q", "-w", f"net.ipv6.conf.{dev}.disable_ipv6=1"], check=False)
                run(gw, ["ip", "link", "set", dev, "up"])
            run(gw, ["ethtool", "-K", tr, "tx", "off"], check=False)
            run_in(None, ["ethtool", "-K", port, "tx", "off"], check=False)
            run_in(None, ["ip", "link", "set", port, "up"])
            run_in(None, ["ovs-vsctl", "add-port", network.plan.sff(end["domain"]).name, port,
                          f"tag={trunk['tag']}"])  # fmt: skip


def _shape(network: Network, log_dir: Path) -> None:
    """Install the fallback shaping in each namespace, or report what TCLink installed."""
    for host in network.plan.hosts.values():
        queues: dict[int, tuple[float, float]] = {}
        for intf in host.interfaces:
            shape = shaping.LinkShape(intf.shape.delay, intf.shape.jitter, intf.shape.loss, intf.shape.bandwidth)
            if shape.is_null:
                continue
            if network.choices.shaping == "netem":
                qdisc = network.run(host.name, ["tc", "qdisc", "show", "dev", intf.name]).strip()
                network.shaped.append(ShapedEnd(host.name, intf.name, "both", f"TCLink: {qdisc}"))
                continue
            ends = [("egress", shaping.egress_commands)]
            if intf.switch is not None:  # the switch end is in the root namespace, out of iptables' sight
                ends.append(("ingress", shaping.ingress_commands))
            for direction, make in ends:
                queue = len(queues) + 1
                installed = make(intf.name, shape, "userspace", queue)
                for argv in installed.commands:
                    network.run(host.name, argv)
                if shape.delay_ms or shape.jitter_ms:
                    queues[queue] = (shape.delay_ms, shape.jitter_ms)
                network.shaped.append(ShapedEnd(host.name, intf.name, direction, installed.description))
            if intf.switch is not None and shape.rate_mbit:
                rate = shaping.rate_commands(intf.port, shape.rate_mbit)
                for argv in rate.commands:
                    run_in(None, argv)
                network.shaped.append(ShapedEnd(host.name, intf.port, "ingress (switch port)", rate.description))
        if queues:
            network.delay_lines[host.name] = _start_delay_line(network, host.name, queues, log_dir)


def _start_delay_line(network: Network, host: str, queues: dict, log_dir: Path) -> subprocess.Popen:
    config = shaping.DelayLineConfig(queues)
    log = open(log_dir / f"delayline-{host}.log", "ab")  # noqa: SIM115 (the child owns it)
    proc = subprocess.Popen(["mnexec", "-a", str(network.host_pid(host)), sys.executable, *config.to_argv()],
                            stdout=log, stderr=log, start_new_session=True)  # fmt: skip
    log.close()
    time.sleep(0.05)
    if proc.poll() is not None:
        raise BuildError(f"the delay line of {host} exited at once; see {log_dir}/delayline-{host}.log")
    return proc


def stop(network: Network) -> None:
    """Stop delay lines, switches, links and host shells; remove the OVS bridges."""
    for proc in network.delay_lines.values():
        proc.terminate()
    for proc in network.delay_lines.values():
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
    network.delay_lines.clear()
    network.net.stop()
