"""A deterministic in-process network for sans-I/O cores (registrars, PEs): tests only.

It plays the part of `nodes.runtime.Driver` for many cores at once, on a virtual clock:
`Connect` reaches the node that listens on one of the addresses and that port, `Send` is
encoded, delivered after `latency` and decoded by the receiver like real bytes, `Announce`
goes to every other node that joined the message's protocol group, and timers fire in time
order.  Faults: `kill` (a SIGKILL: the node goes silent, its peers are not told, as with a
userland SCTP stack that sends no ABORT) and `partition` (messages between two groups are
lost).  So the ENRP procedures (sync, audit, takeover) can be tested exactly and quickly;
the namespace tests check the same on real processes.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from nodes.sansio import Abort, Announce, CancelTimer, Close, Connect, Emit, Result, Send, SendData, StartTimer
from nodes.wire import Protocol


@dataclass
class SimNode:
    name: str
    core: Any
    addresses: tuple[str, ...]
    listens: dict[int, dict[str, Any]] = field(default_factory=dict)  # port -> info for association_up
    groups: set[Protocol] = field(default_factory=set)
    connect_port: int = 0
    alive: bool = True
    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)

    def emitted(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [f for _, e, f in self.events if e == event and all(f.get(k) == v for k, v in match.items())]


@dataclass
class _Assoc:
    node: SimNode
    other: int  # the association id at the other end
    open: bool = True


class Network:
    def __init__(self, latency: float = 0.001, connect_timeout: float = 3.0) -> None:
        self.now = 0.0
        self.latency, self.connect_timeout = latency, connect_timeout
        self.nodes: dict[str, SimNode] = {}
        self.assocs: dict[int, _Assoc] = {}
        self.ids = itertools.count(1)
        self.ports = itertools.count(40000)
        self.queue: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = itertools.count()
        self.timers: dict[tuple[str, Hashable], int] = {}  # live timer -> its sequence number
        self.cut: set[frozenset[str]] = set()

    # --- building ------------------------------------------------------------------------

    def add(self, name: str, core: Any, addresses: tuple[str, ...], *, listens: dict[int, dict[str, Any]] | None = None,
            groups: set[Protocol] | None = None, connect_port: int = 0) -> SimNode:  # fmt: skip
        node = SimNode(name, core, addresses, listens or {}, groups or set(), connect_port)
        self.nodes[name] = node
        return node

    def start(self, name: str, method: str = "start") -> None:
        node = self.nodes[name]
        self._run(node, getattr(node.core, method)(self.now))

    def call(self, name: str, method: str, *args: Any) -> None:
        node = self.nodes[name]
        self._run(node, getattr(node.core, method)(*args, self.now))

    # --- faults --------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        self.nodes[name].alive = False

    def partition(self, group_a: set[str], group_b: set[str]) -> None:
        self.cut |= {frozenset((a, b)) for a in group_a for b in group_b}

    def heal(self) -> None:
        self.cut.clear()

    def reachable(self, a: SimNode, b: SimNode) -> bool:
        return a.alive and b.alive and frozenset((a.name, b.name)) not in self.cut

    # --- running -------------------------------------------------------------------------

    def run(self, until: float) -> None:
        """Process everything due up to time `until` (absolute)."""
        while self.queue and self.queue[0][0] <= until:
            when, _, thunk = heapq.heappop(self.queue)
            self.now = when
            thunk()
        self.now = until

    def run_for(self, seconds: float) -> None:
        self.run(self.now + seconds)

    def _at(self, delay: float, thunk: Callable[[], None]) -> int:
        seq = next(self.seq)
        heapq.heappush(self.queue, (self.now + delay, seq, thunk))
        return seq

    def _run(self, node: SimNode, actions: list[Any]) -> None:
        if not node.alive:
            return
        for action in actions:
            self._do(node, action)

    def _deliver(self, node: SimNode, method: str, *args: Any, **kwargs: Any) -> None:
        if node.alive:
            self._run(node, getattr(node.core, method)(*args, **kwargs))

    def _do(self, node: SimNode, action: Any) -> None:
        match action:
            case Emit(event, fields):
                node.events.append((self.now, event, fields))
            case StartTimer(key, delay):
                seq = self._at(delay, lambda: self._fire(node, key, seq))
                self.timers[(node.name, key)] = seq
            case CancelTimer(key):
                self.timers.pop((node.name, key), None)
            case Send(assoc, message):
                self._send(assoc, message.encode(), message.PROTOCOL.ppid)
            case SendData(assoc, data, ppid):
                self._send(assoc, data, ppid or 0)
            case Connect(key, addresses, port):
                self._connect(node, key, addresses, port)
            case Announce(message):
                data = message.encode()
                for other in self.nodes.values():
                    if other is not node and message.PROTOCOL in other.groups and self.reachable(node, other):
                        self._at(self.latency, lambda o=other: self._deliver(o, "datagram", data, node.addresses[0], 9901, "sim", self.now))
            case Close(assoc) | Abort(assoc):
                self._end(assoc)
            case Result():
                pass

    def _fire(self, node: SimNode, key: Hashable, seq: int) -> None:
        if self.timers.get((node.name, key)) != seq:
            return  # cancelled or restarted
        del self.timers[(node.name, key)]
        self._deliver(node, "timer", key, self.now)

    def _send(self, assoc: int, data: bytes, ppid: int) -> None:
        mine = self.assocs.get(assoc)
        if mine is None or not mine.open:
            return
        theirs = self.assocs[mine.other]
        if not self.reachable(mine.node, theirs.node):
            return  # lost; SCTP would retransmit, then fail the association (not modelled)
        self._at(self.latency, lambda: theirs.open and self._deliver(theirs.node, "receive", mine.other, data, ppid, self.now))

    def _connect(self, node: SimNode, key: Hashable, addresses: tuple[str, ...], port: int) -> None:
        target = next((n for n in self.nodes.values() if port in n.listens and set(addresses) & set(n.addresses)), None)
        if target is None or not self.reachable(node, target):
            reason = "no listener" if target is None else "timeout"
            delay = self.connect_timeout if target is not None else self.latency
            self._at(delay, lambda: self._deliver(node, "connect_failed", key, reason, self.now))
            return
        mine, theirs = next(self.ids), next(self.ids)
        self.assocs[mine] = _Assoc(node, theirs)
        self.assocs[theirs] = _Assoc(target, mine)
        local_port = node.connect_port or next(self.ports)

        def up() -> None:
            self._deliver(target, "association_up", theirs, self.now, peer_addresses=node.addresses,
                          peer_port=local_port, sctp=True, **target.listens[port])  # fmt: skip
            self._deliver(node, "association_up", mine, self.now, peer_addresses=target.addresses,
                          peer_port=port, sctp=True, key=key)  # fmt: skip

        self._at(self.latency, up)

    def _end(self, assoc: int) -> None:
        mine = self.assocs.get(assoc)
        if mine is None or not mine.open:
            return
        theirs = self.assocs[mine.other]
        mine.open = theirs.open = False
        self._at(0, lambda: self._deliver(mine.node, "association_down", assoc, self.now))
        if self.reachable(mine.node, theirs.node):
            self._at(self.latency, lambda: self._deliver(theirs.node, "association_down", mine.other, self.now))
