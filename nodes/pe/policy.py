"""Policies by name, as topologies and command lines write them (pure).

Names are the policy types in kebab case (`least-used`, `weighted-random-dpf`, ...), or
RSPLIB's and Wireshark's abbreviations (`LU`, `WRAND-DPF`, ...).  Values are given as people
think of them: load, degradation and DPF as fractions (0.1 = 10 %), distance in ms.
"""

from __future__ import annotations

import dataclasses

from nodes.wire.policies import POLICY_ABBREVIATIONS, POLICY_CLASSES, Policy, PolicyType, load_value

POLICY_NAMES: dict[str, PolicyType] = {
    t.name.lower().replace("_", "-"): t for t in PolicyType if t in POLICY_CLASSES
}
_ABBREVIATIONS = {abbr.lower(): t for t, abbr in POLICY_ABBREVIATIONS.items() if t in POLICY_CLASSES}
_FRACTIONS = {"load", "load_degradation", "load_dpf", "weight_dpf"}


def policy_type(name: str) -> PolicyType:
    key = name.strip().lower()
    found = POLICY_NAMES.get(key) or _ABBREVIATIONS.get(key)
    if found is None:
        raise ValueError(f"unknown policy {name!r} (choose from {', '.join(POLICY_NAMES)})")
    return found


def make_policy(name: str, **values: float) -> Policy:
    """`make_policy("weighted-round-robin", weight=3)`; unset fields default to 0 (weight 1)."""
    cls = POLICY_CLASSES[policy_type(name)]
    fields = {f.name for f in dataclasses.fields(cls)}
    args: dict[str, int] = {}
    for field in fields:
        value = values.get(field)
        if value is None:
            value = 1 if field == "weight" else 0
        if value < 0:
            raise ValueError(f"{field} must be >= 0")
        args[field] = load_value(value) if field in _FRACTIONS else int(value)
    return cls(**args)
