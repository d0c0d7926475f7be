"""The transport API that the registrar, pool element and pool user see.

RSerPool runs over SCTP (kernel or userland), TCP or MPTCP; the nodes must not care which.
So every backend offers the same two objects:

* `Association`: one connection to one peer (possibly multi-homed).  It carries whole
  messages, each with its SCTP payload protocol identifier and stream, and reports what
  happens to it (`AssociationEvent`: up, lost, restart, a peer address unreachable ...)
  in the same order as the data, like an SCTP socket does with notifications.
* `Listener`: accepts associations on a port.

Backends put items into the association with `_push()` from the event loop thread; the
application takes them with `receive()` (data only; events are kept in `.events`) or with
`next_item()` (data and events interleaved).
"""

from __future__ import annotations

import asyncio
import enum
import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass

#: The largest message any backend accepts by default: an ASAP/ENRP message length is 16
#: bits, but a HANDLE_TABLE_RESPONSE may be split by M flag, so 64 KiB covers every one.
DEFAULT_MAX_MESSAGE = 65535


class Backend(enum.StrEnum):
    KERNEL_SCTP = "kernel-sctp"
    USRSCTP = "usrsctp"
    TCP = "tcp"
    MPTCP = "mptcp"

    @property
    def is_sctp(self) -> bool:
        return self in (Backend.KERNEL_SCTP, Backend.USRSCTP)


class EventKind(enum.StrEnum):
    UP = "up"  #: the association is established
    LOST = "lost"  #: ended without a graceful shutdown (abort, timeout)
    RESTART = "restart"  #: the peer restarted; its state was lost
    SHUTDOWN = "shutdown"  #: ended by a graceful shutdown (either side)
    CANT_START = "cant-start"  #: the association could not be set up
    ADDRESS_UNREACHABLE = "address-unreachable"  #: a peer address stopped answering
    ADDRESS_AVAILABLE = "address-available"  #: a peer address answers (again)
    ADDRESS_CONFIRMED = "address-confirmed"
    ADDRESS_ADDED = "address-added"
    ADDRESS_REMOVED = "address-removed"
    PRIMARY_CHANGED = "primary-changed"
    SEND_FAILED = "send-failed"  #: a message was not delivered
    REMOTE_ERROR = "remote-error"  #: the peer sent an SCTP ERROR chunk

    @property
    def ends_association(self) -> bool:
        return self in (EventKind.LOST, EventKind.SHUTDOWN, EventKind.CANT_START)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One whole message as it arrived."""

    data: bytes
    ppid: int
    stream: int = 0
    unordered: bool = False


@dataclass(frozen=True, slots=True)
class AssociationEvent:
    kind: EventKind
    address: str | None = None  #: the peer address concerned, for address events
    error: int = 0  #: backend-specific error code (SCTP cause, errno), 0 if none
    detail: str = ""


@dataclass(frozen=True)
class TransportOptions:
    """Timers and limits.  SCTP's defaults (RTO.Initial 3 s, RTO.Min 1 s, Path.Max.Retrans 5)
    make failover take tens of seconds; emulation runs usually want them shorter."""

    rto_initial_ms: int = 1000
    rto_min_ms: int = 200
    rto_max_ms: int = 2000
    heartbeat_interval_ms: int = 1000
    path_max_retrans: int = 2
    assoc_max_retrans: int = 8
    init_max_attempts: int = 4
    connect_timeout_s: float = 10.0
    max_message_size: int = DEFAULT_MAX_MESSAGE
    streams: int = 4
    udp_encapsulation_port: int = 0  #: usrsctp only: SCTP over UDP (RFC 6951) when non-zero


class TransportError(Exception):
    """Base of everything a backend raises."""


class ConnectError(TransportError):
    """The association could not be set up (no answer, refused, no route)."""


class LocalPortBusy(ConnectError):
    """`connect(local_port=...)` could not use that port (TCP: a connection to the same peer
    from it is still in TIME_WAIT); the caller may connect from an ephemeral port instead."""


class AssociationClosed(TransportError):
    """The association has ended; `.event` says how (None when closed locally)."""

    def __init__(self, message: str, event: AssociationEvent | None = None) -> None:
        super().__init__(message)
        self.event = event


class MessageTooLarge(TransportError):
    """A message above the association's `max_message_size`."""


class BackendUnavailable(TransportError):
    """The chosen backend does not exist on this machine; the message says why."""


_END = object()  # queued after the event that ends an association


class Association(ABC):
    """One connection to one (possibly multi-homed) peer.  See the module docstring."""

    backend: Backend

    def __init__(self, options: TransportOptions) -> None:
        self.options = options
        self.events: list[AssociationEvent] = []  # every event seen by receive()
        self.closed_by: AssociationEvent | None = None
        self._queue: asyncio.Queue[Delivery | AssociationEvent | object] = asyncio.Queue()
        self._ended = False
        self._up = asyncio.get_running_loop().create_future()

    # --- for the application -------------------------------------------------------------

    @property
    @abstractmethod
    def local_addresses(self) -> tuple[str, ...]: ...

    @property
    @abstractmethod
    def peer_addresses(self) -> tuple[str, ...]: ...

    @property
    def peer_port(self) -> int:
        """The peer's port (0 where a backend cannot tell): a PE's registrator transport."""
        return 0

    @property
    def is_open(self) -> bool:
        return not self._ended

    @abstractmethod
    async def send(self, data: bytes, ppid: int, stream: int = 0, unordered: bool = False) -> None:
        """Queue one whole message; raises MessageTooLarge or AssociationClosed."""

    @abstractmethod
    async def close(self) -> None:
        """Graceful shutdown: what was sent is delivered first.  Idempotent."""

    @abstractmethod
    def abort(self) -> None:
        """Immediate teardown (SCTP ABORT, TCP RST).  Idempotent."""

    async def next_item(self) -> Delivery | AssociationEvent:
        """The next message or event, in arrival order; AssociationClosed after the end."""
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # keep answering every later call
            raise AssociationClosed(f"association ended ({self._end_reason()})", self.closed_by)
        assert isinstance(item, Delivery | AssociationEvent)
        return item

    async def receive(self) -> Delivery:
        """The next message; events on the way are appended to `.events`."""
        while True:
            item = await self.next_item()
            if isinstance(item, Delivery):
                return item
            self.events.append(item)

    # --- for backends --------------------------------------------------------------------

    def _push(self, item: Delivery | AssociationEvent) -> None:
        """Hand a message or an event to the application (event loop thread only)."""
        if self._ended:
            return
        self._queue.put_nowait(item)
        if isinstance(item, AssociationEvent):
            if item.kind is EventKind.UP and not self._up.done():
                self._up.set_result(None)
            if item.kind.ends_association:
                self._end(item)

    def _end(self, event: AssociationEvent | None) -> None:
        if self._ended:
            return
        self._ended = True
        self.closed_by = event
        if not self._up.done():
            reason = event.detail or event.kind.value if event else "closed locally"
            self._up.set_exception(ConnectError(f"association not established: {reason}"))
            self._up.exception()  # mark retrieved: not every caller waits for it
        self._queue.put_nowait(_END)

    def _check_send(self, data: bytes) -> None:
        if self._ended:
            raise AssociationClosed(f"cannot send: association ended ({self._end_reason()})", self.closed_by)
        if len(data) > self.options.max_message_size:
            raise MessageTooLarge(
                f"message of {len(data)} bytes exceeds the limit of {self.options.max_message_size}"
            )

    def _end_reason(self) -> str:
        if self.closed_by is None:
            return "closed locally"
        return f"{self.closed_by.kind.value}{': ' + self.closed_by.detail if self.closed_by.detail else ''}"

    async def wait_up(self, timeout: float) -> None:
        """Until the UP event; ConnectError if it ends first or the timeout passes."""
        try:
            await asyncio.wait_for(asyncio.shield(self._up), timeout)
        except TimeoutError:
            raise ConnectError(f"no association within {timeout:g} s (peer silent or dead)") from None


class Listener(ABC):
    """Accepts associations on one port of one or more local addresses.

    Closing a listener aborts the associations it accepted, on every backend: the userland
    stack serves them all on the listener's socket and cannot do otherwise, and a uniform
    rule lets a node's code not care.  A node that wants an association to outlive the
    listener ends the listener last."""

    backend: Backend

    def __init__(self) -> None:
        self._incoming: asyncio.Queue[Association | None] = asyncio.Queue()
        self._accepted: weakref.WeakSet[Association] = weakref.WeakSet()
        self._closed = False

    @property
    @abstractmethod
    def port(self) -> int: ...

    async def accept(self) -> Association:
        item = await self._incoming.get()
        if item is None:
            self._incoming.put_nowait(None)
            raise TransportError("listener closed")
        self._accepted.add(item)
        return item

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        while not self._incoming.empty():  # arrived, never accepted
            waiting = self._incoming.get_nowait()
            if waiting is not None:
                waiting.abort()
        for assoc in list(self._accepted):
            assoc.abort()
        self._incoming.put_nowait(None)
