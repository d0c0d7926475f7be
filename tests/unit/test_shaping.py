"""Shaping commands (pure) and the delay line's argument parsing."""

import argparse
import sys

import pytest

from testbed import shaping
from testbed.delayline import parse_queue

S = shaping.LinkShape
MANGLE = ["iptables", "-t", "mangle", "-A"]
TAG = ["-m", "comment", "--comment", "vtb-shape"]


def test_choose_method():
    assert shaping.choose_method(True) == "netem"
    assert shaping.choose_method(False) == "userspace"


def test_userspace_egress_orders_loss_before_the_queue():
    got = shaping.egress_commands("eth0", S(delay_ms=20, loss_pct=10), "userspace", 3)
    rule = [*MANGLE, "POSTROUTING", "-o", "eth0", *TAG]
    assert got.commands == [
        [*rule, "-m", "statistic", "--mode", "random", "--probability", "0.1", "-j", "DROP"],
        [*rule, "-j", "NFQUEUE", "--queue-num", "3", "--queue-bypass"],
    ]
    assert got.description == "loss 10% (iptables statistic), delay 20ms (NFQUEUE delay line, queue 3)"


def test_userspace_egress_with_everything():
    got = shaping.egress_commands(
        "eth0", S(delay_ms=5, jitter_ms=1.5, loss_pct=1, rate_mbit=10), "userspace", 7
    )
    assert [c[:3] for c in got.commands] == [["iptables", "-t", "mangle"]] * 2 + [
        ["tc", "qdisc", "replace"]
    ] + [["tc", "class", "replace"]]
    assert got.description == (
        "loss 1% (iptables statistic), delay 5ms ±1.5ms (NFQUEUE delay line, queue 7), rate 10Mbit/s (HTB)"
    )


def test_userspace_ingress_uses_prerouting_and_leaves_rate_to_the_switch_port():
    got = shaping.ingress_commands("eth1", S(delay_ms=5, jitter_ms=1, rate_mbit=10), "userspace", 2)
    assert got.commands == [
        [*MANGLE, "PREROUTING", "-i", "eth1", *TAG, "-j", "NFQUEUE", "--queue-num", "2", "--queue-bypass"]
    ]
    assert got.description == (
        "delay 5ms ±1ms (NFQUEUE delay line, queue 2), rate 10Mbit/s not here (HTB on the switch port)"
    )


def test_ingress_loss_and_rate_only():
    got = shaping.ingress_commands("eth1", S(loss_pct=2.5), "userspace", 1)
    statistic = ["-m", "statistic", "--mode", "random", "--probability", "0.025"]
    assert got.commands == [[*MANGLE, "PREROUTING", "-i", "eth1", *TAG, *statistic, "-j", "DROP"]]
    rate_only = shaping.ingress_commands("eth1", S(rate_mbit=2), "userspace", 1)
    assert rate_only.commands == []
    assert rate_only.description == "rate 2Mbit/s not here (HTB on the switch port)"


def test_rate_is_an_htb_class():
    got = shaping.rate_commands("s1-eth1", 1.5)
    assert got.commands == [
        ["tc", "qdisc", "replace", "dev", "s1-eth1", "root", "handle", "1:", "htb", "default", "1"],
        ["tc", "class", "replace", "dev", "s1-eth1", "parent", "1:", "classid", "1:1", "htb", "rate", "1.5mbit", "ceil", "1.5mbit"],
    ]  # fmt: skip
    assert got.description == "rate 1.5Mbit/s (HTB)"
    assert shaping.egress_commands("s1-eth1", S(rate_mbit=1.5), "userspace", 1) == got


def test_netem_is_one_qdisc():
    got = shaping.egress_commands(
        "eth0", S(delay_ms=20, jitter_ms=2, loss_pct=0.5, rate_mbit=100), "netem", 1
    )
    assert got.commands == [
        ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", "20ms", "2ms", "loss", "0.5%", "rate", "100mbit"]
    ]  # fmt: skip
    assert got.description == "delay 20ms ±2ms, loss 0.5%, rate 100Mbit/s (netem)"
    assert shaping.egress_commands("eth0", S(loss_pct=3), "netem", 1).commands == [
        ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "loss", "3%"]
    ]
    assert shaping.ingress_commands("eth0", S(delay_ms=20), "netem", 1).commands == []


@pytest.mark.parametrize("method", ["netem", "userspace"])
@pytest.mark.parametrize("make", [shaping.egress_commands, shaping.ingress_commands])
def test_a_null_shape_installs_nothing(method, make):
    assert S().is_null and S(rate_mbit=None).is_null
    assert not S(jitter_ms=1).is_null
    assert make("eth0", S(), method, 1).commands == []


@pytest.mark.parametrize(
    ("pct", "expected"), [(10, "0.1"), (100, "1"), (0.01, "0.0001"), (0.001, "0.00001"), (33.3, "0.333")]
)
def test_loss_probability_is_a_fixed_point_fraction(pct, expected):
    got = shaping.egress_commands("eth0", S(loss_pct=pct), "userspace", 1)
    assert got.commands[0][-3] == expected


@pytest.mark.parametrize("bad", [{"delay_ms": -1}, {"jitter_ms": -1}, {"loss_pct": 101}, {"rate_mbit": 0}])
def test_impossible_shapes_are_refused(bad):
    with pytest.raises(ValueError):
        S(**bad)


def test_installed_filters_our_rules_for_the_interface():
    outputs = {
        "tc": "qdisc htb 1: root refcnt 2 r2q 10 default 0x1\n",
        "iptables": "-P PREROUTING ACCEPT\n"
        "-A POSTROUTING -o eth0 -m comment --comment vtb-shape -j NFQUEUE --queue-num 1 --queue-bypass\n"
        "-A POSTROUTING -o eth00 -m comment --comment vtb-shape -j NFQUEUE --queue-num 2 --queue-bypass\n"
        "-A POSTROUTING -o eth0 -j MARK --set-xmark 0x1/0xffffffff\n",
    }
    got = shaping.installed(lambda argv: outputs[argv[0]], "eth0")
    assert got == {
        "qdiscs": ["qdisc htb 1: root refcnt 2 r2q 10 default 0x1"],
        "rules": [
            "-A POSTROUTING -o eth0 -m comment --comment vtb-shape -j NFQUEUE --queue-num 1 --queue-bypass"
        ],
    }


def test_delay_line_argv_and_parsing():
    config = shaping.DelayLineConfig({2: (10.0, 0.0), 1: (20.0, 2.5)})
    assert config.to_argv() == ["-m", "testbed.delayline", "--queue", "1:20:2.5", "--queue", "2:10:0"]
    assert config.command() == [sys.executable, *config.to_argv()]
    assert parse_queue("1:20:2.5").delay_ms == 20.0
    for bad in ("1:20", "x:1:1", "1:-5:0", "70000:1:0", "1:2:3:4"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_queue(bad)
