"""ENRP (RFC 5353) between registrars: nodes/registrar/enrp.py, peers.py and the core's takeover side.

Two ways in.  Most behaviour is checked on tests/netsim.py, a deterministic in-process network
with a virtual clock, where real RegistrarCores and PoolElementCores exchange encoded messages,
die silently (`kill`) and get cut off from each other (`partition`).  The rules about who may
say what (forged or unknown senders, malformed bytes) are checked by feeding one RegistrarCore
encoded ENRP messages directly, as tests/unit/test_registrar_core.py does for ASAP.

Expected values come from RFC 5353 and RSPLIB's registrar as summarised in
../shared/reference/rserpool-wire.md, sections 7, 8.1, 8.2 and 8.5, and from the rules stated in
the module docstring of nodes/registrar/enrp.py.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from ipaddress import ip_address
from typing import Any

import pytest

from nodes.pe.core import PoolElementCore, PoolElementOptions
from nodes.registrar.core import RegistrarCore, RegistrarOptions
from nodes.registrar.enrp import EnrpOptions
from nodes.registrars import RegistrarAddress
from nodes.sansio import Action, Announce, Emit, Send
from nodes.wire import (
    DecodeError,
    EndpointKeepAlive,
    EnrpError,
    EnrpMessage,
    ErrorCause,
    CauseCode,
    UnrecognizedParameterError,
    HandleResolution,
    HandleResolutionResponse,
    HandleTableRequest,
    HandleTableResponse,
    HandleUpdate,
    InitTakeover,
    InitTakeoverAck,
    ListRequest,
    ListResponse,
    PoolElement,
    PoolEntry,
    Presence,
    Protocol,
    Registration,
    RegistrationResponse,
    SctpTransport,
    ServerAnnounce,
    ServerInformation,
    TakeoverServer,
    TransportUse,
    UpdateAction,
    decode,
    pe_checksum,
)
from nodes.wire.policies import RoundRobin
from tests.actions import sent, started
from tests.netsim import Network, SimNode

ENRP, ASAP = Protocol.ENRP.ppid, Protocol.ASAP.ppid
HANDLE = b"P"
PE_PORT = 20000  # PEs listen on and connect from this port, so a new home can reach them
#: Short ENRP timers (s): a presence a second, dead after 2 + 1 s of silence.
FAST = EnrpOptions(heartbeat_cycle=1.0, max_time_last_heard=2.0, max_time_no_response=1.0,
                   mentor_discovery_timeout=2.0, takeover_expiry=2.0)  # fmt: skip


# ------------------------------------------------------------------ the simulated scope


class TapNetwork(Network):
    """A netsim Network that also keeps every action a live node asked for: (time, node, action)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[float, str, Action]] = []

    def _run(self, node: SimNode, actions: list[Any]) -> None:
        if node.alive:
            self.log.extend((self.now, node.name, a) for a in actions)
        super()._run(node, actions)

    def sends(self, name: str, cls: type) -> list[tuple[float, EnrpMessage]]:
        """Messages of type `cls` node `name` sent by unicast, as the wire delivers them."""
        return [(t, m) for t, n, a in self.log if n == name and isinstance(a, Send)
                for m in sent([a]) if isinstance(m, cls)]  # fmt: skip

    def announces(self, name: str, cls: type) -> list[tuple[float, Any]]:
        return [(t, decode(a.message.encode(), a.message.PROTOCOL)) for t, n, a in self.log
                if n == name and isinstance(a, Announce) and isinstance(a.message, cls)]  # fmt: skip


def sid(name: str) -> int:
    """r1 -> 0x100, r2 -> 0x200, ..."""
    return 0x100 * int(name[1:])


def reg_address(name: str) -> str:
    return f"10.0.0.{name[1:]}"


def pe_address(index: int) -> str:
    return f"10.1.{index // 250}.{index % 250 + 1}"


def add_registrar(net: Network, name: str, enrp: EnrpOptions = FAST, *, announce: bool = False,
                  start: bool = True, **options: Any) -> RegistrarCore:  # fmt: skip
    """Registrar `name` with server id sid(name): ENRP on 9901 (multicast presence group), ASAP on 3863."""
    o = RegistrarOptions(server_id=sid(name), keepalive_interval=1.0, keepalive_timeout=1.0, announce=announce,
                         asap_addresses=(reg_address(name),), enrp=enrp, **options)  # fmt: skip
    core = RegistrarCore(o, rng=random.Random(sid(name)))
    net.add(name, core, (reg_address(name),), listens={3863: {}, 9901: {"endpoint": "enrp"}}, groups={Protocol.ENRP})
    if start:
        net.start(name)
    return core


def scope(n: int = 3, enrp: EnrpOptions = FAST, settle: float = 3.0) -> TapNetwork:
    """Registrars r1..rn, started together and left `settle` s to find each other."""
    net = TapNetwork()
    for i in range(1, n + 1):
        add_registrar(net, f"r{i}", enrp)
    net.run_for(settle)
    return net


def add_pe(net: Network, index: int, registrars: Iterable[str], *, reregistration: float = 30.0,
           listen: bool = True, registration_timeout: float = 1.0) -> str:  # fmt: skip
    """PE pe<index> (id 1000 + index) that registers at the first of `registrars` it reaches.
    With `listen`, its ASAP endpoint (the registrator transport) accepts a new home's association."""
    o = PoolElementOptions(pool_handle=HANDLE, pe_id=1000 + index, policy=RoundRobin(), user_addresses=(pe_address(index),),
                           user_port=5000, registrars=tuple(RegistrarAddress((reg_address(r),), 3863) for r in registrars),
                           reregistration_interval=reregistration, registration_timeout=registration_timeout)  # fmt: skip
    name = f"pe{index}"
    net.add(name, PoolElementCore(o), (pe_address(index),), listens={PE_PORT: {}} if listen else {},
            connect_port=PE_PORT if listen else 0)  # fmt: skip
    net.start(name)
    return name


def core(net: Network, name: str) -> RegistrarCore:
    return net.nodes[name].core


def holdings(registrar: RegistrarCore) -> set[tuple[bytes, int, int]]:
    """The handlespace as (pool handle, PE id, home registrar) triples."""
    return {(n.pool_handle, n.identifier, n.home_registrar) for p in registrar.handlespace.pools() for n in p.elements()}


def registrars(net: Network) -> list[str]:
    return [n for n, node in net.nodes.items() if n.startswith("r") and node.alive]


def assert_identical(net: Network, names: list[str] | None = None) -> set[tuple[bytes, int, int]]:
    """Every registrar holds the same PEs with the same homes, and agrees on every home's checksum."""
    names = names or registrars(net)
    views = {n: holdings(core(net, n)) for n in names}
    first = views[names[0]]
    assert all(v == first for v in views.values()), views
    homes = {home for _, _, home in first} | {sid(n) for n in names}
    for home in homes:
        sums = {n: core(net, n).handlespace.checksum(home) for n in names}
        assert len(set(sums.values())) == 1, (hex(home), sums)
    return first


def times(node: SimNode, event: str) -> list[float]:
    return [t for t, e, _ in node.events if e == event]


def timer_due(net: Network, name: str, key: Any) -> float:
    """When node `name`'s running timer `key` will fire."""
    seq = net.timers[(name, key)]
    [due] = [t for t, s, _ in net.queue if s == seq]
    return due


# ------------------------------------------------------------------ one registrar fed directly

ME, A, B, C = 0x300, 0x100, 0x200, 0x999  # this registrar, two peers, a stranger
NOW = 100.0
ADDR = {A: "10.0.0.1", B: "10.0.0.2", C: "10.0.0.9"}
ASSOC = {A: 1, B: 2, C: 3}  # the association each peer speaks on
OWN_PE_ASSOC = 10


def make_pe(ident: int, home: int, address: str | None = None, life: int = 30000) -> PoolElement:
    ip = ip_address(address or pe_address(ident % 1000))
    user = SctpTransport(port=5000, addresses=(ip,), transport_use=TransportUse.DATA_PLUS_CONTROL)
    return PoolElement(ident, home, life, user, RoundRobin(), SctpTransport(port=PE_PORT, addresses=(ip,)))


def presence(sender: int, checksum: int = 0xFFFF, *, receiver: int = ME, reply: bool = False) -> Presence:
    info = ServerInformation(sender, SctpTransport(port=9901, addresses=(ip_address(ADDR[sender]),)))
    return Presence(sender_id=sender, receiver_id=receiver, flags=0x01 if reply else 0, checksum=checksum, server_info=info)


def add_pe_update(sender: int, pe: PoolElement, *, receiver: int = ME, flags: int = 0) -> HandleUpdate:
    return HandleUpdate(sender_id=sender, receiver_id=receiver, flags=flags, update_action=UpdateAction.ADD_PE,
                        pool_handle=HANDLE, pool_element=pe)  # fmt: skip


def del_pe_update(sender: int, pe: PoolElement) -> HandleUpdate:
    return HandleUpdate(sender_id=sender, receiver_id=ME, update_action=UpdateAction.DEL_PE, pool_handle=HANDLE, pool_element=pe)


def enrp_core(enrp: EnrpOptions = FAST, **options: Any) -> RegistrarCore:
    o = RegistrarOptions(server_id=ME, announce=False, asap_addresses=("10.0.0.3",), enrp=enrp, **options)
    registrar = RegistrarCore(o, rng=random.Random(1))
    registrar.start(NOW)
    return registrar


def feed(registrar: RegistrarCore, message: EnrpMessage | bytes, assoc: int | None = None, now: float = NOW) -> list[Action]:
    """Deliver an ENRP message (encoded here, unless already bytes) as if it came on `assoc`
    (default: the association of its sender)."""
    if isinstance(message, EnrpMessage):
        assoc = ASSOC.get(message.sender_id, 99) if assoc is None else assoc
        message = message.encode()
    assert assoc is not None
    return registrar.receive(assoc, message, ENRP, now)


def connect_peer(registrar: RegistrarCore, peer: int, checksum: int = 0xFFFF) -> list[Action]:
    """The peer's association comes up and its first PRESENCE arrives on it."""
    registrar.association_up(ASSOC[peer], NOW, peer_addresses=(ADDR[peer],), peer_port=9901)
    return feed(registrar, presence(peer, checksum))


def events(actions: Iterable[Action], name: str) -> list[dict[str, Any]]:
    return [a.fields for a in actions if isinstance(a, Emit) and a.event == name]


PE_A, PE_B = make_pe(1001, A), make_pe(1002, B)  # homed at the peers
OWN = 1003  # registered here by ASAP


def synced_core(enrp: EnrpOptions = FAST) -> RegistrarCore:
    """A registrar synchronised from mentor A, knowing peers A and B, holding a PE of A's, one
    of B's and one of its own."""
    registrar = enrp_core(enrp)
    connect_peer(registrar, A, pe_checksum([(HANDLE, PE_A.identifier)]))
    response = HandleTableResponse(sender_id=A, receiver_id=ME, entries=(PoolEntry(HANDLE, (PE_A, PE_B)),))
    assert events(feed(registrar, response), "synchronised")
    connect_peer(registrar, B, pe_checksum([(HANDLE, PE_B.identifier)]))
    registrar.association_up(OWN_PE_ASSOC, NOW, peer_addresses=(pe_address(3),), peer_port=PE_PORT)
    own = PoolElement(OWN, 0, 30000, make_pe(OWN, 0).user_transport, RoundRobin())  # no registrator transport
    answer = sent(registrar.receive(OWN_PE_ASSOC, Registration(pool_handle=HANDLE, pool_element=own).encode(), ASAP, NOW))
    assert isinstance(answer[0], RegistrationResponse) and not answer[0].has_flag("reject")
    assert holdings(registrar) == {(HANDLE, 1001, A), (HANDLE, 1002, B), (HANDLE, OWN, ME)}
    return registrar


# ================================================================== 1. convergence


def test_pes_registered_at_different_registrars_are_known_everywhere_with_one_home() -> None:
    """HANDLE_UPDATE ADD_PE spreads every registration: after a few presence cycles the three
    handlespaces are the same, with each PE homed where it registered, and the registrars agree
    on every home's PE checksum (so no audit is pending)."""
    net = scope(3)
    for i in range(9):
        add_pe(net, i, [f"r{i % 3 + 1}"])
    net.run_for(3.0)
    expected = {(HANDLE, 1000 + i, sid(f"r{i % 3 + 1}")) for i in range(9)}
    assert assert_identical(net) == expected
    for name in registrars(net):
        assert not net.nodes[name].emitted("checksum-mismatch")


def test_presence_carries_the_checksum_of_the_senders_own_pes() -> None:
    """The PE checksum in PRESENCE covers only the PEs the sender is home of (RFC 5353, §8.3 of
    the reference), not its whole handlespace."""
    net = scope(3)
    for i in range(9):
        add_pe(net, i, [f"r{i % 3 + 1}"])
    net.run_for(3.0)
    (_, multicast), *_ = reversed(net.announces("r1", Presence))
    (_, unicast), *_ = reversed(net.sends("r1", Presence))
    own = pe_checksum([(HANDLE, 1000 + i) for i in (0, 3, 6)])
    assert multicast.sender_id == unicast.sender_id == 0x100
    assert multicast.checksum == unicast.checksum == own
    assert own != pe_checksum([(HANDLE, 1000 + i) for i in range(9)])
    assert multicast.server_info.server_id == 0x100 and multicast.server_info.transport.port == 9901


# ================================================================== 2. start-up


def test_a_late_registrar_fetches_the_whole_table_from_its_mentor_before_announcing() -> None:
    """A new registrar takes the first peer heard as mentor and fetches its whole handle table,
    max-elements-per-ht PEs per HANDLE_TABLE_RESPONSE (M flag on all but the last); only then does
    it send ASAP SERVER_ANNOUNCEs (RSPLIB: "ASAP SERVER_ANNOUNCEs start only then")."""
    net = scope(3, settle=0.0)
    pes = [make_pe(5000 + i, 0x100, pe_address(i)) for i in range(1000)]
    for name in ("r1", "r2", "r3"):  # the same 1,000 PEs of r1's everywhere: checksums agree, no audit
        for pe in pes:
            core(net, name).handlespace.register(HANDLE, pe)
    net.run_for(3.0)
    late = add_registrar(net, "r4", announce=True)
    r4 = net.nodes["r4"]
    net.run_for(5.0)

    [mentor] = r4.emitted("mentor-chosen")
    parts = r4.emitted("handle-table-received", server_id=mentor["server_id"])
    assert len(parts) >= 8
    assert [p["more"] for p in parts] == [True] * (len(parts) - 1) + [False]
    assert sum(p["pool_elements"] for p in parts) == 1000
    requests = [m for _, m in net.sends("r4", HandleTableRequest) if m.receiver_id == int(mentor["server_id"], 16)]
    assert len(requests) == len(parts) and not any(m.has_flag("own_children_only") for m in requests)

    [synchronised] = r4.emitted("synchronised")
    assert synchronised["pool_elements"] == 1000
    [t_sync] = times(r4, "synchronised")
    announced = [t for t, _ in net.announces("r4", ServerAnnounce)]
    assert announced and min(announced) >= t_sync
    assert all(t <= t_sync for t in times(r4, "handle-table-received")[: len(parts)])
    assert {(h, i) for h, i, _ in holdings(late)} >= {(HANDLE, pe.identifier) for pe in pes}


def test_a_slow_transfer_from_the_mentor_is_let_finish_past_the_discovery_timeout() -> None:
    """The mentor discovery timeout ends a start-up without a mentor, not a transfer that is
    progressing: 2,000 PEs at 16 per response over 50 ms one-way take ~12 s, the timeout is
    3 s, and the new registrar must not announce itself with part of the handlespace."""
    net = scope(2, settle=0.0)
    net.latency = 0.05
    pes = [make_pe(5000 + i, 0x100, pe_address(i)) for i in range(2000)]
    for name in ("r1", "r2"):
        for pe in pes:
            core(net, name).handlespace.register(HANDLE, pe)
    net.run_for(3.0)
    slow = EnrpOptions(**{**FAST.__dict__, "mentor_discovery_timeout": 3.0, "max_elements_per_ht": 16})
    for name in ("r1", "r2"):
        core(net, name).enrp.options = slow  # the mentor cuts its answers at 16 PEs
    add_registrar(net, "r3", slow)
    net.run_for(20.0)
    [synchronised] = net.nodes["r3"].emitted("synchronised")
    assert synchronised["how"].startswith("from mentor") and synchronised["pool_elements"] == 2000, synchronised
    assert times(net.nodes["r3"], "synchronised")[0] - times(net.nodes["r3"], "mentor-chosen")[0] > 3.0


def test_messages_queued_for_a_peer_are_sent_even_if_the_peer_connected_to_us_first() -> None:
    """Both registrars connect to each other at once and the peer's PRESENCE arrives on its
    association before ours is up: what we queued for it (the mentor's HANDLE_TABLE_REQUEST
    among them) must still go out, on the association now in use.  On the netsim this happens
    to a registrar started 1.5 ms before a peer's presence timer fires."""
    registrar = enrp_core()
    # A's multicast PRESENCE: A is new and becomes the mentor; its requests wait for our Connect
    first = registrar.datagram(presence(A, receiver=0).encode(), ADDR[A], 9901, "eth0", NOW)
    assert events(first, "mentor-chosen") and not sent(first)
    # meanwhile A connected to us and its PRESENCE (R = 1) arrived on that association
    registrar.association_up(5, NOW, peer_addresses=(ADDR[A],), peer_port=40000)
    second = feed(registrar, presence(A, reply=True), assoc=5)
    # then our own Connect completes; it is not needed any more
    third = registrar.association_up(6, NOW, peer_addresses=(ADDR[A],), peer_port=9901, key=("enrp-peer", A))
    out = sent(second + third)
    assert [m for m in out if isinstance(m, HandleTableRequest)], out
    assert [m for m in out if isinstance(m, ListRequest)], out


def test_a_registrar_started_as_a_peers_presence_goes_out_still_syncs_from_its_mentor() -> None:
    """The same race on the netsim: r4 starts 1.5 ms before r1's presence timer fires, so r1's
    multicast PRESENCE makes r4 connect to r1 while r1, having heard r4's, connects to r4; r1's
    PRESENCE arrives on r1's association first.  r4 must still fetch the whole table from its
    mentor (not fall back on the mentor discovery timeout with an empty handlespace)."""
    net = scope(3)
    for i in range(6):
        add_pe(net, i, [f"r{i % 3 + 1}"])
    net.run_for(2.0)
    net.run(timer_due(net, "r1", ("enrp", "presence")) - 0.0015)
    add_registrar(net, "r4")
    net.run_for(4.0)
    r4 = net.nodes["r4"]
    ups = {f["assoc"]: t for t, e, f in r4.events if e == "association-up"}
    closed = [a for t, e, f in r4.events if e == "association-down" for a in [f["assoc"]] if ups.get(a) == t]
    assert closed, "the race did not happen: r4's own association to r1 was not closed as a duplicate"
    [synchronised] = r4.emitted("synchronised")
    assert synchronised["how"] == "from mentor 0x00000100" and synchronised["pool_elements"] == 6
    assert assert_identical(net) == {(HANDLE, 1000 + i, sid(f"r{i % 3 + 1}")) for i in range(6)}


def test_a_registrar_alone_is_synchronised_at_start() -> None:
    """No presence group and no static peers: nobody to wait for, so it serves (announces) at once."""
    registrar = RegistrarCore(RegistrarOptions(server_id=ME, announce=True, asap_addresses=("10.0.0.3",),
                                               enrp=EnrpOptions(multicast=False)))  # fmt: skip
    actions = registrar.start(NOW)
    assert events(actions, "synchronised")
    assert [a for a in actions if isinstance(a, Announce) and isinstance(a.message, ServerAnnounce)]
    assert not registrar.enrp.starting


@pytest.mark.parametrize("enrp", [
    FAST,  # a presence group nobody else is in
    EnrpOptions(multicast=False, peers=((("10.0.0.9",), 9901),), mentor_discovery_timeout=2.0),  # a static peer that is not there
], ids=["multicast", "static-peer"])  # fmt: skip
def test_with_peers_but_nobody_answering_it_is_synchronised_after_the_mentor_discovery_timeout(enrp: EnrpOptions) -> None:
    net = TapNetwork()
    add_registrar(net, "r1", enrp, announce=True)
    net.run_for(5.0)
    r1 = net.nodes["r1"]
    assert times(r1, "synchronised") == [pytest.approx(enrp.mentor_discovery_timeout)]
    assert r1.emitted("synchronised")[0]["how"] == "mentor discovery timeout"
    announced = [t for t, _ in net.announces("r1", ServerAnnounce)]
    assert announced and min(announced) == pytest.approx(enrp.mentor_discovery_timeout)


# ================================================================== 3./4. takeover after a kill


@pytest.mark.parametrize(("arbitration", "winner"), [("highest", "r3"), ("lowest", "r2")])
def test_a_dead_registrars_pes_are_taken_over_by_exactly_one_survivor(arbitration: str, winner: str) -> None:
    """r1 dies owning three PEs.  Both survivors notice after max-time-last-heard +
    max-time-no-response and start a takeover; the conflict is resolved by server id (RFC: the
    highest wins; RSPLIB: the lowest), so exactly one completes.  The winner sends each PE an
    ENDPOINT_KEEP_ALIVE with H = 1 over a new association to its registrator transport; the PE
    takes it as its home, and every survivor then holds the PEs homed at the winner."""
    enrp = EnrpOptions(**{**FAST.__dict__, "arbitration": arbitration})
    net = scope(3, enrp)
    for i in range(9):
        add_pe(net, i, [f"r{i % 3 + 1}"])
    net.run_for(2.0)
    killed_at = net.now
    net.kill("r1")
    net.run_for(6.0)

    completed = [(n, t) for n in ("r2", "r3") for t in times(net.nodes[n], "takeover-completed")]
    assert [n for n, _ in completed] == [winner]
    [(_, t_done)] = completed
    cycle = enrp.heartbeat_cycle * 1.125  # the last presence came up to one (randomised) cycle before the kill
    budget = enrp.max_time_last_heard + enrp.max_time_no_response
    assert budget - cycle <= t_done - killed_at <= budget + 0.05

    taken = [1000 + i for i in (0, 3, 6)]
    loser = ({"r2", "r3"} - {winner}).pop()
    assert net.nodes[loser].emitted("takeover-observed", by=f"0x{sid(winner):08x}", pool_elements=3)
    keepalives = [m for _, m in net.sends(winner, EndpointKeepAlive) if m.has_flag("home")]
    assert sorted(m.pe_id for m in keepalives) == taken
    for pe_id in taken:
        pe = net.nodes[f"pe{pe_id - 1000}"]
        assert [f["server_id"] for f in pe.emitted("home-changed")] == [f"0x{sid(winner):08x}"]
    net.run_for(5.0)  # several keep-alive rounds over the new associations
    everything = assert_identical(net, ["r2", "r3"])
    assert {(h, i) for h, i, home in everything if home == sid(winner)} >= {(HANDLE, i) for i in taken}
    assert not [t for t in everything if t[2] == 0x100]
    for name in ("r2", "r3"):
        actions = core(net, name).receive(999, HandleResolution(pool_handle=HANDLE, items=20).encode(), ASAP, net.now)
        [response] = sent(actions)
        assert isinstance(response, HandleResolutionResponse)
        assert sorted(p.identifier for p in response.pool_elements) == [1000 + i for i in range(9)]


def test_with_two_registrars_the_survivor_takes_over_at_once() -> None:
    """With nobody but the target to ask, "an ACK from every known peer but the target" holds
    at once: the takeover completes when it starts (RSPLIB would let it expire)."""
    net = scope(2)
    for i in range(4):
        add_pe(net, i, ["r1" if i % 2 == 0 else "r2"])
    net.run_for(2.0)
    net.kill("r1")
    net.run_for(5.0)
    r2 = net.nodes["r2"]
    [started_] = r2.emitted("takeover-started")
    assert started_["waiting_for"] == [] and started_["pool_elements"] == 2
    assert times(r2, "takeover-completed") == times(r2, "takeover-started")
    assert not r2.emitted("takeover-expired")
    assert holdings(core(net, "r2")) == {(HANDLE, 1000 + i, 0x200) for i in range(4)}
    assert all(net.nodes[f"pe{i}"].emitted("home-changed") for i in (0, 2))


def test_pes_taken_over_while_their_re_registration_is_unanswered_stay_with_the_winner() -> None:
    """r1 dies just after its PEs sent a re-registration it will never answer.  The takeover
    (H = 1 keep-alive) comes before their registration timeout: the new home makes that
    timeout moot, so the PEs neither call the new home silent nor abort its association, and
    they stay homed at the winner (before the fix in nodes/pe/core.py they did both and the
    winner dropped them: "association lost")."""
    net = scope(3)
    for i in range(6):
        add_pe(net, i, [f"r{i % 3 + 1}"], reregistration=5.0, registration_timeout=4.0)
    net.run_for(1.0)
    net.run(timer_due(net, "pe0", ("reregister",)) + 0.0005)  # the re-registrations of pe0 and pe3 are on the wire ...
    net.kill("r1")  # ... and r1 will never answer them
    net.run_for(10.0)
    for i in (0, 3):
        pe = net.nodes[f"pe{i}"]
        assert pe.emitted("home-changed", server_id="0x00000300")
        assert not pe.emitted("registrar-silent") and pe.core.phase == "registered", pe.events
    assert {(h, i) for h, i, home in assert_identical(net, ["r2", "r3"]) if home == 0x300} >= {(HANDLE, 1000), (HANDLE, 1003)}
    assert not net.nodes["r3"].emitted("pe-removed")


# ================================================================== 5. a target that is alive


def test_a_peer_that_answers_the_reply_required_presence_is_not_declared_dead() -> None:
    """With presences further apart than max-time-last-heard, every peer gets a PRESENCE with
    R = 1 each cycle; its prompt answer must stop the max-time-no-response timer, so no live
    peer is ever removed or taken over."""
    enrp = EnrpOptions(**{**FAST.__dict__, "heartbeat_cycle": 3.0, "max_time_last_heard": 2.0, "max_time_no_response": 2.0})
    net = scope(3, enrp)
    for i in range(3):
        add_pe(net, i, [f"r{i + 1}"])
    net.run_for(20.0)
    asked = [m for _, m in net.sends("r1", Presence) if m.has_flag("reply_required")]
    assert len(asked) >= 10  # the last-heard timer did fire, again and again
    for name in registrars(net):
        node = net.nodes[name]
        assert not node.emitted("takeover-started") and not node.emitted("peer-removed"), node.events
        assert len(core(net, name).enrp.table) == 2


def test_a_registrar_that_acked_anothers_takeover_does_not_start_its_own() -> None:
    """Reference §8.5 step 2 / §8.2: once it ACKed B's takeover of A, this registrar's own
    no-response timer for A only drops A from its peer list."""
    registrar = synced_core()
    acked = feed(registrar, InitTakeover(sender_id=B, receiver_id=ME, target_id=A))
    [ack] = sent(acked, ASSOC[B])
    assert isinstance(ack, InitTakeoverAck) and ack.target_id == A
    actions = registrar.timer(("enrp", "no-response", A), NOW + 3)
    assert not events(actions, "takeover-started") and not [m for m in sent(actions) if isinstance(m, InitTakeover)]
    # It is kept (silent) until the taker's TAKEOVER_SERVER re-homes its PEs, or the taker fails.
    assert not events(actions, "peer-removed") and registrar.enrp.table.get(A).silent


def test_takeover_server_rehomes_the_targets_pes_at_the_taker() -> None:
    """Peers that receive TAKEOVER_SERVER change the home of X's PEs to the sender (reference
    §8.5 step 3), drop X, and keep the PEs for their registration life."""
    registrar = synced_core()
    refused = feed(registrar, TakeoverServer(sender_id=B, receiver_id=ME, target_id=A))
    assert events(refused, "enrp-refused")[0]["reason"] == f"not acknowledged as the taker of 0x{A:08x}"
    assert {n.home_registrar for n in registrar.handlespace.homed_at(A)} == {A}  # nothing moved
    feed(registrar, InitTakeover(sender_id=B, receiver_id=ME, target_id=A))
    actions = feed(registrar, TakeoverServer(sender_id=B, receiver_id=ME, target_id=A))
    assert events(actions, "takeover-observed") == [{"target": f"0x{A:08x}", "by": f"0x{B:08x}", "pool_elements": 1}]
    assert holdings(registrar) == {(HANDLE, 1001, B), (HANDLE, 1002, B), (HANDLE, OWN, ME)}
    assert started(actions)[("enrp", "expiry", HANDLE, 1001)] == PE_A.registration_life / 1000
    assert A not in registrar.enrp.table


def test_a_peer_silent_long_enough_is_asked_then_a_takeover_starts() -> None:
    """Liveness, fed directly: max-time-last-heard fires -> PRESENCE with R = 1 to the peer;
    max-time-no-response fires -> INIT_TAKEOVER to every peer, waiting for every peer's ACK but
    the target's."""
    registrar = synced_core()
    actions = registrar.timer(("enrp", "last-heard", A), NOW + 2)
    [ask] = sent(actions, ASSOC[A])
    assert isinstance(ask, Presence) and ask.has_flag("reply_required")
    assert started(actions) == {("enrp", "no-response", A): FAST.max_time_no_response}
    actions = registrar.timer(("enrp", "no-response", A), NOW + 3)
    [begun] = events(actions, "takeover-started")
    assert begun["waiting_for"] == [f"0x{B:08x}"]
    inits = sent(actions)
    assert {m.receiver_id for m in inits if isinstance(m, InitTakeover) and m.target_id == A} == {A, B}


def test_a_presence_from_the_target_cancels_the_takeover() -> None:
    """RFC 5353 §3.5.1 / reference §8.5 step 4: a PRESENCE from X cancels any takeover of X; the
    ACK arriving afterwards completes nothing and X keeps its PEs."""
    registrar = synced_core()
    registrar.timer(("enrp", "last-heard", A), NOW + 2)
    assert events(registrar.timer(("enrp", "no-response", A), NOW + 3), "takeover-started")
    actions = feed(registrar, presence(A, pe_checksum([(HANDLE, PE_A.identifier)])), now=NOW + 3.5)
    assert events(actions, "takeover-cancelled") == [{"target": f"0x{A:08x}", "reason": "the target is alive"}]
    actions = feed(registrar, InitTakeoverAck(sender_id=B, receiver_id=ME, target_id=A), now=NOW + 3.6)
    assert not events(actions, "takeover-completed")
    assert not [m for m in sent(actions) if isinstance(m, TakeoverServer | EndpointKeepAlive)]
    assert (HANDLE, PE_A.identifier, A) in holdings(registrar) and A in registrar.enrp.table


def test_the_target_of_an_init_takeover_floods_presence() -> None:
    """The target of INIT_TAKEOVER is alive: it says so by multicast and to every peer by
    unicast (reference §8.5 step 2), and does not ACK its own takeover."""
    registrar = synced_core()
    actions = feed(registrar, InitTakeover(sender_id=A, receiver_id=ME, target_id=ME))
    assert events(actions, "takeover-of-us")
    multicast = [a.message for a in actions if isinstance(a, Announce)]
    assert len(multicast) == 1 and isinstance(multicast[0], Presence) and multicast[0].sender_id == ME
    unicast = [(a.assoc, m) for a in actions if isinstance(a, Send) for m in sent([a])]
    assert {assoc for assoc, m in unicast if isinstance(m, Presence)} == {ASSOC[A], ASSOC[B]}
    assert not [m for _, m in unicast if isinstance(m, InitTakeoverAck)]


def test_a_briefly_partitioned_registrar_cancels_the_takeovers_of_it_and_keeps_its_pes() -> None:
    """On the network: r1 is cut off from r2 and r3 just long enough for both to declare it dead
    (and r2 from r3, so that each waits for the other's ACK instead of completing at once).  The
    heal comes before the takeovers expire: r1's next presences cancel them and r1 keeps its PEs.
    (The netsim cannot deliver INIT_TAKEOVER to a target it hides, so the flood of PRESENCE by
    the target itself is checked by feeding one registrar, above.)"""
    enrp = EnrpOptions(**{**FAST.__dict__, "takeover_expiry": 4.0})
    net = scope(3, enrp)
    for i in range(6):
        add_pe(net, i, [f"r{i % 3 + 1}"])
    net.run_for(2.0)
    net.partition({"r1"}, {"r2", "r3"})
    net.partition({"r2"}, {"r3"})
    net.run_for(3.5)
    started_ = {n: net.nodes[n].emitted("takeover-started") for n in ("r2", "r3")}
    assert all(any(s["target"] == "0x00000100" for s in v) for v in started_.values()), started_
    net.heal()
    net.run_for(3.0)
    for name in ("r2", "r3"):
        node = net.nodes[name]
        assert any(f["target"] == "0x00000100" for f in node.emitted("takeover-cancelled")), node.events
        assert not any(f["target"] == "0x00000100" for f in node.emitted("takeover-completed"))
    assert assert_identical(net) == {(HANDLE, 1000 + i, sid(f"r{i % 3 + 1}")) for i in range(6)}
    assert not any(net.nodes[f"pe{i}"].emitted("home-changed") for i in range(6))


# ================================================================== 6. partition and heal


def test_after_a_long_partition_heals_the_handlespaces_are_identical_again() -> None:
    """r1 is cut off from r2 and r3 long enough for takeovers and peer removal on both sides:
    r3 takes over r1's PEs (still reachable from it) but not pe10, whose endpoint it cannot
    reach, and which stays registered at r1; r1's takeovers of r2 and r3 expire.  Meanwhile pe9
    deregisters at r2 (the DEL_PE to r1 is lost, its registration life is long) and the others
    re-register.  After the heal, presences, ADD_PEs and checksum audits bring the three
    handlespaces back to the same (handle, PE, home) set: r1 purges the stale pe9."""
    net = scope(3)
    for i in range(9):
        add_pe(net, i, [f"r{i % 3 + 1}"], reregistration=2.0)
    add_pe(net, 9, ["r2"])  # re-registers every 30 s: registration life 90 s
    add_pe(net, 10, ["r1"], reregistration=2.0, listen=False)
    net.run_for(2.0)
    net.partition({"r1"}, {"r2", "r3"})
    net.run_for(1.0)
    net.call("pe9", "shutdown")
    net.run_for(9.0)
    assert net.nodes["r3"].emitted("takeover-completed", target="0x00000100")
    assert [f["target"] for f in net.nodes["r1"].emitted("takeover-expired")] == ["0x00000300", "0x00000200"]
    assert core(net, "r1").handlespace.find(HANDLE, 1009) is not None  # stale at r1
    assert (HANDLE, 1010, 0x100) in holdings(core(net, "r1")) and core(net, "r2").handlespace.find(HANDLE, 1010) is None
    net.heal()
    net.run_for(8.0)
    [purged] = net.nodes["r1"].emitted("pe-removed", pe_id=f"0x{1009:08x}")
    assert purged["reason"] == "not in 0x00000200's handle table"
    everything = assert_identical(net)
    assert {i for _, i, _ in everything} == {1000 + i for i in range(11)} - {1009}
    for i in (*range(9), 10):  # and each PE is homed where it is registered now
        pe = net.nodes[f"pe{i}"].core
        assert pe.phase == "registered"
        assert (HANDLE, 1000 + i, pe.home_server_id) in everything
    assert (HANDLE, 1010, 0x100) in everything


def test_a_listed_peer_that_never_speaks_is_dropped_and_does_not_block_takeovers() -> None:
    """r5 dies owning nothing; r4 starts while its mentor still lists r5.  A peer only listed,
    never heard, is dropped like a silent one, and is not waited for in a takeover: otherwise
    r4 (the highest id, which the others defer to) would wait for r5's ACK, and nobody would
    take r1's PEs over when r1 dies."""
    net = scope(3)
    for i in range(6):
        add_pe(net, i, [f"r{i % 3 + 1}"])
    add_registrar(net, "r5")  # owns no PEs
    net.run_for(3.0)
    net.kill("r5")
    net.run_for(0.5)
    add_registrar(net, "r4")  # its mentor still lists r5
    net.run_for(15.0)
    assert net.nodes["r4"].emitted("peer-listed", server_id="0x00000500")
    assert 0x500 not in core(net, "r4").enrp.table
    net.kill("r1")
    net.run_for(10.0)
    completed = [n for n in ("r2", "r3", "r4") for _ in net.nodes[n].emitted("takeover-completed", target="0x00000100")]
    assert len(completed) == 1


# ================================================================== 7. forged and unknown senders


def _other_pe() -> PoolElement:
    return make_pe(1077, A)


FORGERIES = {
    # name: (message, association it arrives on, event, reason fragment)
    "add from a sender never heard": (add_pe_update(C, make_pe(1077, C)), ASSOC[C], "enrp-refused", "unknown peer"),
    "add naming another home": (add_pe_update(A, make_pe(1077, B)), ASSOC[A], "handle-update-refused", "another home"),
    "add of a pe homed at b, by a": (add_pe_update(A, make_pe(1002, B)), ASSOC[A], "handle-update-refused", "another home"),
    "del of b's pe by a": (del_pe_update(A, PE_B), ASSOC[A], "handle-update-refused", "not homed at the sender"),
    "del of our own pe by a": (del_pe_update(A, make_pe(OWN, A)), ASSOC[A], "handle-update-refused", "not homed at the sender"),
    "sender differs from the association's": (add_pe_update(B, make_pe(1077, B)), ASSOC[A], "enrp-refused", "another registrar"),
    "del on another's association": (del_pe_update(B, PE_B), ASSOC[A], "enrp-refused", "another registrar"),
    "for another receiver": (add_pe_update(A, _other_pe(), receiver=B), ASSOC[A], "enrp-refused", "for registrar"),
    "sender is our own id": (add_pe_update(ME, make_pe(1077, ME)), ASSOC[A], "enrp-refused", "our own"),
    "sender id 0": (add_pe_update(0, make_pe(1077, 0)), ASSOC[A], "enrp-refused", "our own"),
    "takeover_server from a stranger": (TakeoverServer(sender_id=C, receiver_id=ME, target_id=A), ASSOC[C], "enrp-refused", "unknown peer"),
    "unrequested handle table": (HandleTableResponse(sender_id=A, receiver_id=ME, entries=(PoolEntry(HANDLE, (_other_pe(),)),)),
                                 ASSOC[A], "ignored", "not requested"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FORGERIES))
def test_forged_or_unknown_senders_do_not_change_the_handlespace(case: str) -> None:
    """A peer may only add PEs it is home of and delete PEs homed at it; an association speaks
    for the registrar first heard on it; a message for another registrar, or claiming to be
    from us, is not taken (module docstrings of enrp.py and peers.py)."""
    message, assoc, event, reason = FORGERIES[case]
    registrar = synced_core()
    before = holdings(registrar)
    if case == "add from a sender never heard":
        registrar.association_up(assoc, NOW, peer_addresses=(ADDR[C],), peer_port=9901)
    actions = feed(registrar, message, assoc)
    assert holdings(registrar) == before
    [why] = events(actions, event)
    assert reason in why["reason"], why
    assert not [m for m in sent(actions) if isinstance(m, HandleUpdate | TakeoverServer | EndpointKeepAlive)]


def test_an_association_stays_bound_to_the_first_sender_even_for_presence() -> None:
    """A PRESENCE naming B on A's association neither adds B as a peer there nor rebinds it."""
    registrar = enrp_core()
    connect_peer(registrar, A)
    actions = feed(registrar, presence(B), ASSOC[A])
    assert events(actions, "enrp-refused") and B not in registrar.enrp.table
    assert registrar.enrp.table.bound[ASSOC[A]] == A


def test_handle_table_request_from_an_unknown_peer_is_rejected() -> None:
    registrar = synced_core()
    registrar.association_up(ASSOC[C], NOW, peer_addresses=(ADDR[C],))
    actions = feed(registrar, HandleTableRequest(sender_id=C, receiver_id=ME))
    [response] = sent(actions, ASSOC[C])
    assert isinstance(response, HandleTableResponse) and response.has_flag("reject") and response.entries == ()
    assert events(actions, "handle-table-rejected")[0]["reason"] == "unknown peer"


def test_handle_table_requests_are_rejected_while_starting_up() -> None:
    """RFC 5353 §3.2.3: a registrar that is itself still synchronising answers with R = 1."""
    registrar = enrp_core()
    connect_peer(registrar, A)  # A becomes the mentor; its table has not arrived yet
    assert registrar.enrp.starting
    actions = feed(registrar, HandleTableRequest(sender_id=A, receiver_id=ME))
    [response] = sent(actions, ASSOC[A])
    assert isinstance(response, HandleTableResponse) and response.has_flag("reject")
    assert events(actions, "handle-table-rejected")[0]["reason"] == "starting up"


def test_a_rejected_mentor_request_lets_the_next_peer_become_mentor() -> None:
    registrar = enrp_core()
    connect_peer(registrar, A)
    actions = feed(registrar, HandleTableResponse(sender_id=A, receiver_id=ME, flags=0x01))
    assert events(actions, "handle-table-refused") and registrar.enrp.starting
    actions = connect_peer(registrar, B)
    assert events(actions, "mentor-chosen") == [{"server_id": f"0x{B:08x}"}]
    assert [m for m in sent(actions, ASSOC[B]) if isinstance(m, HandleTableRequest)]


# ================================================================== 8. checksum audit


def test_a_pe_that_vanished_without_del_pe_is_purged_after_the_checksum_audit() -> None:
    """r2 loses one of its PEs without telling anybody.  Its next unicast PRESENCE carries a
    checksum that no longer matches what r1 and r3 believe r2 owns: each asks r2 for its own
    PEs (HANDLE_TABLE_REQUEST W = 1) and purges what is not in the answer."""
    net = scope(3)
    for i in range(6):
        add_pe(net, i, [f"r{i % 3 + 1}"])
    net.run_for(2.0)
    assert_identical(net)
    gone = core(net, "r2").handlespace.deregister(HANDLE, 1001)
    assert gone is not None and gone.home_registrar == 0x200
    t_gone = net.now
    net.run_for(2.5)
    for name in ("r1", "r3"):
        node = net.nodes[name]
        assert node.emitted("checksum-mismatch", server_id="0x00000200")
        requests = [m for t, m in net.sends(name, HandleTableRequest) if t >= t_gone and m.receiver_id == 0x200]
        assert requests and all(m.has_flag("own_children_only") for m in requests)
        [removed] = node.emitted("pe-removed", pe_id=f"0x{1001:08x}")
        assert "0x00000200's handle table" in removed["reason"]
    everything = assert_identical(net)
    assert {i for _, i, _ in everything} == {1000, 1002, 1003, 1004, 1005}


def test_a_handle_table_never_overwrites_a_pe_this_registrar_owns() -> None:
    """A handle table may be older than a registration here: neither a PE listed as ours nor
    one listed as the peer's but registered here since changes our own PE (it stays
    supervised on its association); only the PE's new home's own HANDLE_UPDATE may."""
    registrar = synced_core()
    mine = registrar.handlespace.find(HANDLE, OWN)
    assert mine is not None and mine.owner == OWN_PE_ASSOC
    feed(registrar, presence(A, 0x1234), now=NOW + 1)  # mismatch: a W = 1 request goes to A
    stale = (make_pe(OWN, ME, "10.9.9.9"), make_pe(OWN, A, "10.9.9.8"))
    for pe in stale:
        feed(registrar, presence(A, 0x1234), now=NOW + 1)
        response = HandleTableResponse(sender_id=A, receiver_id=ME, entries=(PoolEntry(HANDLE, (PE_A, pe)),))
        feed(registrar, response, now=NOW + 1.1)
        node = registrar.handlespace.find(HANDLE, OWN)
        assert node is not None and node.home_registrar == ME and node.owner == OWN_PE_ASSOC
        assert node.pe.user_transport.addresses == (ip_address(pe_address(3)),)
    assert (HANDLE, 1001, A) in holdings(registrar)
    # nor does it make up a PE of ours we do not have (it would never be supervised nor expire)
    feed(registrar, presence(A, 0x1234), now=NOW + 2)
    phantom = HandleTableResponse(sender_id=A, receiver_id=ME, entries=(PoolEntry(HANDLE, (PE_A, make_pe(1099, ME))),))
    feed(registrar, phantom, now=NOW + 2.1)
    assert registrar.handlespace.find(HANDLE, 1099) is None


def test_a_matching_checksum_triggers_no_audit_and_a_multicast_presence_never_does() -> None:
    """Only a unicast PRESENCE is audited (reference §8.2), and only on a mismatch."""
    registrar = synced_core()
    right = pe_checksum([(HANDLE, PE_B.identifier)])
    assert not sent(feed(registrar, presence(B, right), now=NOW + 1))
    wrong = registrar.datagram(presence(B, 0x1234).encode(), ADDR[B], 9901, "eth0", NOW + 1)
    assert not events(wrong, "checksum-mismatch") and not sent(wrong)
    actions = feed(registrar, presence(B, 0x1234), now=NOW + 1)
    assert events(actions, "checksum-mismatch")
    [request] = sent(actions, ASSOC[B])
    assert isinstance(request, HandleTableRequest) and request.has_flag("own_children_only")


def test_an_audit_answer_spanning_several_responses_purges_only_after_the_last() -> None:
    """W = 1 answer with M = 1: PEs are purged only once the last part (M = 0) arrived."""
    registrar = synced_core()
    extra = [make_pe(2000 + i, B) for i in range(3)]
    for pe in extra:
        feed(registrar, add_pe_update(B, pe))
    feed(registrar, presence(B, 0x1234), now=NOW + 1)  # mismatch: marks PE_B and the three extras
    first = HandleTableResponse(sender_id=B, receiver_id=ME, flags=0x02, entries=(PoolEntry(HANDLE, (extra[0],)),))
    actions = feed(registrar, first, now=NOW + 1.1)
    [again] = sent(actions, ASSOC[B])
    assert isinstance(again, HandleTableRequest) and again.has_flag("own_children_only")
    assert not events(actions, "pe-removed")
    last = HandleTableResponse(sender_id=B, receiver_id=ME, entries=(PoolEntry(HANDLE, (extra[2],)),))
    actions = feed(registrar, last, now=NOW + 1.2)
    assert sorted(f["pe_id"] for f in events(actions, "pe-removed")) == [f"0x{i:08x}" for i in (1002, 2001)]
    assert {i for _, i, home in holdings(registrar) if home == B} == {2000, 2002}


def test_an_audit_lost_with_its_association_is_retried_on_the_next_mismatch() -> None:
    """A W = 1 request (or its answer) lost with its association must not block later audits
    of that peer: the next mismatching PRESENCE on a new association asks again."""
    registrar = synced_core()
    [request] = sent(feed(registrar, presence(B, 0x1234), now=NOW + 1), ASSOC[B])
    assert isinstance(request, HandleTableRequest) and request.has_flag("own_children_only")
    registrar.association_down(ASSOC[B], NOW + 1.5)  # the request, or its answer, is lost with it
    registrar.association_up(7, NOW + 2, peer_addresses=(ADDR[B],), peer_port=9901)
    actions = feed(registrar, presence(B, 0x1234), assoc=7, now=NOW + 2)
    assert [m for m in sent(actions, 7) if isinstance(m, HandleTableRequest)], actions


def test_a_restarted_peer_asking_for_the_whole_table_gets_it_from_the_start() -> None:
    """The continuation state of a multi-part handle table belongs to the requester's
    association: a peer that restarted (same id, new association) mid-transfer gets the whole
    table again, not the tail of the old transfer."""
    registrar = synced_core(EnrpOptions(**{**FAST.__dict__, "max_elements_per_ht": 2}))
    for i in range(3):
        feed(registrar, add_pe_update(B, make_pe(2000 + i, B)))
    whole = HandleTableRequest(sender_id=A, receiver_id=ME)
    [part] = sent(feed(registrar, whole))
    first_ids = [p.identifier for e in part.entries for p in e.pool_elements]
    assert part.has_flag("more_to_send") and len(first_ids) == 2
    registrar.association_down(ASSOC[A], NOW + 1)  # A restarts (same server id) before asking for the rest
    registrar.association_up(7, NOW + 2, peer_addresses=(ADDR[A],), peer_port=9901)
    feed(registrar, presence(A, reply=True), assoc=7, now=NOW + 2)
    [again] = sent(feed(registrar, whole, assoc=7, now=NOW + 2))
    assert [p.identifier for e in again.entries for p in e.pool_elements] == first_ids


# ================================================================== 9. registration life


def test_a_peers_pe_expires_after_its_registration_life_without_updates() -> None:
    """Non-home registrars keep a peer's PE for its registration life; every ADD_PE restarts
    that timer; when it fires with no update since, the PE goes (reference §8.1)."""
    registrar = synced_core()
    pe = make_pe(1055, A, life=4000)
    actions = feed(registrar, add_pe_update(A, pe))
    key = ("enrp", "expiry", HANDLE, 1055)
    assert started(actions)[key] == 4.0
    assert started(feed(registrar, add_pe_update(A, pe), now=NOW + 2))[key] == 4.0  # refreshed
    actions = registrar.timer(key, NOW + 6)
    assert events(actions, "pe-removed") == [{"handle": "P", "pe_id": f"0x{1055:08x}", "reason": "registration life expired"}]
    assert registrar.handlespace.find(HANDLE, 1055) is None
    assert not [m for m in sent(actions) if isinstance(m, HandleUpdate)]  # not ours: no DEL_PE


def test_own_pes_never_expire_by_registration_life() -> None:
    registrar = synced_core()
    assert not registrar.timer(("enrp", "expiry", HANDLE, OWN), NOW + 1000)
    assert registrar.handlespace.find(HANDLE, OWN) is not None


def test_on_the_network_a_pe_expires_where_its_updates_stop_coming() -> None:
    """pe0 re-registers at r1 every second (registration life 3 s), and each time r1 sends
    ADD_PE.  r2 is cut off from everybody: it hears no more ADD_PEs and drops pe0 between 2 and
    3 s later (the last update was up to 1 s before the cut), while r3, still updated, keeps it.
    (pe0's endpoint is unreachable, so that no takeover by r2 could keep it either.)"""
    net = scope(3)
    add_pe(net, 0, ["r1"], reregistration=1.0, listen=False)  # registration life 3 s
    net.run_for(1.0)
    assert all(core(net, n).handlespace.find(HANDLE, 1000) for n in ("r2", "r3"))
    net.partition({"r2"}, {"r1", "r3", "pe0"})  # r2 hears no more ADD_PEs, nor anything else
    t_cut = net.now
    net.run_for(3.5)
    [removed] = net.nodes["r2"].emitted("pe-removed", pe_id=f"0x{1000:08x}")
    assert removed["reason"] == "registration life expired"
    [t] = [t for t, e, f in net.nodes["r2"].events if e == "pe-removed" and f["pe_id"] == f"0x{1000:08x}"]
    assert 3.0 - 1.0 <= t - t_cut <= 3.0 + 0.1
    assert core(net, "r3").handlespace.find(HANDLE, 1000) is not None  # r3 still hears re-registrations


# ================================================================== 10. takeover suggestion


def test_takeover_suggestion_moves_a_pe_to_the_peer_with_the_largest_xor() -> None:
    """draft-dreibholz-rserpool-enrp-takeover: after its own ADD_PE, a registrar sends a
    HANDLE_UPDATE with T = 1 to the peer whose id XOR the PE id is largest, if that beats its
    own; the receiver takes the PE over with ENDPOINT_KEEP_ALIVE H = 1."""
    enrp = EnrpOptions(**{**FAST.__dict__, "takeover_suggestion": True})
    net = scope(3, enrp)
    # PE id 1000 = 0x3e8: 0x100 ^ 0x3e8 = 0x2e8, 0x200 ^ 0x3e8 = 0x1e8, 0x300 ^ 0x3e8 = 0x0e8 -> r1 is best
    # PE id 1001 = 0x3e9 registered at r1: r1's own (0x2e9) is best -> no suggestion
    add_pe(net, 0, ["r3"])
    add_pe(net, 1, ["r1"])
    net.run_for(3.0)
    suggestions = [m for _, m in net.sends("r3", HandleUpdate) if m.has_flag("takeover_suggested")]
    assert [(m.receiver_id, m.pool_element.identifier) for m in suggestions] == [(0x100, 1000)]
    assert not [m for n in ("r1", "r2") for _, m in net.sends(n, HandleUpdate) if m.has_flag("takeover_suggested")]
    assert net.nodes["r1"].emitted("takeover-suggested")
    [keepalive] = [m for _, m in net.sends("r1", EndpointKeepAlive) if m.has_flag("home")]
    assert keepalive.pe_id == 1000
    assert [f["server_id"] for f in net.nodes["pe0"].emitted("home-changed")] == ["0x00000100"]
    assert assert_identical(net) == {(HANDLE, 1000, 0x100), (HANDLE, 1001, 0x100)}


def test_without_takeover_suggestion_no_t_flag_is_sent_nor_honoured() -> None:
    net = scope(3)
    add_pe(net, 0, ["r3"])
    net.run_for(2.0)
    assert not [m for _, m in net.sends("r3", HandleUpdate) if m.has_flag("takeover_suggested")]
    registrar = synced_core()  # takeover_suggestion off: a T flag is just an ADD_PE
    actions = feed(registrar, add_pe_update(A, make_pe(1077, A), flags=0x01))
    assert not events(actions, "takeover-suggested") and not [m for m in sent(actions) if isinstance(m, EndpointKeepAlive)]
    assert (HANDLE, 1077, A) in holdings(registrar)


# ================================================================== 11. PE re-registers elsewhere


def test_a_pe_whose_home_died_and_cannot_be_taken_over_re_registers_elsewhere() -> None:
    """pe0's ASAP endpoint accepts no association (a takeover cannot reach it).  Its home r1 dies;
    its re-registration gets no answer, so after registration_timeout the PE says
    `registrar-silent` and hunts; it registers at r2, and the survivors agree on that."""
    net = scope(3)
    add_pe(net, 0, ["r1", "r2"], reregistration=2.0, listen=False)
    net.run_for(1.0)
    killed_at = net.now
    net.kill("r1")
    net.run_for(10.0)
    pe = net.nodes["pe0"]
    [t_silent] = times(pe, "registrar-silent")  # the next re-registration (<= 2 s) + registration_timeout (1 s)
    assert t_silent - killed_at <= 2.0 + 1.0 + 0.01
    assert pe.emitted("registered-again") and pe.core.home_server_id == 0x200
    assert not pe.emitted("home-changed")
    assert assert_identical(net, ["r2", "r3"]) == {(HANDLE, 1000, 0x200)}


def test_a_pe_alone_with_its_dead_registrar_re_registers_at_another_scope() -> None:
    """One registrar in the scope (no ENRP peers at all): nobody takes over; the PE's own
    registration timeout brings it to the next registrar it knows."""
    net = TapNetwork()
    lone = EnrpOptions(multicast=False)
    add_registrar(net, "r1", lone)
    add_registrar(net, "r2", lone)
    add_pe(net, 0, ["r1", "r2"], reregistration=2.0)
    net.run_for(1.0)
    killed_at = net.now
    net.kill("r1")
    net.run_for(8.0)
    pe = net.nodes["pe0"]
    [t_silent] = times(pe, "registrar-silent")
    assert t_silent - killed_at <= 2.0 + 1.0 + 0.01  # next re-registration + registration_timeout
    assert holdings(core(net, "r2")) == {(HANDLE, 1000, 0x200)}
    assert not net.nodes["r2"].emitted("takeover-started")


# ================================================================== 12. malformed bytes


def _valid_messages() -> list[EnrpMessage]:
    return [
        presence(A, pe_checksum([(HANDLE, PE_A.identifier)]), reply=True),
        add_pe_update(A, make_pe(1077, A)),
        add_pe_update(A, PE_A),
        del_pe_update(A, PE_A),
        HandleTableRequest(sender_id=A, receiver_id=ME, flags=0x01),
        HandleTableResponse(sender_id=A, receiver_id=ME, flags=0x02, entries=(PoolEntry(HANDLE, (PE_A, make_pe(1078, A))),)),
        ListRequest(sender_id=A, receiver_id=ME),
        ListResponse(sender_id=A, receiver_id=ME, servers=(presence(C).server_info,)),
        InitTakeover(sender_id=A, receiver_id=ME, target_id=B),
        InitTakeoverAck(sender_id=A, receiver_id=ME, target_id=B),
        TakeoverServer(sender_id=A, receiver_id=ME, target_id=B),
        EnrpError(sender_id=A, receiver_id=ME, error=(ErrorCause(CauseCode.INVALID_VALUES),)),
    ]


def _mutations(data: bytes, rng: random.Random) -> Iterable[bytes]:
    for cut in range(len(data)):
        yield data[:cut]
    yield data + b"\x00\x00\x00\x00"
    for _ in range(40):
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        yield bytes(flipped)


def test_malformed_enrp_bytes_are_answered_with_enrp_error_and_change_nothing() -> None:
    """Truncations and bit flips of real ENRP messages, each fed over peer A's association to a
    registrar with two peers and three PEs: the core never raises; what does not decode is
    answered with ENRP ERROR (unless it is itself an ERROR, or a silently skippable parameter)
    and leaves the handlespace and peer table as they were; what still decodes may only change
    something if it is a message A may send."""
    rng = random.Random(5353)
    base = synced_core()
    before_hs, before_peers = holdings(base), base.enrp.table.ids()
    checked = 0
    for original in _valid_messages():
        for data in _mutations(original.encode(), rng):
            registrar = synced_core()
            actions = registrar.receive(ASSOC[A], data, ENRP, NOW + 1)
            for action in actions:  # whatever is sent must go on the wire
                if isinstance(action, Send | Announce):
                    action.message.encode()
            try:
                message = decode(data, Protocol.ENRP)
            except DecodeError as exc:
                silent = isinstance(exc, UnrecognizedParameterError) and not exc.report
                answer = not silent and data[:1] != bytes([EnrpError.TYPE])  # never answer an ERROR
                [malformed] = events(actions, "malformed-message")
                assert malformed["answered"] is answer, (data, malformed)
                errors = [m for m in sent(actions, ASSOC[A]) if isinstance(m, EnrpError)]
                assert len(errors) == answer, (data, actions)
                if errors:
                    assert (errors[0].sender_id, errors[0].receiver_id) == (ME, A)
                    assert [c.code for c in errors[0].error] == [exc.cause] and errors[0].error[0].info == data[:1024]
                assert [m for m in sent(actions) if not isinstance(m, EnrpError)] == []
                assert holdings(registrar) == before_hs and registrar.enrp.table.ids() == before_peers
                checked += 1
                continue
            if message.sender_id != A or message.receiver_id not in (0, ME):
                assert holdings(registrar) == before_hs and registrar.enrp.table.ids() == before_peers, message
    assert checked > 300


def test_presences_with_ever_new_ids_cannot_grow_the_peer_table_without_bound() -> None:
    """Anyone on the link can send PRESENCEs with made-up server ids: the table stops at MAX_PEERS."""
    from nodes.registrar.peers import MAX_PEERS

    core = RegistrarCore(RegistrarOptions(server_id=0x100, announce=False, enrp=EnrpOptions()), rng=random.Random(1))
    core.start(0.0)
    refused = []
    for n in range(MAX_PEERS + 50):
        presence = Presence(sender_id=0x10000 + n, checksum=0xFFFF).encode()
        refused += [a for a in core.datagram(presence, "10.0.0.9", 9901, "eth0", 1.0) if isinstance(a, Emit) and a.event == "peer-refused"]
    assert len(core.enrp.table) == MAX_PEERS and len(refused) == 50


def test_a_tool_peer_is_never_mentor_nor_waited_for_in_a_takeover() -> None:
    """hsdump says PRESENCE with port 0 in its Server Information: it only asks.  A starting
    registrar must not take it for its mentor, and a takeover must not wait for its ACK."""
    from nodes.wire import ServerInformation

    tool = ServerInformation(0xABC, SctpTransport(port=0, addresses=(ip_address("10.0.0.99"),)))
    core = RegistrarCore(RegistrarOptions(server_id=0x100, announce=False, enrp=EnrpOptions()), rng=random.Random(1))
    core.start(0.0)
    core.association_up(7, 0.1, peer_addresses=("10.0.0.99",), peer_port=40000)
    actions = core.receive(7, Presence(sender_id=0xABC, flags=0x01, checksum=0xFFFF, server_info=tool).encode(), 12, 0.2)
    assert not [a for a in actions if isinstance(a, Emit) and a.event == "mentor-chosen"]
    assert core.enrp.mentor is None and not core.enrp.table.get(0xABC).reachable
    assert core.enrp._start_takeover(core.enrp.table.add(0x300, ("10.0.0.3",), 9901)[0], 1) is not None
    assert 0xABC not in core.enrp.takeovers.get(0x300, set())
