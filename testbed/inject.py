"""Failure injection on a built network: links, partitions, CPU stress and loss bursts.

Process faults (kill, stop, restart) belong to the supervisor; this module does what
touches the network.  Every rule it adds carries an iptables comment starting with
`vtb-`, so it can be found and removed, and everything ends with its namespace.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field

from .builder import RUN_ENV, Network


class InjectError(ValueError):
    pass


@dataclass
class Faults:
    """The faults in force, so that `heal`, the end of a burst and `down` can undo them."""

    stress: dict[str, list[subprocess.Popen]] = field(default_factory=dict)
    timers: list[threading.Timer] = field(default_factory=list)
    partitions: set[tuple[str, str]] = field(default_factory=set)


def resolve_link(network: Network, target: str, other: str | None = None) -> list[tuple[str, str]]:
    """The (host, interface) ends of a link: `HOST:INTF` (interface or network name), or two
    domains joined by a domain link."""
    plan = network.plan
    if other is not None:
        for gw_a, if_a, gw_b, if_b, spec in plan.domain_links:
            if set(spec.between) == {target, other}:
                return [(gw_a, if_a), (gw_b, if_b)]
        raise InjectError(f"no domain link between {target} and {other}")
    host, _, intf = target.partition(":")
    if host not in plan.hosts:
        raise InjectError(f"no host {host!r} (hosts: {', '.join(plan.hosts)})")
    if not intf:
        raise InjectError(f"name the interface: {host}:eth0 (has: {[i.name for i in plan.hosts[host].interfaces]})")
    try:
        found = plan.hosts[host].intf(intf)
    except KeyError as exc:
        raise InjectError(str(exc.args[0])) from None
    ends = [(host, found.name)]
    if found.peer_host:
        ends.append((found.peer_host, found.peer_intf or ""))
    return ends


def set_link(network: Network, ends: list[tuple[str, str]], up: bool) -> None:
    for host, intf in ends:
        network.run(host, ["ip", "link", "set", intf, "up" if up else "down"])


def _partition_rules(network: Network, a: str, b: str) -> list[tuple[str, list[str]]]:
    plan = network.plan
    for d in (a, b):
        if d not in plan.topology.domains:
            raise InjectError(f"no domain {d!r} (domains: {', '.join(plan.topology.domains)})")
    rules = []
    comment = ["-m", "comment", "--comment", f"vtb-partition-{a}-{b}"]
    gateways = [h.name for h in plan.hosts.values() if h.role == "gateway"]
    for src, dst in ((a, b), (b, a)):
        for s in plan.domain_subnets(src):
            for d in plan.domain_subnets(dst):
                for gw in gateways:
                    rules.append((gw, ["FORWARD", "-s", str(s), "-d", str(d), *comment, "-j", "DROP"]))
    if not gateways:
        raise InjectError("no domain links, so nothing joins the domains")
    for gw_a, if_a, gw_b, if_b, spec in plan.domain_links:  # gateway to gateway: the SFC trunk (VXLAN)
        if set(spec.between) == {a, b}:  # and the IBEs' delay probes, so ALTO sees the link gone
            for gw, peer, peer_if in ((gw_a, gw_b, if_b), (gw_b, gw_a, if_a)):
                address = str(plan.hosts[peer].intf(peer_if).address.ip)
                rules.append((gw, ["OUTPUT", "-d", address, *comment, "-j", "DROP"]))
    return rules


def partition(network: Network, faults: Faults, a: str, b: str) -> int:
    """Drop everything between the two domains on every gateway (whatever path it takes), and
    the SFC trunk of their direct link.  Chain traffic bridged over a third domain's trunks is
    not routed by the gateways, so it still passes: steer around it with `testbed sfc cost`."""
    key = tuple(sorted((a, b)))
    if key in faults.partitions:
        raise InjectError(f"{a} and {b} are already partitioned")
    rules = _partition_rules(network, *key)
    for gw, rule in rules:
        network.run(gw, ["iptables", "-I", *rule])
    faults.partitions.add(key)
    return len(rules)


def heal(network: Network, faults: Faults, a: str, b: str) -> int:
    key = tuple(sorted((a, b)))
    if key not in faults.partitions:
        raise InjectError(f"{a} and {b} are not partitioned")
    rules = _partition_rules(network, *key)
    for gw, rule in rules:
        network.run(gw, ["iptables", "-D", *rule], check=False)
    faults.partitions.discard(key)
    return len(rules)


def stress(network: Network, faults: Faults, host: str, seconds: float, workers: int = 1) -> list[int]:
    """Busy loops in the host's namespace for `seconds` (a real CPU load, seen by the monitor)."""
    if host not in network.plan.hosts:
        raise InjectError(f"no host {host!r}")
    env = {**os.environ, RUN_ENV: network.plan.run_id}
    procs = [
        subprocess.Popen(["mnexec", "-a", str(network.host_pid(host)), "timeout", str(seconds),
                          sys.executable, "-c", "while True: pass"], env=env, start_new_session=True)
        for _ in range(workers)
    ]  # fmt: skip
    faults.stress.setdefault(host, []).extend(procs)
    return [p.pid for p in procs]


def loss_burst(network: Network, faults: Faults, ends: list[tuple[str, str]], percent: float,
               seconds: float) -> None:  # fmt: skip
    """Drop `percent` of the packets leaving (and, on a host link, entering) the link's ends."""
    if not 0 < percent <= 100:
        raise InjectError("loss must be in (0, 100] percent")
    rules = []
    for host, intf in ends:
        match = ["-m", "statistic", "--mode", "random", "--probability", f"{percent / 100:.6f}",
                 "-m", "comment", "--comment", "vtb-burst", "-j", "DROP"]  # fmt: skip
        rules.append((host, ["POSTROUTING", "-o", intf, *match]))
        if len(ends) == 1:
            rules.append((host, ["PREROUTING", "-i", intf, *match]))
    for host, rule in rules:
        network.run(host, ["iptables", "-t", "mangle", "-I", *rule])

    def end() -> None:
        for host, rule in rules:
            with contextlib.suppress(Exception):
                network.run(host, ["iptables", "-t", "mangle", "-D", *rule], check=False)

    timer = threading.Timer(seconds, end)
    timer.daemon = True
    timer.start()
    faults.timers.append(timer)


def clear(network: Network, faults: Faults) -> None:
    """Undo what is still in force (before teardown)."""
    for timer in faults.timers:
        timer.cancel()
    for procs in faults.stress.values():
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=2)
    faults.stress.clear()

