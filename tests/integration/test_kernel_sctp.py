"""The kernel SCTP backend: its logic over a scripted socket (runs everywhere), its refusal on a
kernel without SCTP (runs here), and real associations where the kernel has SCTP: over
loopback (no root needed) and between two dual-homed namespaces (tests/netlab.py) with the
scenarios test_sctp_transport.py runs for the userland stack: ASAP with PPID 11 seen by
tshark, failover without loss, silent and refusing peers, abort, oversize, no leaks, IPv6.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from nodes import transport
from nodes.transport import availability, kernel_sctp
from nodes.transport.base import (
    AssociationClosed, BackendUnavailable, ConnectError, Delivery, EventKind, TransportOptions,
)  # fmt: skip
from nodes.wire.constants import AsapType
from testbed import netns
from tests.netlab import (
    ROOT, capture, data_lines, dual_homed_pair, needs_root, read_json_line, stop, tshark_fields,
    wait_for_event,
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


# --- between two dual-homed namespaces -----------------------------------------------------------
@needs_root
@pytest.mark.netns
@needs_kernel_sctp
class TestBetweenNamespaces:
    @pytest.fixture
    def pair(self):
        with dual_homed_pair("k") as lab:
            yield lab

    def listen(self, pair, *extra: str, bind: list[str] | None = None):
        bind = bind or pair.addresses(pair.b)
        proc = pair.peer(pair.b, "listen", *BACKEND, "--bind", ",".join(bind), *extra)
        wait_for_event(proc, "listening")
        return proc

    def connect(self, pair, *extra: str, to: list[str] | None = None, bind: list[str] | None = None):
        to, bind = to or pair.addresses(pair.b), bind or pair.addresses(pair.a)
        argv = [sys.executable, "-m", "nodes.transport.peer", "connect", *BACKEND]
        return pair.popen(pair.a, [*argv, "--to", ",".join(to), "--bind", ",".join(bind), *extra])

    def run_connect(self, pair, *extra: str, timeout: float = 60, **where) -> list[dict]:
        out, err = self.connect(pair, *extra, **where).communicate(timeout=timeout)
        lines = [json.loads(line) for line in out.splitlines()]
        assert lines, f"connect printed nothing; stderr: {err}"
        return lines

    @pytest.mark.skipif(not shutil.which("tshark"), reason="needs tshark")
    def test_asap_over_sctp_with_ppid_11_decodes_in_tshark(self, pair, tmp_path):
        server = self.listen(pair)
        with capture(pair.b, tmp_path / "sctp.pcap", "ip proto 132") as pcap:
            lines = self.run_connect(pair, "--count", "20", "--size", "200")
            received = data_lines(stop(server))
            time.sleep(1.0)  # a slow machine's tcpdump may still be writing
        assert lines[0]["event"] == "connected" and lines[0]["backend"] == "kernel-sctp"
        assert lines[-1] == {"event": "summary", "sent": 20}
        assert [d["seq"] for d in received] == list(range(20))
        assert {(d["ppid"], d["type"], d["bytes"]) for d in received} == {(11, "Cookie", 200)}
        fields = "ip.proto", "sctp.dstport", "sctp.data_payload_proto_id", "asap.message_type"
        rows = tshark_fields(pcap, "asap", *fields)  # one row per frame: the kernel bundles DATA chunks
        chunks = [(proto, port, ppid, kind) for proto, port, ppids, kinds in rows
                  for ppid, kind in zip(ppids.split(","), kinds.split(","), strict=True)]  # fmt: skip
        assert len(chunks) >= 20
        assert set(chunks) == {("132", "3863", "11", str(AsapType.COOKIE.value))}
        handshake = tshark_fields(pcap, "sctp.chunk_type == 1", "sctp.parameter_ipv4_address")
        advertised = set(",".join(r[0] for r in handshake).split(","))
        assert set(pair.addresses(pair.a)) <= advertised  # multi-homed: INIT lists both addresses

    def test_failover_keeps_every_message_exactly_once(self, pair):
        server = self.listen(pair)
        connector = self.connect(pair, "--count", "400", "--interval-ms", "10")
        first, _ = wait_for_event(server, "data")  # traffic flows on the primary path (path 0)
        time.sleep(1.0)
        pair.set_path(0, up=False)
        out, err = connector.communicate(timeout=60)
        events = [json.loads(line) for line in out.splitlines()]
        received = [first, *data_lines(stop(server))]
        seqs = [d["seq"] for d in received]
        missing = sorted(set(range(400)) - set(seqs))[:10]
        assert seqs == list(range(400)), f"lost {missing}, {len(seqs)} delivered"
        unreachable = [e for e in events if e.get("kind") == "address-unreachable"]
        assert unreachable and unreachable[0]["address"] == pair.addresses(pair.b)[0], events
        gaps = [b["t"] - a["t"] for a, b in zip(received, received[1:], strict=False)]
        print(f"longest gap in delivery during failover: {max(gaps) * 1000:.0f} ms")

    def test_two_listeners_in_one_namespace(self, pair):
        asap, enrp = self.listen(pair), self.listen(pair, "--port", "9901")
        first = self.connect(pair, "--count", "200", "--interval-ms", "5")
        second = self.connect(pair, "--port", "9901", "--count", "200", "--interval-ms", "5")
        for proc in (first, second):
            proc.wait(60)
        assert [d["seq"] for d in data_lines(stop(asap))] == list(range(200))
        assert [d["seq"] for d in data_lines(stop(enrp))] == list(range(200))

    def test_connect_to_a_silent_peer_fails_within_the_timeout(self, pair):
        started = time.monotonic()  # nobody answers ARP for .99: INITs vanish, the timeout ends it
        where = {"to": ["10.1.0.99"], "bind": ["10.1.0.1"]}
        lines = self.run_connect(pair, "--connect-timeout", "1", "--count", "1", **where)
        assert lines[-1]["event"] == "error" and lines[-1]["error"] == "ConnectError"
        assert "no association within 1 s" in lines[-1]["message"]
        assert time.monotonic() - started < 10

    def test_connect_to_a_closed_port_is_refused_at_once(self, pair):
        lines = self.run_connect(pair, "--port", "4999", "--count", "1")
        assert lines[-1]["error"] == "ConnectError" and "ECONNREFUSED" in lines[-1]["message"], lines
        assert lines[-1]["seconds"] < 3

    def test_peer_abort_is_reported_to_the_other_side(self, pair):
        server = self.listen(pair)
        self.run_connect(pair, "--count", "3", "--abort")
        event, _ = wait_for_event(server, "closed")
        assert "lost" in event["reason"]
        stop(server)

    def test_oversize_message_is_refused_with_a_clear_error(self, pair):
        server = self.listen(pair)
        lines = self.run_connect(pair, "--count", "2", "--size", "3000", "--max-message-size", "2048")
        assert lines[-1]["error"] == "MessageTooLarge"
        assert lines[-1]["message"] == "message of 3000 bytes exceeds the limit of 2048"
        assert data_lines(stop(server)) == []

    def test_many_associations_leave_no_descriptor_behind(self, pair):
        server = pair.peer(pair.b, "listen", *BACKEND, "--port", "4000")
        wait_for_event(server, "listening")
        script = textwrap.dedent("""
            import asyncio, json, os, resource
            from nodes import transport
            async def main():
                opts = transport.TransportOptions(rto_initial_ms=300, rto_min_ms=100, rto_max_ms=500)
                fds, rss = [], []
                for i in range(150):
                    assoc = await transport.connect(["10.1.0.2"], 4000, backend="kernel-sctp", options=opts)
                    await assoc.send(b"x" * 100, 11)
                    await assoc.close()
                    if i in (20, 149):
                        fds.append(len(os.listdir("/proc/self/fd")))
                        rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
                try:
                    await assoc.send(b"late", 11)
                    late = "sent"
                except transport.AssociationClosed as exc:
                    late = str(exc)
                print(json.dumps({"late": late, "fds": fds, "rss_kib": rss}))
            asyncio.run(main())
        """)
        proc = pair.popen(pair.a, [sys.executable, "-c", script])
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        result = json.loads(out.splitlines()[-1])
        assert result["late"].startswith("cannot send: association ended (shutdown")
        assert result["fds"][0] == result["fds"][1], result  # every association's socket was closed
        assert result["rss_kib"][1] - result["rss_kib"][0] < 8 * 1024
        time.sleep(0.5)
        lines = [json.loads(line) for line in stop(server).splitlines()]
        assert sum(line["event"] == "accepted" for line in lines) == 150
        assert sum(line["event"] == "closed" for line in lines) == 150
        assert lines[-1] == {"event": "stopped", "open_associations": 0}

    @pytest.mark.skipif(not os.path.exists("/proc/net/if_inet6"), reason="no IPv6 in this kernel")
    def test_ipv6_multi_homed_association(self, pair):
        for (host, path), interface in pair.interfaces.items():
            last = 1 if host == pair.a else 2
            netns.run_ip("-n", host, "addr", "add", f"fd00:{path + 1}::{last}/64", "dev", interface, "nodad")
        server = self.listen(pair, bind=["fd00:1::2", "fd00:2::2"])
        where = {"to": ["fd00:1::2", "fd00:2::2"], "bind": ["fd00:1::1", "fd00:2::1"]}
        lines = self.run_connect(pair, "--count", "5", **where)
        accepted = read_json_line(server)
        received = data_lines(stop(server))
        assert lines[-1] == {"event": "summary", "sent": 5}
        assert [d["seq"] for d in received] == list(range(5)) and {d["ppid"] for d in received} == {11}
        assert set(accepted["peer"]) == {"fd00:1::1", "fd00:2::1"}, accepted
