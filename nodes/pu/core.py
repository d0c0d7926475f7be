"""The pool user's ASAP core (RFC 5352), without I/O: handle resolution and failure reports.

It keeps one association to a registrar (static or heard announcing; the next one when it
goes), sends HANDLE_RESOLUTION with the Handle Resolution option, matches responses to
requests in order (ASAP has no transaction ids; a registrar answers in order on one
association), caches what it learnt for `cache_lifetime` seconds, and sends
ENDPOINT_UNREACHABLE for a PE the application could not reach, dropping it from the cache.
Requests made while no registrar is connected wait for one; each has a timeout.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Hashable
from dataclasses import dataclass, replace
from typing import Any

from nodes.registrars import RegistrarAddress, RegistrarTable
from nodes.sansio import Action, AssocId, CancelTimer, Close, Connect, Emit, Result, Send, StartTimer
from nodes.wire import (
    AsapError,
    DecodeError,
    EndpointUnreachable,
    HandleResolution,
    HandleResolutionResponse,
    Policy,
    PoolElement,
    Protocol,
    decode,
)


@dataclass(frozen=True)
class PoolUserOptions:
    registrars: tuple[RegistrarAddress, ...] = ()
    sctp: bool = True
    cache_lifetime: float = 0.0  #: s; 0: every resolution asks the registrar
    request_timeout: float = 3.0
    retry_delay: float = 0.5


@dataclass(frozen=True)
class Resolution:
    pool_handle: bytes
    pool_elements: tuple[PoolElement, ...] = ()
    policy: Policy | None = None
    error: str | None = None
    cached: bool = False


@dataclass
class _Pending:
    token: Hashable
    handle: bytes
    items: int | None
    sent: bool = False


class PoolUserCore:
    def __init__(self, options: PoolUserOptions) -> None:
        self.options = options
        self.table = RegistrarTable(options.registrars, sctp=options.sctp)
        self.registrar: AssocId | None = None
        self.connecting: Hashable | None = None
        self.attempt = 0
        self.pending: deque[_Pending] = deque()
        self.reports: list[EndpointUnreachable] = []  # waiting for a registrar
        self.cache: dict[bytes, tuple[float, Resolution]] = {}
        #: answers still due for requests that timed out, per handle: dropped when they come,
        #: or every later answer would go to the request before it
        self.orphans: Counter[bytes] = Counter()

    def start(self, now: float) -> list[Action]:
        return self._hunt(now)

    # --- the application's requests ------------------------------------------------------

    def resolve(self, token: Hashable, handle: bytes, items: int | None, now: float) -> list[Action]:
        cached = self.cache.get(handle)
        if cached and cached[0] > now and cached[1].pool_elements:
            return [Result(token, replace(cached[1], cached=True))]
        request = _Pending(token, handle, items)
        self.pending.append(request)
        actions: list[Action] = [StartTimer(("resolution-timeout", token), self.options.request_timeout)]
        if self.registrar is not None:
            actions += self._send(request)
        elif self.connecting is None:
            actions += self._hunt(now)
        return actions

    def report_unreachable(self, handle: bytes, pe_id: int, now: float) -> list[Action]:
        if handle in self.cache:
            expiry, resolution = self.cache[handle]
            left = tuple(p for p in resolution.pool_elements if p.identifier != pe_id)
            self.cache[handle] = (expiry, replace(resolution, pool_elements=left))
        report = EndpointUnreachable(pool_handle=handle, pe_id=pe_id)
        emit = Emit("reported-unreachable", {"handle": handle.decode("utf-8", "replace"), "pe_id": f"0x{pe_id:08x}"})
        if self.registrar is None:
            self.reports.append(report)
            return [emit]
        return [Send(self.registrar, report), emit]

    # --- network inputs ------------------------------------------------------------------

    def association_up(self, assoc: AssocId, now: float, **info: Any) -> list[Action]:
        if info.get("key") != self.connecting or self.registrar is not None:
            return [Close(assoc)] if info.get("key") is not None else []  # a connect no longer wanted
        self.registrar, self.connecting = assoc, None
        actions: list[Action] = [Emit("registrar-connected", {"peer": list(info.get("peer_addresses", ()))})]
        for report in self.reports:
            actions.append(Send(assoc, report))
        self.reports.clear()
        for request in self.pending:
            actions += self._send(request)
        return actions

    def connect_failed(self, key: Hashable, reason: str, now: float) -> list[Action]:
        if key != self.connecting:
            return []
        self.connecting = None
        return [Emit("registrar-unreachable", {"reason": reason}), StartTimer(("hunt",), self.options.retry_delay)]

    def association_down(self, assoc: AssocId, now: float) -> list[Action]:
        if assoc != self.registrar:
            return []
        self.registrar = None
        self.orphans.clear()  # their answers died with the association
        for request in self.pending:
            request.sent = False  # asked of a registrar that is gone: ask the next one
        return [Emit("registrar-lost", {}), *self._hunt(now)]

    def datagram(self, data: bytes, source: str, port: int, interface: str, now: float) -> list[Action]:
        try:
            self.table.heard(data, source, port, now)
        except DecodeError as exc:
            return [Emit("bad-announce", {"source": source, "error": str(exc)})]
        if self.registrar is None and self.connecting is None and self.pending:
            return self._hunt(now)
        return []

    def receive(self, assoc: AssocId, data: bytes, ppid: int, now: float) -> list[Action]:
        try:
            message = decode(data, Protocol.ASAP)
        except DecodeError as exc:
            return [Emit("malformed-message", {"assoc": assoc, **exc.to_dict()})]
        if isinstance(message, HandleResolutionResponse):
            return self._response(message, now)
        if isinstance(message, AsapError):
            return [Emit("peer-error", {"causes": [c.name for c in message.error]})]
        return [Emit("ignored", {"message": type(message).__name__})]

    def timer(self, key: Hashable, now: float) -> list[Action]:
        match key:
            case ("hunt",):
                return self._hunt(now) if self.registrar is None and self.connecting is None else []
            case ("resolution-timeout", token):
                for request in list(self.pending):
                    if request.token == token:
                        self.pending.remove(request)
                        if request.sent:
                            self.orphans[request.handle] += 1
                        return [Result(token, Resolution(request.handle, error="timeout: no answer from a registrar"))]
        return []

    # --- steps ---------------------------------------------------------------------------

    def _send(self, request: _Pending) -> list[Action]:
        if request.sent or self.registrar is None:
            return []
        request.sent = True
        return [Send(self.registrar, HandleResolution(pool_handle=request.handle, items=request.items))]

    def _response(self, message: HandleResolutionResponse, now: float) -> list[Action]:
        if self.orphans[message.pool_handle] > 0:  # the late answer to a request that timed out
            self.orphans[message.pool_handle] -= 1
            return [Emit("late-response", {"handle": message.pool_handle.decode("utf-8", "replace")})]
        request = next((r for r in self.pending if r.sent and r.handle == message.pool_handle), None)
        if request is None:
            return [Emit("unexpected-response", {"handle": message.pool_handle.decode("utf-8", "replace")})]
        self.pending.remove(request)
        error = ", ".join(c.name for c in message.error) if message.error else None
        resolution = Resolution(message.pool_handle, message.pool_elements, message.policy, error)
        if self.options.cache_lifetime > 0 and not error:
            self.cache[message.pool_handle] = (now + self.options.cache_lifetime, resolution)
        return [CancelTimer(("resolution-timeout", request.token)), Result(request.token, resolution)]

    def _hunt(self, now: float) -> list[Action]:
        if self.connecting is not None or self.registrar is not None:
            return []
        entry = self.table.next(now)
        if entry is None:
            return [StartTimer(("hunt",), self.options.retry_delay)]
        self.attempt += 1
        self.connecting = ("registrar", self.attempt)
        return [Connect(self.connecting, entry.addresses, entry.port)]

    def gauges(self) -> dict[str, float]:
        return {"registrar_connected": float(self.registrar is not None), "pending_resolutions": len(self.pending)}

