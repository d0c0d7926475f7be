"""Dump a registrar's handlespace over ENRP (RFC 5353), as RSPLIB's `hsdump` does.

    python -m nodes.registrar.hsdump 10.1.1.10[,10.1.2.10][:9901] [--json]

The tool poses as a peer registrar, because ENRP has no read-only client: a registrar only
answers a HANDLE_TABLE_REQUEST from a peer it knows.  So it sends ENRP_PRESENCE (reply
required, owning nothing), LIST_REQUEST and HANDLE_TABLE_REQUEST, and follows responses
with the M flag until the last one.  `HandlespaceDump` is the sans-I/O core (bytes in,
messages out, like the other cores in `nodes`); `dump()` runs it over one association.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import secrets
from collections.abc import Sequence

from nodes import transport
from nodes.wire import (
    DecodeError,
    EnrpError,
    EnrpMessage,
    HandleTableRequest,
    HandleTableResponse,
    ListRequest,
    ListResponse,
    PoolElement,
    Presence,
    Protocol,
    SctpTransport,
    ServerInformation,
    TcpTransport,
    Transport,
    decode,
    pe_checksum,
)

ENRP = Protocol.ENRP
EMPTY_CHECKSUM = 0xFFFF  #: the PE checksum of no PEs: what we own


class DumpError(Exception):
    """The dump failed: the registrar refused, answered an error, or sent garbage."""


class DumpTimeout(DumpError):
    """The registrar did not answer completely in time."""


@dataclasses.dataclass(frozen=True, slots=True)
class DumpedPool:
    """One pool as dumped; its PEs in the order the registrar sent them."""

    handle: bytes
    pool_elements: tuple[PoolElement, ...]

    @property
    def policy_name(self) -> str:
        """The pool's policy as its first PE states it (all PEs of a pool share the type)."""
        return self.pool_elements[0].policy.name


@dataclasses.dataclass(frozen=True, slots=True)
class DumpResult:
    """What a dump found.  `peers` is None when no (accepted) LIST_RESPONSE came."""

    own_id: int
    registrar_id: int | None
    registrar_info: ServerInformation | None  #: from its PRESENCE
    presence_checksum: int | None  #: what its PRESENCE says about the PEs it owns
    peers: tuple[ServerInformation, ...] | None
    pools: tuple[DumpedPool, ...]
    responses: int  #: HANDLE_TABLE_RESPONSEs it took
    ignored: int  #: messages for another receiver, or of no interest to a dump
    endpoint: tuple[tuple[str, ...], int] | None = None  #: where the runner connected

    @property
    def pe_count(self) -> int:
        return sum(len(pool.pool_elements) for pool in self.pools)

    def checksums(self) -> dict[int, int]:
        """PE checksum per home registrar: what each would announce in its PRESENCE, so two
        dumps (of two registrars) agree on an owner's PEs exactly when these agree."""
        owned: dict[int, list[tuple[bytes, int]]] = {}
        for pool in self.pools:
            for pe in pool.pool_elements:
                owned.setdefault(pe.home_registrar, []).append((pool.handle, pe.identifier))
        return {home: pe_checksum(pairs) for home, pairs in sorted(owned.items())}


def random_server_id() -> int:
    """A random 32-bit server id; 0 is reserved for "unknown"."""
    return secrets.randbelow(0xFFFFFFFF) + 1


def local_transport(addresses: Sequence[str], sctp: bool) -> Transport | None:
    """Our ENRP transport for the PRESENCE: port 0 (we accept no associations), the usable
    local addresses (TCP carries one); None when we know none."""
    usable = tuple(a for a in map(_address, addresses) if a is not None and not a.is_unspecified)
    if not usable:
        return None
    if sctp:
        return SctpTransport(port=0, addresses=usable)
    return TcpTransport(port=0, addresses=usable[:1])


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:  # a name, say: it cannot go into a transport parameter
        return None


class HandlespaceDump:
    """The client side of a dump, without I/O: `start()` gives the first messages, each
    `receive(data, ppid)` the answers to send; `finished` says when to stop, `error` why."""

    def __init__(self, own_id: int, *, addresses: Sequence[str] = (), sctp: bool = True) -> None:
        if not 0 < own_id <= 0xFFFFFFFF:
            raise ValueError(f"server id {own_id:#x} is not a non-zero 32-bit number")
        self.own_id = own_id
        self.transport = local_transport(addresses, sctp)
        self.registrar_id: int | None = None
        self.registrar_info: ServerInformation | None = None
        self.presence_checksum: int | None = None
        self.peers: tuple[ServerInformation, ...] | None = None
        self.responses = 0
        self.ignored = 0
        self.finished = False
        self.error: str | None = None
        self._pools: dict[bytes, dict[int, PoolElement]] = {}

    # --- inputs --------------------------------------------------------------------------

    def start(self) -> list[EnrpMessage]:
        """Introduce ourselves, then ask for the peer list and the whole handlespace."""
        return [self._presence(reply_required=True), ListRequest(sender_id=self.own_id), self._table_request()]  # fmt: skip

    def receive(self, data: bytes, ppid: int = ENRP.ppid) -> list[EnrpMessage]:
        """One whole message from the registrar; the messages to send back."""
        if self.finished:
            return []
        if ppid != ENRP.ppid:
            return self._fail(f"sent a message with PPID {ppid}, not ENRP's {ENRP.ppid}")
        try:
            message = decode(data, ENRP)
        except DecodeError as exc:
            return self._fail(f"sent a malformed message: {exc}")
        assert isinstance(message, EnrpMessage)
        if message.receiver_id not in (0, self.own_id) or message.sender_id == self.own_id:
            self.ignored += 1  # not for us (or our own, looped back)
            return []
        return self._handle(message)

    # --- outputs -------------------------------------------------------------------------

    def result(self) -> DumpResult:
        """What has been gathered so far (all of it once `finished` without `error`)."""
        pools = tuple(DumpedPool(handle, tuple(pes.values())) for handle, pes in self._pools.items())
        return DumpResult(
            own_id=self.own_id, registrar_id=self.registrar_id, registrar_info=self.registrar_info,
            presence_checksum=self.presence_checksum, peers=self.peers, pools=pools,
            responses=self.responses, ignored=self.ignored,
        )  # fmt: skip

    def progress(self) -> str:
        """What has arrived, for an error that says how far the dump got."""
        seen = [
            "PRESENCE" if self.presence_checksum is not None else "no PRESENCE",
            "LIST_RESPONSE" if self.peers is not None else "no LIST_RESPONSE",
            f"{self.responses} HANDLE_TABLE_RESPONSE(s) with {self.result().pe_count} PE(s)",
        ]
        return ", ".join(seen)

    # --- internals -----------------------------------------------------------------------

    def _handle(self, message: EnrpMessage) -> list[EnrpMessage]:
        if self.registrar_id is None:
            self.registrar_id = message.sender_id  # its first message names it
        match message:
            case HandleTableResponse():
                return self._table_response(message)
            case Presence():
                return self._presence_from_registrar(message)
            case ListResponse():
                self.peers = None if message.has_flag("reject") else message.servers
                return []
            case EnrpError():
                causes = ", ".join(cause.name for cause in message.error)
                return self._fail(f"sent an ENRP_ERROR ({causes})")
            case ListRequest():  # a peer's courtesy: we know no other registrar
                return [ListResponse(sender_id=self.own_id, receiver_id=message.sender_id)]
            case HandleTableRequest():  # we are no registrar: reject (R), so nobody takes us for a mentor
                return [HandleTableResponse(sender_id=self.own_id, receiver_id=message.sender_id, flags=0x01)]
        self.ignored += 1  # HANDLE_UPDATE, takeover: the dump is a snapshot of the tables
        return []

    def _presence_from_registrar(self, message: Presence) -> list[EnrpMessage]:
        if message.sender_id == self.registrar_id:
            self.presence_checksum = message.checksum
            self.registrar_info = message.server_info or self.registrar_info
        if message.has_flag("reply_required"):
            return [self._presence(reply_required=False, receiver=message.sender_id)]
        return []

    def _table_response(self, message: HandleTableResponse) -> list[EnrpMessage]:
        if message.has_flag("reject"):
            return self._fail("rejected the HANDLE_TABLE_REQUEST (it does not take us for a peer)")
        self.responses += 1
        for entry in message.entries:
            pool = self._pools.setdefault(entry.pool_handle, {})
            for pe in entry.pool_elements:
                pool[pe.identifier] = pe  # a PE sent again replaces its older copy
        if message.has_flag("more_to_send"):
            return [self._table_request()]
        self.finished = True
        return []

    def _presence(self, *, reply_required: bool, receiver: int = 0) -> Presence:
        info = ServerInformation(self.own_id, self.transport) if self.transport is not None else None
        flags = Presence.FLAGS["reply_required"] if reply_required else 0
        return Presence(sender_id=self.own_id, receiver_id=receiver, flags=flags,
                        checksum=EMPTY_CHECKSUM, server_info=info)  # fmt: skip

    def _table_request(self) -> HandleTableRequest:
        return HandleTableRequest(sender_id=self.own_id, receiver_id=self.registrar_id or 0)

    def _fail(self, reason: str) -> list[EnrpMessage]:
        self.error = f"registrar {self._name()} {reason}"
        self.finished = True
        return []

    def _name(self) -> str:
        return f"0x{self.registrar_id:08x}" if self.registrar_id is not None else "(id not yet known)"


# ------------------------------------------------------------------ the asyncio runner


async def dump(
    addresses: Sequence[str],
    port: int = ENRP.port,
    *,
    backend: str = "auto",
    options: transport.TransportOptions | None = None,
    local: Sequence[str] = (),
    timeout: float = 5.0,
    own_id: int | None = None,
) -> DumpResult:
    """Dump the handlespace of the registrar at `addresses`:`port` within `timeout` seconds
    (connecting included); DumpTimeout when it is too slow, DumpError for anything else."""
    where = f"{','.join(addresses)}:{port}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        assoc = await asyncio.wait_for(
            transport.connect(addresses, port, local=local, backend=backend, options=options, ppid=ENRP.ppid),
            timeout,
        )
    except TimeoutError:
        raise DumpTimeout(f"no association with {where} within {timeout:g} s") from None
    except (transport.TransportError, OSError, ValueError) as exc:
        raise DumpError(f"cannot connect to {where}: {exc}") from None
    core = HandlespaceDump(own_id or random_server_id(), addresses=local or assoc.local_addresses,
                           sctp=assoc.backend.is_sctp)  # fmt: skip
    try:
        await asyncio.wait_for(_exchange(assoc, core), max(0.0, deadline - loop.time()))
    except TimeoutError:
        raise DumpTimeout(f"no complete answer from {where} in {timeout:g} s: {core.progress()}") from None
    finally:
        await _close(assoc)
    return dataclasses.replace(core.result(), endpoint=(tuple(addresses), port))


async def _exchange(assoc: transport.Association, core: HandlespaceDump) -> None:
    """Feed the core what arrives and send what it asks, until it is finished."""
    await _send(assoc, core.start())
    while not core.finished:
        try:
            delivery = await assoc.receive()
        except transport.AssociationClosed as exc:
            raise DumpError(f"the registrar ended the association ({exc}); {core.progress()}") from None
        await _send(assoc, core.receive(delivery.data, delivery.ppid))
    if core.error is not None:
        raise DumpError(core.error)


async def _send(assoc: transport.Association, messages: Sequence[EnrpMessage]) -> None:
    for message in messages:
        try:
            await assoc.send(message.encode(), ENRP.ppid)
        except (transport.TransportError, OSError) as exc:
            raise DumpError(f"cannot send {message.NAME}: {exc}") from None


async def _close(assoc: transport.Association) -> None:
    """A graceful shutdown, so that a last reply still arrives; an abort if it hangs."""
    try:
        await asyncio.wait_for(assoc.close(), 1.0)
    except (TimeoutError, transport.TransportError, OSError):
        assoc.abort()


if __name__ == "__main__":
    import sys

    from nodes.registrar.hsdump_cli import main

    sys.exit(main())
