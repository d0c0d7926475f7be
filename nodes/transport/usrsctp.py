"""Userland SCTP: the asyncio backend on Debian's libusrsctp2, for kernels without SCTP.

usrsctp runs in raw-IP mode: it opens raw IPPROTO_SCTP sockets, so the packets on the
emulated links are genuine SCTP (IP protocol 132) that tcpdump and tshark decode.  Every
usrsctp stack in a namespace sees every SCTP packet there, so out-of-the-blue packets are
blackholed (sysctl `sctp_blackhole` = 2); otherwise one stack would abort the associations
of another.  The price: connecting to a port where nothing listens gets no ABORT, only the
connect timeout.  With `udp_encapsulation_port` set, the stack also speaks SCTP over UDP
(RFC 6951) and associations use it towards peers on that port.

Threads: usrsctp calls back from its own threads.  The callbacks copy what they get and
hand it to the event loop with `call_soon_threadsafe`; nothing else happens on those threads,
and every call into the library returns at once (non-blocking sockets), so the loop never
waits on the stack.

Sockets are one-to-many (SOCK_SEQPACKET): a listener serves all its associations on one
socket, with no `usrsctp_accept` (which crashed here with NULL address arguments), and an
outgoing association gets a socket of its own, closed when it ends, so that nothing leaks.
The exception: `connect(local_port=P)` while a listener of this process holds port P goes
out through the listener's socket (usrsctp_connectx on it), as RSPLIB's one-to-many sockets
do, since two sockets of one stack cannot bind one port; a PE must connect from the port it
listens on, so that a registrar taking it over can reach it there.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import errno
import itertools
import os
import socket
import threading

from . import availability, sockaddr
from . import usrsctp_api as api
from .base import (
    Association,
    AssociationEvent,
    Backend,
    BackendUnavailable,
    ConnectError,
    Delivery,
    EventKind,
    Listener,
    TransportError,
    TransportOptions,
)

SEND_RETRY_S = 0.005  # poll interval when the send buffer is full and no callback came yet
CLOSE_TIMEOUT_S = 5.0


class _Stack:
    """The process-wide usrsctp instance (the library keeps global state)."""

    def __init__(self) -> None:
        self.lib: ctypes.CDLL | None = None
        self.udp_port = 0
        self.endpoints: dict[int, _Endpoint] = {}
        self.listening: dict[int, _Endpoint] = {}  # port -> a listener's endpoint, for connect(local_port=)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.receive_cb = api.RECEIVE_CB(self._on_receive)  # kept referenced: C holds them
        self.send_cb = api.SEND_CB(self._on_send_space)
        self.stopping = False

    def start(self, udp_port: int) -> ctypes.CDLL:
        if self.lib is not None:
            if udp_port and udp_port != self.udp_port:
                raise TransportError(f"usrsctp already runs with UDP encapsulation port {self.udp_port}")
            return self.lib
        soname = availability.usrsctp_library()
        ok, reason = availability.usrsctp()
        if not ok or soname is None:
            raise BackendUnavailable(reason)
        lib = api.load(soname)
        # usrsctp_init resets the sysctls and opens the raw sockets, which see every SCTP packet
        # of the namespace, before it returns: until blackhole is 2 again the new stack ABORTs
        # the other stacks' packets (a starting PE killed its neighbours' associations that
        # way).  So: initialise without threads, set blackhole, and only then start the
        # receive and timer threads (both exported by libusrsctp).
        lib.usrsctp_init_nothreads(udp_port, None, None)
        lib.usrsctp_sysctl_set_sctp_blackhole(2)
        lib.recv_thread_init()
        lib.sctp_start_timer_thread()
        lib.usrsctp_sysctl_set_sctp_debug_on(0)
        self.lib, self.udp_port = lib, udp_port
        atexit.register(self.finish)
        return lib

    def register(self, endpoint: _Endpoint) -> int:
        with self._lock:
            key = next(self._ids)
            self.endpoints[key] = endpoint
        return key

    def unregister(self, key: int) -> None:
        with self._lock:
            self.endpoints.pop(key, None)

    # Both callbacks run on usrsctp's threads; they must not raise into C.
    def _on_receive(self, _sock, _addr, data, length, info, flags, ulp) -> int:  # type: ignore[no-untyped-def]
        try:
            payload = ctypes.string_at(data, length) if data else None
            with self._lock:
                endpoint = self.endpoints.get(ulp or 0)
            if endpoint is not None and not self.stopping:
                endpoint.from_stack(payload, info.assoc_id, info.sid, socket.ntohl(info.ppid), info.flags, flags)
        except Exception:  # noqa: BLE001 - a Python error must not unwind into usrsctp
            pass
        finally:
            if data:
                _libc.free(data)  # the callback owns the buffer
        return 1

    def _on_send_space(self, _sock, _free, ulp) -> int:  # type: ignore[no-untyped-def]
        with self._lock:
            endpoint = self.endpoints.get(ulp or 0)
        if endpoint is not None and not self.stopping:
            endpoint.wake_senders()
        return 0

    def finish(self) -> None:
        """Close what is still open so that usrsctp's threads stop before the interpreter."""
        self.stopping = True
        if self.lib is None:
            return
        for endpoint in list(self.endpoints.values()):
            endpoint.close_socket()
        for _ in range(50):
            if self.lib.usrsctp_finish() == 0:
                break
            threading.Event().wait(0.02)


_libc = ctypes.CDLL(None)
_libc.free.argtypes = [ctypes.c_void_p]
_stack = _Stack()


class _Endpoint:
    """One usrsctp socket and the associations on it."""

    def __init__(self, local: tuple[str, ...], remote: tuple[str, ...], port: int, options: TransportOptions):
        self.lib = _stack.start(options.udp_encapsulation_port)
        self.loop = asyncio.get_running_loop()
        self.options = options
        self.local = local
        self.family = sockaddr.family_of(local + remote)
        self.associations: dict[int, UsrsctpAssociation] = {}
        self.partial: dict[int, bytearray] = {}
        self.up_addresses: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}  # read at COMM_UP
        self.on_new: asyncio.Queue[Association | None] | None = None  # set for listeners
        self.sole: UsrsctpAssociation | None = None  # set for an outgoing association's socket
        self.space = asyncio.Event()
        self.reservation: socket.socket | None = None  # see _reserve_port
        self.peer_ports: dict[int, int] = {}  # assoc id -> the peer's port, read with its addresses
        self.port = 0  # the local port, once bound
        self.key = _stack.register(self)
        self.sock = self.lib.usrsctp_socket(
            self.family, socket.SOCK_SEQPACKET, socket.IPPROTO_SCTP, _stack.receive_cb, _stack.send_cb,
            options.max_message_size, ctypes.c_void_p(self.key),
        )  # fmt: skip
        if not self.sock:
            _stack.unregister(self.key)
            raise TransportError(f"usrsctp_socket failed: {os.strerror(ctypes.get_errno())}")
        try:
            self._configure(port)
        except Exception:
            self.close_socket()
            raise

    # --- set-up ------------------------------------------------------------------------
    def _configure(self, port: int) -> None:
        o = self.options
        self.lib.usrsctp_set_non_blocking(self.sock, 1)
        for kind in api.SUBSCRIBED_EVENTS:
            self._setopt(api.SCTP_EVENT, api.Event(api.SCTP_ALL_ASSOC, kind, 1))
        self._setopt(api.SCTP_RECVRCVINFO, ctypes.c_int(1))
        self._setopt(api.SCTP_NODELAY, ctypes.c_int(1))
        self._setopt(api.SCTP_INITMSG, api.InitMsg(o.streams, o.streams, o.init_max_attempts, o.rto_max_ms))
        self._setopt(api.SCTP_RTOINFO, api.RtoInfo(0, o.rto_initial_ms, o.rto_max_ms, o.rto_min_ms))
        self._setopt(api.SCTP_ASSOCINFO, api.AssocParams(0, 0, 0, 0, o.assoc_max_retrans, 0))
        params = api.PaddrParams(assoc_id=0, hbinterval=o.heartbeat_interval_ms, flags=api.SPP_HB_ENABLE,
                                 pathmaxrxt=o.path_max_retrans)  # fmt: skip
        self._setopt(api.SCTP_PEER_ADDR_PARAMS, params)
        if o.udp_encapsulation_port:
            self._setopt(api.SCTP_REMOTE_UDP_ENCAPS_PORT, api.UdpEncaps(port=socket.htons(o.udp_encapsulation_port)))
        self._bind(port)

    def _bind(self, port: int) -> None:
        if port == 0:
            port = self._reserve_port()
        self.port = port
        if not self.local:
            wildcard = "::" if self.family == socket.AF_INET6 else "0.0.0.0"
            packed = sockaddr.pack(wildcard, port)
            self._check(self.lib.usrsctp_bind(self.sock, packed, len(packed)), "bind")
            return
        packed = sockaddr.pack_list(self.local, port)
        self._check(self.lib.usrsctp_bindx(self.sock, packed, len(self.local), api.SCTP_BINDX_ADD_ADDR),
                    f"bind to {', '.join(self.local)} port {port}")  # fmt: skip

    def _reserve_port(self) -> int:
        """An ephemeral port no other process of this namespace holds, kept while the socket lives.

        Each process runs its own usrsctp stack, and the stacks' port choices are not
        coordinated: two PEs on one host picked the same source port, and the registrar took
        the second INIT for a restart of the first association, which it then lost.  A kernel
        TCP socket bound to port 0 gets a port that is unique in the namespace; holding it keeps
        every other process (and its reservation) off that port."""
        family = socket.AF_INET6 if self.family == socket.AF_INET6 else socket.AF_INET
        self.reservation = socket.socket(family, socket.SOCK_STREAM)
        self.reservation.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        return int(self.reservation.getsockname()[1])

    def _setopt(self, option: int, value: ctypes._CData) -> None:
        size = ctypes.sizeof(value)
        self._check(self.lib.usrsctp_setsockopt(self.sock, socket.IPPROTO_SCTP, option, ctypes.byref(value), size),
                    f"setsockopt {option:#x}")  # fmt: skip

    def _check(self, result: int, what: str) -> None:
        if result < 0:
            code = ctypes.get_errno()
            raise TransportError(f"usrsctp {what}: {errno.errorcode.get(code, code)} ({os.strerror(code)})")

    # --- from usrsctp's threads ----------------------------------------------------------
    def from_stack(self, data: bytes | None, assoc_id: int, sid: int, ppid: int, rcv_flags: int, flags: int) -> None:
        if data is not None and flags & api.MSG_NOTIFICATION:
            parsed = api.parse_notification(data)
            if parsed is not None and parsed[1].kind is EventKind.UP:
                # Read the addresses now: by the time the loop runs, a short association may be
                # gone from the stack, and its addresses with it.
                self.up_addresses[parsed[0]] = (self.addresses(parsed[0], True), self.addresses(parsed[0], False))
        try:
            self.loop.call_soon_threadsafe(self._dispatch, data, assoc_id, sid, ppid, rcv_flags, flags)
        except RuntimeError:
            pass  # the loop is closed: the process is ending

    def wake_senders(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.space.set)
        except RuntimeError:
            pass

    # --- on the event loop ---------------------------------------------------------------
    def _dispatch(self, data: bytes | None, assoc_id: int, sid: int, ppid: int, rcv_flags: int, flags: int) -> None:
        if data is None:
            return
        if flags & api.MSG_NOTIFICATION:
            parsed = api.parse_notification(data)
            if parsed is not None:
                self._on_event(*parsed)
            return
        assoc = self.associations.get(assoc_id)
        if assoc is None:
            return
        if not flags & api.MSG_EOR:  # partial delivery of a large message
            self.partial.setdefault(assoc_id, bytearray()).extend(data)
            return
        if assoc_id in self.partial:
            data = bytes(self.partial.pop(assoc_id) + data)
        assoc._push(Delivery(data, ppid, sid, unordered=bool(rcv_flags & api.SCTP_UNORDERED)))

    def _on_event(self, assoc_id: int, event: AssociationEvent) -> None:
        assoc = self.associations.get(assoc_id)
        if assoc is None and event.kind is EventKind.UP and self.on_new is not None:
            assoc = UsrsctpAssociation(self, assoc_id, owns_socket=False)
            self.associations[assoc_id] = assoc
            assoc._push(event)
            self.on_new.put_nowait(assoc)
            return
        if assoc is None and self.sole is not None:
            assoc = self.sole  # an outgoing association's socket carries only that one
            if assoc.assoc_id != assoc_id:
                self.associations.pop(assoc.assoc_id, None)
                assoc.assoc_id = assoc_id
                self.associations[assoc_id] = assoc
        if assoc is not None:
            assoc._push(event)
            if event.kind.ends_association:
                self.forget(assoc_id)

    def forget(self, assoc_id: int) -> None:
        assoc = self.associations.pop(assoc_id, None)
        self.partial.pop(assoc_id, None)
        self.peer_ports.pop(assoc_id, None)
        if assoc is not None and assoc.owns_socket:
            self.close_socket()

    def close_socket(self) -> None:
        if self.sock:
            sock, self.sock = self.sock, None
            _stack.unregister(self.key)
            if _stack.listening.get(self.port) is self:
                del _stack.listening[self.port]
            self.lib.usrsctp_close(sock)
        if self.reservation is not None:
            self.reservation.close()
            self.reservation = None

    def addresses(self, assoc_id: int, peer: bool) -> tuple[str, ...]:
        if not self.sock:
            return ()
        getter = self.lib.usrsctp_getpaddrs if peer else self.lib.usrsctp_getladdrs
        freer = self.lib.usrsctp_freepaddrs if peer else self.lib.usrsctp_freeladdrs
        pointer = ctypes.c_void_p()
        count = getter(self.sock, assoc_id, ctypes.byref(pointer))
        if count <= 0 or not pointer:
            return ()
        try:
            found, offset = [], 0
            for _ in range(count):
                family = ctypes.c_uint16.from_address(pointer.value + offset).value
                size = sockaddr.SOCKADDR_IN6.size if family == socket.AF_INET6 else sockaddr.SOCKADDR_IN.size
                address, port, _size = sockaddr.parse(ctypes.string_at(pointer.value + offset, size))
                found.append(address)
                offset += size
            if peer:
                self.peer_ports[assoc_id] = port  # one port for all of a peer's addresses
            return tuple(found)
        finally:
            freer(pointer)

    async def sendv(self, data: bytes, info: api.SndInfo, what: str) -> None:
        """Send, waiting (without blocking the loop) while the send buffer is full."""
        while True:
            if not self.sock:
                raise TransportError(f"cannot {what}: the socket is closed")
            sent = self.lib.usrsctp_sendv(self.sock, data, len(data), None, 0, ctypes.byref(info),
                                          ctypes.sizeof(info), api.SCTP_SENDV_SNDINFO, 0)  # fmt: skip
            if sent >= 0:
                return
            code = ctypes.get_errno()
            if code not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise TransportError(f"cannot {what}: {errno.errorcode.get(code, code)} ({os.strerror(code)})")
            self.space.clear()
            try:
                await asyncio.wait_for(self.space.wait(), SEND_RETRY_S)
            except TimeoutError:
                pass


class UsrsctpAssociation(Association):
    backend = Backend.USRSCTP

    def __init__(self, endpoint: _Endpoint, assoc_id: int, owns_socket: bool) -> None:
        super().__init__(endpoint.options)
        self.endpoint = endpoint
        self.assoc_id = assoc_id
        self.owns_socket = owns_socket
        self._peer: tuple[str, ...] = ()
        self._local: tuple[str, ...] = ()

    def _push(self, item: Delivery | AssociationEvent) -> None:
        if isinstance(item, AssociationEvent) and item.kind is EventKind.UP:
            early = self.endpoint.up_addresses.pop(self.assoc_id, None)
            self._peer = self.endpoint.addresses(self.assoc_id, peer=True) or (early[0] if early else ())
            self._local = self.endpoint.addresses(self.assoc_id, peer=False) or (early[1] if early else ())
        super()._push(item)

    @property
    def local_addresses(self) -> tuple[str, ...]:
        if not self._local and self.is_open:
            self._local = self.endpoint.addresses(self.assoc_id, peer=False)
        return self._local

    @property
    def peer_addresses(self) -> tuple[str, ...]:
        if not self._peer and self.is_open:
            self._peer = self.endpoint.addresses(self.assoc_id, peer=True)
        return self._peer

    @property
    def peer_port(self) -> int:
        if self.assoc_id not in self.endpoint.peer_ports and self.is_open:
            self.endpoint.addresses(self.assoc_id, peer=True)
        return self.endpoint.peer_ports.get(self.assoc_id, 0)

    async def send(self, data: bytes, ppid: int, stream: int = 0, unordered: bool = False) -> None:
        self._check_send(data)
        if not 0 <= stream < self.options.streams:
            raise TransportError(f"stream {stream} out of range: the association has {self.options.streams}")
        flags = api.SCTP_UNORDERED if unordered else 0
        info = api.SndInfo(sid=stream, flags=flags, ppid=socket.htonl(ppid), assoc_id=self.assoc_id)
        await self.endpoint.sendv(data, info, "send")

    async def close(self) -> None:
        if not self.is_open:
            self.endpoint.forget(self.assoc_id)
            return
        try:
            await self.endpoint.sendv(b"", api.SndInfo(flags=api.SCTP_EOF, assoc_id=self.assoc_id), "shut down")
            await asyncio.wait_for(self._wait_end(), CLOSE_TIMEOUT_S)
        except (TransportError, TimeoutError):
            self.abort()
        self._end(self.closed_by)
        self.endpoint.forget(self.assoc_id)

    async def _wait_end(self) -> None:
        while self.is_open:
            item = await self.next_item()
            if isinstance(item, AssociationEvent):
                self.events.append(item)

    def abort(self) -> None:
        if self.is_open and self.endpoint.sock:
            info = api.SndInfo(flags=api.SCTP_ABORT, assoc_id=self.assoc_id)
            self.endpoint.lib.usrsctp_sendv(self.endpoint.sock, b"", 0, None, 0, ctypes.byref(info),  # not NULL: EFAULT
                                            ctypes.sizeof(info), api.SCTP_SENDV_SNDINFO, 0)  # fmt: skip
        self._end(self.closed_by)
        self.endpoint.forget(self.assoc_id)


class UsrsctpListener(Listener):
    backend = Backend.USRSCTP

    def __init__(self, endpoint: _Endpoint, port: int) -> None:
        super().__init__()
        self.endpoint = endpoint
        self._port = port
        endpoint.on_new = self._incoming  # type: ignore[assignment]

    @property
    def port(self) -> int:
        return self._port

    async def close(self) -> None:
        for assoc in list(self.endpoint.associations.values()):
            assoc.abort()
        self.endpoint.close_socket()
        await super().close()


async def listen(local: tuple[str, ...], port: int, *, options: TransportOptions) -> UsrsctpListener:
    endpoint = _Endpoint(local, (), port, options)
    try:
        endpoint._check(endpoint.lib.usrsctp_listen(endpoint.sock, 128), "listen")
    except TransportError:
        endpoint.close_socket()
        raise
    _stack.listening[endpoint.port] = endpoint  # connect(local_port=) goes out through it
    return UsrsctpListener(endpoint, port)


async def connect(remote: tuple[str, ...], port: int, *, local: tuple[str, ...], options: TransportOptions,
                  local_port: int = 0) -> UsrsctpAssociation:  # fmt: skip
    """An association to `remote`, from `local_port` if non-zero (else an ephemeral port).

    If a listener of this process holds `local_port`, the association goes through its socket
    (its bound addresses and socket options apply, `local` does not; closing the listener
    aborts it); otherwise a socket of its own is bound to `local_port`."""
    if not remote:
        raise ConnectError("no peer address to connect to")
    shared = _stack.listening.get(local_port) if local_port else None
    endpoint = shared or _Endpoint(local, remote, local_port, options)
    assoc = UsrsctpAssociation(endpoint, 0, owns_socket=shared is None)
    if shared is None:
        endpoint.sole = assoc
    target = f"{', '.join(remote)} port {port}"
    try:
        assoc.assoc_id = _connectx(endpoint, remote, port)
    except ConnectError as exc:
        if assoc.owns_socket:
            endpoint.close_socket()
        raise ConnectError(f"connect to {target}: {exc}") from None
    # Registered before the loop runs again, so before its COMM_UP is dispatched: a listener's
    # endpoint takes it for its own, not for a new incoming association.
    endpoint.associations[assoc.assoc_id] = assoc
    try:
        await assoc.wait_up(options.connect_timeout_s)
    except ConnectError as exc:
        assoc.abort()  # forgets it, on a listener's socket too
        if assoc.owns_socket:
            endpoint.close_socket()
        raise ConnectError(f"SCTP association to {target}: {exc}") from None
    return assoc


def _connectx(endpoint: _Endpoint, remote: tuple[str, ...], port: int) -> int:
    """usrsctp_connectx on the endpoint's socket; the new association's id."""
    assoc_id = ctypes.c_uint32(0)
    packed = sockaddr.pack_list(remote, port)
    if endpoint.lib.usrsctp_connectx(endpoint.sock, packed, len(remote), ctypes.byref(assoc_id)) < 0:
        code = ctypes.get_errno()
        if code != errno.EINPROGRESS:
            raise ConnectError(os.strerror(code))
    return assoc_id.value
