"""Shaping commands (pure) and the delay line's argument parsing."""

import argparse

import pytest

from testbed import shaping
from testbed.delayline import parse_queue

S = shaping.LinkShape


def test_userspace_egress_orders_loss_before_the_queue():
    got = shaping.egress_commands("eth0", S(delay_ms=20, loss_pct=10), "userspace", 3)
    rule = ["iptables", "-t", "mangle", "-A", "POSTROUTING", "-o", "eth0", "-m", "comment", "--comment", "vtb-shape"]
    assert got.commands == [
        [*rule, "-m", "statistic", "--mode", "random", "--probability", "0.1", "-j", "DROP"],
        [*rule, "-j", "NFQUEUE", "--queue-num", "3", "--queue-bypass"],
    ]
    assert got.description == "loss 10% (iptables statistic), delay 20ms (NFQUEUE delay line, queue 3)"


def test_userspace_ingress_uses_prerouting_and_leaves_rate_to_the_switch_port():
    got = shaping.ingress_commands("eth1", S(delay_ms=5, jitter_ms=1, rate_mbit=10), "userspace", 2)
    assert [c[4:7] for c in got.commands] == [["PREROUTING", "-i", "eth1"]]
    assert "±1ms" in got.description and "rate" not in got.description


def test_rate_is_an_htb_class():
    got = shaping.egress_commands("eth0", S(rate_mbit=1.5), "userspace", 1)
    assert got.commands[0] == ["tc", "qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "htb", "default", "1"]
    assert got.commands[1][-4:] == ["rate", "1.5mbit", "ceil", "1.5mbit"]


def test_netem_is_one_qdisc():
    got = shaping.egress_commands("eth0", S(delay_ms=20, jitter_ms=2, loss_pct=0.5, rate_mbit=100), "netem", 1)
    assert got.commands == [["tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", "20ms", "2ms",
                             "loss", "0.5%", "rate", "100mbit"]]


@pytest.mark.parametrize("method", ["netem", "userspace"])
def test_a_null_shape_installs_nothing(method):
    assert S().is_null
    assert shaping.egress_commands("eth0", S(), method, 1).commands == []


def test_loss_probability_keeps_small_values():
    got = shaping.egress_commands("eth0", S(loss_pct=0.01), "userspace", 1)
    assert got.commands[0][-3] == "0.0001"


def test_delay_line_argv_and_parsing():
    argv = shaping.DelayLineConfig({2: (10.0, 0.0), 1: (20.0, 2.5)}).to_argv()
    assert argv == ["-m", "testbed.delayline", "--queue", "1:20:2.5", "--queue", "2:10:0"]
    assert parse_queue("1:20:2.5").delay_ms == 20.0
    for bad in ("1:20", "x:1:1", "1:-5:0", "70000:1:0"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_queue(bad)
