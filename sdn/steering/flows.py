"""From a chosen path and its instances to OpenFlow 1.3 rules, per switch (pure).

Encapsulation: one MPLS label, `SPI << 8 | SI` — NSH's service path identifier and service
index (RFC 8300) in the 20 bits of a label, because OVS's OpenFlow 1.3 has MPLS push, pop
and set-field on every datapath while NSH needs extensions.  The classifier pushes
SI = 255; each SF decrements it; so the label alone says where a packet is in its chain,
and each SFF forwards on it with one rule per label.

A chain of n functions has n + 1 legs: classifier -> SF1, SF1 -> SF2, ..., SFn -> destination.
Leg i carries SI = 255 - i and follows a domain route [X0, ..., Xm]: each SFF before the last
sends the frame on its trunk to the next domain; the last delivers it to the next SF instance
(rewriting the destination MAC) or, on the last leg, pops the label and delivers the IP packet
to the destination as if its gateway had routed it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .netmap import ChainSpec, NetMap

ETH_IP = 0x0800
ETH_MPLS = 0x8847
FIRST_SI = 255
PRIORITY_LABEL = 300
PRIORITY_CLASSIFIER = 200
PRIORITY_TRUNK_DROP = 10
PRIORITY_NORMAL = 0
IP_PROTO = {"udp": 17, "tcp": 6}


class CompileError(ValueError):
    """The path cannot be installed on this network (the message says what is missing)."""


def label(spi: int, si: int) -> int:
    if not 0 < spi < 1 << 12 or not 0 <= si <= 255:
        raise CompileError(f"SPI {spi} / SI {si} out of range (SPI 1-4095, SI 0-255)")
    return spi << 8 | si


@dataclass(frozen=True)
class Hop:
    """One function of the chain, placed: the domain and the instance (a pool element's host)."""

    function: str
    domain: str
    host: str
    pe_id: int = 0


@dataclass(frozen=True)
class Flow:
    """A rule in a library-neutral form: port names, not numbers (the app maps them)."""

    dpid: int
    priority: int
    match: tuple[tuple[str, Any], ...]
    actions: tuple[tuple[Any, ...], ...]

    def ports(self) -> set[str]:
        named = {v for k, v in self.match if k == "in_port" and v}
        return named | {a[1] for a in self.actions if a[0] == "output"}


def compile_chain(net: NetMap, chain: ChainSpec, legs: Sequence[Sequence[str]], hops: Sequence[Hop]) -> list[Flow]:
    """Every rule of one chain: the classifier rule and one label rule per (leg, domain)."""
    if len(legs) != len(hops) + 1:
        raise CompileError(f"{len(hops)} hops need {len(hops) + 1} legs, got {len(legs)}")
    if len(hops) != len(chain.functions) or len(hops) >= FIRST_SI:
        raise CompileError(f"chain {chain.name}: {len(chain.functions)} functions, {len(hops)} hops")
    classifier, destination = _attached(net, chain.classifier), _attached(net, chain.destination)
    _check_legs(legs, [classifier.domain, *[h.domain for h in hops], destination.domain])
    flows: list[Flow] = []
    for i, route in enumerate(legs):
        tag = label(chain.spi, FIRST_SI - i)
        for j, domain in enumerate(route):
            sff = net.domains[domain]
            in_port = _arrival(net, route, j, hops[i - 1] if i else None)
            actions = _onward(net, route, j) if j < len(route) - 1 else _deliver(net, chain, hops, i, in_port)
            if i == 0 and j == 0:
                flows.append(Flow(sff.dpid, PRIORITY_CLASSIFIER, classifier_match(net, chain),
                                  (("push_mpls", ETH_MPLS), ("set_field", "mpls_label", tag), *actions)))  # fmt: skip
            else:  # only where the label may come from: the previous instance, or the trunk
                match = (("in_port", in_port), ("eth_type", ETH_MPLS), ("mpls_label", tag))
                flows.append(Flow(sff.dpid, PRIORITY_LABEL, match, actions))
    return flows


def _arrival(net: NetMap, route: Sequence[str], j: int, previous: Hop | None) -> str:
    """The port a leg's frame enters domain route[j]'s SFF by (the classifier's, on leg 0)."""
    if j > 0:
        port = net.domains[route[j]].trunk_to(route[j - 1])
        if port is None:
            raise CompileError(f"no trunk from {route[j]} to {route[j - 1]}")
        return port
    if previous is None:
        return ""  # the classifier rule has its own match
    return _attached(net, previous.host).sff.port


def _attached(net: NetMap, name: str):  # noqa: ANN202 (a HostInfo with an attachment)
    host = net.hosts.get(name)
    if host is None:
        raise CompileError(f"no host {name!r}")
    if host.sff is None or host.domain not in net.domains:
        raise CompileError(f"host {name} is not attached to its domain's SFF")
    return host


def _check_legs(legs: Sequence[Sequence[str]], points: list[str]) -> None:
    for i, route in enumerate(legs):
        if not route or route[0] != points[i] or route[-1] != points[i + 1]:
            raise CompileError(f"leg {i} {list(route)} does not go from {points[i]} to {points[i + 1]}")


def _onward(net: NetMap, route: Sequence[str], j: int) -> tuple[tuple[Any, ...], ...]:
    here, there = route[j], route[j + 1]
    port = net.domains[here].trunk_to(there)
    if port is None:
        raise CompileError(f"no trunk from {here} to {there}")
    return (("output", port),)


def _out(port: str, in_port: str) -> tuple[Any, ...]:
    """OpenFlow drops an output to the port a packet came in on unless it says IN_PORT (two
    consecutive functions on one host)."""
    return ("in_port",) if port == in_port else ("output", port)


def _deliver(net: NetMap, chain: ChainSpec, hops: Sequence[Hop], i: int, in_port: str) -> tuple[tuple[Any, ...], ...]:
    if i < len(hops):
        target = _attached(net, hops[i].host)
        if target.domain != hops[i].domain:
            raise CompileError(f"instance {hops[i].host} of {hops[i].function} is in {target.domain}, "
                               f"not {hops[i].domain}")  # fmt: skip
        return (("set_field", "eth_dst", target.sff.mac), _out(target.sff.port, in_port))
    dest = _attached(net, chain.destination)
    actions: list[tuple[Any, ...]] = [("pop_mpls", ETH_IP)]
    gateway = net.hosts.get(net.gateways.get(dest.domain, ""))
    if gateway is not None and gateway.sff is not None:
        actions.append(("set_field", "eth_src", gateway.sff.mac))  # as if the gateway had routed it
    actions += [("set_field", "eth_dst", dest.sff.mac), _out(dest.sff.port, in_port)]
    return tuple(actions)


def classifier_match(net: NetMap, chain: ChainSpec) -> tuple[tuple[str, Any], ...]:
    """The chain's traffic, as it enters its classifier's SFF."""
    source, dest = _attached(net, chain.classifier).sff, _attached(net, chain.destination).sff
    return (("in_port", source.port), ("eth_type", ETH_IP), ("ipv4_src", source.ip), ("ipv4_dst", dest.ip),
            ("ip_proto", IP_PROTO[chain.protocol]), (f"{chain.protocol}_dst", chain.port))  # fmt: skip


def drop_flow(net: NetMap, chain: ChainSpec) -> Flow:
    """The classifier rule without actions: the chain's traffic is dropped, not routed around
    its functions (before a path is installed, and when none is left)."""
    dpid = net.domains[_attached(net, chain.classifier).domain].dpid
    return Flow(dpid, PRIORITY_CLASSIFIER, classifier_match(net, chain), ())


def base_flows(net: NetMap, dpid: int) -> list[Flow]:
    """What every switch has before any chain: NORMAL for everything (ARP, RSerPool, routing
    through the gateways work as without a controller); on an SFF, a drop of whatever arrives
    on a trunk and no chain rule claims, and a drop of the chains it classifies (their rules
    replace it), so a reconnecting switch never lets a chain's traffic past its functions."""
    flows = [Flow(dpid, PRIORITY_NORMAL, (), (("normal",),))]
    sff = net.sff_by_dpid(dpid)
    for port in sorted(sff.trunks) if sff else ():
        flows.append(Flow(dpid, PRIORITY_TRUNK_DROP, (("in_port", port),), ()))
    for chain in net.chains:
        with contextlib.suppress(CompileError):
            rule = drop_flow(net, chain)
            if rule.dpid == dpid:
                flows.append(rule)
    return flows
