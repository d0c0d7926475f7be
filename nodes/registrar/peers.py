"""The registrar's peer list: the other registrars of its operation scope (pure bookkeeping).

A peer is known by its server identifier once it has been heard (a PRESENCE, or an entry
of a LIST_RESPONSE); a static peer from the configuration is known by its address until
then.  Each peer may have an association for unicast ENRP, either one this registrar
opened or one the peer opened; messages to a peer without one wait in a short queue while
the association is set up.

An association is bound to the first server identifier heard on it.  A later message on it
that names another sender is refused as forged: whoever holds one registrar's association
cannot speak for another (the handlespace must not be corrupted by a sender that lies about
who it is; RFC 5353 itself leaves that to RFC 5355's authentication).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from nodes.sansio import AssocId
from nodes.wire import EnrpMessage

MAX_PENDING = 1000  #: messages held for one peer while its association is being set up
MAX_PEERS = 256  #: registrars of one scope; presences with made-up ids cannot grow the table beyond


@dataclass
class Peer:
    server_id: int
    addresses: tuple[str, ...] = ()
    port: int = 0
    assoc: AssocId | None = None
    connecting: bool = False
    pending: deque[EnrpMessage] = field(default_factory=deque)
    heard_at: float | None = None
    silent: bool = False  #: max-time-no-response passed without a word: dead, whatever else happens
    #: The W flag of the HANDLE_TABLE_REQUEST in flight to this peer (False: the whole table,
    #: True: its own PEs), None when there is none: one request at a time per peer.
    request_own_only: bool | None = None
    audit: set[tuple[bytes, int]] | None = None  #: PEs marked for purge while a W-request runs
    audit_target: int = 0  #: the checksum the running audit should end with
    fruitless_audits: int = 0  #: audits in a row that did not reach it (they back off)
    next_audit: float = 0.0

    def __str__(self) -> str:
        return f"0x{self.server_id:08x}"

    @property
    def reachable(self) -> bool:
        """Whether it has an ENRP endpoint of its own; a tool like hsdump (port 0) only asks:
        it is never a mentor, never listed to others and never asked to acknowledge a takeover."""
        return bool(self.addresses and self.port)

    def reset_request(self) -> None:
        self.request_own_only, self.audit = None, None


@dataclass
class StaticPeer:
    """A configured peer address; `server_id` is learnt from the first message on its association."""

    addresses: tuple[str, ...]
    port: int
    assoc: AssocId | None = None
    connecting: bool = False
    server_id: int = 0


class PeerTable:
    def __init__(self, own_id: int, static: tuple[tuple[tuple[str, ...], int], ...] = ()) -> None:
        self.own_id = own_id
        self.peers: dict[int, Peer] = {}
        self.static = [StaticPeer(addresses, port) for addresses, port in static]
        self.bound: dict[AssocId, int] = {}  # association -> the server id heard on it

    def __len__(self) -> int:
        return len(self.peers)

    def __contains__(self, server_id: object) -> bool:
        return server_id in self.peers

    def get(self, server_id: int) -> Peer | None:
        return self.peers.get(server_id)

    def ids(self) -> list[int]:
        return sorted(self.peers)

    @property
    def full(self) -> bool:
        return len(self.peers) >= MAX_PEERS

    def add(self, server_id: int, addresses: tuple[str, ...] = (), port: int = 0) -> tuple[Peer, bool]:
        """The peer with this id, created if new; (peer, is_new).  Known addresses are updated.
        Callers check `full` before adding a new one."""
        peer = self.peers.get(server_id)
        is_new = peer is None
        if peer is None:
            peer = self.peers[server_id] = Peer(server_id)
        if addresses:
            peer.addresses, peer.port = addresses, port or peer.port
        return peer, is_new

    def remove(self, server_id: int) -> Peer | None:
        peer = self.peers.pop(server_id, None)
        if peer is not None:
            for s in self.static:
                if s.server_id == server_id:
                    s.server_id = 0
        return peer

    # --- associations --------------------------------------------------------------------

    def check_sender(self, assoc: AssocId, sender_id: int) -> bool:
        """Bind `assoc` to `sender_id` on first use; False if it is bound to another id."""
        bound = self.bound.get(assoc)
        if bound is None:
            self.bound[assoc] = sender_id
            for s in self.static:
                if s.assoc == assoc:
                    s.server_id = sender_id
            return True
        return bound == sender_id

    def attach(self, assoc: AssocId, server_id: int) -> Peer | None:
        """Use `assoc` for unicast to the peer if it has none yet."""
        peer = self.peers.get(server_id)
        if peer is not None and peer.assoc is None:
            peer.assoc, peer.connecting = assoc, False
        return peer

    def detach(self, assoc: AssocId) -> list[Peer]:
        """Forget an association that ended; the peers that were using it."""
        self.bound.pop(assoc, None)
        for s in self.static:
            if s.assoc == assoc:
                s.assoc = None
        users = [p for p in self.peers.values() if p.assoc == assoc]
        for peer in users:
            peer.assoc = None
        return users

    def peer_of(self, assoc: AssocId) -> Peer | None:
        server_id = self.bound.get(assoc)
        return self.peers.get(server_id) if server_id is not None else None
