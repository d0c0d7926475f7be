"""Where a PE or PU finds registrars: its static list, and SERVER_ANNOUNCEs heard (pure).

As with RSPLIB, an announce names the registrar's ASAP endpoint by an SCTP (or TCP)
transport parameter when it carries one, else by the UDP source address and port; an entry
learnt from announces expires 5 s after the last one.  `next()` rotates over what is known, so
that a failed registrar is not tried again at once while others exist; static registrars come
first, since what the configuration says is trusted over what anybody may announce.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodes.wire import DecodeError, Protocol, SctpTransport, ServerAnnounce, TcpTransport, decode

ANNOUNCE_TIMEOUT = 5.0  # RSPLIB's ASAP_DEFAULT_REGISTRAR_ANNOUNCE_TIMEOUT
MAX_ANNOUNCED = 64  #: registrars remembered from announces; an announcer with random ids can't fill memory


@dataclass(frozen=True)
class RegistrarAddress:
    addresses: tuple[str, ...]
    port: int
    server_id: int = 0  #: 0 for a static entry never heard of

    def __str__(self) -> str:
        return f"{','.join(self.addresses)}:{self.port}"


class RegistrarTable:
    def __init__(self, static: tuple[RegistrarAddress, ...] = (), sctp: bool = True,
                 announce_timeout: float = ANNOUNCE_TIMEOUT) -> None:  # fmt: skip
        self.static = static
        self.sctp = sctp
        self.announce_timeout = announce_timeout
        self.announced: dict[int, tuple[RegistrarAddress, float]] = {}  # server id -> (entry, expiry)
        self.turn = 0

    def heard(self, data: bytes, source: str, port: int, now: float) -> RegistrarAddress | None:
        """Learn from one datagram of the announce group; the entry if it is new, else None.
        Raises DecodeError for what is not a SERVER_ANNOUNCE."""
        message = decode(data, Protocol.ASAP)
        if not isinstance(message, ServerAnnounce):
            raise DecodeError("message type", 0, f"{type(message).__name__} on the announce group")
        entry = self._entry(message, source, port)
        self._expire(now)
        new = message.server_id not in self.announced or self.announced[message.server_id][0] != entry
        if new and message.server_id not in self.announced and len(self.announced) >= MAX_ANNOUNCED:
            return None  # full: the ones heard first stay until they go quiet
        self.announced[message.server_id] = (entry, now + self.announce_timeout)
        return entry if new else None

    def _entry(self, message: ServerAnnounce, source: str, port: int) -> RegistrarAddress:
        wanted = SctpTransport if self.sctp else TcpTransport
        matching = [t for t in message.transports if isinstance(t, wanted)]
        if matching:
            addresses = tuple(dict.fromkeys(str(a) for t in matching for a in t.addresses))
            return RegistrarAddress(addresses, matching[0].port, message.server_id)
        return RegistrarAddress((source,), port, message.server_id)

    def _expire(self, now: float) -> None:
        self.announced = {k: v for k, v in self.announced.items() if v[1] > now}

    def candidates(self, now: float) -> list[RegistrarAddress]:
        self._expire(now)
        known = {(s.addresses, s.port) for s in self.static}
        heard = [entry for entry, _ in self.announced.values() if (entry.addresses, entry.port) not in known]
        return [*self.static, *heard]

    def next(self, now: float) -> RegistrarAddress | None:
        options = self.candidates(now)
        if not options:
            return None
        self.turn += 1
        return options[(self.turn - 1) % len(options)]
