"""The services a pool element runs for pool users (sans-I/O, one session per association).

* `echo`: answers ECHO_REQUEST with its payload; over SCTP, data of any other PPID (a
  foreign pool user's, such as RSPLIB's rspterminal) comes back as it came.
* `discard`: counts and drops.
* `calc`: burns CPU for each CALC_REQUEST (`work` rounds of SHA-256 over a 1 KiB block, like
  RSPLIB's CalcApp a job of configurable size) and answers with the digest; its real CPU use
  is what the PE reports as load under the least-used policies.
* `forwarder`: a service function on the data plane.  Towards pool users it is the echo
  service (so a PU can still probe it and fail over); the work is in nodes/pe/forwarder.py,
  which nodes/pe/server.py starts beside this core: raw MPLS frames on the node's
  interfaces, SI decremented, probes stamped with the PE's name, counted per SPI.

Session state (`served`, the requests served in this session) goes back to the pool user in
a sealed ASAP_COOKIE after each reply (every `cookie_every`); a COOKIE_ECHO at the start of
a session restores it, and a cookie that fails authentication gets an ASAP_ERROR "rejected
due to security considerations" while the session goes on with fresh state.  When the PE
knows its pool mates, a new session first receives a BUSINESS_CARD naming them as failover
candidates.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from nodes import app
from nodes.cookie import CookieError, CookieSealer
from nodes.runtime import APP_PPID
from nodes.sansio import Action, AssocId, Emit, Send, SendData
from nodes.wire import (
    AsapError,
    BusinessCard,
    CauseCode,
    Cookie,
    CookieEcho,
    DecodeError,
    ErrorCause,
    Policy,
    PoolElement,
    Protocol,
    decode,
)

SERVICES = ("echo", "discard", "calc", "forwarder")
MAX_WORK = 100_000  #: calc rounds per request, about 0.2 s of CPU
COOKIE_MAX_AGE = 3600.0  #: s a cookie stays valid
_BLOCK = bytes(1024)


@dataclass
class Session:
    served: int = 0
    restored_from: str | None = None
    card: frozenset[int] = frozenset()  #: the PE ids of the last business card sent
    active: bool = False  #: it has had a request: too late for a COOKIE_ECHO


class ServiceCore:
    def __init__(
        self,
        service: str,
        pe_id: int,
        sealer: CookieSealer | None,
        *,
        cookie_every: int = 1,
        card: Callable[[], tuple[bytes, Policy, tuple[PoolElement, ...]] | None] = lambda: None,
        on_session: Callable[[], None] = lambda: None,
        cookie_max_age: float = COOKIE_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r} (choose from {', '.join(SERVICES)})")
        self.service, self.pe_id, self.sealer = service, pe_id, sealer
        self.cookie_every = cookie_every
        self.card = card
        self.on_session = on_session  # a new session: the PE may refresh its pool mates
        # Cookies carry the wall-clock time they were sealed (PEs on other hosts check them),
        # so an old cookie cannot roll a session back for ever.
        self.cookie_max_age, self.clock = cookie_max_age, clock
        self.sessions: dict[AssocId, Session] = {}
        self.requests = 0

    def association_up(self, assoc: AssocId, now: float, **info: Any) -> list[Action]:
        self.sessions[assoc] = Session()
        self.on_session()
        actions: list[Action] = [Emit("session-up", {"assoc": assoc, "peer": list(info.get("peer_addresses", ()))})]
        return actions + self._business_card(assoc, self.sessions[assoc])

    def _business_card(self, assoc: AssocId, session: Session) -> list[Action]:
        """A BUSINESS_CARD when the pool mates known differ from the last one sent."""
        card = self.card()
        if card is None or not card[2]:
            return []
        handle, policy, mates = card
        ids = frozenset(p.identifier for p in mates)
        if ids == session.card:
            return []
        session.card = ids
        return [Send(assoc, BusinessCard(pool_handle=handle, pool_elements=mates, policy=policy))]

    def association_down(self, assoc: AssocId, now: float) -> list[Action]:
        session = self.sessions.pop(assoc, None)
        return [Emit("session-down", {"assoc": assoc, "served": session.served if session else 0})]

    def connect_failed(self, key: Hashable, reason: str, now: float) -> list[Action]:
        return []

    def timer(self, key: Hashable, now: float) -> list[Action]:
        return []

    def receive(self, assoc: AssocId, data: bytes, ppid: int, now: float) -> list[Action]:
        session = self.sessions.setdefault(assoc, Session())
        if ppid not in (Protocol.ASAP.ppid, APP_PPID) and self.service in ("echo", "forwarder"):
            # Another program's data over SCTP (RSPLIB's rspterminal sends plain text): an
            # echo service echoes it as it came, PPID included.
            session.served += 1
            session.active = True
            return [SendData(assoc, data, ppid)] if data else []
        if not app.is_app(data):
            return self._control(assoc, session, data)
        try:
            request = app.decode(data)
        except app.AppError as exc:
            return [Emit("bad-request", {"assoc": assoc, "error": str(exc)})]
        self.requests += 1
        session.served += 1
        session.active = True
        reply = self._serve(request, session)
        if reply is None:
            return []
        actions: list[Action] = [SendData(assoc, reply.encode())]
        if self.sealer is not None and self.cookie_every > 0 and session.served % self.cookie_every == 0:
            state = json.dumps({"served": session.served, "pe": self.pe_id, "issued": self.clock()}).encode()
            actions.append(Send(assoc, Cookie(cookie=self.sealer.seal(state))))
        return actions + self._business_card(assoc, session)

    def _serve(self, request: app.AppMessage, session: Session) -> app.AppMessage | None:
        if self.service == "discard":
            return None
        if request.type is app.AppType.CALC_REQUEST:
            digest = _burn(request.value)
            return app.AppMessage(app.AppType.CALC_REPLY, request.seq, session.served, digest)
        if request.type is app.AppType.ECHO_REQUEST:
            return app.AppMessage(app.AppType.ECHO_REPLY, request.seq, session.served, request.payload)
        return None

    def _control(self, assoc: AssocId, session: Session, data: bytes) -> list[Action]:
        try:
            message = decode(data, Protocol.ASAP)
        except DecodeError as exc:
            return [Emit("malformed-message", {"assoc": assoc, **exc.to_dict()})]
        if not isinstance(message, CookieEcho):
            return [Emit("ignored", {"assoc": assoc, "message": type(message).__name__})]
        if self.sealer is None:
            return [Emit("cookie-ignored", {"assoc": assoc, "reason": "no pool secret configured"})]
        if session.active:
            return [Emit("cookie-ignored", {"assoc": assoc, "reason": "not the session's first message"})]
        try:
            state = json.loads(self.sealer.open(message.cookie))
            served, origin, age = int(state["served"]), state.get("pe"), self.clock() - float(state["issued"])
            if not -60.0 <= age <= self.cookie_max_age:  # a minute of clock skew between hosts
                raise CookieError(f"cookie sealed {age:.0f} s ago, beyond the {self.cookie_max_age:g} s allowed")
        except (CookieError, ValueError, KeyError, TypeError) as exc:
            error = AsapError(error=(ErrorCause(CauseCode.REJECTED_SECURITY),))
            return [Send(assoc, error), Emit("cookie-rejected", {"assoc": assoc, "error": str(exc)})]
        session.served, session.restored_from = served, f"0x{origin:08x}" if isinstance(origin, int) else None
        return [Emit("cookie-restored", {"assoc": assoc, "served": served, "from": session.restored_from})]

    def gauges(self) -> dict[str, float]:
        return {"sessions": len(self.sessions), "requests": self.requests}


def _burn(work: int) -> bytes:
    """`work` rounds of SHA-256 over 1 KiB: real CPU time, about 2 us a round here.  At most
    MAX_WORK: one request must not hold the event loop (and the keep-alives) for seconds."""
    digest = b""
    for _ in range(min(work, MAX_WORK)):
        digest = hashlib.sha256(_BLOCK + digest).digest()
    return digest[:8] or bytes(8)
