"""The registrar's handlespace: every pool policy's choices, registration rules, checksum.

Deterministic policies are checked by exact counts and order, or against a naive model that
re-sorts the whole pool for every request (so the O(log n) structures are compared with an
O(n log n) oracle). Randomized ones use a seeded RNG and a chi-square bound at p = 1e-4.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from ipaddress import ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.registrar.handlespace import Handlespace, HandlespaceError
from nodes.wire import (
    CauseCode,
    PoolElement,
    SctpTransport,
    TcpTransport,
    TransportUse,
    UdpTransport,
    pe_checksum,
)
from nodes.wire import policies as P
from nodes.wire.constants import MAX_LOAD as MAX

H = b"pool"


def make_pe(ident: int, policy: P.Policy, home: int = 0xAAAA, transport=None) -> PoolElement:
    transport = transport or SctpTransport(port=1000 + ident % 60000, addresses=(ip_address("10.0.0.1"),))
    return PoolElement(ident, home, 30000, transport, policy)


def pool_of(policies: list[P.Policy], seed: int = 1, max_increment: int = 0) -> Handlespace:
    hs = Handlespace(random.Random(seed), max_increment=max_increment)
    for i, policy in enumerate(policies, 1):
        hs.register(H, make_pe(i, policy))
    return hs


def ids(nodes) -> list[int]:
    return [n.identifier for n in nodes]


def pick_counts(hs: Handlespace, rounds: int, count: int = 1) -> Counter:
    return Counter(n.identifier for _ in range(rounds) for n in hs.select(H, count))


def pct(x: float) -> int:
    return P.load_value(x)


def spare(*fractions: float) -> int:
    """The randomized least-used weight: capacity left after these loads, at least 1."""
    return max(1, MAX - sum(pct(x) for x in fractions))


# ---------------------------------------------------------------- chi-square helper


def chi_square_limit(df: int, z: float = 3.719) -> float:
    """Upper quantile of chi-square(df) by Wilson-Hilferty; z = 3.719 is p = 1e-4."""
    a = 2 / (9 * df)
    return df * (1 - a + z * math.sqrt(a)) ** 3


def assert_distribution(observed: Counter, expected: dict, n: int) -> None:
    total = sum(expected.values())
    stat = sum((observed.get(k, 0) - n * p / total) ** 2 / (n * p / total) for k, p in expected.items())
    assert set(observed) <= set(expected), f"unexpected outcomes {set(observed) - set(expected)}"
    assert stat < chi_square_limit(len(expected) - 1), f"chi2={stat:.1f} observed={dict(observed)}"


def test_chi_square_helper_rejects_a_wrong_distribution() -> None:
    hs = pool_of([P.WeightedRandom(w) for w in (1, 4)])
    observed = pick_counts(hs, 4000)
    assert_distribution(observed, {1: 1, 2: 4}, 4000)
    with pytest.raises(AssertionError):
        assert_distribution(observed, {1: 1, 2: 1}, 4000)


# ---------------------------------------------------------------- round robin, WRR, priority


def test_round_robin_cycles_in_registration_order_with_exact_counts() -> None:
    hs = pool_of([P.RoundRobin()] * 5)
    order = [hs.select(H, 1)[0].identifier for _ in range(500)]
    assert order[:10] == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]
    assert Counter(order) == {i: 100 for i in range(1, 6)}


_ONE_MOVES = [[1, 2, 3], [2, 3, 4], [3, 4, 5]]


@pytest.mark.parametrize(
    ("max_increment", "expected"), [(0, _ONE_MOVES), (1, _ONE_MOVES), (3, [[1, 2, 3], [4, 5, 1], [2, 3, 4]])]
)
def test_max_increment_sets_how_many_selected_pes_move_back(max_increment, expected) -> None:
    hs = pool_of([P.RoundRobin()] * 5, max_increment=max_increment)
    assert [ids(hs.select(H, 3)) for _ in range(3)] == expected
    assert sorted(ids(hs.select(H, 10))) == [1, 2, 3, 4, 5] and hs.select(H, 0) == []


def test_weighted_round_robin_gives_each_round_exact_weights() -> None:
    weights = [1, 2, 3, 4]
    hs = pool_of([P.WeightedRoundRobin(w) for w in weights])
    for _ in range(20):
        round_ = Counter(hs.select(H, 1)[0].identifier for _ in range(sum(weights)))
        assert round_ == {i: w for i, w in enumerate(weights, 1)}


def test_priority_prefers_the_highest_value_with_round_robin_ties() -> None:
    hs = pool_of([P.Priority(p) for p in (5, 9, 9, 1)])
    assert [ids(hs.select(H, 4)) for _ in range(3)] == [[2, 3, 1, 4], [3, 2, 1, 4], [2, 3, 1, 4]]
    assert pick_counts(hs, 100) == {2: 50, 3: 50}


# ---------------------------------------------------------------- least-used family


def test_least_used_orders_by_load_and_round_robins_equal_loads() -> None:
    hs = pool_of([P.LeastUsed(pct(x)) for x in (0.5, 0.1, 0.1, 0.3, 0.1)])
    assert [ids(hs.select(H, 5)) for _ in range(3)] == [[2, 3, 5, 4, 1], [3, 5, 2, 4, 1], [5, 2, 3, 4, 1]]
    assert pick_counts(hs, 300) == {2: 100, 3: 100, 5: 100}


def test_least_used_degradation_accumulates_per_selection() -> None:
    hs = pool_of([P.LeastUsedDegradation(0, pct(0.1)), P.LeastUsedDegradation(pct(0.25), pct(0.1))])
    # PE 1 goes 0 -> 10 -> 20 -> 30 %; PE 2 is chosen once PE 1 passes 25 %, then they alternate.
    assert [hs.select(H, 1)[0].identifier for _ in range(6)] == [1, 1, 1, 2, 1, 2]
    assert hs.find(H, 1).degradation == 4 * pct(0.1)


def test_degradation_is_clamped_and_reset_by_re_registration() -> None:
    hs = pool_of([P.LeastUsedDegradation(0, pct(0.6)), P.LeastUsedDegradation(pct(0.99), 0)])
    assert [hs.select(H, 1)[0].identifier for _ in range(2)] == [1, 1]  # 0 %, then 60 % < 99 %
    assert hs.find(H, 1).degradation == MAX  # 120 %, clamped
    assert ids(hs.select(H, 2)) == [2, 1]
    hs.register(H, make_pe(1, P.LeastUsedDegradation(0, pct(0.6))))
    assert hs.find(H, 1).degradation == 0
    assert ids(hs.select(H, 2)) == [1, 2]


def test_priority_least_used_degradation_accumulates() -> None:
    hs = pool_of([P.PriorityLeastUsedDegradation(0, pct(0.2)), P.PriorityLeastUsedDegradation(pct(0.3), 0)])
    # values: PE 1 = 20 % + 20 % per selection, PE 2 = 30 % for ever.
    assert [hs.select(H, 1)[0].identifier for _ in range(4)] == [1, 2, 2, 2]


def test_least_used_dpf_penalises_distance() -> None:
    dpf = pct(0.001)  # 0.1 % load per ms
    hs = pool_of([P.LeastUsedDpf(pct(0.1), dpf), P.LeastUsedDpf(pct(0.2), dpf)])
    assert ids(hs.select(H, 2)) == [1, 2]
    hs.set_distance(H, 1, 150)  # 10 % + 15 % > 20 %
    assert ids(hs.select(H, 2)) == [2, 1]
    hs.set_distance(H, 1, 50)  # 10 % + 5 % < 20 %
    assert ids(hs.select(H, 2)) == [1, 2]


def test_least_used_degradation_dpf_combines_distance_and_degradation() -> None:
    dpf = pct(0.001)
    hs = pool_of([P.LeastUsedDegradationDpf(0, pct(0.05), dpf), P.LeastUsedDegradationDpf(pct(0.09), 0, dpf)])
    hs.set_distance(H, 1, 50)  # PE 1: 5 % + 5 % per selection; PE 2: 9 %
    assert [hs.select(H, 1)[0].identifier for _ in range(3)] == [1, 2, 2]


_MODEL_POLICIES = {
    "RR": lambda r: P.RoundRobin(),
    "WRR": lambda r: P.WeightedRoundRobin(r.randint(0, 4)),
    "PRIO": lambda r: P.Priority(r.randint(0, 3)),
    "LU": lambda r: P.LeastUsed(pct(r.choice((0, 0.2, 0.5)))),
    "LUD": lambda r: P.LeastUsedDegradation(pct(r.random()), pct(r.random() / 4)),
    "PLU": lambda r: P.PriorityLeastUsed(pct(r.choice((0, 0.2))), pct(r.choice((0, 0.2)))),
    "PLUD": lambda r: P.PriorityLeastUsedDegradation(pct(r.random()), pct(r.random() / 4)),
    "LU-DPF": lambda r: P.LeastUsedDpf(pct(r.random() / 2), pct(r.random() / 500)),
    "LUD-DPF": lambda r: P.LeastUsedDegradationDpf(
        pct(r.random()), pct(r.random() / 4), pct(r.random() / 500)
    ),
}


def model_value(name: str, pe: dict) -> tuple:
    """The policy definitions, written out naively."""
    p, deg, dist = pe["policy"], pe["deg"], pe["dist"]
    return {
        "RR": lambda: (),
        "WRR": lambda: (pe["round"], pe["virt"]),
        "PRIO": lambda: (-p.priority,),
        "LU": lambda: (p.load,),
        "LUD": lambda: (min(MAX, p.load + deg),),
        "PLU": lambda: (min(MAX, p.load + p.load_degradation),),
        "PLUD": lambda: (min(MAX, p.load + p.load_degradation + deg),),
        "LU-DPF": lambda: (min(MAX, p.load + dist * p.load_dpf),),
        "LUD-DPF": lambda: (min(MAX, p.load + deg + dist * p.load_dpf),),
    }[name]()


def model_select(name: str, pes: list[dict], count: int, max_inc: int, seq: list[int]) -> list[int]:
    chosen = sorted(pes, key=lambda pe: (*model_value(name, pe), pe["seq"]))[:count]
    for pe in chosen[:max_inc]:
        pe["seq"] = seq[0]
        seq[0] += 1
        pe["deg"] = min(MAX, pe["deg"] + getattr(pe["policy"], "load_degradation", 0))
        if name == "WRR":
            if pe["virt"] > 1:
                pe["virt"] -= 1
            else:
                pe["round"], pe["virt"] = pe["round"] + 1, pe["policy"].weight
    return [pe["id"] for pe in chosen]


def model_join(name: str, pes: list[dict], ident: int, policy: P.Policy, seq: list[int]) -> dict:
    """A new PE: next sequence number; WRR starts it in the round of the pool's first PE."""
    first = min(pes, key=lambda pe: (*model_value(name, pe), pe["seq"]), default=None)
    weight = getattr(policy, "weight", 0)
    pe = {"id": ident, "policy": policy, "seq": seq[0], "deg": 0, "dist": 0, "virt": weight}
    pe["round"] = first["round"] if first and name == "WRR" else 0
    seq[0] += 1
    pes.append(pe)
    return pe


@settings(max_examples=80, deadline=None)
@given(
    name=st.sampled_from(sorted(_MODEL_POLICIES)),
    seed=st.integers(0, 2**32),
    size=st.integers(1, 12),
    count=st.integers(1, 5),
    max_increment=st.integers(0, 4),
)
def test_ordered_policies_match_a_naive_model(name, seed, size, count, max_increment) -> None:
    """Selections interleaved with joins, re-registrations, deregistrations and distance changes."""
    r = random.Random(seed)
    hs = Handlespace(random.Random(0), max_increment=max_increment)
    pes: list[dict] = []
    seq = [0]
    for ident in range(1, 60):
        op = r.random() if ident > size else 0.0
        if op < 0.15:
            hs.register(H, make_pe(ident, (policy := _MODEL_POLICIES[name](r))))
            model_join(name, pes, ident, policy, seq)
        elif op < 0.25 and len(pes) > 1:
            hs.deregister(H, pes.pop(r.randrange(len(pes)))["id"])
        elif op < 0.35:
            pe = r.choice(pes)
            pe["policy"], pe["deg"] = _MODEL_POLICIES[name](r), 0
            pe["virt"] = min(pe["virt"], getattr(pe["policy"], "weight", 0))
            assert not hs.register(H, make_pe(pe["id"], pe["policy"]))[1]
        elif op < 0.45 and name.endswith("DPF"):
            pe = r.choice(pes)
            pe["dist"] = r.choice((0, 50, 100, 300))
            hs.set_distance(H, pe["id"], pe["dist"])
        else:
            assert ids(hs.select(H, count)) == model_select(name, pes, count, max_increment or 1, seq)


# ---------------------------------------------------------------- randomized policies


_LOADS = (0.0, 0.25, 0.5, 0.75, 1.0)
_LD = ((0.0, 0.5), (0.25, 0.0), (0.5, 0.5))
_WDPF = pct(0.002)  # 0.2 % of the weight per ms: distance 250 ms halves it, 600 ms floors it at 1


@pytest.mark.parametrize(
    ("policies", "distances", "expected"),
    [
        ([P.Random()] * 6, (), [1] * 6),
        ([P.WeightedRandom(w) for w in (1, 2, 3, 10, 0)], (), [1, 2, 3, 10, 0]),
        ([P.WeightedRandomDpf(1000, _WDPF)] * 4, (0, 250, 400, 600), [1000, 500, 200, 1]),
        ([P.RandomizedLeastUsed(pct(x)) for x in _LOADS], (), [spare(x) for x in _LOADS]),
        ([P.RandomizedPriorityLeastUsed(pct(a), pct(b)) for a, b in _LD], (), [spare(*ab) for ab in _LD]),
    ],
    ids=["RAND", "WRAND", "WRAND-DPF", "RLU", "RPLU"],
)
def test_randomized_single_pick_distribution(policies, distances, expected) -> None:
    hs = pool_of(policies, seed=12345)
    for pe_id, distance in enumerate(distances, 1):
        hs.set_distance(H, pe_id, distance)
    n = 20000
    assert_distribution(pick_counts(hs, n), {i: w for i, w in enumerate(expected, 1) if w}, n)


def test_weighted_random_never_returns_weight_zero() -> None:
    hs = pool_of([P.WeightedRandom(w) for w in (1, 2, 0, 10, 0)])
    assert all(sorted(ids(hs.select(H, 5))) == [1, 2, 4] for _ in range(20))


@pytest.mark.parametrize(
    "policy",
    [
        P.RandomizedLeastUsed(MAX),
        P.RandomizedLeastUsedDegradation(MAX, MAX),
        P.RandomizedPriorityLeastUsed(MAX, MAX),
        P.RandomizedPriorityLeastUsedDegradation(MAX, MAX),
        P.WeightedRandomDpf(10, MAX),
    ],
)
def test_fully_loaded_or_penalised_pes_keep_weight_one(policy: P.Policy) -> None:
    hs = pool_of([policy] * 3)
    for i in (1, 2, 3):
        hs.set_distance(H, i, 1000)
    for _ in range(5):
        assert sorted(ids(hs.select(H, 3))) == [1, 2, 3]


def test_random_picks_without_replacement_give_uniform_sets() -> None:
    hs = pool_of([P.Random()] * 5, seed=7)
    observed = Counter(tuple(sorted(ids(hs.select(H, 2)))) for _ in range(20000))
    expected = {(a, b): 1 for a in range(1, 6) for b in range(a + 1, 6)}
    assert_distribution(observed, expected, 20000)


def test_weighted_random_second_pick_is_conditional_on_the_first() -> None:
    weights = {1: 1, 2: 2, 3: 5}
    hs = pool_of([P.WeightedRandom(w) for w in weights.values()], seed=3)
    observed = Counter(tuple(ids(hs.select(H, 2))) for _ in range(20000))
    total = sum(weights.values())
    expected = {
        (a, b): wa / total * weights[b] / (total - wa) for a, wa in weights.items() for b in weights if b != a
    }
    assert_distribution(observed, expected, 20000)


@pytest.mark.parametrize("cls", [P.RandomizedLeastUsedDegradation, P.RandomizedPriorityLeastUsedDegradation])
def test_randomized_degradation_policies_degrade_the_first_pick(cls) -> None:
    """Re-registering resets the accumulated degradation, so every trial starts afresh: the first
    pick is weighted by the spare capacity, the second by it minus the first's new degradation."""
    values = {1: (0.0, 0.5), 2: (0.2, 0.3), 3: (0.4, 0.1)}
    hs = Handlespace(random.Random(99))
    plu = cls is P.RandomizedPriorityLeastUsedDegradation

    def weight(i: int, selected: int) -> int:
        load, ldeg = pct(values[i][0]), pct(values[i][1])
        return max(1, MAX - load - (ldeg if plu else 0) - ldeg * selected)

    observed: Counter = Counter()
    for _ in range(15000):
        for i, (load, ldeg) in values.items():
            hs.register(H, make_pe(i, cls(pct(load), pct(ldeg))))
        first = hs.select(H, 1)[0].identifier
        assert hs.find(H, first).degradation == pct(values[first][1])
        observed[first, hs.select(H, 1)[0].identifier] += 1

    def p(a: int, b: int) -> float:
        first, second = ({i: weight(i, int(i == a and d)) for i in values} for d in (0, 1))
        return first[a] / sum(first.values()) * second[b] / sum(second.values())

    expected = {(a, b): p(a, b) for a in values for b in values}
    assert_distribution(observed, expected, 15000)


def test_randomized_max_increment_bounds_how_many_picks_degrade() -> None:
    policy = P.RandomizedLeastUsedDegradation(0, pct(0.01))
    for max_inc, degraded in ((0, 1), (1, 1), (2, 2), (5, 3)):
        hs = pool_of([policy] * 4, max_increment=max_inc)
        chosen = hs.select(H, 3)
        assert [n.degradation for n in chosen] == [pct(0.01)] * degraded + [0] * (3 - degraded)


def test_large_random_pool_survives_growth_and_removal() -> None:
    hs = Handlespace(random.Random(5))
    for i in range(1, 3001):
        hs.register(H, make_pe(i, P.WeightedRandom(1)))
    for i in range(1, 3001, 2):
        hs.deregister(H, i)
    picks = pick_counts(hs, 3000, count=5)
    assert all(i % 2 == 0 for i in picks) and len(hs.pool(H)) == 1500
    assert len(hs.select(H, 2000)) == 1500


# ---------------------------------------------------------------- registration rules


@pytest.mark.parametrize(
    ("handle", "pe"),
    [
        (b"", make_pe(1, P.RoundRobin())),
        (b"x" * 33, make_pe(1, P.RoundRobin())),
        (H, make_pe(0, P.RoundRobin())),
        (H, make_pe(1, P.LeastUsed(MAX + 1))),
    ],
)
def test_invalid_values(handle: bytes, pe: PoolElement) -> None:
    hs = Handlespace()
    with pytest.raises(HandlespaceError) as err:
        hs.register(handle, pe)
    assert err.value.cause is CauseCode.INVALID_VALUES and len(hs) == 0 and hs.pools() == []
    assert hs.register(b"x" * 32, make_pe(1, P.RoundRobin()))[1]


def _refused(hs: Handlespace, pe: PoolElement) -> CauseCode:
    before = [(n.identifier, n.pe) for n in hs.pool(H).elements()]
    with pytest.raises(HandlespaceError) as err:
        hs.register(H, pe)
    assert [(n.identifier, n.pe) for n in hs.pool(H).elements()] == before
    return err.value.cause


def test_inconsistent_policy_transport_and_control_channel() -> None:
    hs = pool_of([P.LeastUsed(0), P.LeastUsed(0)])
    assert _refused(hs, make_pe(3, P.RoundRobin())) is CauseCode.INCONSISTENT_POLICY
    assert _refused(hs, make_pe(1, P.RoundRobin())) is CauseCode.INCONSISTENT_POLICY
    tcp = TcpTransport(port=1, addresses=(ip_address("10.0.0.1"),))
    assert _refused(hs, make_pe(3, P.LeastUsed(0), transport=tcp)) is CauseCode.INCONSISTENT_TRANSPORT_TYPE
    ctrl = SctpTransport(1, (ip_address("10.0.0.1"),), transport_use=TransportUse.DATA_PLUS_CONTROL)
    assert _refused(hs, make_pe(3, P.LeastUsed(0), transport=ctrl)) is CauseCode.INCONSISTENT_DATA_CONTROL
    udp = UdpTransport(port=1, addresses=(ip_address("10.0.0.1"),))
    assert _refused(hs, make_pe(3, P.RoundRobin(), transport=udp)) is CauseCode.INCONSISTENT_TRANSPORT_TYPE
    assert len(hs) == 2


def test_sole_member_may_change_the_pool_policy() -> None:
    hs = pool_of([P.LeastUsed(0)])
    _, is_new = hs.register(H, make_pe(1, P.WeightedRoundRobin(2)))
    assert not is_new and hs.pool(H).policy_type is P.PolicyType.WEIGHTED_ROUND_ROBIN
    hs.register(H, make_pe(2, P.WeightedRoundRobin(1)))
    assert pick_counts(hs, 30) == {1: 20, 2: 10}


def test_re_registration_updates_in_place_and_keeps_the_round_robin_position() -> None:
    hs = Handlespace(random.Random(1))
    for i in (1, 2, 3):
        hs.register(H, make_pe(i, P.RoundRobin()), owner="a")
    hs.select(H, 1)  # order is now 2, 3, 1
    node = hs.find(H, 2)
    hs.report_unreachable(H, 2)
    again, is_new = hs.register(H, make_pe(2, P.RoundRobin(), home=0xBBBB), owner="b")
    assert again is node and not is_new and node.pe.home_registrar == 0xBBBB
    assert node.unreachable_reports == 0 and node.owner == "b" and hs.report_unreachable(H, 2) == 1
    assert ids(hs.select(H, 3)) == [2, 3, 1]
    assert ids(hs.owned_by("a")) == [1, 3] and ids(hs.owned_by("b")) == [2]
    assert hs.checksum(0xBBBB) == pe_checksum([(H, 2)])
    assert hs.checksum(0xAAAA) == pe_checksum([(H, 1), (H, 3)])
    assert [hs.report_unreachable(H, 1) for _ in range(3)] == [1, 2, 3]
    assert hs.report_unreachable(H, 9) == 0 and hs.report_unreachable(b"other", 1) == 0


def test_wrr_re_registration_clamps_the_virtual_counter() -> None:
    hs = pool_of([P.WeightedRoundRobin(5), P.WeightedRoundRobin(5)])
    hs.register(H, make_pe(1, P.WeightedRoundRobin(2)))
    assert hs.find(H, 1).virtual_counter == 2
    assert Counter(hs.select(H, 1)[0].identifier for _ in range(7)) == {1: 2, 2: 5}


def test_deregistration_removes_pe_and_empty_pool() -> None:
    hs = pool_of([P.RoundRobin()] * 3)
    assert hs.deregister(H, 2).identifier == 2
    assert hs.deregister(H, 2) is None and hs.deregister(b"nope", 1) is None
    assert len(hs) == 2 and ids(hs.pool(H).elements()) == [1, 3]
    assert pick_counts(hs, 10) == {1: 5, 3: 5}
    hs.register(H, make_pe(2, P.RoundRobin()))  # back, at the end of the round-robin order
    assert ids(hs.select(H, 3)) == [1, 3, 2]
    hs.deregister(H, 1), hs.deregister(H, 2), hs.deregister(H, 3)
    assert hs.pool(H) is None and hs.pools() == [] and len(hs) == 0
    with pytest.raises(HandlespaceError) as err:
        hs.select(H, 1)
    assert err.value.cause is CauseCode.UNKNOWN_POOL_HANDLE


# ---------------------------------------------------------------- checksum


def test_checksum_known_value_and_empty_set() -> None:
    hs = Handlespace()
    assert hs.checksum(1) == 0xFFFF
    hs.register(b"EchoPool", make_pe(0x12345678, P.RoundRobin(), home=1))
    assert hs.checksum(1) == 0x29A5 and hs.checksum(2) == 0xFFFF


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=1, max_size=32), st.integers(1, MAX), st.sampled_from((1, 2)))))
def test_checksum_covers_exactly_the_pes_of_a_home_registrar(entries) -> None:
    hs = Handlespace()
    for handle, ident, home in entries:
        hs.register(handle, make_pe(ident, P.RoundRobin(), home=home))
    latest = {(h, i): home for h, i, home in entries}
    for home in (1, 2):
        assert hs.checksum(home) == pe_checksum(k for k, v in latest.items() if v == home)
    for handle, ident in list(latest)[::2]:
        hs.deregister(handle, ident)
        del latest[handle, ident]
    assert hs.checksum(1) == pe_checksum(k for k, v in latest.items() if v == 1)
    assert len(hs) == len(latest)
