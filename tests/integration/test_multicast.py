"""Announces by UDP multicast between namespaces on Linux bridges (two domains).

Domain 1: hosts h1, h2, h3 and the two-legged host hx on bridge br1.  Domain 2: h4 and hx on
bridge br2.  Bridges live in a switch namespace, multicast snooping off so groups flood as on
a plain LAN.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from nodes.transport.multicast import MulticastConfig
from testbed import netns
from tests.netlab import ROOT, needs_root, stop, wait_for_event

pytestmark = [needs_root, pytest.mark.netns]
DOMAINS = {1: ["h1", "h2", "h3", "hx"], 2: ["h4", "hx"]}


class Lan:
    def __init__(self) -> None:
        self.switch = netns.unique_name("msw")
        self.hosts = {h: netns.unique_name(f"m{h}") for d in DOMAINS.values() for h in d}

    def build(self) -> None:
        netns.run_ip("-n", self.switch, "link", "set", "lo", "up")
        for domain, members in DOMAINS.items():
            bridge = f"br{domain}"
            netns.run_ip("-n", self.switch, "link", "add", bridge, "type", "bridge", "mcast_snooping", "0")
            netns.run_ip("-n", self.switch, "link", "set", bridge, "up")
            for number, host in enumerate(members, start=1):
                inside, outside = f"d{domain}", f"{host}d{domain}"
                netns.add_veth(self.hosts[host], inside, self.switch, outside)
                netns.run_ip("-n", self.switch, "link", "set", outside, "master", bridge)
                netns.run_ip("-n", self.hosts[host], "addr", "add", f"10.5{domain}.0.{number}/24", "dev", inside)
                netns.run_ip("-n", self.hosts[host], "addr", "add", f"fd5{domain}::{number}/64", "dev", inside, "nodad")

    def address(self, host: str, domain: int) -> str:
        return f"10.5{domain}.0.{DOMAINS[domain].index(host) + 1}"

    def run(self, host: str, *args: str) -> subprocess.Popen[str]:
        argv = [sys.executable, "-m", "nodes.transport.multicast", *args]
        env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        return subprocess.Popen(netns.in_netns(self.hosts[host], argv), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip


@pytest.fixture(scope="module")
def lan():
    lan = Lan()
    with netns.namespaces(lan.switch, *sorted(set(lan.hosts.values()))):
        lan.build()
        time.sleep(0.5)
        yield lan


def listen(lan: Lan, host: str, group: str, *ifaces: str) -> subprocess.Popen[str]:
    args = ["listen", "--group", group, "--timeout", "3"]
    for iface in ifaces:
        args += ["--iface", iface]
    proc = lan.run(host, *args)
    wait_for_event(proc, "listening")
    return proc


def datagrams(proc: subprocess.Popen[str]) -> list[dict]:
    proc.wait(20)
    return [json.loads(line) for line in stop(proc).splitlines() if '"datagram"' in line]


@pytest.mark.parametrize(("group", "source"), [("239.0.0.50:3863", "10.51.0.1"), ("[ff05::50]:3863", "fd51::1")])
def test_announces_reach_every_host_of_the_domain_and_no_other(lan, group, source):
    listeners = {h: listen(lan, h, group, "d1") for h in ("h2", "h3")}
    listeners["hx"] = listen(lan, "hx", group, "d1", "d2")
    listeners["h4"] = listen(lan, "h4", group, "d2")
    sender = lan.run("h1", "send", "--group", group, "--iface", "d1", "--count", "3", "--interval-ms", "50")
    assert json.loads(sender.communicate(timeout=20)[0])["count"] == 3
    got = {h: datagrams(p) for h, p in listeners.items()}
    for host in ("h2", "h3", "hx"):
        assert len(got[host]) == 3, (host, got[host])
        assert {(d["type"], d["interface"]) for d in got[host]} == {("ServerAnnounce", "d1")}
        assert {d["source"] for d in got[host]} == {source}
    assert got["h4"] == []  # another domain: announces stay on their LAN


def test_a_two_legged_host_announces_on_both_and_receivers_know_the_interface(lan):
    group = "239.0.0.51:9901"
    one, two = listen(lan, "h2", group, "d1"), listen(lan, "h4", group, "d2")
    sender = lan.run("hx", "send", "--group", group, "--iface", "d1", "--iface", "d2", "--count", "2",
                     "--interval-ms", "20")  # fmt: skip
    sender.communicate(timeout=20)
    first, second = datagrams(one), datagrams(two)
    assert [(d["type"], d["source"]) for d in first] == [("Presence", lan.address("hx", 1))] * 2
    assert [(d["type"], d["source"]) for d in second] == [("Presence", lan.address("hx", 2))] * 2


def test_two_processes_in_one_namespace_both_hear_the_announce(lan):
    group = "239.0.0.50:3863"
    listeners = [listen(lan, "h3", group, "d1"), listen(lan, "h3", group, "d1")]
    lan.run("h2", "send", "--group", group, "--iface", "d1").communicate(timeout=20)
    assert [len(datagrams(p)) for p in listeners] == [1, 1]


@pytest.mark.parametrize(("text", "message"), [
    ("239.0.0.50", "'239.0.0.50': expected GROUP:PORT, such as 239.0.0.50:3863 or [ff05::50]:3863"),
    ("10.0.0.1:3863", "10.0.0.1 is not a multicast address (IPv4 224.0.0.0/4, IPv6 ff00::/8)"),
    ("[ff05::50:3863", "'[ff05::50:3863': an IPv6 group goes in brackets, such as [ff05::50]:3863"),
    ("239.0.0.50:70000", "port 70000 is out of range 1-65535"),
])  # fmt: skip
def test_bad_groups_are_refused_with_the_reason(text, message):
    with pytest.raises(ValueError) as info:
        MulticastConfig.parse(text, ("eth0",))
    assert str(info.value) == message


def test_unknown_interface_is_named(lan):
    proc = lan.run("h1", "listen", "--iface", "nosuch0")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert err.strip() == "multicast: no network interface named 'nosuch0' in this namespace"
