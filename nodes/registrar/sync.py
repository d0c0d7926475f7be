"""Handle tables between registrars (RFC 5353 sections 3.2-3.3, 3.6): part of `Enrp`.

The start-up copy from a mentor, the checksum audit (W flag) that purges what a peer no
longer has, serving handle tables in parts (M flag) with a cursor per requester, and the
learning and expiry of PEs owned by other registrars.  The rules are in the `enrp` module
docstring.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from nodes.registrar.handlespace import HandlespaceError
from nodes.sansio import Action, AssocId, CancelTimer, Emit, Send, StartTimer
from nodes.wire import HandleTableRequest, HandleTableResponse, PoolElement, PoolEntry

if TYPE_CHECKING:
    from nodes.registrar.enrp import Enrp
    from nodes.registrar.peers import Peer

HT_BUDGET = 60_000  #: bytes of PEs per HANDLE_TABLE_RESPONSE (the length field allows 65535)
OWN_ONLY, REJECT, MORE = 0x01, 0x01, 0x02  #: HANDLE_TABLE_REQUEST's W; HANDLE_TABLE_RESPONSE's R and M


class Sync:
    """Mixed into `Enrp`; uses its peer table, options, handlespace and `_send`."""

    def _choose_mentor(self: Enrp, peer: Peer, now: float) -> list[Action]:
        self.mentor, self.mentor_heard_at = peer.server_id, now
        peer.request_own_only = False
        return [Emit("mentor-chosen", {"server_id": str(peer)}),
                *self._send(peer, HandleTableRequest(sender_id=self.me, receiver_id=peer.server_id))]  # fmt: skip

    def _discovery_timeout(self: Enrp, now: float) -> list[Action]:
        """No mentor's table in time: serve with what we have.  But a transfer that is still
        making progress (a large handlespace, a slow path) is let finish: announcing half a
        handlespace would send pool users to a registrar that does not know most PEs."""
        if not self.starting:
            return []
        quiet = now - self.mentor_heard_at
        if self.mentor is not None and quiet < self.options.max_time_no_response:
            return [StartTimer(("enrp", "mentor-discovery"), self.options.max_time_no_response - quiet)]
        return self._synchronised("mentor discovery timeout")

    def _synchronised(self: Enrp, how: str) -> list[Action]:
        self.starting = False
        actions: list[Action] = [CancelTimer(("enrp", "mentor-discovery")),
                                 Emit("synchronised", {"how": how, "pool_elements": len(self.hs), "peers": len(self.table)})]  # fmt: skip
        return actions + self.core.start_serving()

    def _audit(self: Enrp, peer: Peer, checksum: int, now: float) -> list[Action]:
        if peer.request_own_only is not None or checksum == self.hs.checksum(peer.server_id) or now < peer.next_audit:
            return []
        peer.audit = {(n.pool_handle, n.identifier) for n in self.hs.homed_at(peer.server_id)}
        peer.request_own_only, peer.audit_target, peer.next_audit = True, checksum, now
        return [Emit("checksum-mismatch", {"server_id": str(peer), "theirs": f"0x{checksum:04x}",
                                           "ours": f"0x{self.hs.checksum(peer.server_id):04x}", "marked": len(peer.audit)}),
                *self._send(peer, HandleTableRequest(sender_id=self.me, receiver_id=peer.server_id, flags=OWN_ONLY))]  # fmt: skip

    def _on_table_request(self: Enrp, assoc: AssocId, msg: HandleTableRequest, now: float) -> list[Action]:
        sender = msg.sender_id
        if sender not in self.table or self.starting:
            why = "starting up" if self.starting else "unknown peer"
            return [Send(assoc, HandleTableResponse(sender_id=self.me, receiver_id=sender, flags=REJECT)),
                    Emit("handle-table-rejected", {"server_id": f"0x{sender:08x}", "reason": why})]  # fmt: skip
        own_only = msg.has_flag("own_children_only")
        cursor = self.cursors.get((sender, own_only))
        if cursor is None:
            nodes = self.hs.homed_at(self.me) if own_only else (n for p in self.hs.pools() for n in p.elements())
            cursor = self.cursors[(sender, own_only)] = deque((n.pool_handle, n.identifier) for n in nodes)
        entries = self._next_part(cursor)
        more = bool(cursor)
        if not more:
            del self.cursors[(sender, own_only)]
        response = HandleTableResponse(sender_id=self.me, receiver_id=sender, flags=MORE if more else 0, entries=entries)
        return [Send(assoc, response)]

    def _next_part(self: Enrp, cursor: deque[tuple[bytes, int]]) -> tuple[PoolEntry, ...]:
        """Up to max-elements-per-ht PEs (and HT_BUDGET bytes) from the cursor, grouped by pool;
        PEs gone since the request started are skipped."""
        groups: list[tuple[bytes, list[PoolElement]]] = []
        count = size = 0
        while cursor and count < self.options.max_elements_per_ht and size < HT_BUDGET:
            handle, pe_id = cursor.popleft()
            node = self.hs.find(handle, pe_id)
            if node is None:
                continue
            if not groups or groups[-1][0] != handle:
                groups.append((handle, []))
                size += 8 + len(handle)
            groups[-1][1].append(node.pe)
            count += 1
            size += _pe_size(node.pe)
        return tuple(PoolEntry(h, tuple(pes)) for h, pes in groups)

    def _on_table_response(self: Enrp, assoc: AssocId, msg: HandleTableResponse, now: float) -> list[Action]:
        peer = self.table.get(msg.sender_id)
        if peer is None or peer.request_own_only is None:
            return [Emit("ignored", {"message": "HandleTableResponse", "reason": "not requested"})]
        if msg.has_flag("reject"):
            return self._table_rejected(peer)
        if self.mentor == peer.server_id:
            self.mentor_heard_at = now
        learnt, actions = 0, []
        for entry in msg.entries:
            for pe in entry.pool_elements:
                if peer.request_own_only and pe.home_registrar != peer.server_id:
                    continue  # asked for its own PEs only: it may not speak for others in an audit
                stored = self._learn(entry.pool_handle, pe, authoritative=False)
                if stored is not None:
                    learnt, actions = learnt + 1, actions + stored
                if peer.audit is not None and pe.home_registrar == peer.server_id:
                    peer.audit.discard((entry.pool_handle, pe.identifier))
        actions.append(Emit("handle-table-received", {"server_id": str(peer), "pool_elements": learnt,
                                                          "more": msg.has_flag("more_to_send")}))  # fmt: skip
        if msg.has_flag("more_to_send"):
            flags = OWN_ONLY if peer.request_own_only else 0
            return actions + self._send(peer, HandleTableRequest(sender_id=self.me, receiver_id=peer.server_id, flags=flags))
        audited = peer.request_own_only
        peer.request_own_only = None
        if audited:
            actions += self._purge_audited(peer) + self._back_off(peer, now)
        if self.starting and self.mentor == peer.server_id:
            actions += self._synchronised(f"from mentor {peer}")
        return actions

    def _back_off(self: Enrp, peer: Peer, now: float) -> list[Action]:
        """An audit that did not make our view of the peer match its checksum (a pool conflict
        that refuses its PEs here, say) waits longer each time, up to a minute, so that two
        registrars that disagree do not ask each other for tables on every presence."""
        if self.hs.checksum(peer.server_id) == peer.audit_target:
            peer.fruitless_audits = 0
            return []
        peer.fruitless_audits += 1
        wait = min(60.0, self.options.heartbeat_cycle * 2**peer.fruitless_audits)
        peer.next_audit = now + wait
        return [Emit("audit-fruitless", {"server_id": str(peer), "in_a_row": peer.fruitless_audits, "next_in_s": round(wait, 1)})]

    def _table_rejected(self: Enrp, peer: Peer) -> list[Action]:
        peer.reset_request()
        if self.mentor == peer.server_id:
            self.mentor = None  # the next peer heard becomes the mentor
        return [Emit("handle-table-refused", {"server_id": str(peer)})]

    def _purge_audited(self: Enrp, peer: Peer) -> list[Action]:
        marked, peer.audit = peer.audit, None
        actions: list[Action] = []
        for handle, pe_id in sorted(marked or ()):
            node = self.hs.find(handle, pe_id)
            if node is not None and node.home_registrar == peer.server_id:
                actions += self.core.remove_pe(handle, pe_id, f"not in {peer}'s handle table")
        return actions

    def _learn(self: Enrp, handle: bytes, pe: PoolElement, authoritative: bool) -> list[Action] | None:
        """Add or update a PE homed elsewhere; its actions, or None if it was not stored.  A PE
        this registrar owns is changed only by its new home's own HANDLE_UPDATE
        (`authoritative`): a handle table may be older than the registration here."""
        if pe.home_registrar == self.me:
            return None
        node = self.hs.find(handle, pe.identifier)
        was_ours = node is not None and node.home_registrar == self.me
        if was_ours and not authoritative:
            return None
        try:
            self.hs.register(handle, pe, owner=None)
        except HandlespaceError:
            return None
        actions = self.core.stop_supervising(handle, pe.identifier) if was_ours else []
        return actions + [StartTimer(("enrp", "expiry", handle, pe.identifier), pe.registration_life / 1000)]

    def _expire(self: Enrp, handle: bytes, pe_id: int) -> list[Action]:
        node = self.hs.find(handle, pe_id)
        if node is None or node.home_registrar == self.me:
            return []
        return self.core.remove_pe(handle, pe_id, "registration life expired")


def _pe_size(pe: PoolElement) -> int:
    """An upper estimate of a PE parameter's encoded size, to fill a response without encoding it."""
    transports = [pe.user_transport, pe.registrator_transport]
    return 64 + sum(20 * len(t.addresses) for t in transports if t is not None)
