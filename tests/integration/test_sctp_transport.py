"""The userland SCTP backend between real namespaces: genuine SCTP on the wire, multi-homing,
failover without loss, several stacks per namespace, error cases.

Each test runs `python -m nodes.transport.peer` processes inside two dual-homed namespaces
(tests/netlab.py) and checks what they print, message by message, and what tshark decodes.
The same scenarios run against kernel SCTP in test_kernel_sctp.py where the kernel has it.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
import time

import pytest

from nodes.transport import availability
from testbed import netns
from nodes.wire.constants import AsapType
from tests.netlab import (
    capture,
    data_lines,
    dual_homed_pair,
    needs_root,
    stop,
    tshark_fields,
    wait_for_event,
)

pytestmark = [
    needs_root,
    pytest.mark.netns,
    pytest.mark.skipif(not availability.usrsctp()[0], reason=availability.usrsctp()[1]),
]
FAST = ["--rto-initial-ms", "300", "--rto-min-ms", "100", "--rto-max-ms", "500", "--heartbeat-ms", "300"]
BACKEND = ["--backend", "usrsctp", *FAST]


@pytest.fixture
def pair():
    with dual_homed_pair("s") as lab:
        yield lab


def listen(pair, *extra: str):
    proc = pair.peer(pair.b, "listen", *BACKEND, "--bind", ",".join(pair.addresses(pair.b)), *extra)
    wait_for_event(proc, "listening")
    return proc


def run_connect(pair, *extra: str, timeout: float = 60) -> list[dict]:
    argv = [sys.executable, "-m", "nodes.transport.peer", "connect", *BACKEND,
            "--to", ",".join(pair.addresses(pair.b)), "--bind", ",".join(pair.addresses(pair.a)), *extra]  # fmt: skip
    proc = pair.popen(pair.a, argv)
    out, err = proc.communicate(timeout=timeout)
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines, f"connect printed nothing; stderr: {err}"
    return lines


@pytest.mark.skipif(not shutil.which("tshark"), reason="needs tshark")
def test_asap_over_sctp_with_ppid_11_decodes_in_tshark(pair, tmp_path):
    server = listen(pair)
    with capture(pair.b, tmp_path / "sctp.pcap", "ip proto 132") as pcap:
        lines = run_connect(pair, "--count", "20", "--size", "200")
        received = data_lines(stop(server))
    assert lines[-1] == {"event": "summary", "sent": 20}
    assert [d["seq"] for d in received] == list(range(20))
    assert {(d["ppid"], d["type"], d["bytes"]) for d in received} == {(11, "Cookie", 200)}
    rows = tshark_fields(pcap, "asap", "ip.proto", "sctp.data_payload_proto_id", "asap.message_type", "sctp.dstport")
    assert len(rows) >= 20
    assert {tuple(r) for r in rows} == {("132", "11", str(AsapType.COOKIE.value), "3863")}
    handshake = tshark_fields(pcap, "sctp.chunk_type == 1", "sctp.parameter_ipv4_address")
    advertised = set(",".join(r[0] for r in handshake).split(","))
    assert set(pair.addresses(pair.a)) <= advertised  # multi-homed: INIT lists both addresses


def test_failover_keeps_every_message_exactly_once(pair):
    server = listen(pair)
    connector = pair.popen(pair.a, [sys.executable, "-m", "nodes.transport.peer", "connect", *BACKEND,
                                    "--to", ",".join(pair.addresses(pair.b)),
                                    "--bind", ",".join(pair.addresses(pair.a)),
                                    "--count", "400", "--interval-ms", "10"])  # fmt: skip
    first, _ = wait_for_event(server, "data")  # traffic flows on the primary path (path 0)
    time.sleep(1.0)
    pair.set_path(0, up=False)
    out, err = connector.communicate(timeout=60)
    events = [json.loads(line) for line in out.splitlines()]
    received = [first, *data_lines(stop(server))]
    seqs = [d["seq"] for d in received]
    assert seqs == list(range(400)), f"lost {sorted(set(range(400)) - set(seqs))[:10]}, {len(seqs)} delivered"
    unreachable = [e for e in events if e.get("kind") == "address-unreachable"]
    assert unreachable and unreachable[0]["address"] == pair.addresses(pair.b)[0], events
    gaps = [b["t"] - a["t"] for a, b in zip(received, received[1:], strict=False)]
    print(f"longest gap in delivery during failover: {max(gaps) * 1000:.0f} ms")


def test_two_stacks_in_one_namespace_do_not_abort_each_other(pair):
    """Each usrsctp process sees every SCTP packet of its namespace: without the blackhole
    setting, one would answer the other's packets with ABORT."""
    asap = listen(pair)
    enrp = listen(pair, "--port", "9901")
    first = pair.peer(pair.a, "connect", *BACKEND, "--to", pair.addresses(pair.b)[0], "--count", "200",
                      "--interval-ms", "5")  # fmt: skip
    second = pair.peer(pair.a, "connect", *BACKEND, "--to", pair.addresses(pair.b)[0], "--port", "9901",
                       "--count", "200", "--interval-ms", "5")  # fmt: skip
    for proc in (first, second):
        proc.wait(60)
    assert [d["seq"] for d in data_lines(stop(asap))] == list(range(200))
    assert [d["seq"] for d in data_lines(stop(enrp))] == list(range(200))


def test_connect_to_dead_peer_fails_within_the_timeout(pair):
    started = time.monotonic()
    lines = run_connect(pair, "--connect-timeout", "2", "--count", "1")
    assert lines[-1]["event"] == "error" and lines[-1]["error"] == "ConnectError"
    assert "no association within 2 s" in lines[-1]["message"]
    assert time.monotonic() - started < 10


def test_peer_abort_is_reported_to_the_other_side(pair):
    server = listen(pair)
    run_connect(pair, "--count", "3", "--abort")
    event, _ = wait_for_event(server, "closed")
    assert "lost" in event["reason"]
    stop(server)


def test_oversize_message_is_refused_with_a_clear_error(pair):
    server = listen(pair)
    lines = run_connect(pair, "--count", "2", "--size", "3000", "--max-message-size", "2048")
    assert lines[-1]["error"] == "MessageTooLarge"
    assert lines[-1]["message"] == "message of 3000 bytes exceeds the limit of 2048"
    assert data_lines(stop(server)) == []


def test_closed_association_and_many_associations_without_leaks(pair):
    """150 associations opened and closed leave nothing behind on either side, and a closed
    association refuses to send instead of hanging."""
    server = pair.peer(pair.b, "listen", *BACKEND, "--port", "4000")
    wait_for_event(server, "listening")
    script = textwrap.dedent("""
        import asyncio, json, resource
        from nodes import transport
        from nodes.transport import usrsctp
        async def main():
            opts = transport.TransportOptions(rto_initial_ms=300, rto_min_ms=100, rto_max_ms=500)
            rss = []
            for i in range(150):
                assoc = await transport.connect(["10.1.0.2"], 4000, backend="usrsctp", options=opts)
                await assoc.send(b"x" * 100, 11)
                await assoc.close()
                if i in (20, 149):
                    rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            try:
                await assoc.send(b"late", 11)
                late = "sent"
            except transport.AssociationClosed as exc:
                late = str(exc)
            print(json.dumps({"late": late, "endpoints": len(usrsctp._stack.endpoints), "rss_kib": rss}))
        asyncio.run(main())
    """)
    proc = pair.popen(pair.a, [sys.executable, "-c", script])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result = json.loads(out.splitlines()[-1])
    assert result["late"].startswith("cannot send: association ended (shutdown")
    assert result["endpoints"] == 0  # every outgoing association's socket was closed
    growth = result["rss_kib"][1] - result["rss_kib"][0]
    assert growth < 8 * 1024, f"RSS grew by {growth} KiB over 130 associations"
    time.sleep(0.5)
    lines = [json.loads(line) for line in stop(server).splitlines()]
    assert sum(line["event"] == "accepted" for line in lines) == 150
    assert sum(line["event"] == "closed" for line in lines) == 150
    assert lines[-1] == {"event": "stopped", "open_associations": 0}


@pytest.mark.skipif(not shutil.which("tshark"), reason="needs tshark")
def test_sctp_over_udp_encapsulation(pair, tmp_path):
    """RFC 6951: with an encapsulation port, the same association runs inside UDP."""
    encaps = ["--udp-encaps-port", "9899"]
    server = listen(pair, *encaps)
    with capture(pair.b, tmp_path / "udp.pcap", "udp port 9899") as pcap:
        lines = run_connect(pair, "--count", "10", *encaps)
        received = data_lines(stop(server))
    assert lines[-1] == {"event": "summary", "sent": 10}
    assert [d["seq"] for d in received] == list(range(10))
    rows = tshark_fields(pcap, "asap", "udp.dstport", "sctp.data_payload_proto_id")
    ppids = [ppid for _, chunk_ppids in rows for ppid in chunk_ppids.split(",")]  # DATA chunks bundle
    assert {r[0] for r in rows} == {"9899"} and ppids.count("11") >= 10


def test_ipv6_multihomed_association(pair):
    for path in (0, 1):
        for host, last in ((pair.a, 1), (pair.b, 2)):
            netns.run_ip("-n", host, "addr", "add", f"fd00:{path + 1}::{last}/64", "dev",
                         pair.interfaces[host, path], "nodad")  # fmt: skip
    server = pair.peer(pair.b, "listen", *BACKEND, "--bind", "fd00:1::2,fd00:2::2")
    wait_for_event(server, "listening")
    connector = pair.peer(pair.a, "connect", *BACKEND, "--to", "fd00:1::2,fd00:2::2", "--count", "5")
    connected, _ = wait_for_event(connector, "connected")
    connector.wait(30)
    lines = [json.loads(line) for line in stop(server).splitlines()]
    assert sorted(connected["peer"]) == ["fd00:1::2", "fd00:2::2"]
    accepted = next(line for line in lines if line["event"] == "accepted")
    assert sorted(accepted["peer"]) == ["fd00:1::1", "fd00:2::1"]
    assert [d["seq"] for d in lines if d["event"] == "data"] == list(range(5))
