"""The takeover side of ENRP (RFC 5353 section 3.5): part of `nodes.registrar.enrp.Enrp`.

A registrar that finds a peer dead (see `Enrp._no_response`) and owning PEs asks every
other peer it has heard for INIT_TAKEOVER_ACK, then announces TAKEOVER_SERVER and becomes
home of the dead peer's PEs (the ASAP half, Home-flagged keep-alives, is
`RegistrarCore.take_over`).  Who wins concurrent takeovers and why is in the `enrp` module
docstring, with the takeover suggestion of draft-dreibholz-rserpool-enrp-takeover.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from nodes.sansio import Action, Announce, AssocId, CancelTimer, Emit, Send, StartTimer
from nodes.wire import HandleUpdate, InitTakeover, InitTakeoverAck, PoolElement, TakeoverServer, UpdateAction

if TYPE_CHECKING:
    from nodes.registrar.enrp import Enrp
    from nodes.registrar.peers import Peer

TAKEOVER_SUGGESTED = 0x01  #: HANDLE_UPDATE's T flag


class Takeover:
    """Mixed into `Enrp`; uses its peer table, options, handlespace and `_send`."""

    def _start_takeover(self: Enrp, target: Peer, owned: int) -> list[Action]:
        # "Every known peer but the target" (RFC 5353 section 3.5.1): the registrars heard from
        # (not tools like hsdump, nor peers only listed by others, which may never answer).
        # Dead ones are waited for too, as the RFC says: so a registrar cut off from all the
        # others cannot take their PEs (its takeover expires), and when two registrars die at
        # once their PEs find a registrar themselves (their re-registration goes unanswered).
        waiting = {p.server_id for p in self.table.peers.values()
                   if p.heard_at is not None and p.reachable and p.server_id != target.server_id}  # fmt: skip
        self.takeovers[target.server_id] = waiting
        actions: list[Action] = [Emit("takeover-started", {"target": str(target), "pool_elements": owned,
                                                           "waiting_for": [f"0x{p:08x}" for p in sorted(waiting)]})]  # fmt: skip
        message = InitTakeover(sender_id=self.me, target_id=target.server_id)
        for peer in self.table.peers.values():
            actions += self._send(peer, replace(message, receiver_id=peer.server_id))
        if not waiting:
            return actions + self._complete_takeover(target.server_id)
        return actions + [StartTimer(("enrp", "takeover-expiry", target.server_id), self.options.takeover_expiry)]

    def _wins(self: Enrp, other: int) -> bool:
        """Whether `other`'s takeover beats ours (see the module docstring)."""
        return other > self.me if self.options.arbitration == "highest" else other < self.me

    def _on_init_takeover(self: Enrp, assoc: AssocId, msg: InitTakeover, now: float) -> list[Action]:
        target, sender = msg.target_id, msg.sender_id
        fields = {"target": f"0x{target:08x}", "by": f"0x{sender:08x}"}
        if target == self.me:  # we are alive: say so to everybody, which stops the takeover
            actions: list[Action] = [Emit("takeover-of-us", fields), Announce(self._presence())] if self.options.multicast else [Emit("takeover-of-us", fields)]
            for peer in self.table.peers.values():
                actions += self._send(peer, self._presence(receiver=peer.server_id))
            return actions
        actions = []
        if target in self.takeovers:
            if not self._wins(sender):
                return [Emit("takeover-conflict", fields | {"winner": f"0x{self.me:08x}"})]
            del self.takeovers[target]
            actions += [CancelTimer(("enrp", "takeover-expiry", target)),
                        Emit("takeover-conflict", fields | {"winner": f"0x{sender:08x}"})]  # fmt: skip
        self.takers[target] = sender
        peer = self.table.get(sender)
        ack = InitTakeoverAck(sender_id=self.me, receiver_id=sender, target_id=target)
        # Should the taker die before it finishes, we try ourselves (see _taker_expired).
        expiry = StartTimer(("enrp", "taker-expiry", target), 2 * self.options.takeover_expiry)
        return actions + (self._send(peer, ack) if peer else [Send(assoc, ack)]) + [expiry, Emit("takeover-acked", fields)]

    def _taker_expired(self: Enrp, target: int) -> list[Action]:
        """The registrar we acknowledged never sent TAKEOVER_SERVER: if the target is still
        silent, its PEs must not be orphaned, so this registrar starts a takeover of its own."""
        if self.takers.pop(target, None) is None:
            return []
        peer = self.table.get(target)
        if peer is None or not peer.silent:
            return []
        return [Emit("taker-silent", {"target": str(peer)}), *self._no_response(target)]



    def _on_init_takeover_ack(self: Enrp, assoc: AssocId, msg: InitTakeoverAck, now: float) -> list[Action]:
        waiting = self.takeovers.get(msg.target_id)
        if waiting is None:
            return []
        waiting.discard(msg.sender_id)
        return self._complete_takeover(msg.target_id) if not waiting else []

    def _complete_takeover(self: Enrp, target: int) -> list[Action]:
        self.takeovers.pop(target, None)
        actions: list[Action] = [CancelTimer(("enrp", "takeover-expiry", target)), *self._forget_peer(target)]
        message = TakeoverServer(sender_id=self.me, target_id=target)
        for peer in self.table.peers.values():
            actions += self._send(peer, replace(message, receiver_id=peer.server_id))
        nodes = sorted(self.hs.homed_at(target), key=lambda n: (n.pool_handle, n.identifier))
        actions.append(Emit("takeover-completed", {"target": f"0x{target:08x}", "pool_elements": len(nodes)}))
        return actions + self.core.take_over(nodes)

    def _takeover_expired(self: Enrp, target: int) -> list[Action]:
        if self.takeovers.pop(target, None) is None:
            return []
        return [*self._forget_peer(target), Emit("takeover-expired", {"target": f"0x{target:08x}"})]

    def _on_takeover_server(self: Enrp, assoc: AssocId, msg: TakeoverServer, now: float) -> list[Action]:
        target, taker = msg.target_id, msg.sender_id
        if target == self.me:
            return [Emit("taken-over", {"by": f"0x{taker:08x}"})]
        if self.takers.get(target) != taker:
            # Only the registrar we acknowledged may re-home the target's PEs; otherwise any peer
            # could take a live registrar's PEs.  (If we missed its INIT_TAKEOVER, the taker's
            # checksum shows the PEs as its own, and the audit fetches them.)
            return [Emit("enrp-refused", {"message": "TakeoverServer", "sender": f"0x{taker:08x}",
                                          "reason": f"not acknowledged as the taker of 0x{target:08x}"})]  # fmt: skip
        del self.takers[target]
        actions: list[Action] = [CancelTimer(("enrp", "taker-expiry", target)), *self._forget_peer(target)]
        if self.takeovers.pop(target, None) is not None:  # our own attempt, if any, has lost
            actions.append(CancelTimer(("enrp", "takeover-expiry", target)))
        moved = 0
        for node in list(self.hs.homed_at(target)):
            stored = self._learn(node.pool_handle, replace(node.pe, home_registrar=taker), authoritative=True)
            if stored is not None:
                moved, actions = moved + 1, actions + stored
        return actions + [Emit("takeover-observed", {"target": f"0x{target:08x}", "by": f"0x{taker:08x}", "pool_elements": moved})]

    def _suggest_takeover(self: Enrp, handle: bytes, pe: PoolElement) -> list[Action]:
        best = max(self.table.peers.values(), key=lambda p: p.server_id ^ pe.identifier, default=None)
        if best is None or best.server_id ^ pe.identifier <= self.me ^ pe.identifier:
            return []
        return self._send(best, HandleUpdate(sender_id=self.me, receiver_id=best.server_id, flags=TAKEOVER_SUGGESTED,
                                             update_action=UpdateAction.ADD_PE, pool_handle=handle, pool_element=pe))  # fmt: skip

