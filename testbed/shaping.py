"""Link shaping commands: netem where the kernel has it, a userspace fallback where not.

The fallback is real, not a no-op: delay and jitter by an NFQUEUE delay line
(`testbed.delayline`) that holds each packet in user space, random loss by iptables'
statistic match, rate by an HTB class.  Rules go in the mangle table, loss before the
queue so that a dropped packet is not delayed first, and with `--queue-bypass`, so that a
dead delay line lets packets through undelayed rather than blackholing the link.

These functions only compute commands (pure, unit-tested); the caller runs them inside
the right namespace and `installed()` reads back what the kernel really holds.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Method = Literal["netem", "userspace"]
COMMENT = "vtb-shape"  # tags every rule we add, so readback and cleanup find only ours

Command = list[str]
Runner = Callable[[Command], str]


@dataclass(frozen=True)
class LinkShape:
    """The shaping of one direction of one link, in the units people write in topologies."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    rate_mbit: float | None = None

    def __post_init__(self) -> None:
        # Checked here, not in each generator: a negative delay would reach tc or the delay
        # line as a confusing error far from the topology that caused it.
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise ValueError("delay and jitter must be >= 0")
        if not 0 <= self.loss_pct <= 100:
            raise ValueError("loss must be within 0-100 %")
        if self.rate_mbit is not None and self.rate_mbit <= 0:
            raise ValueError("rate must be > 0 (or None for unlimited)")

    @property
    def is_null(self) -> bool:
        """True when there is nothing to install, so callers skip the link entirely."""
        return not (self.delay_ms or self.jitter_ms or self.loss_pct or self.rate_mbit)

    @property
    def delays(self) -> bool:
        return bool(self.delay_ms or self.jitter_ms)


@dataclass(frozen=True)
class Installation:
    """Commands for one end, and what they do in words, for the testbed's status report."""

    commands: list[Command] = field(default_factory=list)
    description: str = ""


def choose_method(netem_available: bool) -> Method:
    """netem when the kernel has sch_netem (one qdisc, no process); otherwise the fallback."""
    return "netem" if netem_available else "userspace"


def _num(value: float) -> str:
    return f"{value:g}"


def _probability(loss_pct: float) -> str:
    """10 -> "0.1": iptables wants a fraction; fixed point, because it rejects "1e-05"."""
    return f"{loss_pct / 100:.10f}".rstrip("0").rstrip(".")


def _delay_words(shape: LinkShape) -> str:
    jitter = f" ±{_num(shape.jitter_ms)}ms" if shape.jitter_ms else ""
    return f"delay {_num(shape.delay_ms)}ms{jitter}"


def egress_commands(intf: str, shape: LinkShape, method: Method, queue_num: int) -> Installation:
    """Shape packets leaving `intf` (locally sent or forwarded)."""
    if method == "netem":
        return _netem(intf, shape)
    return _userspace(intf, shape, queue_num, chain="POSTROUTING", flag="-o", with_rate=True)


def ingress_commands(intf: str, shape: LinkShape, method: Method, queue_num: int) -> Installation:
    """Shape packets arriving on `intf`.

    Used where the other end is a switch port in the root namespace, whose packets iptables
    never sees (OVS sends them with AF_PACKET).  Rate is not shaped here, since an ingress
    policer would drop rather than queue: `rate_commands` puts HTB on the switch port instead.
    """
    if method == "netem":
        return Installation([], "none here (netem on the other end's egress)")
    got = _userspace(intf, shape, queue_num, chain="PREROUTING", flag="-i", with_rate=False)
    if shape.rate_mbit:
        note = f"rate {_num(shape.rate_mbit)}Mbit/s not here (HTB on the switch port)"
        got = Installation(got.commands, ", ".join(filter(None, [got.description, note])))
    return got


def rate_commands(intf: str, rate_mbit: float) -> Installation:
    """An HTB root with one default class at `rate_mbit`: everything leaving `intf` is limited.

    `replace` rather than `add`, so that applying a shape twice is not an error.
    """
    rate = f"{_num(rate_mbit)}mbit"
    qdisc = ["tc", "qdisc", "replace", "dev", intf, "root", "handle", "1:", "htb", "default", "1"]
    klass = ["tc", "class", "replace", "dev", intf, "parent", "1:", "classid", "1:1", "htb"]
    return Installation([qdisc, [*klass, "rate", rate, "ceil", rate]], f"rate {_num(rate_mbit)}Mbit/s (HTB)")


def _netem(intf: str, shape: LinkShape) -> Installation:
    argv = ["tc", "qdisc", "replace", "dev", intf, "root", "netem"]
    parts = []
    if shape.delays:
        argv += ["delay", f"{_num(shape.delay_ms)}ms"]
        argv += [f"{_num(shape.jitter_ms)}ms"] if shape.jitter_ms else []
        parts.append(_delay_words(shape))
    if shape.loss_pct:
        argv += ["loss", f"{_num(shape.loss_pct)}%"]
        parts.append(f"loss {_num(shape.loss_pct)}%")
    if shape.rate_mbit:
        argv += ["rate", f"{_num(shape.rate_mbit)}mbit"]
        parts.append(f"rate {_num(shape.rate_mbit)}Mbit/s")
    if not parts:
        return Installation()
    return Installation([argv], ", ".join(parts) + " (netem)")


def _userspace(
    intf: str, shape: LinkShape, queue_num: int, *, chain: str, flag: str, with_rate: bool
) -> Installation:
    commands: list[Command] = []
    parts = []
    rule = ["iptables", "-t", "mangle", "-A", chain, flag, intf, "-m", "comment", "--comment", COMMENT]
    if shape.loss_pct:
        statistic = ["-m", "statistic", "--mode", "random", "--probability", _probability(shape.loss_pct)]
        commands.append([*rule, *statistic, "-j", "DROP"])
        parts.append(f"loss {_num(shape.loss_pct)}% (iptables statistic)")
    if shape.delays:
        commands.append([*rule, "-j", "NFQUEUE", "--queue-num", str(queue_num), "--queue-bypass"])
        parts.append(f"{_delay_words(shape)} (NFQUEUE delay line, queue {queue_num})")
    if with_rate and shape.rate_mbit:
        rate = rate_commands(intf, shape.rate_mbit)
        commands += rate.commands
        parts.append(rate.description)
    return Installation(commands, ", ".join(parts))


def installed(run: Runner, intf: str) -> dict[str, list[str]]:
    """What the kernel holds for `intf`: its qdiscs and the testbed's mangle rules.

    Read back rather than trusted, so tests and `status` show what is really in force.
    """
    qdiscs = [line for line in run(["tc", "qdisc", "show", "dev", intf]).splitlines() if line.strip()]
    rules = [
        line
        for line in run(["iptables", "-t", "mangle", "-S"]).splitlines()
        if COMMENT in line and f" {intf} " in f"{line} "
    ]
    return {"qdiscs": qdiscs, "rules": rules}


@dataclass(frozen=True)
class DelayLineConfig:
    """The queues one namespace's delay line serves: queue number -> (delay ms, jitter ms)."""

    queues: Mapping[int, tuple[float, float]]

    def to_argv(self) -> list[str]:
        """Arguments after the interpreter; the caller picks how to enter the namespace."""
        argv = ["-m", "testbed.delayline"]
        for num, (delay, jitter) in sorted(self.queues.items()):
            argv += ["--queue", f"{num}:{_num(delay)}:{_num(jitter)}"]
        return argv

    def command(self) -> list[str]:
        return [sys.executable, *self.to_argv()]
