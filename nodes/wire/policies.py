"""Pool member selection policies (RFC 5356, RSPLIB's extensions, the delay draft).

Each policy is a small frozen dataclass whose fields, in declaration order, are the
32-bit words that follow the policy type on the wire: the class *is* the wire layout.
Load-type values are fractions of 0xffffffff (100 %); DPF values too; distance is ms.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from typing import ClassVar

from .constants import MAX_LOAD


class PolicyType(enum.IntEnum):
    ROUND_ROBIN = 0x00000001
    WEIGHTED_ROUND_ROBIN = 0x00000002
    RANDOM = 0x00000003
    WEIGHTED_RANDOM = 0x00000004
    PRIORITY = 0x00000005
    LEAST_USED = 0x40000001
    LEAST_USED_DEGRADATION = 0x40000002
    PRIORITY_LEAST_USED = 0x40000003
    RANDOMIZED_LEAST_USED = 0x40000004
    RANDOMIZED_PRIORITY_LEAST_USED = 0xB0001001
    RANDOMIZED_LEAST_USED_DEGRADATION = 0xB0001002
    PRIORITY_LEAST_USED_DEGRADATION = 0xB0001003
    RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION = 0xB0001004
    WEIGHTED_RANDOM_DPF = 0xB0002001
    LEAST_USED_DPF = 0xB0002002
    LEAST_USED_DEGRADATION_DPF = 0xB0002003
    # In RSPLIB's selection table but with no wire encoding there (sending them fails
    # with "Unknown policy"); usable inside a registrar, never on the wire.
    PRIORITY_LEAST_USED_DPF = 0xB0002004
    PRIORITY_LEAST_USED_DEGRADATION_DPF = 0xB0002005


#: Short names as RSPLIB and Wireshark print them.
POLICY_ABBREVIATIONS = {
    PolicyType.ROUND_ROBIN: "RR",
    PolicyType.WEIGHTED_ROUND_ROBIN: "WRR",
    PolicyType.RANDOM: "RAND",
    PolicyType.WEIGHTED_RANDOM: "WRAND",
    PolicyType.PRIORITY: "PRIO",
    PolicyType.LEAST_USED: "LU",
    PolicyType.LEAST_USED_DEGRADATION: "LUD",
    PolicyType.PRIORITY_LEAST_USED: "PLU",
    PolicyType.RANDOMIZED_LEAST_USED: "RLU",
    PolicyType.RANDOMIZED_PRIORITY_LEAST_USED: "RPLU",
    PolicyType.RANDOMIZED_LEAST_USED_DEGRADATION: "RLUD",
    PolicyType.PRIORITY_LEAST_USED_DEGRADATION: "PLUD",
    PolicyType.RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION: "RPLUD",
    PolicyType.WEIGHTED_RANDOM_DPF: "WRAND-DPF",
    PolicyType.LEAST_USED_DPF: "LU-DPF",
    PolicyType.LEAST_USED_DEGRADATION_DPF: "LUD-DPF",
    PolicyType.PRIORITY_LEAST_USED_DPF: "PLU-DPF",
    PolicyType.PRIORITY_LEAST_USED_DEGRADATION_DPF: "PLUD-DPF",
}

#: Policies whose PEs must re-register when their load changes (RSPLIB's PPT_IS_ADAPTIVE).
ADAPTIVE_POLICIES = frozenset(PolicyType) - {
    PolicyType.ROUND_ROBIN,
    PolicyType.WEIGHTED_ROUND_ROBIN,
    PolicyType.RANDOM,
    PolicyType.WEIGHTED_RANDOM,
    PolicyType.PRIORITY,
    PolicyType.WEIGHTED_RANDOM_DPF,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """Base of the policy classes; `POLICY_TYPE` is the 32-bit type on the wire."""

    POLICY_TYPE: ClassVar[PolicyType]
    FIELDS: ClassVar[tuple[str, ...]]
    _STRUCT: ClassVar[struct.Struct]

    @property
    def policy_type(self) -> PolicyType:
        return self.POLICY_TYPE

    @property
    def name(self) -> str:
        return POLICY_ABBREVIATIONS[self.POLICY_TYPE]

    def values(self) -> tuple[int, ...]:
        return tuple(getattr(self, f) for f in self.FIELDS)

    def encode_value(self) -> bytes:
        """Type and fields: the value part of the policy parameter."""
        return self._STRUCT.pack(self.POLICY_TYPE, *self.values())


#: Wire classes by policy type, filled by `_policy`.
POLICY_CLASSES: dict[int, type[Policy]] = {}


def _policy(ptype: PolicyType):  # type: ignore[no-untyped-def]
    def register(cls: type[Policy]) -> type[Policy]:
        cls = dataclasses.dataclass(frozen=True, slots=True)(cls)
        cls.POLICY_TYPE = ptype
        cls.FIELDS = tuple(f.name for f in dataclasses.fields(cls))
        cls._STRUCT = struct.Struct("!I" + "I" * len(cls.FIELDS))
        POLICY_CLASSES[ptype] = cls
        return cls

    return register


@_policy(PolicyType.ROUND_ROBIN)
class RoundRobin(Policy):
    pass


@_policy(PolicyType.WEIGHTED_ROUND_ROBIN)
class WeightedRoundRobin(Policy):
    weight: int


@_policy(PolicyType.RANDOM)
class Random(Policy):
    pass


@_policy(PolicyType.WEIGHTED_RANDOM)
class WeightedRandom(Policy):
    weight: int


@_policy(PolicyType.PRIORITY)
class Priority(Policy):
    priority: int


@_policy(PolicyType.LEAST_USED)
class LeastUsed(Policy):
    load: int


@_policy(PolicyType.LEAST_USED_DEGRADATION)
class LeastUsedDegradation(Policy):
    load: int
    load_degradation: int


@_policy(PolicyType.PRIORITY_LEAST_USED)
class PriorityLeastUsed(Policy):
    load: int
    load_degradation: int


@_policy(PolicyType.RANDOMIZED_LEAST_USED)
class RandomizedLeastUsed(Policy):
    load: int


@_policy(PolicyType.RANDOMIZED_PRIORITY_LEAST_USED)
class RandomizedPriorityLeastUsed(Policy):
    load: int
    load_degradation: int


@_policy(PolicyType.RANDOMIZED_LEAST_USED_DEGRADATION)
class RandomizedLeastUsedDegradation(Policy):
    load: int
    load_degradation: int


@_policy(PolicyType.PRIORITY_LEAST_USED_DEGRADATION)
class PriorityLeastUsedDegradation(Policy):
    load: int
    load_degradation: int


@_policy(PolicyType.RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION)
class RandomizedPriorityLeastUsedDegradation(Policy):
    load: int
    load_degradation: int


@_policy(PolicyType.WEIGHTED_RANDOM_DPF)
class WeightedRandomDpf(Policy):
    weight: int
    weight_dpf: int
    distance: int = 0


@_policy(PolicyType.LEAST_USED_DPF)
class LeastUsedDpf(Policy):
    load: int
    load_dpf: int
    distance: int = 0


@_policy(PolicyType.LEAST_USED_DEGRADATION_DPF)
class LeastUsedDegradationDpf(Policy):
    load: int
    load_degradation: int
    load_dpf: int
    distance: int = 0


def load_fraction(value: int) -> float:
    """A load-type wire value as a fraction in [0, 1]."""
    return value / MAX_LOAD


def load_value(fraction: float) -> int:
    """A fraction in [0, 1] as a load-type wire value."""
    return round(min(max(fraction, 0.0), 1.0) * MAX_LOAD)
