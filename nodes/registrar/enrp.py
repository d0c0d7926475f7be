"""ENRP (RFC 5353) for the registrar: one handlespace shared by the registrars of a scope.

Part of the registrar's sans-I/O core (`nodes.registrar.core` owns an `Enrp` and routes ENRP
messages, datagrams and `("enrp", ...)` timers to it); it returns the same actions.

What it does, and where the rules come from (RFC 5353; RSPLIB's registrar where the RFC
leaves room, see ../shared/reference/rserpool-wire.md sections 7, 8.1, 8.2 and 8.5):

* Presence: every heartbeat cycle (+-12.5 %) an ENRP_PRESENCE with the PE checksum of the
  PEs this registrar owns goes to the presence group and by unicast to every known peer; a
  new peer is answered with R = 1, a PRESENCE with R = 1 over an association with R = 0.
  Peers are learnt from presences, from static peers and from LIST_RESPONSEs.
* Start-up: the first peer heard is the mentor; its LIST and whole handle table (with the
  M flag, one HANDLE_TABLE_REQUEST per part) are fetched; SERVER_ANNOUNCEs start once the
  last part arrived, or after the mentor discovery timeout.  While starting up, this
  registrar rejects handle table requests itself (R flag, RFC 5353 section 3.2.3).
* Updates: HANDLE_UPDATE ADD_PE / DEL_PE for every change of a PE this registrar owns;
  others' PEs expire after their registration life unless updated.  An ADD_PE must name
  its sender as the PE's home and a DEL_PE may only remove a PE homed at its sender: a peer
  cannot add or delete PEs on another's behalf.
* Audit: a peer's unicast PRESENCE whose checksum differs from that of the PEs this
  registrar believes the peer owns triggers a HANDLE_TABLE_REQUEST with W = 1; PEs of that
  peer that are not in the answer are purged (so a partition heals).
* Failure and takeover: a peer silent for max-time-last-heard gets a PRESENCE with R = 1;
  silent for max-time-no-response more, it is dead.  If it owned PEs, INIT_TAKEOVER goes to
  every peer; once every known peer but the target has sent INIT_TAKEOVER_ACK, this
  registrar sends TAKEOVER_SERVER and re-homes the PEs (ENDPOINT_KEEP_ALIVE with H = 1,
  the ASAP side in the core).  Concurrent takeovers of one target: RFC 5353 section 3.5.1
  and the VNFPOOL draft let the highest server ID win (a peer whose own ID is lower aborts
  its attempt and ACKs); RSPLIB's code lets the lowest win (`SenderID < ServerID` in
  rspregistrar-takeover.c).  The default follows the RFC; `arbitration="lowest"` follows
  RSPLIB.  With no other peer to ask (two registrars), the takeover completes at once:
  the RFC's condition (an ACK from every known peer but the target) holds, while RSPLIB
  waits for an ACK that never comes and lets the takeover expire.
* Takeover suggestion (draft-dreibholz-rserpool-enrp-takeover), if enabled: after each
  ADD_PE of its own, the registrar sends HANDLE_UPDATE with T = 1 to the peer with the
  largest `peer ID XOR PE ID`, if that beats its own; a receiver takes the PE over.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nodes.registrar.peers import MAX_PENDING, Peer, PeerTable
from nodes.registrar.sync import Sync
from nodes.registrar.takeover import Takeover
from nodes.sansio import Action, Announce, AssocId, CancelTimer, Close, Connect, Emit, Send, StartTimer
from nodes.wire import (
    DecodeError,
    EnrpError,
    EnrpMessage,
    ErrorCause,
    HandleTableRequest,
    HandleTableResponse,
    HandleUpdate,
    InitTakeover,
    InitTakeoverAck,
    ListRequest,
    ListResponse,
    PoolElement,
    Presence,
    Protocol,
    SctpTransport,
    ServerInformation,
    TakeoverServer,
    TcpTransport,
    UnrecognizedParameterError,
    UpdateAction,
    decode,
)

if TYPE_CHECKING:
    from nodes.registrar.core import RegistrarCore

REPLY_REQUIRED = 0x01  #: PRESENCE's R flag
LIST_REJECT = 0x01  #: LIST_RESPONSE's R flag


@dataclass(frozen=True)
class EnrpOptions:
    """Timers in seconds; names and defaults follow RSPLIB's registrar (ms there)."""

    port: int = 9901
    peers: tuple[tuple[tuple[str, ...], int], ...] = ()  #: static peers: (addresses, port)
    multicast: bool = True  #: presences to the ENRP group (and peers learnt from it)
    heartbeat_cycle: float = 2.444  #: -peerheartbeatcycle
    max_time_last_heard: float = 5.0  #: -peermaxtimelastheard
    max_time_no_response: float = 5.0  #: -peermaxtimenoresponse
    mentor_discovery_timeout: float = 5.0  #: -mentordiscoverytimeout
    takeover_expiry: float = 5.0  #: -takeoverexpiryinterval
    max_elements_per_ht: int = 128  #: -maxelementsperhtrequest
    takeover_suggestion: bool = False  #: -supporttakeoversuggestion
    arbitration: str = "highest"  #: who wins concurrent takeovers: "highest" (RFC) or "lowest" (RSPLIB)

    def __post_init__(self) -> None:
        timers = (self.heartbeat_cycle, self.max_time_last_heard, self.max_time_no_response,
                  self.mentor_discovery_timeout, self.takeover_expiry)  # fmt: skip
        if min(timers) <= 0:
            raise ValueError("ENRP timers must be > 0")
        if self.max_elements_per_ht < 1:
            raise ValueError("max-elements-per-ht-request must be >= 1")
        if self.arbitration not in ("highest", "lowest"):
            raise ValueError("takeover arbitration must be 'highest' or 'lowest'")

    @property
    def active(self) -> bool:
        """Whether there can be peers at all; a lone registrar is synchronised at once."""
        return self.multicast or bool(self.peers)


class Enrp(Sync, Takeover):
    """See the module docstring.  `core` is the registrar whose handlespace this shares."""

    def __init__(self, core: RegistrarCore) -> None:
        self.core = core
        self.options: EnrpOptions = core.options.enrp
        self.me = core.server_id
        self.table = PeerTable(self.me, self.options.peers)
        self.starting = True
        self.mentor: int | None = None
        self.mentor_heard_at = 0.0  #: when the mentor's transfer last made progress
        self.cursors: dict[tuple[int, bool], deque[tuple[bytes, int]]] = {}
        self.takeovers: dict[int, set[int]] = {}  # target -> peers whose ACK is still missing
        self.takers: dict[int, int] = {}  # target -> the peer we ACKed as taking it over

    @property
    def hs(self):  # type: ignore[no-untyped-def]
        return self.core.handlespace

    # --- inputs from the core ------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        if not self.options.active:
            return self._synchronised("no peers configured and no presence group")
        actions: list[Action] = [StartTimer(("enrp", "mentor-discovery"), self.options.mentor_discovery_timeout)]
        return actions + self._heartbeat()

    def association_up(self, assoc: AssocId, key: Hashable) -> list[Action]:
        match key:
            case ("enrp-peer", int() as server_id):
                peer = self.table.get(server_id)
                if peer is None:
                    return [Close(assoc)]  # no longer wanted
                if peer.assoc is not None:  # the peer connected to us meanwhile: use that one
                    return [*self._flush(peer), Close(assoc)]
                peer.assoc, peer.connecting = assoc, False
                return self._flush(peer)
            case ("enrp-static", int() as index):
                static = self.table.static[index]
                static.assoc, static.connecting = assoc, False
                return [Send(assoc, self._presence(reply=True))]
        return []

    def connect_failed(self, key: Hashable, reason: str) -> list[Action]:
        match key:
            case ("enrp-peer", int() as server_id):
                if (peer := self.table.get(server_id)) is not None:
                    peer.connecting = False
                    peer.pending.clear()
                    peer.reset_request()  # a request that never left: the next mismatch asks again
                    if self.starting and self.mentor == server_id:
                        self.mentor = None
                return [Emit("peer-unreachable", {"server_id": f"0x{server_id:08x}", "reason": reason})]
            case ("enrp-static", int() as index):
                static = self.table.static[index]
                static.connecting = False
                return [Emit("peer-unreachable", {"peer": f"{','.join(static.addresses)}:{static.port}", "reason": reason})]
        return []

    def association_down(self, assoc: AssocId) -> None:
        """What was in flight on it is lost: a handle table being fetched or sent starts over."""
        bound = self.table.bound.get(assoc)
        for peer in self.table.detach(assoc):
            peer.reset_request()
            if self.starting and self.mentor == peer.server_id:
                self.mentor = None
        if bound is not None:
            for key in [k for k in self.cursors if k[0] == bound]:
                del self.cursors[key]

    def receive(self, assoc: AssocId, data: bytes, now: float) -> list[Action]:
        try:
            message = decode(data, Protocol.ENRP)
        except DecodeError as exc:
            return self._decode_error(assoc, data, exc)
        assert isinstance(message, EnrpMessage)
        refused = self._refusal(assoc, message)
        if refused:
            return [Emit("enrp-refused", {"assoc": assoc, "message": type(message).__name__,
                                          "sender": f"0x{message.sender_id:08x}", "reason": refused})]  # fmt: skip
        handler = _HANDLERS.get(type(message))
        if handler is None:
            return [Emit("ignored", {"assoc": assoc, "message": type(message).__name__})]
        return handler(self, assoc, message, now)

    def datagram(self, data: bytes, source: str, now: float) -> list[Action]:
        try:
            message = decode(data, Protocol.ENRP)
        except DecodeError as exc:
            return [Emit("malformed-datagram", {"source": source, **exc.to_dict()})]
        if not isinstance(message, Presence):
            return [Emit("ignored", {"source": source, "message": type(message).__name__, "reason": "only PRESENCE by multicast"})]
        if message.sender_id in (0, self.me):
            return []  # our own, looped back
        return self._on_presence(None, message, now, source=source)

    def timer(self, key: tuple[Any, ...], now: float) -> list[Action]:
        match key:
            case ("enrp", "presence"):
                return self._heartbeat()
            case ("enrp", "mentor-discovery"):
                return self._discovery_timeout(now)
            case ("enrp", "last-heard", int() as server_id):
                return self._last_heard(server_id)
            case ("enrp", "no-response", int() as server_id):
                return self._no_response(server_id)
            case ("enrp", "takeover-expiry", int() as target):
                return self._takeover_expired(target)
            case ("enrp", "taker-expiry", int() as target):
                return self._taker_expired(target)
            case ("enrp", "expiry", bytes() as handle, int() as pe_id):
                return self._expire(handle, pe_id)
        return []

    def own_pe_changed(self, handle: bytes, pe: PoolElement, suggest: bool = True) -> list[Action]:
        """A PE of ours registered, re-registered or taken over: ADD_PE to every peer (it
        refreshes their expiry timer), and the takeover suggestion if enabled."""
        actions: list[Action] = []
        for peer in self.table.peers.values():
            actions += self._send(peer, HandleUpdate(sender_id=self.me, receiver_id=peer.server_id,
                                                     update_action=UpdateAction.ADD_PE, pool_handle=handle, pool_element=pe))  # fmt: skip
        if suggest and self.options.takeover_suggestion:
            actions += self._suggest_takeover(handle, pe)
        return actions

    def own_pe_removed(self, handle: bytes, pe: PoolElement) -> list[Action]:
        actions: list[Action] = []
        for peer in self.table.peers.values():
            actions += self._send(peer, HandleUpdate(sender_id=self.me, receiver_id=peer.server_id,
                                                     update_action=UpdateAction.DEL_PE, pool_handle=handle, pool_element=pe))  # fmt: skip
        return actions

    # --- presence and liveness -----------------------------------------------------------

    def _presence(self, reply: bool = False, receiver: int = 0) -> Presence:
        return Presence(sender_id=self.me, receiver_id=receiver, flags=REPLY_REQUIRED if reply else 0,
                        checksum=self.hs.checksum(self.me), server_info=self.server_info())  # fmt: skip

    def server_info(self) -> ServerInformation:
        return self._info(self.me, self.core.options.asap_addresses, self.options.port)

    def _info(self, server_id: int, addresses: tuple[str, ...], port: int) -> ServerInformation:
        ips = tuple(ipaddress.ip_address(a) for a in addresses)
        if self.core.options.sctp:
            return ServerInformation(server_id, SctpTransport(port=port, addresses=ips))
        return ServerInformation(server_id, TcpTransport(port=port, addresses=ips[:1]))

    def _heartbeat(self) -> list[Action]:
        actions: list[Action] = []
        if self.options.multicast:
            actions.append(Announce(self._presence()))
        for peer in self.table.peers.values():
            actions += self._send(peer, self._presence(receiver=peer.server_id))
        for index, static in enumerate(self.table.static):
            if static.server_id in self.table:
                continue  # known by its id now: reached as a peer
            if static.assoc is not None:
                actions.append(Send(static.assoc, self._presence(reply=True)))
            elif not static.connecting:
                static.connecting = True
                actions.append(Connect(("enrp-static", index), static.addresses, static.port))
        cycle = self.options.heartbeat_cycle * self.core.rng.uniform(0.875, 1.125)
        return actions + [StartTimer(("enrp", "presence"), cycle)]

    def _on_presence(self, assoc: AssocId | None, msg: Presence, now: float, source: str = "") -> list[Action]:
        sender = msg.sender_id
        addresses, port = self._endpoint_of(msg.server_info, assoc, source)
        if sender not in self.table and self.table.full:
            return [Emit("peer-refused", {"server_id": f"0x{sender:08x}", "reason": f"{len(self.table)} peers already"})]
        known = self.table.get(sender)
        if known is not None and assoc is None and known.reachable:
            addresses, port = (), 0  # a multicast presence may not move a known peer's endpoint
        peer, new = self.table.add(sender, addresses, port)
        if assoc is not None:
            self.table.attach(assoc, sender)
        peer.heard_at, peer.silent = now, False
        actions: list[Action] = [*self._flush(peer), StartTimer(("enrp", "last-heard", sender), self.options.max_time_last_heard),
                                 CancelTimer(("enrp", "no-response", sender))]  # fmt: skip
        actions += self._target_alive(sender)
        if new:
            actions.append(Emit("peer-discovered", {"server_id": str(peer), "addresses": list(peer.addresses),
                                                    "port": peer.port, "via": "multicast" if assoc is None else "unicast"}))  # fmt: skip
            actions += self._send(peer, self._presence(reply=True, receiver=sender))
            actions += self._send(peer, ListRequest(sender_id=self.me, receiver_id=sender))
        elif msg.has_flag("reply_required") and assoc is not None:
            actions.append(Send(assoc, self._presence(receiver=sender)))
        if self.starting and self.mentor is None and peer.reachable:
            actions += self._choose_mentor(peer, now)  # the first heard, or the next after a refusal
        if assoc is not None and not self.starting:
            actions += self._audit(peer, msg.checksum, now)
        return actions

    def _endpoint_of(self, info: ServerInformation | None, assoc: AssocId | None, source: str) -> tuple[tuple[str, ...], int]:
        """Where a peer's ENRP endpoint is: its Server Information, else where it spoke from."""
        addresses: tuple[str, ...] = ()
        port = self.options.port
        if info is not None:  # port 0: a peer that only asks (a tool like hsdump), never spoken to first
            addresses = tuple(str(a) for a in info.transport.addresses)
            port = info.transport.port
        if not addresses and assoc is not None and assoc in self.core.assocs:
            addresses = self.core.assocs[assoc].peer_addresses
        if not addresses and source:
            addresses = (source,)
        return addresses, port

    def _target_alive(self, server_id: int) -> list[Action]:
        """A presence from a peer stops every takeover of it (RFC 5353 section 3.5.1)."""
        actions: list[Action] = []
        if self.takers.pop(server_id, None) is not None:
            actions.append(CancelTimer(("enrp", "taker-expiry", server_id)))
        if self.takeovers.pop(server_id, None) is not None:
            actions += [CancelTimer(("enrp", "takeover-expiry", server_id)),
                        Emit("takeover-cancelled", {"target": f"0x{server_id:08x}", "reason": "the target is alive"})]  # fmt: skip
        return actions

    def _last_heard(self, server_id: int) -> list[Action]:
        peer = self.table.get(server_id)
        if peer is None:
            return []
        return [*self._send(peer, self._presence(reply=True, receiver=server_id)),
                StartTimer(("enrp", "no-response", server_id), self.options.max_time_no_response)]  # fmt: skip

    def _no_response(self, server_id: int) -> list[Action]:
        """The peer is dead: take its PEs over (unless somebody does already), else forget it."""
        peer = self.table.get(server_id)
        if peer is None:
            return []
        peer.silent = True
        actions: list[Action] = []
        owned = len(self.hs.homed_at(server_id))
        if owned and server_id not in self.takers and server_id not in self.takeovers:
            return actions + self._start_takeover(peer, owned)
        if server_id in self.takers or server_id in self.takeovers:
            return actions
        return actions + self._forget_peer(server_id) + [
            Emit("peer-removed", {"server_id": str(peer), "reason": "no response; it owns no PEs"})]

    # --- updates and lists ---------------------------------------------------------------

    def _on_update(self, assoc: AssocId, msg: HandleUpdate, now: float) -> list[Action]:
        handle, pe, sender = msg.pool_handle, msg.pool_element, msg.sender_id
        fields = {"handle": _text(handle), "pe_id": f"0x{pe.identifier:08x}", "sender": f"0x{sender:08x}"}
        if msg.update_action == UpdateAction.DEL_PE:
            node = self.hs.find(handle, pe.identifier)
            if node is None:
                return []
            if node.home_registrar != sender:
                return [Emit("handle-update-refused", fields | {"reason": "DEL_PE of a PE not homed at the sender"})]
            return self.core.remove_pe(handle, pe.identifier, f"deleted by {fields['sender']}")
        if pe.home_registrar != sender:
            return [Emit("handle-update-refused", fields | {"reason": "ADD_PE names another home registrar"})]
        stored = self._learn(handle, pe, authoritative=True)
        if stored is None:
            return [Emit("handle-update-refused", fields | {"reason": "not compatible with the pool"})]
        actions: list[Action] = [*stored, Emit("pe-updated-by-peer", fields)]
        if msg.has_flag("takeover_suggested") and self.options.takeover_suggestion:
            node = self.hs.find(handle, pe.identifier)
            actions += [Emit("takeover-suggested", fields), *self.core.take_over([node] if node else [])]
        return actions

    def _on_list_request(self, assoc: AssocId, msg: ListRequest, now: float) -> list[Action]:
        if msg.sender_id not in self.table:
            return [Send(assoc, ListResponse(sender_id=self.me, receiver_id=msg.sender_id, flags=LIST_REJECT))]
        servers = tuple(self._info(p.server_id, p.addresses, p.port) for p in self.table.peers.values()
                        if p.server_id != msg.sender_id and p.addresses and p.port)  # fmt: skip
        return [Send(assoc, ListResponse(sender_id=self.me, receiver_id=msg.sender_id, servers=servers[:256]))]

    def _on_list_response(self, assoc: AssocId, msg: ListResponse, now: float) -> list[Action]:
        if msg.has_flag("reject"):
            return [Emit("list-refused", {"server_id": f"0x{msg.sender_id:08x}"})]
        actions: list[Action] = []
        for info in msg.servers:
            if info.server_id in (0, self.me) or info.server_id in self.table or self.table.full:
                continue
            addresses = tuple(str(a) for a in info.transport.addresses)
            if not addresses or not info.transport.port:
                continue
            peer, _ = self.table.add(info.server_id, addresses, info.transport.port)
            actions.append(Emit("peer-listed", {"server_id": str(peer), "by": f"0x{msg.sender_id:08x}"}))
            actions += self._send(peer, self._presence(reply=True, receiver=peer.server_id))
            # Not heard yet: if it never answers, it is dropped like a peer gone silent.
            actions.append(StartTimer(("enrp", "last-heard", peer.server_id), self.options.max_time_last_heard))
        return actions

    # --- plumbing ------------------------------------------------------------------------

    def _refusal(self, assoc: AssocId, msg: EnrpMessage) -> str:
        """Why a message is not taken, or "" (own ones, forged or unknown senders)."""
        if msg.sender_id in (0, self.me):
            return "sender id 0 or our own"
        if msg.receiver_id not in (0, self.me):
            return f"for registrar 0x{msg.receiver_id:08x}"
        if not self.table.check_sender(assoc, msg.sender_id):
            return "the association belongs to another registrar"
        if not isinstance(msg, Presence | HandleTableRequest | ListRequest) and msg.sender_id not in self.table:
            return "unknown peer (no PRESENCE heard)"
        return ""

    def _flush(self, peer: Peer) -> list[Action]:
        """What waited for an association, now that the peer has one."""
        if peer.assoc is None or not peer.pending:
            return []
        sends: list[Action] = [Send(peer.assoc, m) for m in peer.pending]
        peer.pending.clear()
        return sends

    def _forget_peer(self, server_id: int) -> list[Action]:
        """Drop a peer and everything kept for it (not its PEs: they expire, or are taken over)."""
        self.table.remove(server_id)
        for key in [k for k in self.cursors if k[0] == server_id]:
            del self.cursors[key]
        return [CancelTimer(("enrp", "last-heard", server_id)), CancelTimer(("enrp", "no-response", server_id))]

    def _send(self, peer: Peer, message: EnrpMessage) -> list[Action]:
        if peer.assoc is not None:
            return [Send(peer.assoc, message)]
        if not peer.reachable:
            return []  # no endpoint known (a tool like hsdump): it is heard, not spoken to
        if len(peer.pending) >= MAX_PENDING:
            # Not the oldest dropped (it may be a handle table request): the newest.  What is
            # lost is an update, which the next checksum audit makes good.
            return [Emit("send-dropped", {"server_id": str(peer), "reason": f"{MAX_PENDING} messages wait already"})]
        peer.pending.append(message)
        if peer.connecting:
            return []
        peer.connecting = True
        return [Connect(("enrp-peer", peer.server_id), peer.addresses, peer.port)]

    def _decode_error(self, assoc: AssocId, data: bytes, exc: DecodeError) -> list[Action]:
        fields = {"assoc": assoc, "bytes": len(data), **exc.to_dict()}
        silent = isinstance(exc, UnrecognizedParameterError) and not exc.report
        if silent or data[:1] == bytes([EnrpError.TYPE]):
            return [Emit("malformed-message", fields | {"answered": False})]
        sender = self.table.bound.get(assoc, 0)
        error = EnrpError(sender_id=self.me, receiver_id=sender, error=(ErrorCause(exc.cause, data[:1024]),))
        return [Send(assoc, error), Emit("malformed-message", fields | {"answered": True, "cause": exc.cause.name})]

    def gauges(self) -> dict[str, float]:
        return {"peers": len(self.table), "synchronised": float(not self.starting), "takeovers": len(self.takeovers)}


def _text(handle: bytes) -> str:
    return handle.decode("utf-8", "backslashreplace")


_HANDLERS: dict[type[EnrpMessage], Any] = {
    Presence: lambda self, assoc, msg, now: self._on_presence(assoc, msg, now),
    HandleTableRequest: Enrp._on_table_request,
    HandleTableResponse: Enrp._on_table_response,
    HandleUpdate: Enrp._on_update,
    ListRequest: Enrp._on_list_request,
    ListResponse: Enrp._on_list_response,
    InitTakeover: Enrp._on_init_takeover,
    InitTakeoverAck: Enrp._on_init_takeover_ack,
    TakeoverServer: Enrp._on_takeover_server,
}
