"""The vocabulary of the protocol cores: what they are told, and what they ask for.

The registrar, pool element and pool user are written as sans-I/O cores, in the manner of
h11 and aiortc's SCTP: a core never touches a socket, a clock or a timer.  The asyncio layer
(`nodes.runtime`) calls its methods when something happens (an association comes up or
goes, a message arrives, a timer fires), passing the current time, and carries out the
actions the core returns, in order.  So every protocol rule can be unit-tested by feeding
messages and reading actions, without a network, and the same core runs over kernel SCTP,
usrsctp, TCP or MPTCP.

Associations are named by small integers that the runtime hands out (`AssocId`); timers by
any hashable key the core chooses, so starting a timer that runs already restarts it.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from nodes.wire import Message

AssocId = int


@dataclass(frozen=True, slots=True)
class Send:
    """Send `message` on association `assoc` (PPID from the message's protocol)."""

    assoc: AssocId
    message: Message


@dataclass(frozen=True, slots=True)
class SendData:
    """Send application bytes (not ASAP/ENRP) on `assoc`, with the application PPID unless
    another is given (an echo answers with the PPID it was sent)."""

    assoc: AssocId
    data: bytes
    ppid: int | None = None


@dataclass(frozen=True, slots=True)
class Abort:
    """Tear association `assoc` down at once (SCTP ABORT, TCP RST)."""

    assoc: AssocId


@dataclass(frozen=True, slots=True)
class Close:
    """Shut association `assoc` down gracefully, after what was sent is delivered."""

    assoc: AssocId


@dataclass(frozen=True, slots=True)
class Connect:
    """Open an association to a (multi-homed) peer; the runtime answers with
    `association_up(assoc, key=...)` or `connect_failed(key, reason)`."""

    key: Hashable
    addresses: tuple[str, ...]
    port: int


@dataclass(frozen=True, slots=True)
class StartTimer:
    """(Re)start timer `key` to fire `delay` seconds from now."""

    key: Hashable
    delay: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    key: Hashable


@dataclass(frozen=True, slots=True)
class Announce:
    """Send `message` to the protocol's multicast group, out of every chosen interface."""

    message: Message


@dataclass(frozen=True, slots=True)
class Emit:
    """A structured event for the log (one JSON line) and, for the counters, its name."""

    event: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Result:
    """The answer to a request of the local application (`token` names the request)."""

    token: Hashable
    value: Any


Action = Result | Send | SendData | Abort | Close | Connect | StartTimer | CancelTimer | Announce | Emit
