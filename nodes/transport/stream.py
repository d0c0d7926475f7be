"""TCP and MPTCP mappings of RSerPool: messages framed on a byte stream by their own length.

Every ASAP/ENRP message starts with type (1 byte), flags (1) and length (2, network order,
the whole message), so the length field frames messages on a stream; nothing is added on the
wire.  A byte stream has no PPID, so ASAP and ENRP are told apart by port (3863, 9901) or by
the `ppid` the caller gives; it has no streams and no unordered delivery either, so `send()`
ignores both.  MPTCP is the same socket with IPPROTO_MPTCP: the kernel's path manager opens
subflows over the host's other interfaces (see `mptcp_endpoint_commands`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
from collections.abc import Sequence

from nodes.wire.constants import Protocol

from . import availability
from .base import (
    Association,
    AssociationEvent,
    Backend,
    BackendUnavailable,
    ConnectError,
    LocalPortBusy,
    Delivery,
    EventKind,
    Listener,
    TransportError,
    TransportOptions,
)

HEADER = struct.Struct("!BBH")
CLOSE_TIMEOUT_S = 5.0  #: how long close() waits for buffered data to reach the kernel


class FramingError(TransportError):
    """The byte stream does not hold ASAP/ENRP messages (a length below 4 or above the limit)."""


class Framer:
    """Cuts a byte stream into whole messages by their length field; pure, no I/O."""

    def __init__(self, max_message_size: int) -> None:
        self.max = max_message_size
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        messages = []
        while len(self.buffer) >= HEADER.size:
            _, _, length = HEADER.unpack_from(self.buffer)
            if length < HEADER.size or length > self.max:
                raise FramingError(
                    f"message length {length} at the head of the stream is not between 4 and {self.max}"
                )
            if len(self.buffer) < length:
                break
            messages.append(bytes(self.buffer[:length]))
            del self.buffer[:length]
        return messages


def ppid_for_port(port: int, ppid: int | None) -> int:
    """The PPID a connection's messages get: the caller's, else by well-known port, else ASAP's."""
    if ppid is not None:
        return ppid
    return Protocol.ENRP.ppid if port == Protocol.ENRP.port else Protocol.ASAP.ppid


class StreamAssociation(Association, asyncio.Protocol):
    """One TCP or MPTCP connection carrying framed ASAP/ENRP messages."""

    def __init__(self, backend: Backend, options: TransportOptions, ppid: int) -> None:
        Association.__init__(self, options)
        self.backend = backend
        self.ppid = ppid
        self.framer = Framer(options.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.on_up: asyncio.Queue[Association | None] | None = None  # a listener's queue

    # --- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._push(AssociationEvent(EventKind.UP, detail=f"{self.backend.value} connection"))
        if self.on_up is not None:
            self.on_up.put_nowait(self)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.framer.feed(data)
        except FramingError as exc:
            self._push(AssociationEvent(EventKind.LOST, detail=f"framing error: {exc}"))
            self.abort()
            return
        for message in messages:
            self._push(Delivery(message, self.ppid))

    def eof_received(self) -> bool:
        self._push(AssociationEvent(EventKind.SHUTDOWN, detail="peer closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            self._push(AssociationEvent(EventKind.SHUTDOWN, detail="connection closed"))
        else:
            self._push(AssociationEvent(EventKind.LOST, error=getattr(exc, "errno", 0) or 0, detail=str(exc)))

    # --- Association -----------------------------------------------------------------------
    @property
    def local_addresses(self) -> tuple[str, ...]:
        return self._address("sockname")

    @property
    def peer_addresses(self) -> tuple[str, ...]:
        return self._address("peername")

    @property
    def peer_port(self) -> int:
        info = self.transport.get_extra_info("peername") if self.transport else None
        return int(info[1]) if info else 0

    def _address(self, which: str) -> tuple[str, ...]:
        info = self.transport.get_extra_info(which) if self.transport else None
        return (info[0],) if info else ()

    @property
    def is_mptcp(self) -> bool:
        sock = self.transport.get_extra_info("socket") if self.transport else None
        return bool(sock) and sock.proto == availability.IPPROTO_MPTCP

    async def send(self, data: bytes, ppid: int, stream: int = 0, unordered: bool = False) -> None:
        self._check_send(data)
        if ppid != self.ppid:
            raise TransportError(f"this {self.backend.value} connection carries PPID {self.ppid} only, not {ppid}")
        if len(data) < HEADER.size or HEADER.unpack_from(data)[2] != len(data):
            raise TransportError(f"not one whole ASAP/ENRP message: {len(data)} bytes, length field disagrees")
        assert self.transport is not None
        self.transport.write(data)
        while self.transport.get_write_buffer_size() > 4 * self.options.max_message_size and self.is_open:
            await asyncio.sleep(0.001)  # crude back-pressure; the loop keeps running

    async def close(self) -> None:
        """What was sent is delivered first: asyncio flushes its own write buffer after close(),
        but only while the loop runs, so wait for it (bounded); a process that exited at once
        lost the tail of what it had sent (seen over MPTCP, whose subflows drain slower)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
            deadline = asyncio.get_running_loop().time() + CLOSE_TIMEOUT_S
            while transport.get_write_buffer_size() > 0 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.005)
        self._end(self.closed_by)

    def abort(self) -> None:
        if self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            if sock is not None and sock.fileno() >= 0:  # already closed by the peer: nothing to reset
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()
        self._end(self.closed_by)


class StreamListener(Listener):
    def __init__(self, backend: Backend, server: asyncio.Server, port: int) -> None:
        super().__init__()
        self.backend = backend
        self.server = server
        self._port = port

    @property
    def port(self) -> int:
        return self._port

    async def close(self) -> None:
        self.server.close()
        await super().close()


def _socket(family: int, mptcp: bool) -> socket.socket:
    if mptcp:
        ok, reason = availability.mptcp()
        if not ok:
            raise BackendUnavailable(reason)
    sock = socket.socket(family, socket.SOCK_STREAM, availability.IPPROTO_MPTCP if mptcp else socket.IPPROTO_TCP)
    sock.setblocking(False)
    return sock


async def _connect(sock: socket.socket, address: str, port: int) -> None:
    """A non-blocking connect.  Not `loop.sock_connect`: its getaddrinfo() call rejects
    IPPROTO_MPTCP ("ai_socktype not supported")."""
    code = sock.connect_ex((address, port))
    if code not in (0, errno.EINPROGRESS):
        raise OSError(code, os.strerror(code))
    loop = asyncio.get_running_loop()
    writable = loop.create_future()
    loop.add_writer(sock.fileno(), lambda: writable.done() or writable.set_result(None))
    try:
        await writable
    finally:
        loop.remove_writer(sock.fileno())
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, os.strerror(code))


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _share_port(sock: socket.socket) -> None:
    """Let a listener and the connections opened from its port share that port: Linux allows
    a bind beside a listening socket only when both have SO_REUSEPORT (same user); SO_REUSEADDR
    lets a connection rebind while an old one from that port lingers in TIME_WAIT."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


def _bind_source(sock: socket.socket, local: tuple[str, ...], local_port: int) -> None:
    """Bind a connecting socket to the first local address (or the wildcard) and `local_port`."""
    if local_port:
        _share_port(sock)
    if local or local_port:
        wildcard = "::" if sock.family == socket.AF_INET6 else "0.0.0.0"
        sock.bind((local[0] if local else wildcard, local_port))


async def connect(remote: tuple[str, ...], port: int, *, local: tuple[str, ...], options: TransportOptions,
                  mptcp: bool, ppid: int | None, local_port: int = 0) -> StreamAssociation:  # fmt: skip
    """Try the peer's addresses in turn until one answers within the connect timeout.

    `local_port` non-zero: connect from that port, also while a listener of ours has it.  A
    connection from it that this side closed holds its 4-tuple in TIME_WAIT for 60 s: until
    then, connecting from that port to the same peer address and port fails (EADDRNOTAVAIL)."""
    if not remote:
        raise ConnectError("no peer address to connect to")
    backend = Backend.MPTCP if mptcp else Backend.TCP
    loop = asyncio.get_running_loop()
    failures = []
    for address in remote:
        sock = _socket(_family(address), mptcp)
        try:
            _bind_source(sock, local, local_port)
            await asyncio.wait_for(_connect(sock, address, port), options.connect_timeout_s)
            assoc = StreamAssociation(backend, options, ppid_for_port(port, ppid))
            await loop.create_connection(lambda a=assoc: a, sock=sock)  # type: ignore[misc]
            return assoc
        except TimeoutError:
            failures.append(f"{address}: no answer within {options.connect_timeout_s:g} s")
        except OSError as exc:
            if local_port and exc.errno in (errno.EADDRNOTAVAIL, errno.EADDRINUSE):
                sock.close()
                raise LocalPortBusy(f"port {local_port} to {address} port {port}: {exc.strerror or exc}") from None
            failures.append(f"{address}: {exc.strerror or exc}")
        sock.close()
    raise ConnectError(f"{backend.value} connection to port {port} failed: {'; '.join(failures)}")


def _bind_listening(sock: socket.socket, address: str, port: int, mptcp: bool) -> None:
    """Bind with SO_REUSEPORT (connect(local_port=port) opens connections from this port), but
    refuse a port another listener holds: with SO_REUSEPORT on both, a second listener of the
    same user would share it silently, the kernel splitting the connections between them.  A
    probe with the options listeners had before (SO_REUSEADDR only) fails where one listens."""
    if port:
        with _socket(sock.family, mptcp) as probe:
            _listening_options(probe, address, share=False)
            probe.bind((address, port))
    _listening_options(sock, address, share=True)
    sock.bind((address, port))


def _listening_options(sock: socket.socket, address: str, share: bool) -> None:
    if share:
        _share_port(sock)
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if address == "::":
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)


async def listen(local: tuple[str, ...], port: int, *, options: TransportOptions, mptcp: bool,
                 ppid: int | None) -> StreamListener:  # fmt: skip
    """Listen on `port` of the first local address (all addresses when none is given)."""
    backend = Backend.MPTCP if mptcp else Backend.TCP
    address = local[0] if local else "::"
    sock = _socket(_family(address), mptcp)
    try:
        _bind_listening(sock, address, port, mptcp)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise TransportError(f"cannot listen on {address} port {port}: {exc.strerror}") from None
    queue: asyncio.Queue[Association | None] = asyncio.Queue()

    def accepted() -> StreamAssociation:
        assoc = StreamAssociation(backend, options, ppid_for_port(port, ppid))
        assoc.on_up = queue
        return assoc

    server = await asyncio.get_running_loop().create_server(accepted, sock=sock)
    listener = StreamListener(backend, server, port)
    listener._incoming = queue
    return listener


def mptcp_endpoint_commands(interfaces: Sequence[tuple[str, str]], *, server: bool) -> list[list[str]]:
    """The `ip mptcp` commands that give a host's MPTCP connections a subflow per interface.

    `interfaces` is (address, interface name) for each interface.  A client adds its extra
    addresses as `subflow` endpoints (it opens subflows from them); a server announces them
    as `signal` endpoints.  The limits allow one subflow per extra address."""
    extra = len(interfaces) - 1
    commands = [["ip", "mptcp", "limits", "set", "subflow", str(max(extra, 1)), "add_addr_accepted", str(max(extra, 1))]]
    for address, device in interfaces[1:]:
        commands.append(["ip", "mptcp", "endpoint", "add", address, "dev", device, "signal" if server else "subflow"])
    return commands
