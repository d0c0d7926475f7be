"""The pool element's ASAP protocol core (RFC 5352), without I/O.

A PE finds a registrar (static ones and those heard announcing), registers its user
transport and policy, re-registers every `reregistration_interval` (registration life =
3 x that, as RSPLIB's rspserver) and at once when its load changes under an adaptive policy,
answers ENDPOINT_KEEP_ALIVE, takes the sender of a keep-alive with the H flag as its new home
registrar, and deregisters on a clean shutdown.  When its home registrar's association goes,
it hunts for the next registrar and registers again.  It also resolves its own pool now and
then, so that its services can hand pool users a BUSINESS_CARD of failover candidates.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable
from dataclasses import dataclass, replace
from typing import Any

from nodes.registrars import RegistrarAddress, RegistrarTable
from nodes.sansio import Abort, Action, AssocId, CancelTimer, Close, Connect, Emit, Send, StartTimer
from nodes.wire import (
    AsapError,
    DecodeError,
    Deregistration,
    DeregistrationResponse,
    EndpointKeepAlive,
    EndpointKeepAliveAck,
    HandleResolution,
    HandleResolutionResponse,
    Policy,
    PoolElement,
    Protocol,
    Registration,
    RegistrationResponse,
    SctpTransport,
    TcpTransport,
    TransportUse,
    decode,
)
from nodes.wire.constants import ALL_ITEMS
from nodes.wire.policies import ADAPTIVE_POLICIES, load_fraction, load_value

MAX_RETRY_DELAY = 30.0  #: s: the hunt backs off this far after registrations refused in a row



@dataclass(frozen=True)
class PoolElementOptions:
    pool_handle: bytes
    pe_id: int
    policy: Policy
    user_addresses: tuple[str, ...]
    user_port: int
    sctp: bool = True
    control_channel: bool = True  #: ASAP (cookies) on the data association: transport use 1
    registrars: tuple[RegistrarAddress, ...] = ()
    reregistration_interval: float = 30.0  #: rspserver's -rereginterval
    registration_timeout: float = 3.0
    retry_delay: float = 1.0
    load_threshold: float = 0.05  #: a load change that triggers a re-registration (fraction)
    load_update_min_interval: float = 0.5
    deregistration_timeout: float = 2.0
    card_refresh: float = 5.0  #: s: at most this often, a new session refreshes the business card

    def __post_init__(self) -> None:
        if not 0 < self.pe_id < 0xFFFFFFFF:
            raise ValueError("PE identifier must be within 1..0xfffffffe")
        if not self.user_addresses:
            raise ValueError("a PE needs at least one user address")
        if self.reregistration_interval <= 0:
            raise ValueError("re-registration interval must be > 0")


class PoolElementCore:
    def __init__(self, options: PoolElementOptions) -> None:
        self.options = options
        self.policy = options.policy
        self.table = RegistrarTable(options.registrars, sctp=options.sctp)
        self.phase = "idle"  # idle, hunting, connecting, registering, registered, stopping, stopped
        self.home: AssocId | None = None
        self.home_server_id = 0
        self.connecting: Hashable | None = None
        self.attempt = 0
        self.registered_once = False
        self.load_pending = False
        self.pool_mates: tuple[PoolElement, ...] = ()
        self.mates_asked_at: float | None = None
        self.registered_at = float("-inf")  # when the last REGISTRATION went out (load-update rate)
        self.rejections = 0  # refused in a row: the hunt backs off
        self.others: set[AssocId] = set()  # associations opened to us by other registrars

    @property
    def finished(self) -> bool:
        return self.phase == "stopped"

    # --- inputs --------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        return [Emit("pe-started", {"handle": self._handle_text, "pe_id": f"0x{self.options.pe_id:08x}",
                                    "policy": self.policy.name}), *self._hunt(now)]  # fmt: skip

    def association_up(self, assoc: AssocId, now: float, **info: Any) -> list[Action]:
        key = info.get("key")
        if key is not None and key == self.connecting and self.phase == "connecting":
            self.connecting, self.home, self.phase = None, assoc, "registering"
            return [Emit("registrar-connected", {"assoc": assoc, "peer": list(info.get("peer_addresses", ()))}),
                    *self._register(now)]  # fmt: skip
        if key is not None:  # a connect we no longer want
            return [Close(assoc)]
        self.others.add(assoc)
        return [Emit("registrar-association", {"assoc": assoc, "peer": list(info.get("peer_addresses", ()))})]

    def connect_failed(self, key: Hashable, reason: str, now: float) -> list[Action]:
        if key != self.connecting:
            return []
        self.connecting, self.phase = None, "hunting"
        return [Emit("registrar-unreachable", {"reason": reason}), StartTimer(("hunt",), self.options.retry_delay)]

    def association_down(self, assoc: AssocId, now: float) -> list[Action]:
        self.others.discard(assoc)
        if assoc != self.home:
            return []
        self.home = None
        if self.phase in ("stopping", "stopped"):
            self.phase = "stopped"
            return [Emit("pe-stopped", {"reason": "registrar association closed"})]
        self.phase = "hunting"
        return [Emit("registrar-lost", {"assoc": assoc}), CancelTimer(("reregister",)),
                CancelTimer(("registration-timeout",)), StartTimer(("hunt",), 0.05)]  # fmt: skip

    def datagram(self, data: bytes, source: str, port: int, interface: str, now: float) -> list[Action]:
        try:
            entry = self.table.heard(data, source, port, now)
        except DecodeError as exc:
            return [Emit("bad-announce", {"source": source, "error": str(exc)})]
        actions: list[Action] = []
        if entry is not None:
            actions.append(Emit("registrar-announced", {"server_id": f"0x{entry.server_id:08x}",
                                                        "endpoint": str(entry), "interface": interface}))  # fmt: skip
        if self.phase == "hunting":
            actions += self._hunt(now)
        return actions

    def receive(self, assoc: AssocId, data: bytes, ppid: int, now: float) -> list[Action]:
        try:
            message = decode(data, Protocol.ASAP)
        except DecodeError as exc:
            return [Emit("malformed-message", {"assoc": assoc, **exc.to_dict()})]
        match message:
            case RegistrationResponse() if assoc == self.home and self.phase in ("registering", "registered"):
                return self._registration_response(message, now)
            case EndpointKeepAlive():
                return self._keepalive(assoc, message)
            case DeregistrationResponse() if assoc == self.home and self.phase == "stopping":
                self.phase = "stopped"
                return [CancelTimer(("deregistration-timeout",)), Emit("deregistered", {}), Close(assoc)]
            case HandleResolutionResponse() if message.pool_handle == self.options.pool_handle:
                self.pool_mates = tuple(p for p in message.pool_elements if p.identifier != self.options.pe_id)
                return [Emit("pool-mates", {"count": len(self.pool_mates)})]
            case AsapError():
                return [Emit("peer-error", {"assoc": assoc, "causes": [c.name for c in message.error]})]
        return [Emit("ignored", {"assoc": assoc, "message": type(message).__name__})]

    def timer(self, key: Hashable, now: float) -> list[Action]:
        match key:
            case ("hunt",):
                return self._hunt(now)
            case ("reregister",):
                return self._register(now) if self.phase == "registered" else []
            case ("registration-timeout",):
                return self._registration_timeout()
            case ("load-update",):
                if self.load_pending and self.phase == "registered":
                    return self._register(now)
            case ("deregistration-timeout",):
                self.phase = "stopped"
                return [Emit("deregistration-timeout", {})]
        return []

    def set_load(self, fraction: float, now: float) -> list[Action]:
        """The service's measured load; re-registers at once when it moved under an adaptive policy."""
        if self.policy.policy_type not in ADAPTIVE_POLICIES or not hasattr(self.policy, "load"):
            return []
        old = load_fraction(self.policy.load)  # type: ignore[attr-defined]
        if abs(fraction - old) < self.options.load_threshold:
            return []
        self.policy = replace(self.policy, load=load_value(fraction))  # type: ignore[call-arg]
        self.load_pending = True
        # At most one re-registration per load_update_min_interval; a change while not yet
        # registered goes out with the registration itself.
        wait = max(0.0, self.registered_at + self.options.load_update_min_interval - now)
        return [Emit("load-changed", {"from": round(old, 3), "to": round(fraction, 3)}),
                StartTimer(("load-update",), wait)]  # fmt: skip

    def refresh_mates(self, now: float) -> list[Action]:
        """Resolve the PE's own pool, for the business card; at most every `card_refresh` s,
        because a resolution advances the pool's selection state like anybody's would."""
        if self.phase != "registered" or self.home is None:
            return []
        if self.mates_asked_at is not None and now - self.mates_asked_at < self.options.card_refresh:
            return []
        self.mates_asked_at = now
        return [Send(self.home, HandleResolution(pool_handle=self.options.pool_handle, items=ALL_ITEMS))]

    def shutdown(self, now: float) -> list[Action]:
        if self.phase != "registered" or self.home is None:
            self.phase = "stopped"
            return [Emit("pe-stopped", {"reason": "not registered"})]
        self.phase = "stopping"
        message = Deregistration(pool_handle=self.options.pool_handle, pe_id=self.options.pe_id)
        return [Send(self.home, message), StartTimer(("deregistration-timeout",), self.options.deregistration_timeout)]

    # --- steps ---------------------------------------------------------------------------

    def _hunt(self, now: float) -> list[Action]:
        if self.phase in ("connecting", "registering", "registered", "stopping", "stopped"):
            return []
        entry = self.table.next(now)
        if entry is None:
            self.phase = "hunting"
            return [Emit("no-registrar", {}), StartTimer(("hunt",), self.options.retry_delay)]
        self.attempt += 1
        self.connecting, self.phase = ("registrar", self.attempt), "connecting"
        return [Emit("registrar-connecting", {"endpoint": str(entry)}),
                Connect(self.connecting, entry.addresses, entry.port)]  # fmt: skip

    def _register(self, now: float) -> list[Action]:
        assert self.home is not None
        self.load_pending = False
        self.registered_at = now
        actions: list[Action] = [Send(self.home, Registration(pool_handle=self.options.pool_handle,
                                                               pool_element=self.pool_element()))]  # fmt: skip
        # A re-registration unanswered in time, too, means the home registrar stopped serving
        # (a killed userland SCTP stack sends no ABORT, and the association lingers): move on.
        actions.append(StartTimer(("registration-timeout",), self.options.registration_timeout))
        return actions

    def pool_element(self) -> PoolElement:
        """This PE as it registers: without a registrator transport (the registrar adds it)."""
        o = self.options
        use = TransportUse.DATA_PLUS_CONTROL if o.control_channel else TransportUse.DATA_ONLY
        addresses = tuple(ipaddress.ip_address(a) for a in o.user_addresses)
        if o.sctp:
            transport: SctpTransport | TcpTransport = SctpTransport(port=o.user_port, addresses=addresses, transport_use=use)
        else:
            transport = TcpTransport(port=o.user_port, addresses=addresses[:1], transport_use=use)
        life_ms = min(int(3 * o.reregistration_interval * 1000), 0x7FFFFFFF)
        return PoolElement(o.pe_id, self.home_server_id, life_ms, transport, self.policy)

    def _registration_response(self, message: RegistrationResponse, now: float) -> list[Action]:
        if message.has_flag("reject") or message.error:
            causes = [c.name for c in message.error or ()]
            self.phase = "hunting"
            home, self.home = self.home, None
            self.rejections += 1
            delay = min(MAX_RETRY_DELAY, self.options.retry_delay * 2 ** (self.rejections - 1))
            return [CancelTimer(("registration-timeout",)), Emit("registration-rejected", {"causes": causes, "retry_s": delay}),
                    Close(home), StartTimer(("hunt",), delay)]  # type: ignore[arg-type]  # fmt: skip
        first = self.phase == "registering"
        self.phase = "registered"
        self.rejections = 0
        actions: list[Action] = [
            CancelTimer(("registration-timeout",)),
            StartTimer(("reregister",), self.options.reregistration_interval),
        ]
        if first and self.mates_asked_at is None:
            actions += self.refresh_mates(now)
        if self.load_pending:  # the load moved while the registration was on its way
            actions.append(StartTimer(("load-update",), self.options.load_update_min_interval))
        if first:
            event = "registered" if not self.registered_once else "registered-again"
            self.registered_once = True
            actions.append(Emit(event, {"assoc": self.home, "policy": self.policy.name,
                                        "values": list(self.policy.values())}))  # fmt: skip
        return actions

    def _registration_timeout(self) -> list[Action]:
        if self.phase not in ("registering", "registered") or self.home is None:
            return []
        if self.phase == "registered":
            self.phase = "hunting"
            home, self.home = self.home, None
            return [Emit("registrar-silent", {"assoc": home, "server_id": f"0x{self.home_server_id:08x}"}),
                    Abort(home), CancelTimer(("reregister",)), StartTimer(("hunt",), 0.05)]  # fmt: skip
        home, self.home, self.phase = self.home, None, "hunting"
        return [Emit("registration-timeout", {}), Abort(home), StartTimer(("hunt",), self.options.retry_delay)]

    def _keepalive(self, assoc: AssocId, message: EndpointKeepAlive) -> list[Action]:
        o = self.options
        if message.pool_handle != o.pool_handle or message.pe_id not in (None, o.pe_id):
            return [Emit("keepalive-ignored", {"assoc": assoc, "reason": "not for this PE"})]
        actions: list[Action] = []
        if message.has_flag("home") and assoc != self.home and self.phase not in ("stopping", "stopped"):
            old, self.home = self.home, assoc
            self.others.discard(assoc)
            self.connecting = None  # a hunt under way is no longer wanted
            if self.phase != "registered":  # taken over while hunting: supervise re-registration again
                actions.append(StartTimer(("reregister",), self.options.reregistration_interval))
            self.phase = "registered"
            actions.append(CancelTimer(("registration-timeout",)))  # what the old home did not answer is moot
            actions.append(Emit("home-changed", {"server_id": f"0x{message.server_id:08x}", "assoc": assoc}))
            if old is not None:
                actions.append(Close(old))
        if assoc == self.home:
            self.home_server_id = message.server_id
        if self.home is None:
            return actions
        return [*actions, Send(self.home, EndpointKeepAliveAck(pool_handle=o.pool_handle, pe_id=o.pe_id))]

    @property
    def _handle_text(self) -> str:
        return self.options.pool_handle.decode("utf-8", "backslashreplace")

    def gauges(self) -> dict[str, float]:
        return {"registered": float(self.phase == "registered"), "load": load_fraction(getattr(self.policy, "load", 0)),
                "pool_mates": len(self.pool_mates)}  # fmt: skip
