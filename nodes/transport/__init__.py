"""Transports for RSerPool: kernel SCTP, userland SCTP (usrsctp), TCP, MPTCP, UDP multicast.

    assoc = await transport.connect(["10.1.0.2", "10.2.0.2"], 3863, local=["10.1.0.1", "10.2.0.1"])
    await assoc.send(message_bytes, ppid=11)
    delivery = await assoc.receive()

`backend="auto"` takes kernel SCTP where the kernel has it and the userland stack otherwise;
`select_backend()` says which and raises `BackendUnavailable` with the reason when neither runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from . import availability
from .base import (
    Association,
    AssociationClosed,
    AssociationEvent,
    Backend,
    BackendUnavailable,
    ConnectError,
    Delivery,
    EventKind,
    Listener,
    MessageTooLarge,
    TransportError,
    TransportOptions,
)

__all__ = [
    "Association", "AssociationClosed", "AssociationEvent", "Backend", "BackendUnavailable",
    "ConnectError", "Delivery", "EventKind", "Listener", "MessageTooLarge", "TransportError",
    "TransportOptions", "connect", "listen", "select_backend", "backend_status",
]  # fmt: skip

_MODULES = {
    Backend.KERNEL_SCTP: "nodes.transport.kernel_sctp",
    Backend.USRSCTP: "nodes.transport.usrsctp",
    Backend.TCP: "nodes.transport.stream",
    Backend.MPTCP: "nodes.transport.stream",
}


def backend_status() -> dict[Backend, tuple[bool, str]]:
    """Each backend: whether it runs here, and why (not)."""
    return {
        Backend.KERNEL_SCTP: availability.kernel_sctp(),
        Backend.USRSCTP: availability.usrsctp(),
        Backend.TCP: (True, "TCP: always available"),
        Backend.MPTCP: availability.mptcp(),
    }


def select_backend(requested: str | Backend = "auto") -> Backend:
    """The backend to use for `requested` ("auto" or a Backend value)."""
    status = backend_status()
    if requested == "auto":
        for candidate in (Backend.KERNEL_SCTP, Backend.USRSCTP):
            if status[candidate][0]:
                return candidate
        reasons = "; ".join(status[b][1] for b in (Backend.KERNEL_SCTP, Backend.USRSCTP))
        raise BackendUnavailable(f"no SCTP backend runs here: {reasons}")
    try:
        backend = Backend(requested)
    except ValueError:
        choices = ", ".join(["auto", *(b.value for b in Backend)])
        raise BackendUnavailable(f"unknown transport backend {requested!r} (choose from {choices})") from None
    ok, reason = status[backend]
    if not ok:
        raise BackendUnavailable(reason)
    return backend


async def connect(
    remote: Sequence[str],
    port: int,
    *,
    local: Sequence[str] = (),
    backend: str | Backend = "auto",
    options: TransportOptions | None = None,
    ppid: int | None = None,
    local_port: int = 0,
) -> Association:
    """An established association to `remote` (all addresses of one multi-homed peer).

    `ppid` matters only for TCP and MPTCP, which cannot carry one: it is the PPID that
    received messages are labelled with (default: from the port, 3863 ASAP, 9901 ENRP).
    `local_port` (0: an ephemeral one) is the port to connect from; it may be the port a
    listener of this process listens on, as a PE's must be: a registrar taking the PE over
    connects to the port the PE registered from (its registrator transport)."""
    chosen = select_backend(backend)
    module = importlib.import_module(_MODULES[chosen])
    return await module.connect(
        tuple(remote), port, local=tuple(local), options=options or TransportOptions(),
        local_port=local_port, **_stream_args(chosen, ppid),
    )  # fmt: skip


async def listen(
    local: Sequence[str],
    port: int,
    *,
    backend: str | Backend = "auto",
    options: TransportOptions | None = None,
    ppid: int | None = None,
) -> Listener:
    """A listener on `port` of the `local` addresses (empty: all addresses)."""
    chosen = select_backend(backend)
    module = importlib.import_module(_MODULES[chosen])
    return await module.listen(
        tuple(local), port, options=options or TransportOptions(), **_stream_args(chosen, ppid)
    )


def _stream_args(backend: Backend, ppid: int | None) -> dict[str, object]:
    if backend.is_sctp:
        return {}
    return {"mptcp": backend is Backend.MPTCP, "ppid": ppid}
