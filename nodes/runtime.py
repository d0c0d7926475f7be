"""The thin asyncio layer under a protocol core: associations, timers, multicast, logs.

A `Driver` owns one core (see `nodes.sansio`).  It turns what happens on the network into
calls of the core's methods and carries out the actions that come back:

    core.association_up(assoc, now, peer_addresses=..., key=...)   an association is up
    core.association_down(assoc, now)                             it has ended
    core.connect_failed(key, reason, now)                         a Connect did not succeed
    core.receive(assoc, data, ppid, now)                          a whole message arrived
    core.timer(key, now)                                          a timer fired
    core.datagram(data, source, port, interface, now)             a multicast datagram

Every call is guarded: an exception inside the core is logged as `internal-error` with the
input that caused it, and the node goes on, so that a peer's message can never kill it.
Messages to one association leave in the order the core asked for (one writer per
association); over TCP, which carries one PPID per connection, everything goes with it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol as TypingProtocol, TextIO

from nodes import transport
from nodes.sansio import (
    Abort,
    Action,
    Announce,
    AssocId,
    CancelTimer,
    Close,
    Connect,
    Emit,
    Result,
    Send,
    SendData,
    StartTimer,
)
from nodes.transport import Association, AssociationClosed, AssociationEvent, TransportError, TransportOptions
from nodes.transport.base import LocalPortBusy
from nodes.transport.multicast import MulticastChannel, MulticastConfig
from nodes.wire import Protocol

#: The PPID of application data between pool users and pool elements (not IANA-assigned:
#: "VNFP"); ASAP control messages on the same association keep PPID 11.
APP_PPID = 0x564E4650
MAX_OUTBOX = 10_000  #: messages queued for one association before the peer counts as not reading
CLOSE, ABORT = -1, -2  #: outbox markers: what to do once everything queued before has been sent


def ppid_for(assoc: Association, ppid: int) -> int:
    """The PPID to send with: over TCP every message goes with the connection's one PPID
    (the receiver tells ASAP from application data by the type byte)."""
    return ppid if assoc.backend.is_sctp else assoc.ppid  # type: ignore[attr-defined,no-any-return]


class Core(TypingProtocol):
    """What every core offers the driver (each may add inputs of its own: `datagram`,
    `connect_failed`, `set_load`, ...; `Driver.call` reaches them by name)."""

    def association_up(self, assoc: AssocId, now: float, **info: Any) -> list[Action]: ...
    def association_down(self, assoc: AssocId, now: float) -> list[Action]: ...
    def receive(self, assoc: AssocId, data: bytes, ppid: int, now: float) -> list[Action]: ...
    def timer(self, key: Hashable, now: float) -> list[Action]: ...


class EventLog:
    """One JSON object per line: {"t": unix time, "node": name, "event": ..., fields}."""

    def __init__(self, node: str, out: TextIO = sys.stdout) -> None:
        self.node, self.out = node, out
        self.counts: Counter[str] = Counter()

    def __call__(self, event: str, **fields: Any) -> None:
        self.counts[event] += 1
        record = {"t": round(time.time(), 6), "node": self.node, "event": event, **fields}
        print(json.dumps(record, default=str), file=self.out, flush=True)


class Driver:
    """Runs one sans-I/O core on real associations, timers and multicast sockets.

    `connect_port` (0: ephemeral ports) is the local port every association the core asks
    for (`Connect`) is opened from, also while this process listens on it.  A pool element's
    control driver connects to registrars from the port it listens on for ASAP: a registrar
    taking the PE over connects to the PE's registrator transport, the peer address and port
    of the association the PE registered over, and that must reach the PE."""

    def __init__(
        self,
        core: Core,
        log: EventLog,
        *,
        backend: str = "auto",
        options: TransportOptions | None = None,
        local: Sequence[str] = (),
        connect_port: int = 0,
    ) -> None:
        self.core, self.log = core, log
        self.backend = backend
        self.options = options or TransportOptions()
        self.local = tuple(local)
        self.connect_port = connect_port
        self.loop = asyncio.get_running_loop()
        self.assocs: dict[AssocId, Association] = {}
        self.outboxes: dict[AssocId, asyncio.Queue[tuple[bytes, int] | None]] = {}
        self.timers: dict[Hashable, asyncio.TimerHandle] = {}
        self.listeners: list[transport.Listener] = []
        self.channels: list[MulticastChannel] = []
        self.channel_protocols: dict[MulticastChannel, Protocol | None] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.ids = itertools.count(1)
        self.on_result: Callable[[Result], None] = lambda result: None
        self.closing = False

    # --- calling the core ----------------------------------------------------------------

    def call(self, method: str, *args: Any, **kwargs: Any) -> None:
        """`core.method(*args, **kwargs)` (callers pass the time), guarded; then its actions."""
        if self.closing:
            return  # a core that is being shut down gets no more inputs (no new hunting)
        try:
            actions = getattr(self.core, method)(*args, **kwargs)
        except Exception as exc:  # the daemon survives its own bugs too, loudly
            self.log("internal-error", input=method, error=repr(exc), trace=traceback.format_exc(limit=6))
            return
        self.execute(actions)

    def now(self) -> float:
        return self.loop.time()

    def execute(self, actions: Sequence[Action]) -> None:
        """Carry out each action; one that fails (a message too large to encode, say) is
        logged and skipped, and the others still happen."""
        for action in actions:
            if self.closing and not isinstance(action, Emit):
                continue
            try:
                self._do(action)
            except Exception as exc:
                self.log("internal-error", input=type(action).__name__, error=repr(exc),
                         trace=traceback.format_exc(limit=6))  # fmt: skip

    def _do(self, action: Action) -> None:
        match action:
            case Send(assoc, message):
                self._enqueue(assoc, message.encode(), message.PROTOCOL.ppid)
            case SendData(assoc, data, ppid):
                self._enqueue(assoc, data, APP_PPID if ppid is None else ppid)
            case StartTimer(key, delay):
                self._start_timer(key, delay)
            case CancelTimer(key):
                handle = self.timers.pop(key, None)
                if handle:
                    handle.cancel()
            case Abort(assoc):
                self._enqueue(assoc, b"", ABORT)  # after what was queued before it
            case Close(assoc):
                self._enqueue(assoc, b"", CLOSE)
            case Connect():
                self._spawn(self._connect(action))
            case Announce(message):
                self._spawn(self._announce(message.encode(), message.PROTOCOL))
            case Result():
                self.on_result(action)
            case Emit(event, fields):
                self.log(event, **fields)

    # --- timers --------------------------------------------------------------------------

    def _start_timer(self, key: Hashable, delay: float) -> None:
        old = self.timers.pop(key, None)
        if old:
            old.cancel()

        def fire() -> None:
            self.timers.pop(key, None)
            self.call("timer", key, self.now())

        self.timers[key] = self.loop.call_later(max(0.0, delay), fire)

    # --- associations --------------------------------------------------------------------

    async def listen(self, addresses: Sequence[str], port: int, **info: Any) -> transport.Listener:
        """Accept associations on `port`; each is reported to the core with `info`."""
        listener = await transport.listen(addresses, port, backend=self.backend, options=self.options)
        self.listeners.append(listener)
        self._spawn(self._accept(listener, info))
        return listener

    async def _accept(self, listener: transport.Listener, info: dict[str, Any]) -> None:
        while True:
            try:
                assoc = await listener.accept()
            except TransportError:
                return
            self._adopt(assoc, None, info)

    async def _connect(self, request: Connect) -> None:
        try:
            try:
                assoc = await self._open(request, self.connect_port)
            except LocalPortBusy as busy:  # TCP TIME_WAIT: better an association than none
                self.log("connect-port-busy", port=self.connect_port, detail=str(busy),
                         consequence="connected from an ephemeral port: a registrar taking over cannot reach it")  # fmt: skip
                assoc = await self._open(request, 0)
        except Exception as exc:  # an unparsable address too: the core must hear of every failure
            self.call("connect_failed", request.key, str(exc) or type(exc).__name__, self.now())
            return
        if self.closing:
            assoc.abort()
            return
        self._adopt(assoc, request.key, {})

    async def _open(self, request: Connect, local_port: int) -> Association:
        return await transport.connect(request.addresses, request.port, local=self.local, backend=self.backend,
                                       options=self.options, local_port=local_port)  # fmt: skip

    def _adopt(self, assoc: Association, key: Hashable | None, info: dict[str, Any]) -> None:
        assoc_id = next(self.ids)
        self.assocs[assoc_id] = assoc
        outbox: asyncio.Queue[tuple[bytes, int] | None] = asyncio.Queue()
        self.outboxes[assoc_id] = outbox
        self._spawn(self._write(assoc_id, assoc, outbox))
        extra = {"key": key} if key is not None else {}
        self.call(
            "association_up", assoc_id, self.now(),
            peer_addresses=tuple(assoc.peer_addresses), peer_port=assoc.peer_port, sctp=assoc.backend.is_sctp,
            **extra, **info,
        )  # fmt: skip
        self._spawn(self._read(assoc_id, assoc))

    async def _read(self, assoc_id: AssocId, assoc: Association) -> None:
        try:
            while True:
                item = await assoc.next_item()
                if isinstance(item, AssociationEvent):
                    if not item.kind.ends_association and item.kind.value.startswith("address"):
                        self.log("path", assoc=assoc_id, kind=item.kind.value, address=item.address)
                    continue
                self.call("receive", assoc_id, item.data, item.ppid, self.now())
        except AssociationClosed:
            pass
        except Exception as exc:  # never leave a peer connected and unread
            self.log("internal-error", input="read", assoc=assoc_id, error=repr(exc))
            assoc.abort()
        finally:
            end = assoc.closed_by
            self.log("association-ended", assoc=assoc_id, how=end.kind.value if end else "closed locally",
                     detail=end.detail if end else "", error=end.error if end else 0)  # fmt: skip
            self._forget(assoc_id)
            self.call("association_down", assoc_id, self.now())

    def _forget(self, assoc_id: AssocId) -> None:
        self.assocs.pop(assoc_id, None)
        outbox = self.outboxes.pop(assoc_id, None)
        if outbox is not None:
            outbox.put_nowait(None)

    def _enqueue(self, assoc_id: AssocId, data: bytes, ppid: int) -> None:
        outbox = self.outboxes.get(assoc_id)
        if outbox is None:
            if ppid >= 0:
                self.log("send-dropped", assoc=assoc_id, reason="association gone", bytes=len(data))
            return
        if outbox.qsize() >= MAX_OUTBOX and ppid >= 0:
            # A peer that asks and never reads would grow this without bound: cut it off.
            self.log("peer-not-reading", assoc=assoc_id, queued=outbox.qsize())
            if (assoc := self.assocs.get(assoc_id)) is not None:
                assoc.abort()  # at once: the writer is stuck behind what the peer does not read
            return
        outbox.put_nowait((data, ppid))

    async def _write(self, assoc_id: AssocId, assoc: Association, outbox: asyncio.Queue) -> None:
        while (item := await outbox.get()) is not None:
            data, ppid = item
            try:
                if ppid == CLOSE:
                    await assoc.close()
                    return
                if ppid == ABORT:
                    assoc.abort()
                    return
                await assoc.send(data, ppid_for(assoc, ppid))
            except (TransportError, OSError) as exc:
                self.log("send-failed", assoc=assoc_id, error=str(exc), bytes=len(data))
                if not assoc.is_open:
                    return

    # --- multicast -----------------------------------------------------------------------

    async def join(self, config: MulticastConfig, *, receive: bool = True, protocol: Protocol | None = None) -> MulticastChannel:
        """Join a group.  `protocol`: only `Announce`s of that protocol's messages go out of it
        (a registrar sends SERVER_ANNOUNCE and ENRP_PRESENCE to different groups); None: all."""
        channel = await MulticastChannel.open(config)
        self.channels.append(channel)
        self.channel_protocols[channel] = protocol
        if receive:
            self._spawn(self._datagrams(channel))
        return channel

    async def _datagrams(self, channel: MulticastChannel) -> None:
        while True:
            d = await channel.receive()
            self.call("datagram", d.data, d.source, d.source_port, d.interface, self.now())

    async def _announce(self, data: bytes, protocol: Protocol) -> None:
        for channel in self.channels:
            if self.channel_protocols.get(channel) not in (None, protocol):
                continue
            try:
                await channel.send(data)
            except OSError as exc:
                self.log("announce-failed", group=channel.config.group, error=str(exc))

    # --- lifetime ------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.log("internal-error", input="task", error=repr(exc))

    async def flush(self, timeout: float = 2.0) -> None:
        """Wait (bounded) until every outbox is empty: the last messages are being sent."""
        deadline = self.loop.time() + timeout
        while any(not q.empty() for q in self.outboxes.values()) and self.loop.time() < deadline:
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self.closing = True
        for handle in self.timers.values():
            handle.cancel()
        self.timers.clear()
        for assoc in list(self.assocs.values()):
            assoc.abort()
        for listener in self.listeners:
            await listener.close()
        for channel in self.channels:
            channel.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
