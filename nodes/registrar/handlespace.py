"""The handlespace a registrar keeps: pools by handle, their PEs, and pool member selection.

Pure data structure, no I/O and no clock: the registrar decides who may register what (addresses,
ownership, registration life) and calls in here. Selection semantics and where they deliberately
differ from RSPLIB are described in :mod:`nodes.registrar.selection`.

What a pool is: all PEs under one pool handle share the policy type, the user transport class and
(for SCTP/TCP) the transport use of the PE that created the pool, as RSPLIB's
`poolNodeCheckPoolElementNodeCompatibility` requires. Registration checks run in RSPLIB's order
(identifier, transport protocol, control channel, policy) after the handle check, so a PE that is
wrong in several ways gets the same cause as from RSPLIB. One relaxation: when the re-registering
PE is the pool's only member, a new policy type is accepted and the pool switches to it (RSPLIB
refuses it); that PE's selection state starts afresh but keeps its sequence number.

Re-registration replaces the stored PoolElement, resets the accumulated degradation (as RSPLIB
does), clamps a WRR virtual counter to a smaller new weight (as RSPLIB does), and resets the
ENDPOINT_UNREACHABLE count (RSPLIB keeps that count; a PE that re-registers has shown it is alive).
The distance set by :meth:`Handlespace.set_distance` survives re-registration.

Costs, n = PEs in the pool: register, deregister, set_distance O(log n); select O(k log n) for k
requested PEs, with every policy; checksum O(m) in the PEs of that home registrar; owned_by O(m);
Pool.elements O(n log n).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from nodes.wire.checksum import pe_checksum
from nodes.wire.constants import MAX_LOAD, CauseCode, TransportUse
from nodes.wire.params import PoolElement, Transport
from nodes.wire.policies import PolicyType

from .selection import SPECS, PolicySpec, Selector, make_selector

__all__ = ["MAX_POOL_HANDLE_SIZE", "Handlespace", "HandlespaceError", "Pool", "PoolElementNode"]

#: RSPLIB's MAX_POOLHANDLESIZE.
MAX_POOL_HANDLE_SIZE = 32
_U32 = 0xFFFFFFFF
assert _U32 == MAX_LOAD


class HandlespaceError(Exception):
    """A registration the handlespace refuses; `.cause` is the nodes.wire CauseCode to answer with."""

    def __init__(self, cause: CauseCode, message: str) -> None:
        super().__init__(message)
        self.cause = cause

    def __repr__(self) -> str:
        return f"HandlespaceError({self.cause.name}, {str(self)!r})"


@dataclasses.dataclass(eq=False)
class PoolElementNode:
    """One PE in one pool, with the selection state the pool's policy keeps for it.

    `seq` is the pool-wide sequence number of the PE's last join or advancing selection (lower
    means longer ago), `degradation` the load degradation accumulated since the last registration,
    `round_counter` / `virtual_counter` the WRR state, `selections` how often it was selected.
    `reporters` are who reported it unreachable since its last registration.
    """

    pool_handle: bytes
    pe: PoolElement
    owner: object | None = None
    unreachable_reports: int = 0  #: ENDPOINT_UNREACHABLEs received since the last registration
    distance: int = 0
    reporters: set[object] = dataclasses.field(default_factory=set, repr=False)
    seq: int = dataclasses.field(default=0, repr=False)
    degradation: int = dataclasses.field(default=0, repr=False)
    round_counter: int = dataclasses.field(default=0, repr=False)
    virtual_counter: int = dataclasses.field(default=0, repr=False)
    selections: int = dataclasses.field(default=0, repr=False)
    _entry: Any = dataclasses.field(default=None, repr=False)  # the selector's handle on this node

    @property
    def identifier(self) -> int:
        return self.pe.identifier

    @property
    def home_registrar(self) -> int:
        return self.pe.home_registrar

    def reset_selection_state(self) -> None:
        self.degradation = 0
        self.round_counter = 0
        self.virtual_counter = 0


def _transport_use(transport: Transport) -> TransportUse:
    # Only SCTP and TCP carry the flag; the others can never be control channels.
    return getattr(transport, "transport_use", TransportUse.DATA_ONLY)


class Pool:
    """The PEs under one pool handle and their selection structure."""

    def __init__(self, handle: bytes, pe: PoolElement, rng: random.Random) -> None:
        self.handle = handle
        self.policy_type: PolicyType = pe.policy.policy_type
        self.transport_type: type[Transport] = type(pe.user_transport)
        self.transport_use: TransportUse = _transport_use(pe.user_transport)
        self._rng = rng
        self._members: dict[int, PoolElementNode] = {}
        self._next = 0
        self._selector: Selector = make_selector(self.spec, self._next_seq, rng)

    def __len__(self) -> int:
        return len(self._members)

    def __repr__(self) -> str:
        return f"Pool({self.handle!r}, {self.policy_type.name}, {len(self)} PEs)"

    @property
    def spec(self) -> PolicySpec:
        return SPECS[self.policy_type]

    def elements(self) -> list[PoolElementNode]:
        """The PEs by identifier."""
        return [self._members[i] for i in sorted(self._members)]

    def find(self, pe_id: int) -> PoolElementNode | None:
        return self._members.get(pe_id)

    def check(self, pe: PoolElement) -> None:
        """Raise HandlespaceError if `pe` may not (re-)register into this pool."""
        if type(pe.user_transport) is not self.transport_type:
            raise HandlespaceError(
                CauseCode.INCONSISTENT_TRANSPORT_TYPE,
                f"pool {self.handle!r} uses {self.transport_type.__name__}, "
                f"PE ${pe.identifier:08x} offers {type(pe.user_transport).__name__}",
            )
        if _transport_use(pe.user_transport) != self.transport_use:
            raise HandlespaceError(
                CauseCode.INCONSISTENT_DATA_CONTROL,
                f"pool {self.handle!r} uses {self.transport_use.name}, PE ${pe.identifier:08x} does not",
            )
        if pe.policy.policy_type != self.policy_type and not self._sole_member(pe.identifier):
            raise HandlespaceError(
                CauseCode.INCONSISTENT_POLICY,
                f"pool {self.handle!r} uses {self.policy_type.name}, "
                f"PE ${pe.identifier:08x} asks for {pe.policy.policy_type.name}",
            )

    def add(self, node: PoolElementNode) -> None:
        node.seq = self._next_seq()
        node.reset_selection_state()
        self._members[node.identifier] = node
        self._selector.add(node)

    def update(self, node: PoolElementNode, pe: PoolElement) -> None:
        """Re-registration of a member (already checked)."""
        if pe.policy.policy_type != self.policy_type:
            self._switch_policy(node, pe)
            return
        self._selector.remove(node)
        node.pe = pe
        node.degradation = 0
        weight = getattr(pe.policy, "weight", None)
        if weight is not None and node.virtual_counter > weight:
            node.virtual_counter = weight
        self._selector.insert(node)

    def remove(self, node: PoolElementNode) -> None:
        self._selector.remove(node)
        del self._members[node.identifier]

    def rekey(self, node: PoolElementNode) -> None:
        """Re-insert after an input of the policy value (the distance) changed."""
        self._selector.remove(node)
        self._selector.insert(node)

    def select(self, count: int, max_increment: int) -> list[PoolElementNode]:
        if count < 1:
            return []
        return self._selector.select(count, max_increment or self.spec.default_max_increment)

    def _sole_member(self, pe_id: int) -> bool:
        return len(self._members) == 1 and pe_id in self._members

    def _switch_policy(self, node: PoolElementNode, pe: PoolElement) -> None:
        self._selector.remove(node)
        self.policy_type = pe.policy.policy_type
        self._selector = make_selector(self.spec, self._next_seq, self._rng)
        node.pe = pe
        node.reset_selection_state()
        self._selector.add(node)

    def _next_seq(self) -> int:
        seq = self._next
        self._next += 1
        return seq


def _validate(pool_handle: bytes, pe: PoolElement) -> None:
    if not isinstance(pool_handle, bytes) or not 1 <= len(pool_handle) <= MAX_POOL_HANDLE_SIZE:
        raise HandlespaceError(
            CauseCode.INVALID_VALUES,
            f"pool handle must be 1 to {MAX_POOL_HANDLE_SIZE} bytes: {pool_handle!r}",
        )
    if not 0 < pe.identifier <= _U32:
        raise HandlespaceError(CauseCode.INVALID_VALUES, f"invalid PE identifier {pe.identifier}")
    if pe.policy.policy_type not in SPECS:
        raise HandlespaceError(CauseCode.INVALID_VALUES, f"unsupported policy {pe.policy.policy_type!r}")
    for value in pe.policy.values():
        if not 0 <= value <= _U32:
            raise HandlespaceError(CauseCode.INVALID_VALUES, f"policy value {value} is not a 32-bit value")


class Handlespace:
    """All pools a registrar knows, with indexes by owner and by home registrar."""

    def __init__(self, rng: random.Random | None = None, max_increment: int = 0) -> None:
        self.rng = rng if rng is not None else random.Random()
        self.max_increment = max_increment
        self._pools: dict[bytes, Pool] = {}
        self._count = 0
        self._by_owner: dict[object, dict[tuple[bytes, int], PoolElementNode]] = {}
        self._by_home: dict[int, dict[tuple[bytes, int], PoolElementNode]] = {}

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"Handlespace({len(self._pools)} pools, {self._count} PEs)"

    # ------------------------------------------------------------ registration

    def register(
        self, pool_handle: bytes, pe: PoolElement, owner: object | None = None
    ) -> tuple[PoolElementNode, bool]:
        """Add a PE, or update it if (handle, pe.identifier) exists (re-registration: new policy
        values / transports / life; resets unreachable_reports and accumulated degradation).
        Returns (node, is_new). Raises HandlespaceError with INVALID_VALUES (handle empty or over 32
        bytes, identifier 0, a policy value beyond 32 bits), INCONSISTENT_TRANSPORT_TYPE,
        INCONSISTENT_DATA_CONTROL or INCONSISTENT_POLICY (unless the PE is the pool's only member,
        in which case the pool takes the new policy). On error nothing changes. `owner` replaces
        the node's owner on every registration, None included."""
        _validate(pool_handle, pe)
        pool = self._pools.get(pool_handle)
        if pool is None:
            pool = Pool(pool_handle, pe, self.rng)
            self._pools[pool_handle] = pool
        else:
            pool.check(pe)
        node = pool.find(pe.identifier)
        if node is None:
            node = PoolElementNode(pool_handle, pe, owner)
            pool.add(node)
            self._count += 1
            self._index(node)
            return node, True
        self._unindex(node)
        pool.update(node, pe)
        node.owner = owner
        node.unreachable_reports = 0
        node.reporters.clear()
        self._index(node)
        return node, False

    def deregister(self, pool_handle: bytes, pe_id: int) -> PoolElementNode | None:
        """Remove a PE and return it (None if unknown); an emptied pool disappears."""
        pool = self._pools.get(pool_handle)
        node = pool.find(pe_id) if pool is not None else None
        if node is None:
            return None
        assert pool is not None
        pool.remove(node)
        self._unindex(node)
        self._count -= 1
        if not len(pool):
            del self._pools[pool_handle]
        return node

    # ------------------------------------------------------------ lookup

    def find(self, pool_handle: bytes, pe_id: int) -> PoolElementNode | None:
        pool = self._pools.get(pool_handle)
        return pool.find(pe_id) if pool is not None else None

    def pool(self, pool_handle: bytes) -> Pool | None:
        return self._pools.get(pool_handle)

    def pools(self) -> list[Pool]:
        """All pools, by handle."""
        return [self._pools[h] for h in sorted(self._pools)]

    def owned_by(self, owner: object) -> list[PoolElementNode]:
        return list(self._by_owner.get(owner, {}).values())

    def homed_at(self, home_registrar: int) -> list[PoolElementNode]:
        """The PEs whose home registrar is `home_registrar`."""
        return list(self._by_home.get(home_registrar, {}).values())

    # ------------------------------------------------------------ selection and reports

    def select(self, pool_handle: bytes, count: int) -> list[PoolElementNode]:
        """Up to `count` distinct PEs of the pool in policy order, advancing the selection state
        (sequence numbers, degradation, WRR counters) of the first MaxIncrement selected ones.
        Raises HandlespaceError(UNKNOWN_POOL_HANDLE) for an unknown pool."""
        pool = self._pools.get(pool_handle)
        if pool is None:
            raise HandlespaceError(CauseCode.UNKNOWN_POOL_HANDLE, f"no pool {pool_handle!r}")
        return pool.select(count, self.max_increment)

    def report_unreachable(self, pool_handle: bytes, pe_id: int, reporter: object | None = None) -> int:
        """Count an ENDPOINT_UNREACHABLE for the PE; return how many distinct reporters it has
        now (0 for an unknown PE).  A reporter counts once however often it reports, so that one
        pool user cannot remove a PE alone; None stands for a new reporter each time."""
        node = self.find(pool_handle, pe_id)
        if node is None:
            return 0
        node.unreachable_reports += 1
        node.reporters.add(object() if reporter is None else reporter)
        return len(node.reporters)

    def set_distance(self, pool_handle: bytes, pe_id: int, distance_ms: int) -> None:
        """Set the PE's distance (ms) for the DPF policies; unknown PEs are ignored."""
        if distance_ms < 0:
            raise ValueError(f"negative distance {distance_ms}")
        pool = self._pools.get(pool_handle)
        node = pool.find(pe_id) if pool is not None else None
        if node is None or node.distance == distance_ms:
            return
        assert pool is not None
        node.distance = distance_ms
        if pool.spec.uses_distance:
            pool.rekey(node)

    def checksum(self, home_registrar: int) -> int:
        """PE checksum (RFC 5353, RSPLIB's algorithm) over the PEs homed at `home_registrar`."""
        return pe_checksum(self._by_home.get(home_registrar, {}).keys())

    # ------------------------------------------------------------ indexes

    def _index(self, node: PoolElementNode) -> None:
        key = (node.pool_handle, node.identifier)
        if node.owner is not None:
            self._by_owner.setdefault(node.owner, {})[key] = node
        self._by_home.setdefault(node.pe.home_registrar, {})[key] = node

    def _unindex(self, node: PoolElementNode) -> None:
        key = (node.pool_handle, node.identifier)
        if node.owner is not None:
            _drop(self._by_owner, node.owner, key)
        _drop(self._by_home, node.pe.home_registrar, key)


def _drop(
    index: dict[Any, dict[tuple[bytes, int], PoolElementNode]], name: object, key: tuple[bytes, int]
) -> None:
    entries = index.get(name)
    if entries is not None:
        entries.pop(key, None)
        if not entries:
            del index[name]
