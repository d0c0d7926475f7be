"""Link shaping commands: netem where the kernel has it, a userspace fallback where not.

The fallback is real, not a no-op: delay and jitter by an NFQUEUE delay line
(`testbed.delayline`) that holds each packet in user space, random loss by iptables'
statistic match, rate by an HTB class.  Rules go in the mangle table, loss before the
queue so that a dropped packet is not delayed first, and with `--queue-bypass`, so that a
dead delay line lets packets through undelayed rather than blackholing the link.

These functions only compute commands (pure, unit-tested); the builder runs them inside
the right namespace and `installed()` reads back what the kernel really holds.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Method = Literal["netem", "userspace"]
COMMENT = "vtb-shape"


@dataclass(frozen=True)
class LinkShape:
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    rate_mbit: float | None = None

    @property
    def is_null(self) -> bool:
        return not (self.delay_ms or self.jitter_ms or self.loss_pct or self.rate_mbit)


@dataclass(frozen=True)
class Installation:
    commands: list[list[str]] = field(default_factory=list)
    description: str = ""


def choose_method(netem_available: bool) -> Method:
    return "netem" if netem_available else "userspace"


def _num(value: float) -> str:
    return f"{value:g}"


def egress_commands(intf: str, shape: LinkShape, method: Method, queue_num: int) -> Installation:
    """Shape packets leaving `intf` (locally sent or forwarded)."""
    if method == "netem":
        return _netem(intf, shape)
    return _userspace(intf, shape, queue_num, "POSTROUTING", "-o", with_rate=True)


def ingress_commands(intf: str, shape: LinkShape, method: Method, queue_num: int) -> Installation:
    """Shape packets arriving on `intf`: used where the other end is a switch port in the root
    namespace, whose packets iptables never sees (OVS sends them with AF_PACKET).  Rate is not
    shaped here: `rate_commands` puts HTB on the switch port instead."""
    if method == "netem":
        return Installation([], "netem shapes the other end's egress")
    return _userspace(intf, shape, queue_num, "PREROUTING", "-i", with_rate=False)


def _netem(intf: str, shape: LinkShape) -> Installation:
    argv = ["tc", "qdisc", "replace", "dev", intf, "root", "netem"]
    parts = []
    if shape.delay_ms or shape.jitter_ms:
        argv += ["delay", f"{_num(shape.delay_ms)}ms"] + ([f"{_num(shape.jitter_ms)}ms"] if shape.jitter_ms else [])
        parts.append(f"delay {_num(shape.delay_ms)}ms" + (f" ±{_num(shape.jitter_ms)}ms" if shape.jitter_ms else ""))
    if shape.loss_pct:
        argv += ["loss", f"{_num(shape.loss_pct)}%"]
        parts.append(f"loss {_num(shape.loss_pct)}%")
    if shape.rate_mbit:
        argv += ["rate", f"{_num(shape.rate_mbit)}mbit"]
        parts.append(f"rate {_num(shape.rate_mbit)}Mbit/s")
    if not parts:
        return Installation()
    return Installation([argv], ", ".join(parts) + " (netem)")


def _userspace(intf: str, shape: LinkShape, queue_num: int, chain: str, flag: str, with_rate: bool) -> Installation:
    commands: list[list[str]] = []
    parts = []
    rule = ["iptables", "-t", "mangle", "-A", chain, flag, intf, "-m", "comment", "--comment", COMMENT]
    if shape.loss_pct:
        probability = f"{shape.loss_pct / 100:.6f}".rstrip("0").rstrip(".")
        commands.append([*rule, "-m", "statistic", "--mode", "random", "--probability", probability, "-j", "DROP"])
        parts.append(f"loss {_num(shape.loss_pct)}% (iptables statistic)")
    if shape.delay_ms or shape.jitter_ms:
        commands.append([*rule, "-j", "NFQUEUE", "--queue-num", str(queue_num), "--queue-bypass"])
        jitter = f" ±{_num(shape.jitter_ms)}ms" if shape.jitter_ms else ""
        parts.append(f"delay {_num(shape.delay_ms)}ms{jitter} (NFQUEUE delay line, queue {queue_num})")
    if with_rate and shape.rate_mbit:
        rate = rate_commands(intf, shape.rate_mbit)
        commands += rate.commands
        parts.append(rate.description)
    return Installation(commands, ", ".join(parts))


def rate_commands(intf: str, rate_mbit: float) -> Installation:
    """An HTB root with one class at `rate_mbit`: everything leaving `intf` is limited."""
    rate = f"{_num(rate_mbit)}mbit"
    return Installation(
        [["tc", "qdisc", "replace", "dev", intf, "root", "handle", "1:", "htb", "default", "1"],
         ["tc", "class", "replace", "dev", intf, "parent", "1:", "classid", "1:1", "htb", "rate", rate,
          "ceil", rate]],
        f"rate {_num(rate_mbit)}Mbit/s (HTB)",
    )  # fmt: skip


def installed(run: Callable[[list[str]], str], intf: str) -> dict[str, list[str]]:
    """What the kernel holds for `intf`: its qdiscs and the testbed's mangle rules."""
    qdiscs = [line for line in run(["tc", "qdisc", "show", "dev", intf]).splitlines() if line.strip()]
    rules = [line for line in run(["iptables", "-t", "mangle", "-S"]).splitlines()
             if COMMENT in line and f" {intf} " in f"{line} "]  # fmt: skip
    return {"qdiscs": qdiscs, "rules": rules}


@dataclass(frozen=True)
class DelayLineConfig:
    queues: Mapping[int, tuple[float, float]]  # queue number -> (delay ms, jitter ms)

    def to_argv(self) -> list[str]:
        argv = ["-m", "testbed.delayline"]
        for num, (delay, jitter) in sorted(self.queues.items()):
            argv += ["--queue", f"{num}:{_num(delay)}:{_num(jitter)}"]
        return argv

    def command(self) -> list[str]:
        return [sys.executable, *self.to_argv()]
