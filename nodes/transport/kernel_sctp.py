"""Kernel SCTP: the asyncio backend on Linux's own SCTP stack, through the `socket` module.

One-to-one sockets (SOCK_STREAM, IPPROTO_SCTP): one socket per association, so an association's
end closes exactly its socket, and accept() hands out established ones.  Non-blocking, driven
by the event loop (add_reader/add_writer).  Each sendmsg() is one message, stream and PPID in
an SCTP_SNDRCV cmsg; recvmsg() pieces are joined until MSG_EOR; events are notifications in
the same stream as the data, so their order is kept.  Multi-homing as lksctp's sctp_bindx()
and sctp_connectx() do it: SCTP_SOCKOPT_BINDX_ADD and SCTP_SOCKOPT_CONNECTX with packed
sockaddrs (layouts in `linux_sctp.py`).

close() is shutdown(SHUT_WR) (SHUTDOWN once the data is acknowledged) and waits for
SHUTDOWN_COMP; abort() closes with SO_LINGER 0, which sends ABORT: one-to-one sockets refuse the
SCTP_EOF and SCTP_ABORT send flags.  After a peer's SHUTDOWN the socket is read until the
handshake is done before it is closed: closing with unread notifications would send ABORT.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import errno
import functools
import os
import socket
import struct

from . import availability, sockaddr
from . import linux_sctp as lk
from .base import (
    Association, AssociationClosed, AssociationEvent, Backend, BackendUnavailable, ConnectError, Delivery,
    EventKind, Listener, MessageTooLarge, TransportError, TransportOptions,
)  # fmt: skip

CLOSE_TIMEOUT_S = 5.0  # graceful shutdown (ours or the peer's) before ABORT / giving up
READ_BATCH = 64  # reads per wake-up, so that one busy association cannot starve the loop
RECV_BUFFER = 65536  # larger messages arrive in pieces and are joined
ANCILLARY_SPACE = socket.CMSG_SPACE(lk.SNDRCVINFO.size) + socket.CMSG_SPACE(lk.RCVINFO.size)
ADDRESS_BUFFER = lk.GETADDRS.size + 64 * sockaddr.SOCKADDR_IN6.size
EVENTS = lk.pack_event_subscribe(lk.EVENT_SWITCHES)  # data_io gives SCTP_SNDRCV on every read


def _errno_text(error: OSError | int) -> str:
    code = (error.errno or 0) if isinstance(error, OSError) else error
    return f"{errno.errorcode.get(code, code)} ({os.strerror(code)})"


def _setopt(sock: socket.socket, option: int, value: bytes | int) -> None:
    try:
        sock.setsockopt(lk.SOL_SCTP, option, value)
    except OSError as exc:
        name = lk.OPTION_NAMES.get(option, option)
        raise TransportError(f"kernel SCTP {name}: {_errno_text(exc)}") from None


def _configure(sock: socket.socket, options: TransportOptions) -> None:
    """Subscriptions and timers, set on the socket before bind/connect/listen so that they are
    the defaults every association of it (and every accepted socket) starts with."""
    o = options
    sock.setblocking(False)
    try:
        values = {
            lk.SCTP_EVENTS: EVENTS,
            lk.SCTP_NODELAY: 1,
            lk.SCTP_INITMSG: lk.pack_initmsg(o.streams, o.streams, o.init_max_attempts, o.rto_max_ms),
            lk.SCTP_RTOINFO: lk.pack_rtoinfo(o.rto_initial_ms, o.rto_max_ms, o.rto_min_ms),
            lk.SCTP_ASSOCINFO: lk.pack_assocparams(o.assoc_max_retrans),
            lk.SCTP_PEER_ADDR_PARAMS: lk.pack_paddrparams(o.heartbeat_interval_ms, o.path_max_retrans),
        }
    except (ValueError, struct.error) as exc:
        raise TransportError(f"kernel SCTP: invalid transport options: {exc}") from None
    for option, value in values.items():
        _setopt(sock, option, value)
    # The kernel refuses (EMSGSIZE) a message larger than the send buffer: make room for the
    # largest one allowed, twice (setsockopt doubles the value; wmem_max caps it).
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < 2 * o.max_message_size:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 * o.max_message_size)


def _new_socket(family: int, options: TransportOptions) -> socket.socket:
    ok, reason = availability.kernel_sctp()
    if not ok:
        raise BackendUnavailable(reason)
    try:
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    except OSError as exc:
        raise BackendUnavailable(f"kernel SCTP: socket() failed with {_errno_text(exc)}") from None
    try:
        _configure(sock, options)
    except BaseException:
        sock.close()
        raise
    return sock


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.getsockopt.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                                ctypes.POINTER(ctypes.c_uint32)]  # fmt: skip
    return libc


def _getsockopt_inout(sock: socket.socket, option: int, request: bytes) -> bytes:
    """getsockopt() whose buffer carries input.  socket.getsockopt(level, name, size) hands the
    kernel an uninitialised buffer, and SCTP_GET_LOCAL_ADDRS reads the association id from it
    (0 and non-0 answer differently), so ctypes fills it: the stdlib has no other way.  The
    whole buffer comes back: for SCTP_GET_LOCAL_ADDRS the kernel's optlen leaves out the header."""
    buffer = ctypes.create_string_buffer(request, len(request))
    size = ctypes.c_uint32(len(request))
    if _libc().getsockopt(sock.fileno(), lk.SOL_SCTP, option, buffer, ctypes.byref(size)) < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return buffer.raw


# On a one-to-one socket the kernel ignores the association id (sctp_id2assoc takes the socket's
# only association), except that SCTP_GET_LOCAL_ADDRS reads 0 as "the addresses the socket is
# bound to" (all of the host's, if bound to the wildcard): any other id asks for the association's.
THE_ASSOCIATION = 1


def _addresses(sock: socket.socket, peer: bool) -> tuple[str, ...]:
    """The association's peer or local addresses; getpeername/getsockname (one address) if the
    kernel will not tell (association gone, or a kernel without the option)."""
    option = lk.SCTP_GET_PEER_ADDRS if peer else lk.SCTP_GET_LOCAL_ADDRS
    for assoc_id in (THE_ASSOCIATION, 0):
        try:
            data = _getsockopt_inout(sock, option, lk.pack_getaddrs_request(assoc_id, ADDRESS_BUFFER))
            found = tuple(dict.fromkeys(address for address, _port in lk.parse_getaddrs(data)))
        except (OSError, ValueError, struct.error, AttributeError):
            continue
        if found:
            return found
    try:
        name = sock.getpeername() if peer else sock.getsockname()
    except OSError:
        return ()
    text = sockaddr.parse(lk.pack_sockaddr(name[0].split("%")[0], name[1]))[0]
    return () if text in ("0.0.0.0", "::") else (text,)


class KernelAssociation(Association):
    """One association on its own one-to-one socket."""

    backend = Backend.KERNEL_SCTP

    def __init__(self, sock: socket.socket, options: TransportOptions, established: bool = False) -> None:
        super().__init__(options)
        self._loop = asyncio.get_running_loop()
        self._sock: socket.socket | None = sock
        self._buffer = bytearray(max(RECV_BUFFER, options.max_message_size))
        self._view = memoryview(self._buffer)
        self._data = bytearray()  # a message arriving in pieces
        self._data_info: lk.ReceiveInfo | None = None
        self._note = bytearray()  # a notification arriving in pieces
        self._peer: tuple[str, ...] = ()
        self._local: tuple[str, ...] = ()
        self._writable: set[asyncio.Future[None]] = set()
        self._socket_closed = asyncio.Event()
        self._drain_timer: asyncio.TimerHandle | None = None
        if established:  # accept() only returns associations that are up; COMM_UP follows as an event
            self._remember_addresses()
            self._up.set_result(None)
        self._loop.add_reader(sock.fileno(), self._on_readable)

    # --- addresses ---------------------------------------------------------------------------
    def _remember_addresses(self) -> None:
        if self._sock is not None:
            self._peer = _addresses(self._sock, True) or self._peer
            self._local = _addresses(self._sock, False) or self._local

    @property
    def local_addresses(self) -> tuple[str, ...]:  # as of COMM_UP: kept after the end
        return self._local

    @property
    def peer_addresses(self) -> tuple[str, ...]:
        return self._peer

    # --- sending -----------------------------------------------------------------------------
    async def send(self, data: bytes, ppid: int, stream: int = 0, unordered: bool = False) -> None:
        self._check_send(data)
        if not 0 <= stream < self.options.streams:
            raise TransportError(f"stream {stream} out of range: the association has {self.options.streams}")
        ancillary = [lk.sndrcv_cmsg(stream, ppid, unordered)]
        while True:
            if self._sock is None:
                reason = f"cannot send: association ended ({self._end_reason()})"
                raise AssociationClosed(reason, self.closed_by)
            try:
                self._sock.sendmsg([data], ancillary, socket.MSG_NOSIGNAL)
                return
            except (BlockingIOError, InterruptedError):
                await self._wait_writable()
            except OSError as exc:
                self._send_failed(exc, len(data), stream)

    def _send_failed(self, exc: OSError, size: int, stream: int) -> None:
        if exc.errno == errno.EMSGSIZE:  # larger than the socket's send buffer
            raise MessageTooLarge(f"message of {size} bytes exceeds the socket's send buffer") from None
        if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN):
            raise AssociationClosed(f"cannot send: {_errno_text(exc)}", self.closed_by) from None
        hint = f" (stream {stream} beyond what the peer granted?)" if exc.errno == errno.EINVAL else ""
        raise TransportError(f"send: {_errno_text(exc)}{hint}") from None

    async def _wait_writable(self) -> None:
        assert self._sock is not None
        waiter = self._loop.create_future()
        self._writable.add(waiter)
        self._loop.add_writer(self._sock.fileno(), self._on_writable)
        try:
            await waiter
        finally:
            self._writable.discard(waiter)

    def _on_writable(self) -> None:
        if self._sock is not None:
            self._loop.remove_writer(self._sock.fileno())
        for waiter in self._writable:
            if not waiter.done():
                waiter.set_result(None)

    # --- receiving ---------------------------------------------------------------------------
    def _on_readable(self) -> None:
        try:
            self._read_some()
        except Exception as exc:  # a bug must end the association, not leave it hanging
            self._socket_failed(OSError(errno.EIO, f"{type(exc).__name__}: {exc}"))
            raise

    def _read_some(self) -> None:
        for _ in range(READ_BATCH):
            if self._sock is None:
                return
            try:
                size, ancillary, flags, _address = self._sock.recvmsg_into([self._view], ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._socket_failed(exc)
                return
            if size == 0 and not flags & lk.MSG_NOTIFICATION:
                self._socket_eof()
                return
            if flags & lk.MSG_NOTIFICATION:
                self._note += self._view[:size]
                if flags & lk.MSG_EOR:
                    note, self._note = bytes(self._note), bytearray()
                    self._on_notification(note)
                continue
            if not self._data:
                self._data_info = lk.receive_info(ancillary)
            self._data += self._view[:size]
            if flags & lk.MSG_EOR:
                data, self._data = bytes(self._data), bytearray()
                info = self._data_info or lk.ReceiveInfo(0, 0, 0, 0)
                self._push(Delivery(data, info.ppid, info.stream, unordered=info.unordered))

    def _on_notification(self, data: bytes) -> None:
        try:
            note = lk.parse_notification(data)
        except (ValueError, struct.error):  # truncated, or an address family we cannot read
            return
        if isinstance(note, lk.PartialDelivery):
            self._data.clear()  # the rest of that message will not come
            return
        event = lk.to_event(note) if note is not None else None
        if self._ended:  # after the end: only wait for the kernel to be done with the association
            if isinstance(note, lk.AssocChange) and note.state != lk.SCTP_COMM_UP:
                self._close_socket()
            return
        if event is None:
            return
        if event.kind is EventKind.UP:
            self._remember_addresses()
        elif event.kind in (EventKind.LOST, EventKind.CANT_START) and (code := self._socket_error()):
            # Linux says why in the socket error, not in sac_error: ETIMEDOUT (no answer),
            # ECONNREFUSED (INIT answered with ABORT), ECONNRESET (the peer aborted).
            event = dataclasses.replace(event, detail=f"{event.detail}: {_errno_text(code)}")
        self._push(event)
        if event.kind.ends_association:
            if isinstance(note, lk.ShutdownEvent):  # the kernel still answers: read until it is done
                self._drain_timer = self._loop.call_later(CLOSE_TIMEOUT_S, self._close_socket)
            else:
                self._close_socket()

    def _socket_eof(self) -> None:
        if not self._ended:
            kind = EventKind.SHUTDOWN if self._up.done() else EventKind.CANT_START
            self._push(AssociationEvent(kind, detail="the peer closed the association"))
        self._close_socket()

    def _socket_error(self) -> int:
        if self._sock is None:
            return 0
        try:
            return self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError:
            return 0

    def _socket_failed(self, exc: OSError) -> None:
        """A read error ends the association; ENOTCONN (older kernels refuse to read a socket
        whose association is gone, notification or not) is explained by SO_ERROR if set."""
        if not self._ended:
            code = (exc.errno == errno.ENOTCONN and self._socket_error()) or exc.errno or 0
            kind = EventKind.LOST if self._up.done() else EventKind.CANT_START
            detail = f"socket error {_errno_text(code)}" + (f": {exc.strerror}" if code == errno.EIO else "")
            self._push(AssociationEvent(kind, error=code, detail=detail))
        self._close_socket()

    # --- ending ------------------------------------------------------------------------------
    def _close_socket(self) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(ValueError, OSError):  # the loop may be closing
            self._loop.remove_reader(sock.fileno())
            self._loop.remove_writer(sock.fileno())
        sock.close()
        self._end(self.closed_by)
        for waiter in self._writable:
            if not waiter.done():
                waiter.set_result(None)  # send() sees the closed socket and raises
        self._socket_closed.set()

    async def close(self) -> None:
        if self._sock is None:
            self._end(self.closed_by)
            return
        if self._ended:  # the peer ended it; give the kernel its handshake, then close
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._socket_closed.wait(), CLOSE_TIMEOUT_S)
            self._close_socket()
            return
        try:
            self._sock.shutdown(socket.SHUT_WR)
            await asyncio.wait_for(self._socket_closed.wait(), CLOSE_TIMEOUT_S)
        except BaseException as exc:  # no SHUTDOWN_COMP in time, or cancelled: ABORT
            self.abort()
            if not isinstance(exc, OSError | TimeoutError):
                raise
        self._close_socket()

    def abort(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, lk.pack_linger(True, 0))
            self._close_socket()
        self._end(self.closed_by)


class KernelListener(Listener):
    """A listening one-to-one socket; each accepted socket is an independent association
    (closing the listener leaves them open, as with TCP)."""

    backend = Backend.KERNEL_SCTP

    def __init__(self, sock: socket.socket, options: TransportOptions) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._sock: socket.socket | None = sock
        self._options = options
        self._port = sock.getsockname()[1]
        self._loop.add_reader(sock.fileno(), self._on_acceptable)

    @property
    def port(self) -> int:
        return self._port

    def _on_acceptable(self) -> None:
        while self._sock is not None:
            try:
                conn, _address = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # that one went away before we took it
                return  # EMFILE and the like: try again at the next wake-up
            try:
                conn.setblocking(False)  # accept() does not pass non-blocking mode on
                _setopt(conn, lk.SCTP_EVENTS, EVENTS)  # inherited already; set again to be sure
                self._incoming.put_nowait(KernelAssociation(conn, self._options, established=True))
            except Exception:  # noqa: BLE001 - that one is lost; the listener goes on
                conn.close()

    async def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(sock.fileno())
            sock.close()
        await super().close()


def _share_port(sock: socket.socket) -> None:
    """SO_REUSEADDR and SO_REUSEPORT, so that an association can be opened from the port a
    listener of ours holds (one-to-one sockets: a second socket on that port).  Untested: this
    machine has no kernel SCTP; Linux's SCTP honours SO_REUSEPORT only since 5.x."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with contextlib.suppress(OSError):  # an older kernel: the bind beside a listener will fail
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


async def listen(local: tuple[str, ...], port: int, *, options: TransportOptions) -> KernelListener:
    sock = _new_socket(sockaddr.family_of(local), options)
    try:
        _share_port(sock)  # connect(local_port=port) may open associations from this port
        if local:
            _setopt(sock, lk.SCTP_SOCKOPT_BINDX_ADD, lk.pack_sockaddrs(local, port))
        else:
            sock.bind(("::" if sock.family == socket.AF_INET6 else "0.0.0.0", port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        where = f"{', '.join(local) or 'all addresses'} port {port}"
        raise TransportError(f"kernel SCTP: cannot listen on {where}: {_errno_text(exc)}") from None
    except BaseException:
        sock.close()
        raise
    return KernelListener(sock, options)


async def connect(
    remote: tuple[str, ...],
    port: int,
    *,
    local: tuple[str, ...],
    options: TransportOptions,
    local_port: int = 0,
) -> KernelAssociation:
    """An association to `remote`, from `local_port` if non-zero (else an ephemeral port)."""
    if not remote:
        raise ConnectError("no peer address to connect to")
    target = f"{', '.join(remote)} port {port}"
    sock = _new_socket(sockaddr.family_of(local + remote), options)
    try:
        if local_port:
            _share_port(sock)
        if local:  # several local addresses, one port: multi-homed on our side too
            _setopt(sock, lk.SCTP_SOCKOPT_BINDX_ADD, lk.pack_sockaddrs(local, local_port))
        elif local_port:
            sock.bind(("::" if sock.family == socket.AF_INET6 else "0.0.0.0", local_port))
        # Every peer address at once, as lksctp's sctp_connectx() does; non-blocking, so the
        # kernel answers EINPROGRESS at once, and COMM_UP or CANT_STR_ASSOC follows.
        with contextlib.suppress(BlockingIOError, InterruptedError):
            sock.setsockopt(lk.SOL_SCTP, lk.SCTP_SOCKOPT_CONNECTX, lk.pack_sockaddrs(remote, port))
        assoc = KernelAssociation(sock, options)
    except (OSError, TransportError) as exc:
        sock.close()
        reason = _errno_text(exc) if isinstance(exc, OSError) else str(exc)
        raise ConnectError(f"SCTP association to {target}: {reason}") from None
    except BaseException:
        sock.close()
        raise
    try:
        await assoc.wait_up(options.connect_timeout_s)
    except ConnectError as exc:
        assoc.abort()
        raise ConnectError(f"SCTP association to {target}: {exc}") from None
    except BaseException:
        assoc.abort()
        raise
    return assoc
