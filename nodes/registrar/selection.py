"""Per-policy pool member selection: one spec per policy type and two selection structures.

The semantics follow RSPLIB's registrar (`poolpolicy-template_impl.h`), written afresh:

* Every pool hands out sequence numbers from one counter. A PE gets the next number when it joins
  and again each time a selection advances it, so "lowest sequence number first" among equal
  policy values is round-robin order. Re-registration keeps the PE's number.
* Ordered policies (RR, WRR, PRIO and the least-used family) keep the pool's PEs in a sorted list
  keyed by (policy value..., sequence number). A selection returns the first `count` entries; the
  first MaxIncrement of them get a fresh sequence number and their policy update (accumulated
  degradation, WRR counters) and are re-inserted. O(log n) per PE moved.
* Randomized policies (RAND, WRAND, WRAND-DPF, RLU, RLUD, RPLU, RPLUD) keep a Fenwick tree of
  integer weights: a draw is `rng.randrange(total)` located by a prefix-sum descent, O(log n).
  Several PEs per request are drawn without replacement (a drawn PE's weight is zeroed until the
  request ends). A PE whose weight is 0 (WRAND weight 0) is never drawn, so a request may return
  fewer PEs than the pool has, as in RSPLIB.
* MaxIncrement 0 means the policy's default: 0 for RAND, WRAND and WRAND-DPF, 1 for the others.

Values, as RSPLIB computes them (MAX = 0xffffffff; sums are clamped to MAX):

    RR        sequence only              WRR   (round, virtual counter)   PRIO  highest priority first
    LU        load                       LUD   load + degradation         PLU   load + load_degradation
    PLUD      load + load_degradation + degradation
    LU-DPF    load + distance * load_dpf             LUD-DPF  the same + degradation
    RAND      weight 1                   WRAND weight
    WRAND-DPF weight - round(weight * distance * weight_dpf / MAX), at least 1
    RLU       MAX - load                 RLUD  MAX - load - degradation
    RPLU      MAX - load - load_degradation          RPLUD    RPLU - degradation     (all at least 1)

"degradation" is the PE's accumulated degradation: each selection that advances the PE adds its
load_degradation (clamped to MAX); it returns to 0 when the PE re-registers. WRR: a PE joins with
the pool's current (lowest) round and a virtual counter equal to its weight; each advancing
selection decrements the virtual counter, or, when it is at 1 or below, moves the PE to the next
round with a fresh virtual counter. Distance is the node's `distance` (ms) as the registrar sets
it, not the distance field of the registered policy.

Deliberate differences from RSPLIB:

* RSPLIB runs a policy's update hook again whenever it re-links a PE into its selection tree, so
  there LUD-type degradation grows by twice load_degradation per selection and starts at
  load_degradation after each (re-)registration, and WRR counters move twice per selection. We
  apply the update once per advancing selection and start from 0, as RFC 5356 describes LUD.
* RSPLIB's RLUD and RPLUD read the accumulated degradation but nothing ever increases it for
  these policies, so they behave like RLU and RPLU. We accumulate it as for LUD (for the first
  MaxIncrement PEs drawn), which is what the policies are defined to do.
* WRAND-DPF: RSPLIB turns a negative value into 1 but leaves exactly 0 at 0; we floor every
  penalised non-zero weight at 1 (a PE registered with weight 0 stays at 0).
* Exact integer arithmetic where RSPLIB rounds doubles (the DPF terms); the results differ by at
  most one unit in the last place of a 32-bit value.
* Python integers do not wrap, so RSPLIB's resequencing and round-counter resets are not needed.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from sortedcontainers import SortedList

from nodes.wire.constants import MAX_LOAD
from nodes.wire.policies import PolicyType

if TYPE_CHECKING:
    from .handlespace import PoolElementNode

MAX = MAX_LOAD
P = PolicyType


def _clamp(value: int) -> int:
    return min(value, MAX)


def _floor1(value: int) -> int:
    return 1 if value < 1 else _clamp(value)


# ---------------------------------------------------------------- policy values


def _p(node: PoolElementNode) -> Any:
    """The registered policy; each spec below only reads the fields its policy class has."""
    return node.pe.policy


def _lud(node: PoolElementNode) -> tuple[int, ...]:
    return (_clamp(_p(node).load + node.degradation),)


def _plu(node: PoolElementNode) -> tuple[int, ...]:
    p = _p(node)
    return (_clamp(p.load + p.load_degradation),)


def _plud(node: PoolElementNode) -> tuple[int, ...]:
    p = _p(node)
    return (_clamp(p.load + p.load_degradation + node.degradation),)


def _lu_dpf(node: PoolElementNode) -> tuple[int, ...]:
    p = _p(node)
    return (_clamp(p.load + node.distance * p.load_dpf),)


def _lud_dpf(node: PoolElementNode) -> tuple[int, ...]:
    p = _p(node)
    return (_clamp(p.load + node.degradation + node.distance * p.load_dpf),)


def _wrand_dpf(node: PoolElementNode) -> int:
    p = _p(node)
    weight = p.weight
    if weight == 0:
        return 0
    penalty = (2 * weight * node.distance * p.weight_dpf + MAX) // (2 * MAX)
    return _floor1(weight - penalty)


def _rlu(node: PoolElementNode) -> int:
    return _floor1(MAX - _p(node).load)


def _rlud(node: PoolElementNode) -> int:
    return _floor1(MAX - _p(node).load - node.degradation)


def _rplu(node: PoolElementNode) -> int:
    p = _p(node)
    return _floor1(MAX - p.load - p.load_degradation)


def _rplud(node: PoolElementNode) -> int:
    p = _p(node)
    return _floor1(MAX - p.load - p.load_degradation - node.degradation)


# ---------------------------------------------------------------- per-selection updates


def degrade(node: PoolElementNode) -> None:
    """Add the PE's load degradation to what it has accumulated since it last registered."""
    node.degradation = _clamp(node.degradation + _p(node).load_degradation)


def wrr_advance(node: PoolElementNode) -> None:
    """Use up one of the PE's turns in this round, or move it to the next round."""
    if node.virtual_counter > 1:
        node.virtual_counter -= 1
    else:
        node.round_counter += 1
        node.virtual_counter = _p(node).weight


def wrr_join(node: PoolElementNode, first: PoolElementNode | None) -> None:
    """A new WRR member starts in the pool's current round with all its turns."""
    node.round_counter = first.round_counter if first is not None else 0
    node.virtual_counter = _p(node).weight


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """How one policy type orders or weighs PEs and what a selection changes."""

    policy_type: PolicyType
    default_max_increment: int
    key: Callable[[PoolElementNode], tuple[int, ...]] | None = None  # ordered policies
    weight: Callable[[PoolElementNode], int] | None = None  # randomized policies
    on_select: Callable[[PoolElementNode], None] | None = None
    on_join: Callable[[PoolElementNode, PoolElementNode | None], None] | None = None
    uses_distance: bool = False

    @property
    def ordered(self) -> bool:
        return self.key is not None


def _ordered(ptype: PolicyType, key: Callable[[PoolElementNode], tuple[int, ...]], **kw: Any) -> PolicySpec:
    return PolicySpec(ptype, 1, key=key, **kw)


SPECS: dict[PolicyType, PolicySpec] = {
    s.policy_type: s
    for s in (
        _ordered(P.ROUND_ROBIN, lambda n: ()),
        _ordered(
            P.WEIGHTED_ROUND_ROBIN,
            lambda n: (n.round_counter, n.virtual_counter),
            on_select=wrr_advance,
            on_join=wrr_join,
        ),
        _ordered(P.PRIORITY, lambda n: (-_p(n).priority,)),
        _ordered(P.LEAST_USED, lambda n: (_p(n).load,)),
        _ordered(P.LEAST_USED_DEGRADATION, _lud, on_select=degrade),
        _ordered(P.PRIORITY_LEAST_USED, _plu),
        _ordered(P.PRIORITY_LEAST_USED_DEGRADATION, _plud, on_select=degrade),
        _ordered(P.LEAST_USED_DPF, _lu_dpf, uses_distance=True),
        _ordered(P.LEAST_USED_DEGRADATION_DPF, _lud_dpf, on_select=degrade, uses_distance=True),
        PolicySpec(P.RANDOM, 0, weight=lambda n: 1),
        PolicySpec(P.WEIGHTED_RANDOM, 0, weight=lambda n: _p(n).weight),
        PolicySpec(P.WEIGHTED_RANDOM_DPF, 0, weight=_wrand_dpf, uses_distance=True),
        PolicySpec(P.RANDOMIZED_LEAST_USED, 1, weight=_rlu),
        PolicySpec(P.RANDOMIZED_LEAST_USED_DEGRADATION, 1, weight=_rlud, on_select=degrade),
        PolicySpec(P.RANDOMIZED_PRIORITY_LEAST_USED, 1, weight=_rplu),
        PolicySpec(P.RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION, 1, weight=_rplud, on_select=degrade),
    )
}


# ---------------------------------------------------------------- selection structures


class Selector(Protocol):
    """The selection structure of one pool; the pool owns membership and sequence numbers."""

    spec: PolicySpec

    def add(self, node: PoolElementNode) -> None: ...  # a new member: policy join state + insert
    def insert(self, node: PoolElementNode) -> None: ...  # (re-)insert with its current state
    def remove(self, node: PoolElementNode) -> None: ...
    def select(self, count: int, max_increment: int) -> list[PoolElementNode]: ...


class OrderedSelector:
    """A sorted list of (policy value..., sequence, node); sequence numbers are unique in a pool,
    so the node itself is never compared."""

    def __init__(self, spec: PolicySpec, next_seq: Callable[[], int]) -> None:
        assert spec.key is not None
        self.spec = spec
        self._key = spec.key
        self._next_seq = next_seq
        self._list: SortedList = SortedList()

    def add(self, node: PoolElementNode) -> None:
        if self.spec.on_join is not None:
            self.spec.on_join(node, self._list[0][-1] if self._list else None)
        self.insert(node)

    def insert(self, node: PoolElementNode) -> None:
        node._entry = (*self._key(node), node.seq, node)
        self._list.add(node._entry)

    def remove(self, node: PoolElementNode) -> None:
        self._list.remove(node._entry)
        node._entry = None

    def select(self, count: int, max_increment: int) -> list[PoolElementNode]:
        chosen = [entry[-1] for entry in self._list.islice(0, count)]
        on_select = self.spec.on_select
        for node in chosen[:max_increment]:
            self._list.remove(node._entry)
            node.seq = self._next_seq()
            node.selections += 1
            if on_select is not None:
                on_select(node)
            self.insert(node)
        return chosen


class _Fenwick:
    """Prefix sums over integer weights with O(log n) update and weighted search."""

    def __init__(self, weights: list[int]) -> None:
        self.size = len(weights)
        tree = [0] + weights
        for i in range(1, self.size + 1):
            parent = i + (i & -i)
            if parent <= self.size:
                tree[parent] += tree[i]
        self._tree = tree
        self._top = 1 << (self.size.bit_length() - 1) if self.size else 0

    def add(self, index: int, delta: int) -> None:
        i = index + 1
        tree, size = self._tree, self.size
        while i <= size:
            tree[i] += delta
            i += i & -i

    def find(self, value: int) -> int:
        """The index whose weight interval [prefix, prefix + weight) contains `value`."""
        pos, step, tree, size = 0, self._top, self._tree, self.size
        while step:
            nxt = pos + step
            if nxt <= size and tree[nxt] <= value:
                pos = nxt
                value -= tree[nxt]
            step >>= 1
        return pos


class RandomSelector:
    """Weighted random selection over slots of a Fenwick tree; freed slots are reused and the
    tree doubles (O(n), amortised O(1)) when full."""

    def __init__(self, spec: PolicySpec, next_seq: Callable[[], int], rng: random.Random) -> None:
        assert spec.weight is not None
        self.spec = spec
        self._weight = spec.weight
        self._next_seq = next_seq
        self._rng = rng
        self._weights: list[int] = [0] * 16
        self._nodes: list[PoolElementNode | None] = [None] * 16
        self._tree = _Fenwick(self._weights[:])
        self._free = list(range(15, -1, -1))
        self._total = 0

    def add(self, node: PoolElementNode) -> None:
        self.insert(node)

    def insert(self, node: PoolElementNode) -> None:
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self._nodes[slot] = node
        node._entry = slot
        self._set(slot, self._weight(node))

    def remove(self, node: PoolElementNode) -> None:
        slot: int = node._entry
        self._set(slot, 0)
        self._nodes[slot] = None
        self._free.append(slot)
        node._entry = None

    def select(self, count: int, max_increment: int) -> list[PoolElementNode]:
        chosen: list[PoolElementNode] = []
        while len(chosen) < count and self._total > 0:
            slot = self._tree.find(self._rng.randrange(self._total))
            node = self._nodes[slot]
            assert node is not None
            chosen.append(node)
            self._set(slot, 0)
        on_select = self.spec.on_select
        for i, node in enumerate(chosen):
            node.seq = self._next_seq()
            node.selections += 1
            if on_select is not None and i < max_increment:
                on_select(node)
            self._set(node._entry, self._weight(node))
        return chosen

    def _set(self, slot: int, weight: int) -> None:
        delta = weight - self._weights[slot]
        if delta:
            self._weights[slot] = weight
            self._total += delta
            self._tree.add(slot, delta)

    def _grow(self) -> None:
        old = len(self._weights)
        self._weights.extend([0] * old)
        self._nodes.extend([None] * old)
        self._free.extend(range(2 * old - 1, old - 1, -1))
        self._tree = _Fenwick(self._weights[:])


def make_selector(spec: PolicySpec, next_seq: Callable[[], int], rng: random.Random) -> Selector:
    if spec.ordered:
        return OrderedSelector(spec, next_seq)
    return RandomSelector(spec, next_seq, rng)
