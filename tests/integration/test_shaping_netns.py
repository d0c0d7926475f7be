"""The userspace shaping fallback measured in real namespaces: delay, loss, rate, fail-open.

Two namespaces joined by one veth (A 10.9.0.1, B 10.9.0.2).  The shaping commands are the
ones `testbed.shaping` generates, run with `ip netns exec`; the delay line is the real
`python -m testbed.delayline`.  Namespaces (and whatever runs in them) go on exit, also
when a test fails.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed import netns, shaping

ROOT = Path(__file__).resolve().parents[2]
A_IP, B_IP = "10.9.0.1", "10.9.0.2"

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("ip", "tc", "iptables", "ping")),
        reason="needs ip, tc, iptables, ping",
    ),
]


@dataclass
class Pair:
    a: str
    b: str
    if_a: str
    if_b: str

    def run(self, ns: str, argv: list[str]) -> str:
        result = subprocess.run(netns.in_netns(ns, argv), capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise AssertionError(f"{argv} in {ns}: {result.stderr.strip()}")
        return result.stdout

    def apply(self, ns: str, installation: shaping.Installation) -> None:
        for argv in installation.commands:
            self.run(ns, argv)

    def popen(self, ns: str, argv: list[str], **kwargs) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen(netns.in_netns(ns, argv), text=True, env=env, cwd=ROOT, **kwargs)

    def ping(self, ns: str, dst: str, *args: str) -> tuple[float, float | None]:
        """(loss %, rtt avg ms or None when nothing came back)."""
        result = subprocess.run(
            netns.in_netns(ns, ["ping", "-q", "-n", *args, dst]), capture_output=True, text=True, timeout=120
        )
        loss = re.search(r"([\d.]+)% packet loss", result.stdout)
        assert loss, result.stdout + result.stderr
        rtt = re.search(r"= [\d.]+/([\d.]+)/", result.stdout)
        return float(loss.group(1)), float(rtt.group(1)) if rtt else None


@pytest.fixture
def pair() -> Iterator[Pair]:
    p = Pair(
        netns.unique_name("sha"), netns.unique_name("shb"), netns.unique_name("va"), netns.unique_name("vb")
    )
    with netns.namespaces(p.a, p.b):
        netns.add_veth(p.a, p.if_a, p.b, p.if_b)
        netns.run_ip("-n", p.a, "addr", "add", f"{A_IP}/24", "dev", p.if_a)
        netns.run_ip("-n", p.b, "addr", "add", f"{B_IP}/24", "dev", p.if_b)
        yield p


class DelayLineProcess:
    """The delay line in namespace `ns`, ready (its queues bound) when the constructor returns."""

    def __init__(self, pair: Pair, ns: str, config: shaping.DelayLineConfig) -> None:
        self.proc = pair.popen(ns, [sys.executable, *config.to_argv()], stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        ready, _, _ = select.select([self.proc.stderr], [], [], 10)
        self.banner = self.proc.stderr.readline() if ready else ""
        if "delayline: pid" not in self.banner:
            self.stop()
            raise AssertionError(f"the delay line did not start: {self.banner!r}")

    def stop(self, timeout: float = 5.0) -> str:
        """SIGTERM, wait; return the rest of its stderr.  Kills it if it overstays."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def test_delay_egress_and_ingress_add_up_to_the_rtt(pair: Pair):
    shape = shaping.LinkShape(delay_ms=20)
    egress = shaping.egress_commands(pair.if_a, shape, "userspace", 1)
    ingress = shaping.ingress_commands(pair.if_a, shape, "userspace", 2)
    assert egress.description == "delay 20ms (NFQUEUE delay line, queue 1)"
    pair.apply(pair.a, egress)
    pair.apply(pair.a, ingress)

    kernel = shaping.installed(lambda argv: pair.run(pair.a, argv), pair.if_a)
    rules = "\n".join(kernel["rules"])
    assert f"-A POSTROUTING -o {pair.if_a} " in rules and "--queue-num 1 --queue-bypass" in rules
    assert f"-A PREROUTING -i {pair.if_a} " in rules and "--queue-num 2 --queue-bypass" in rules

    line = DelayLineProcess(pair, pair.a, shaping.DelayLineConfig({1: (20, 0), 2: (20, 0)}))
    try:
        loss, rtt = pair.ping(pair.b, A_IP, "-c", "20", "-i", "0.05")
    finally:
        err = line.stop()
    print(f"rtt avg {rtt} ms with 20 ms each way; {err.strip()}")
    assert loss == 0
    assert rtt is not None and 35 <= rtt <= 45
    assert "40 packets delayed (queue 1: 20, queue 2: 20)" in err


def test_loss_by_the_statistic_match(pair: Pair):
    egress = shaping.egress_commands(pair.if_a, shaping.LinkShape(loss_pct=10), "userspace", 1)
    assert egress.description == "loss 10% (iptables statistic)"
    pair.apply(pair.a, egress)
    assert any(
        "--probability 0.1" in r for r in shaping.installed(lambda v: pair.run(pair.a, v), pair.if_a)["rules"]
    )

    loss, _ = pair.ping(pair.b, A_IP, "-c", "1000", "-i", "0.002", "-W", "1")
    print(f"loss {loss}% for 10% configured")
    assert 6 <= loss <= 14


# UDP, not TCP: TCP hands HTB 64 KB GSO packets, half a second each at 1 Mbit/s, which makes
# a 2 s measurement window coarse; 1000-byte datagrams measure it to 0.1 %.  The sender does
# not overrun: its socket buffer fills and blocks it while HTB's queue drains at the rate.
RECEIVER = """
import socket, time
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); srv.bind(("0.0.0.0", 5201)); srv.settimeout(5)
print("ready", flush=True)
srv.recv(2048); first = time.monotonic()
start, end, counted = first + 0.5, first + 2.5, 0   # skip the first 0.5 s: HTB's burst
while (now := time.monotonic()) < end:
    n = len(srv.recv(2048))
    if now >= start:
        counted += n
print(counted * 8 / (time.monotonic() - start) / 1e6, flush=True)
"""

SENDER = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(("%s", 5201))
deadline, datagram = time.monotonic() + 10, b"x" * 1000
try:
    while time.monotonic() < deadline:
        s.send(datagram)
except OSError:
    pass   # ECONNREFUSED: the receiver has measured and gone
"""


def test_rate_by_htb(pair: Pair):
    egress = shaping.egress_commands(pair.if_a, shaping.LinkShape(rate_mbit=1), "userspace", 1)
    assert egress.description == "rate 1Mbit/s (HTB)"
    pair.apply(pair.a, egress)
    assert "htb 1: root" in "\n".join(shaping.installed(lambda v: pair.run(pair.a, v), pair.if_a)["qdiscs"])

    receiver = pair.popen(pair.b, [sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE)
    sender = None
    try:
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
        sender = pair.popen(pair.a, [sys.executable, "-c", SENDER % B_IP])
        out, _ = receiver.communicate(timeout=20)
    finally:
        for proc in (receiver, sender):
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                proc.wait()
    mbit = float(out.strip())
    print(f"rate {mbit:.3f} Mbit/s of UDP payload through 1 Mbit/s HTB")
    assert 0.6 < mbit < 1.3


def test_a_dead_delay_line_fails_open(pair: Pair):
    pair.apply(pair.a, shaping.egress_commands(pair.if_a, shaping.LinkShape(delay_ms=20), "userspace", 1))
    line = DelayLineProcess(pair, pair.a, shaping.DelayLineConfig({1: (20, 0)}))
    try:
        _, rtt = pair.ping(pair.b, A_IP, "-c", "5", "-i", "0.05")
        assert rtt is not None and rtt >= 18
        started = time.monotonic()
        line.proc.terminate()
        line.proc.wait(timeout=2)
        took = time.monotonic() - started
    finally:
        err = line.stop()
    assert line.proc.returncode == 0, err
    assert "packets delayed" in err
    loss, rtt = pair.ping(pair.b, A_IP, "-c", "10", "-i", "0.05", "-W", "1")
    print(f"delay line exited in {took * 1000:.0f} ms; afterwards loss {loss}%, rtt {rtt} ms")
    assert loss == 0 and rtt is not None and rtt < 5


def test_packets_held_at_exit_are_released_not_dropped(pair: Pair):
    pair.apply(pair.a, shaping.egress_commands(pair.if_a, shaping.LinkShape(delay_ms=2000), "userspace", 1))
    line = DelayLineProcess(pair, pair.a, shaping.DelayLineConfig({1: (2000, 0)}))
    try:
        ping = subprocess.Popen(
            netns.in_netns(pair.b, ["ping", "-n", "-c", "1", "-W", "5", A_IP]),
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.3)  # the reply is now held, 1.7 s from due
    finally:
        err = line.stop()
    out, _ = ping.communicate(timeout=10)
    rtt = re.search(r"time=([\d.]+) ms", out)
    print(f"reply held at SIGTERM came back after {rtt and rtt.group(1)} ms; {err.strip()}")
    assert "1 released at exit" in err
    assert ping.returncode == 0 and rtt and float(rtt.group(1)) < 1500
