"""The registrar's ASAP protocol core (RFC 5352), without I/O.

It keeps the handlespace of its operation scope and serves pool elements (registration,
re-registration, deregistration, keep-alive supervision) and pool users (handle resolution,
unreachability reports).  Inputs and actions are those of `nodes.sansio`; the asyncio layer
is `nodes.registrar.server`.

Rules, and where they come from (RSPLIB's registrar where RFC 5352 leaves room; see
../shared/reference/rserpool-wire.md, section 8.1):

* A REGISTRATION's user transport addresses must be peer addresses of the association it
  arrives on (ports are not compared); the others are dropped, and with none left the reply
  is a reject with RSPLIB's cause 0xf008.  A REGISTRATION carrying a registrator transport
  is refused (0xf006): the registrar writes that one itself, from the association.
* A PE identifier registered by another association that is still up is refused
  (NON_UNIQUE_PE_IDENTIFIER): otherwise any host could hijack a PE by re-registering it.
  Likewise, DEREGISTRATION of someone else's PE is refused (REJECTED_SECURITY).  An unknown
  PE deregisters successfully, as with RSPLIB.
* The home registrar does not expire its own PEs by registration life: they go by keep-alive
  timeout, by MAX-BAD-PE-REPORT unreachability reports, by loss of their association, or by
  deregistration.
* HANDLE_RESOLUTION returns min(requested or max-hres-items, 128) PEs; the response's policy
  parameter is a copy of the first PE's (RSPLIB); an unknown pool is answered with an
  Operation Error "unknown pool handle".
* What cannot be decoded is answered with ASAP_ERROR naming the cause, except a silent
  unknown parameter (action bits 00) and an ASAP_ERROR itself, so that two nodes never
  answer each other's errors for ever.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from typing import Any

from nodes.registrar.enrp import Enrp, EnrpOptions
from nodes.registrar.handlespace import Handlespace, HandlespaceError, PoolElementNode
from nodes.wire.constants import ALL_ITEMS
from nodes.sansio import Abort, Action, Announce, AssocId, CancelTimer, Close, Connect, Emit, Send, StartTimer
from nodes.wire import (
    AsapError,
    AsapMessage,
    CauseCode,
    DecodeError,
    Deregistration,
    EncodeError,
    DeregistrationResponse,
    EndpointKeepAlive,
    EndpointKeepAliveAck,
    EndpointUnreachable,
    ErrorCause,
    HandleResolution,
    HandleResolutionResponse,
    Protocol,
    Registration,
    RegistrationResponse,
    SctpTransport,
    ServerAnnounce,
    TcpTransport,
    Transport,
    UnrecognizedParameterError,
    decode,
)

MAX_HRES_ITEMS_CAP = 128  # RSPLIB's parser refuses responses with more
MAX_MESSAGE = 65535  # the ASAP length field
HOME = 0x01  # ENDPOINT_KEEP_ALIVE's H flag: "take the sender as your home registrar"


@dataclass(frozen=True)
class RegistrarOptions:
    """Timers in seconds; names follow RSPLIB's registrar options (in ms there)."""

    server_id: int
    keepalive_interval: float = 5.0  #: -endpointkeepalivetransmissioninterval
    keepalive_timeout: float = 5.0  #: -endpointkeepalivetimeoutinterval
    max_bad_pe_reports: int = 3  #: -maxbadpereports
    max_hres_items: int = 3  #: -maxhresitems
    max_increment: int = 0  #: -maxincrement (0: the policy's default)
    announce_cycle: float = 1.0  #: -serverannouncecycle, randomised by +-12.5 %
    announce: bool = True
    asap_port: int = 3863
    asap_addresses: tuple[str, ...] = ()
    sctp: bool = True  #: the ASAP endpoint's transport, for the announce
    enrp: EnrpOptions = field(default_factory=EnrpOptions)

    def __post_init__(self) -> None:
        if not 0 < self.server_id <= 0xFFFFFFFF:
            raise ValueError("server id must be within 1..0xffffffff")
        if self.keepalive_interval <= 0 or self.keepalive_timeout <= 0 or self.announce_cycle <= 0:
            raise ValueError("timer intervals must be > 0")
        if self.max_bad_pe_reports < 1 or self.max_hres_items < 1:
            raise ValueError("max-bad-pe-reports and max-hres-items must be >= 1")


@dataclass
class AssociationState:
    peer_addresses: tuple[str, ...]
    peer_port: int = 0
    sctp: bool = True


class RegistrarCore:
    """See the module docstring.  `handlespace` is public (tools read it); `enrp` shares it
    with the other registrars of the scope (`nodes.registrar.enrp`)."""

    def __init__(self, options: RegistrarOptions, rng: random.Random | None = None) -> None:
        self.options = options
        self.rng = rng or random.Random()
        self.handlespace = Handlespace(rng=self.rng, max_increment=options.max_increment)
        self.assocs: dict[AssocId, AssociationState] = {}
        self.enrp = Enrp(self)
        self.takeover_pending: dict[tuple[tuple[str, ...], int], list[tuple[bytes, int]]] = {}

    @property
    def server_id(self) -> int:
        return self.options.server_id

    # --- inputs --------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        actions: list[Action] = [Emit("registrar-started", {"server_id": f"0x{self.server_id:08x}"})]
        return actions + self.enrp.start(now)

    def start_serving(self) -> list[Action]:
        """Synchronised with the scope (or alone): announce ourselves to PEs and PUs."""
        return self._announce() if self.options.announce else []

    def association_up(self, assoc: AssocId, now: float, **info: Any) -> list[Action]:
        peers = tuple(_plain(a) for a in info.get("peer_addresses", ()))
        self.assocs[assoc] = AssociationState(peers, int(info.get("peer_port", 0)), bool(info.get("sctp", True)))
        actions: list[Action] = [Emit("association-up", {"assoc": assoc, "peer": list(peers)})]
        match info.get("key"):
            case ("takeover", tuple() as addresses, int() as port):
                return actions + self._takeover_connected(assoc, (addresses, port))
            case None:
                return actions
            case key:
                return actions + self.enrp.association_up(assoc, key)

    def association_down(self, assoc: AssocId, now: float) -> list[Action]:
        state = self.assocs.pop(assoc, None)
        self.enrp.association_down(assoc)
        actions: list[Action] = [Emit("association-down", {"assoc": assoc})]
        if state:
            for node in sorted(self.handlespace.owned_by(assoc), key=lambda n: (n.pool_handle, n.identifier)):
                if node.home_registrar == self.server_id:
                    actions += self.remove_pe(node.pool_handle, node.identifier, "association lost")
        return actions

    def connect_failed(self, key: Hashable, reason: str, now: float) -> list[Action]:
        actions: list[Action] = [Emit("connect-failed", {"key": str(key), "reason": reason})]
        match key:
            case ("takeover", tuple() as addresses, int() as port):
                for handle, pe_id in self.takeover_pending.pop((addresses, port), []):
                    actions += self.remove_pe(handle, pe_id, "unreachable after takeover")
                return actions
        return actions + self.enrp.connect_failed(key, reason)

    def receive(self, assoc: AssocId, data: bytes, ppid: int, now: float) -> list[Action]:
        if ppid == Protocol.ENRP.ppid:
            return self.enrp.receive(assoc, data, now)
        try:
            message = decode(data, Protocol.ASAP)
        except DecodeError as exc:
            return self._decode_error(assoc, data, exc)
        handler = _HANDLERS.get(type(message))
        if handler is None:
            return [Emit("ignored", {"assoc": assoc, "message": type(message).__name__})]
        return handler(self, assoc, message)

    def datagram(self, data: bytes, source: str, port: int, interface: str, now: float) -> list[Action]:
        """Only the ENRP presence group is received (announces are sent, not listened to)."""
        return self.enrp.datagram(data, source, now)

    def timer(self, key: Hashable, now: float) -> list[Action]:
        match key:
            case ("enrp", *_):
                return self.enrp.timer(key, now)  # type: ignore[arg-type]
            case ("announce",):
                return self._announce()
            case ("keepalive", bytes() as handle, int() as pe_id):
                return self._send_keepalive(handle, pe_id)
            case ("keepalive-timeout", bytes() as handle, int() as pe_id):
                return self._keepalive_timeout(handle, pe_id)
        return []

    # --- ASAP messages -------------------------------------------------------------------

    def _registration(self, assoc: AssocId, msg: Registration) -> list[Action]:
        state = self.assocs.get(assoc)
        handle, pe = msg.pool_handle, msg.pool_element
        if state is None:
            return []

        def reject(cause: int, why: str, info: bytes = b"") -> list[Action]:
            response = RegistrationResponse(
                pool_handle=handle, pe_id=pe.identifier, error=(ErrorCause(cause, info),), flags=0x01
            )
            return [Send(assoc, response), Emit("registration-rejected", _pe_fields(handle, pe.identifier, why))]

        if pe.registrator_transport is not None:
            return reject(CauseCode.RSPLIB_INVALID_REGISTRATOR, "carries a registrator transport")
        usable = _usable_addresses(pe.user_transport, state.peer_addresses)
        if not usable:
            return reject(CauseCode.RSPLIB_NO_USABLE_USER_ADDRESSES, "no user address belongs to the association")
        existing = self.handlespace.find(handle, pe.identifier)
        if existing is not None and existing.owner not in (assoc, None) and existing.owner in self.assocs:
            return reject(CauseCode.NON_UNIQUE_PE_IDENTIFIER, "registered by another association")
        registered = replace(
            pe,
            home_registrar=self.server_id,
            user_transport=replace(pe.user_transport, addresses=usable),
            registrator_transport=self._registrator_transport(state),
        )
        try:
            node, is_new = self.handlespace.register(handle, registered, owner=assoc)
        except HandlespaceError as exc:
            return reject(exc.cause, str(exc))
        actions: list[Action] = [Send(assoc, RegistrationResponse(pool_handle=handle, pe_id=pe.identifier))]
        fields = _pe_fields(handle, pe.identifier, None) | {
            "policy": registered.policy.name, "values": list(registered.policy.values()),
            "addresses": [str(a) for a in usable], "port": registered.user_transport.port, "assoc": assoc,
        }  # fmt: skip
        actions.append(Emit("pe-registered" if is_new else "pe-reregistered", fields))
        actions.append(CancelTimer(("enrp", "expiry", handle, pe.identifier)))  # known from a peer before: ours now
        actions += self.enrp.own_pe_changed(handle, registered)
        # Every registration shows the PE alive: supervision starts afresh (as RSPLIB's registrar).
        actions.append(CancelTimer(("keepalive-timeout", handle, pe.identifier)))
        actions.append(StartTimer(("keepalive", handle, pe.identifier), self.options.keepalive_interval))
        return actions

    def _deregistration(self, assoc: AssocId, msg: Deregistration) -> list[Action]:
        handle, pe_id = msg.pool_handle, msg.pe_id
        node = self.handlespace.find(handle, pe_id)
        if node is not None and node.owner != assoc:
            error = (ErrorCause(CauseCode.REJECTED_SECURITY),)
            return [
                Send(assoc, DeregistrationResponse(pool_handle=handle, pe_id=pe_id, error=error, flags=0x01)),
                Emit("deregistration-rejected", _pe_fields(handle, pe_id, "not registered by this association")),
            ]
        actions: list[Action] = [Send(assoc, DeregistrationResponse(pool_handle=handle, pe_id=pe_id))]
        if node is not None:
            actions += self.remove_pe(handle, pe_id, "deregistered")
        return actions

    def _handle_resolution(self, assoc: AssocId, msg: HandleResolution) -> list[Action]:
        wanted = self.options.max_hres_items if msg.items is None else msg.items
        count = min(MAX_HRES_ITEMS_CAP, wanted if wanted != ALL_ITEMS else MAX_HRES_ITEMS_CAP)
        try:
            if count == 0 and self.handlespace.pool(msg.pool_handle) is None:
                raise HandlespaceError(CauseCode.UNKNOWN_POOL_HANDLE, "unknown pool handle")
            chosen = self.handlespace.select(msg.pool_handle, count) if count else []
        except HandlespaceError as exc:
            error = (ErrorCause(exc.cause),)
            return [
                Send(assoc, HandleResolutionResponse(pool_handle=msg.pool_handle, error=error)),
                Emit("handle-resolution-failed", {"handle": _text(msg.pool_handle), "cause": exc.cause.name}),
            ]
        elements = tuple(replace(n.pe, registrator_transport=None) for n in chosen)
        response = _fitting(HandleResolutionResponse(
            pool_handle=msg.pool_handle, policy=elements[0].policy if elements else None, pool_elements=elements
        ))  # fmt: skip
        elements = response.pool_elements
        return [Send(assoc, response), Emit("handle-resolved", {
            "handle": _text(msg.pool_handle), "items": count, "pe_ids": [e.identifier for e in elements]})]  # fmt: skip

    def _keepalive_ack(self, assoc: AssocId, msg: EndpointKeepAliveAck) -> list[Action]:
        node = self.handlespace.find(msg.pool_handle, msg.pe_id)
        if node is None or node.owner != assoc:
            return [Emit("keepalive-ack-ignored", _pe_fields(msg.pool_handle, msg.pe_id, "not this PE's association"))]
        key = (msg.pool_handle, msg.pe_id)
        return [CancelTimer(("keepalive-timeout", *key)), StartTimer(("keepalive", *key), self.options.keepalive_interval)]

    def _unreachable(self, assoc: AssocId, msg: EndpointUnreachable) -> list[Action]:
        """Reports count per reporting host (its set of addresses), not per message: otherwise
        one PU could remove any PE by saying so three times (RSPLIB counts every report)."""
        key = (msg.pool_handle, msg.pe_id)
        if self.handlespace.find(*key) is None:
            return [Emit("pe-reported-unreachable", _pe_fields(*key, "unknown PE") | {"reporter": assoc})]
        state = self.assocs.get(assoc)
        host = frozenset(state.peer_addresses) if state else frozenset({f"assoc {assoc}"})
        count = self.handlespace.report_unreachable(*key, reporter=host)
        fields = _pe_fields(*key, None) | {"reports": count, "reporter": assoc}
        actions: list[Action] = [Emit("pe-reported-unreachable", fields)]
        if count >= self.options.max_bad_pe_reports:
            actions += self.remove_pe(*key, f"{count} unreachability reports")
        return actions

    def _asap_error(self, assoc: AssocId, msg: AsapError) -> list[Action]:
        return [Emit("peer-error", {"assoc": assoc, "causes": [c.name for c in msg.error]})]

    # --- timers and removal --------------------------------------------------------------

    def _send_keepalive(self, handle: bytes, pe_id: int) -> list[Action]:
        node = self.handlespace.find(handle, pe_id)
        if node is None or node.owner not in self.assocs or node.home_registrar != self.server_id:
            return []
        keepalive = EndpointKeepAlive(server_id=self.server_id, pool_handle=handle, pe_id=pe_id)
        return [Send(node.owner, keepalive), StartTimer(("keepalive-timeout", handle, pe_id), self.options.keepalive_timeout)]  # type: ignore[arg-type]

    def _keepalive_timeout(self, handle: bytes, pe_id: int) -> list[Action]:
        node = self.handlespace.find(handle, pe_id)
        if node is None:
            return []
        owner = node.owner
        actions = self.remove_pe(handle, pe_id, "keep-alive timeout")
        if owner in self.assocs and not self.handlespace.owned_by(owner):
            actions.append(Abort(owner))  # type: ignore[arg-type]  # as RSPLIB: the silent PE's association goes too
        return actions

    def remove_pe(self, handle: bytes, pe_id: int, reason: str) -> list[Action]:
        """Remove a PE; the peers hear of it (DEL_PE) if it was ours."""
        node = self.handlespace.deregister(handle, pe_id)
        if node is None:
            return []
        actions = [*self.stop_supervising(handle, pe_id), CancelTimer(("enrp", "expiry", handle, pe_id)),
                   Emit("pe-removed", _pe_fields(handle, pe_id, reason))]  # fmt: skip
        if node.home_registrar == self.server_id:
            actions += self.enrp.own_pe_removed(handle, node.pe)
        return actions

    def stop_supervising(self, handle: bytes, pe_id: int) -> list[Action]:
        return [CancelTimer(("keepalive", handle, pe_id)), CancelTimer(("keepalive-timeout", handle, pe_id))]

    # --- takeover (the ASAP side; ENRP decides, see nodes.registrar.enrp) ----------------

    def take_over(self, nodes: list[PoolElementNode]) -> list[Action]:
        """Become home of these PEs: open an association to each PE endpoint (its registrator
        transport) and send each PE there an ENDPOINT_KEEP_ALIVE with the Home flag.  A PE
        that does not answer in time goes by the keep-alive timeout, like any other."""
        actions: list[Action] = []
        for node in nodes:
            handle, pe = node.pool_handle, node.pe
            endpoint = pe.registrator_transport
            if endpoint is None or not endpoint.port or not endpoint.addresses:
                actions += self.remove_pe(handle, pe.identifier, "taken over, but its ASAP endpoint is unknown")
                continue
            self.handlespace.register(handle, replace(pe, home_registrar=self.server_id), owner=None)
            key = (tuple(str(a) for a in endpoint.addresses), endpoint.port)
            waiting = self.takeover_pending.setdefault(key, [])
            if not waiting:
                actions.append(Connect(("takeover", *key), *key))
            waiting.append((handle, pe.identifier))
            actions += [CancelTimer(("enrp", "expiry", handle, pe.identifier)),
                        StartTimer(("keepalive-timeout", handle, pe.identifier), self.options.keepalive_timeout + self.options.keepalive_interval)]  # fmt: skip
        return actions

    def _takeover_connected(self, assoc: AssocId, endpoint: tuple[tuple[str, ...], int]) -> list[Action]:
        actions: list[Action] = []
        for handle, pe_id in self.takeover_pending.pop(endpoint, []):
            node = self.handlespace.find(handle, pe_id)
            if node is None or node.home_registrar != self.server_id:
                continue
            self.handlespace.register(handle, node.pe, owner=assoc)
            keepalive = EndpointKeepAlive(server_id=self.server_id, pool_handle=handle, pe_id=pe_id, flags=HOME)
            actions += [Send(assoc, keepalive), Emit("pe-taken-over", _pe_fields(handle, pe_id, None) | {"assoc": assoc}),
                        StartTimer(("keepalive-timeout", handle, pe_id), self.options.keepalive_timeout)]  # fmt: skip
            # Peers learn the new home now (after a suggested takeover, nothing else tells them).
            actions += self.enrp.own_pe_changed(handle, node.pe, suggest=False)
        if not actions:
            actions.append(Close(assoc))
        return actions

    def _announce(self) -> list[Action]:
        transports: tuple[Transport, ...] = ()
        addresses = tuple(ipaddress.ip_address(a) for a in self.options.asap_addresses)
        if addresses:
            if self.options.sctp:
                transports = (SctpTransport(port=self.options.asap_port, addresses=addresses),)
            else:
                transports = tuple(TcpTransport(port=self.options.asap_port, addresses=(a,)) for a in addresses)
        cycle = self.options.announce_cycle * self.rng.uniform(0.875, 1.125)
        return [Announce(ServerAnnounce(server_id=self.server_id, transports=transports)), StartTimer(("announce",), cycle)]

    def _registrator_transport(self, state: AssociationState) -> Transport:
        addresses = tuple(ipaddress.ip_address(a) for a in state.peer_addresses)
        if state.sctp:
            return SctpTransport(port=state.peer_port, addresses=addresses)
        return TcpTransport(port=state.peer_port, addresses=addresses[:1])

    def _decode_error(self, assoc: AssocId, data: bytes, exc: DecodeError) -> list[Action]:
        fields = {"assoc": assoc, "bytes": len(data), **exc.to_dict()}
        silent = isinstance(exc, UnrecognizedParameterError) and not exc.report
        if silent or data[:1] == bytes([AsapError.TYPE]):
            return [Emit("malformed-message", fields | {"answered": False})]
        info = exc.tlv if isinstance(exc, UnrecognizedParameterError) else b""
        if exc.cause is CauseCode.UNRECOGNIZED_MESSAGE:
            info = data[:1024]
        error = AsapError(error=(ErrorCause(exc.cause, info),))
        return [Send(assoc, error), Emit("malformed-message", fields | {"answered": True, "cause": exc.cause.name})]

    # --- views ---------------------------------------------------------------------------

    def gauges(self) -> dict[str, float]:
        return {
            "pools": len(self.handlespace.pools()),
            "pool_elements": len(self.handlespace),
            "associations": len(self.assocs),
        } | self.enrp.gauges()


def _plain(address: str) -> str:
    """`::ffff:10.0.0.1` -> `10.0.0.1`: a dual-stack listener shows IPv4 peers as mapped."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def _usable_addresses(transport: Transport, peers: tuple[str, ...]) -> tuple[Any, ...]:
    known = {ipaddress.ip_address(p) for p in peers}
    return tuple(a for a in transport.addresses if a in known)


def _fitting(response: HandleResolutionResponse) -> HandleResolutionResponse:
    """The response with as many of its PEs as fit in one message (64 KiB): 128 PEs of many
    addresses each would not, and an answer cut short beats none."""
    while response.pool_elements and not _encodable(response):
        response = replace(response, pool_elements=response.pool_elements[: len(response.pool_elements) * 9 // 10])
    return response


def _encodable(message: HandleResolutionResponse) -> bool:
    try:
        return len(message.encode()) <= MAX_MESSAGE
    except EncodeError:  # the length field overflows
        return False


def _text(handle: bytes) -> str:
    return handle.decode("utf-8", "backslashreplace")


def _pe_fields(handle: bytes, pe_id: int, reason: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"handle": _text(handle), "pe_id": f"0x{pe_id:08x}"}
    if reason:
        fields["reason"] = reason
    return fields


_HANDLERS: dict[type[AsapMessage], Any] = {
    Registration: RegistrarCore._registration,
    Deregistration: RegistrarCore._deregistration,
    HandleResolution: RegistrarCore._handle_resolution,
    EndpointKeepAliveAck: RegistrarCore._keepalive_ack,
    EndpointUnreachable: RegistrarCore._unreachable,
    AsapError: RegistrarCore._asap_error,
}

