"""The kernel SCTP backend: its logic over a scripted socket (runs everywhere), its refusal on a
kernel without SCTP (runs here), and real associations over loopback where the kernel has
SCTP.  The namespace scenarios (tshark, failover, errors, leaks, IPv6) are in
test_sctp_transport.py, run for each SCTP backend.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from nodes import transport
from nodes.transport import availability, kernel_sctp
from nodes.transport.base import (
    AssociationClosed, BackendUnavailable, ConnectError, Delivery, EventKind, TransportOptions,
)  # fmt: skip
from tests.netlab import (
    ROOT,
)  # fmt: skip

HAS_SCTP, WHY_NOT = availability.kernel_sctp()
needs_kernel_sctp = pytest.mark.skipif(not HAS_SCTP, reason=WHY_NOT)
FAST = ["--rto-initial-ms", "300", "--rto-min-ms", "100", "--rto-max-ms", "500", "--heartbeat-ms", "300"]
BACKEND = ["--backend", "kernel-sctp", *FAST]


# --- on a kernel without SCTP ------------------------------------------------------------------
@pytest.mark.skipif(HAS_SCTP, reason="this kernel has SCTP: nothing to refuse")
def test_kernel_sctp_is_refused_with_the_probe_reason():
    async def attempt() -> None:
        with pytest.raises(BackendUnavailable) as via_api:
            await transport.connect(["10.1.0.2"], 3863, backend="kernel-sctp")
        with pytest.raises(BackendUnavailable) as listening:
            await transport.listen([], 3863, backend="kernel-sctp")
        with pytest.raises(BackendUnavailable) as direct:  # the module itself, not only the dispatcher
            await kernel_sctp.connect(("10.1.0.2",), 3863, local=(), options=TransportOptions())
        assert str(via_api.value) == str(listening.value) == str(direct.value) == WHY_NOT

    asyncio.run(attempt())
    assert WHY_NOT.startswith("kernel SCTP: socket() failed with")


@pytest.mark.skipif(HAS_SCTP, reason="this kernel has SCTP: nothing to refuse")
def test_the_test_peer_reports_the_refusal():
    argv = [sys.executable, "-m", "nodes.transport.peer", "connect", "--backend", "kernel-sctp"]
    result = subprocess.run([*argv, "--to", "10.1.0.2"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    line = json.loads(result.stdout.splitlines()[-1])
    assert result.returncode == 1
    assert (line["event"], line["error"], line["message"]) == ("error", "BackendUnavailable", WHY_NOT)


# --- real associations over loopback (no root needed) ----------------------------------------------
LOOPBACK_OPTIONS = TransportOptions(rto_initial_ms=300, rto_min_ms=100, rto_max_ms=500, connect_timeout_s=5)


@needs_kernel_sctp
def test_loopback_association_carries_whole_messages_ppid_stream_and_events():
    async def scenario() -> None:
        options = LOOPBACK_OPTIONS
        listener = await transport.listen(["127.0.0.1"], 0, backend="kernel-sctp", options=options)
        client = await transport.connect(["127.0.0.1"], listener.port, backend="kernel-sctp", options=options)
        server = await asyncio.wait_for(listener.accept(), 5)
        assert client.peer_addresses == server.local_addresses == ("127.0.0.1",)
        big = bytes(range(256)) * 250  # 64000 bytes: many DATA chunks, perhaps several reads
        await client.send(b"hello", ppid=11, stream=1)
        await client.send(big, ppid=12, unordered=True)
        assert await asyncio.wait_for(server.receive(), 5) == Delivery(b"hello", 11, 1)
        assert await asyncio.wait_for(server.receive(), 5) == Delivery(big, 12, 0, unordered=True)
        assert server.events[0].kind is EventKind.UP  # COMM_UP moved with the accepted association
        await server.send(b"back", ppid=12)
        assert (await asyncio.wait_for(client.receive(), 5)).data == b"back"
        await client.close()
        with pytest.raises(AssociationClosed) as ended:
            await asyncio.wait_for(server.receive(), 5)
        assert ended.value.event.kind is EventKind.SHUTDOWN and client.closed_by.kind is EventKind.SHUTDOWN
        await asyncio.wait_for(server.close(), 10)
        await listener.close()

    asyncio.run(scenario())


@needs_kernel_sctp
def test_loopback_abort_and_refusal():
    async def scenario() -> None:
        options = LOOPBACK_OPTIONS
        listener = await transport.listen(["127.0.0.1"], 0, backend="kernel-sctp", options=options)
        client = await transport.connect(["127.0.0.1"], listener.port, backend="kernel-sctp", options=options)
        server = await asyncio.wait_for(listener.accept(), 5)
        client.abort()
        with pytest.raises(AssociationClosed) as ended:
            await asyncio.wait_for(server.receive(), 5)
        assert ended.value.event.kind is EventKind.LOST
        port = listener.port
        await listener.close()
        started = time.monotonic()
        with pytest.raises(ConnectError, match="INIT failed: ECONNREFUSED"):  # answered with ABORT at once
            await transport.connect(["127.0.0.1"], port, backend="kernel-sctp", options=options)
        assert time.monotonic() - started < 3

    asyncio.run(scenario())
