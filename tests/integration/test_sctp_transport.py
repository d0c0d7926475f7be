"""Both SCTP backends between real namespaces: genuine SCTP on the wire, multi-homing,
failover without loss, several stacks per namespace, error cases, no leaks, IPv6.

Each test runs `python -m nodes.transport.peer` processes inside two dual-homed namespaces
(tests/netlab.py) and checks what they print, message by message, and what tshark decodes.
Every scenario runs for the userland stack (usrsctp) and for kernel SCTP; a backend this
machine lacks is skipped with the probe's reason.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
import time

import pytest

from nodes.transport import availability
from nodes.wire.constants import AsapType
from testbed import netns
from tests.netlab import capture, data_lines, dual_homed_pair, needs_root, stop, tshark_fields, wait_for_event

pytestmark = [needs_root, pytest.mark.netns]
FAST = ["--rto-initial-ms", "300", "--rto-min-ms", "100", "--rto-max-ms", "500", "--heartbeat-ms", "300"]
BACKENDS = [
    pytest.param("usrsctp", marks=pytest.mark.skipif(not availability.usrsctp()[0], reason=availability.usrsctp()[1])),
    pytest.param("kernel-sctp",
                 marks=pytest.mark.skipif(not availability.kernel_sctp()[0], reason=availability.kernel_sctp()[1])),
]  # fmt: skip


class Lab:
    """A dual-homed pair and the peer tool on one backend."""

    def __init__(self, pair, backend: str) -> None:
        self.pair, self.backend = pair, backend
        self.options = ["--backend", backend, *FAST]

    def listen(self, *extra: str, bind: list[str] | None = None):
        bind = bind or self.pair.addresses(self.pair.b)
        proc = self.pair.peer(self.pair.b, "listen", *self.options, "--bind", ",".join(bind), *extra)
        wait_for_event(proc, "listening")
        return proc

    def connect(self, *extra: str, to: list[str] | None = None, bind: list[str] | None = None):
        to, bind = to or self.pair.addresses(self.pair.b), bind or self.pair.addresses(self.pair.a)
        argv = [sys.executable, "-m", "nodes.transport.peer", "connect", *self.options]
        return self.pair.popen(self.pair.a, [*argv, "--to", ",".join(to), "--bind", ",".join(bind), *extra])

    def run_connect(self, *extra: str, timeout: float = 60, **where) -> list[dict]:
        out, err = self.connect(*extra, **where).communicate(timeout=timeout)
        lines = [json.loads(line) for line in out.splitlines()]
        assert lines, f"connect printed nothing; stderr: {err}"
        return lines


@pytest.fixture(params=BACKENDS)
def lab(request):
    with dual_homed_pair("s") as pair:
        yield Lab(pair, request.param)


@pytest.mark.skipif(not shutil.which("tshark"), reason="needs tshark")
def test_asap_over_sctp_with_ppid_11_decodes_in_tshark(lab, tmp_path):
    server = lab.listen()
    with capture(lab.pair.b, tmp_path / "sctp.pcap", "ip proto 132") as pcap:
        lines = lab.run_connect("--count", "20", "--size", "200")
        received = data_lines(stop(server))
    assert (lines[0]["event"], lines[0]["backend"]) == ("connected", lab.backend)
    assert lines[-1] == {"event": "summary", "sent": 20}
    assert [d["seq"] for d in received] == list(range(20))
    assert {(d["ppid"], d["type"], d["bytes"]) for d in received} == {(11, "Cookie", 200)}
    fields = "ip.proto", "sctp.dstport", "sctp.data_payload_proto_id", "asap.message_type"
    rows = tshark_fields(pcap, "asap", *fields)  # one row per frame; DATA chunks may be bundled
    chunks = [(proto, port, ppid, kind) for proto, port, ppids, kinds in rows
              for ppid, kind in zip(ppids.split(","), kinds.split(","), strict=True)]  # fmt: skip
    assert len(chunks) >= 20
    assert set(chunks) == {("132", "3863", "11", str(AsapType.COOKIE.value))}
    handshake = tshark_fields(pcap, "sctp.chunk_type == 1", "sctp.parameter_ipv4_address")
    advertised = set(",".join(r[0] for r in handshake).split(","))
    assert set(lab.pair.addresses(lab.pair.a)) <= advertised  # multi-homed: INIT lists both addresses


def test_failover_keeps_every_message_exactly_once(lab):
    server = lab.listen()
    connector = lab.connect("--count", "400", "--interval-ms", "10")
    first, _ = wait_for_event(server, "data")  # traffic flows on the primary path (path 0)
    time.sleep(1.0)
    lab.pair.set_path(0, up=False)
    out, _ = connector.communicate(timeout=60)
    events = [json.loads(line) for line in out.splitlines()]
    received = [first, *data_lines(stop(server))]
    seqs = [d["seq"] for d in received]
    assert seqs == list(range(400)), f"lost {sorted(set(range(400)) - set(seqs))[:10]}, {len(seqs)} delivered"
    unreachable = [e for e in events if e.get("kind") == "address-unreachable"]
    assert unreachable and unreachable[0]["address"] == lab.pair.addresses(lab.pair.b)[0], events
    gaps = [b["t"] - a["t"] for a, b in zip(received, received[1:], strict=False)]
    print(f"{lab.backend}: longest gap in delivery during failover: {max(gaps) * 1000:.0f} ms")


def test_two_stacks_in_one_namespace_do_not_abort_each_other(lab):
    """Each usrsctp process sees every SCTP packet of its namespace: without the blackhole
    setting, one would answer the other's packets with ABORT."""
    asap, enrp = lab.listen(), lab.listen("--port", "9901")
    first = lab.connect("--count", "200", "--interval-ms", "5")
    second = lab.connect("--port", "9901", "--count", "200", "--interval-ms", "5")
    for proc in (first, second):
        proc.wait(60)
    assert [d["seq"] for d in data_lines(stop(asap))] == list(range(200))
    assert [d["seq"] for d in data_lines(stop(enrp))] == list(range(200))


def test_connect_to_a_silent_peer_fails_within_the_timeout(lab):
    started = time.monotonic()  # nobody answers ARP for .99: INITs vanish, the timeout ends it
    lines = lab.run_connect("--connect-timeout", "2", "--count", "1", to=["10.1.0.99"], bind=["10.1.0.1"])
    assert (lines[-1]["event"], lines[-1]["error"]) == ("error", "ConnectError")
    assert "no association within 2 s" in lines[-1]["message"]
    assert time.monotonic() - started < 10


def test_connect_to_a_closed_port(lab):
    """Kernel SCTP answers INIT to a closed port with ABORT; usrsctp blackholes it (so that
    stacks sharing a namespace leave each other alone) and the connect times out."""
    lines = lab.run_connect("--port", "4999", "--count", "1", "--connect-timeout", "2")
    assert lines[-1]["error"] == "ConnectError"
    if lab.backend == "kernel-sctp":
        assert "ECONNREFUSED" in lines[-1]["message"] and lines[-1]["seconds"] < 3
    else:
        assert "no association within 2 s" in lines[-1]["message"]


def test_peer_abort_is_reported_to_the_other_side(lab):
    server = lab.listen()
    lab.run_connect("--count", "3", "--abort")
    event, _ = wait_for_event(server, "closed")
    assert "lost" in event["reason"]
    stop(server)


def test_oversize_message_is_refused_with_a_clear_error(lab):
    server = lab.listen()
    lines = lab.run_connect("--count", "2", "--size", "3000", "--max-message-size", "2048")
    assert lines[-1]["error"] == "MessageTooLarge"
    assert lines[-1]["message"] == "message of 3000 bytes exceeds the limit of 2048"
    assert data_lines(stop(server)) == []


LEAK_SCRIPT = textwrap.dedent("""
    import asyncio, json, os, resource, sys
    from nodes import transport
    async def main(backend):
        opts = transport.TransportOptions(rto_initial_ms=300, rto_min_ms=100, rto_max_ms=500)
        fds, rss = [], []
        for i in range(150):
            assoc = await transport.connect(["10.1.0.2"], 4000, backend=backend, options=opts)
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
        sockets = None
        if backend == "usrsctp":
            from nodes.transport import usrsctp
            sockets = len(usrsctp._stack.endpoints)
        print(json.dumps({"late": late, "fds": fds, "rss_kib": rss, "usrsctp_sockets": sockets}))
    asyncio.run(main(sys.argv[1]))
""")


def test_many_associations_leave_nothing_behind(lab):
    """150 associations opened and closed leave no socket on either side, and a closed
    association refuses to send instead of hanging."""
    server = lab.pair.peer(lab.pair.b, "listen", *lab.options, "--port", "4000")
    wait_for_event(server, "listening")
    proc = lab.pair.popen(lab.pair.a, [sys.executable, "-c", LEAK_SCRIPT, lab.backend])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result = json.loads(out.splitlines()[-1])
    assert result["late"].startswith("cannot send: association ended (shutdown")
    assert result["fds"][0] == result["fds"][1], result
    assert result["usrsctp_sockets"] in (None, 0)  # every outgoing association's socket was closed
    growth = result["rss_kib"][1] - result["rss_kib"][0]
    assert growth < 8 * 1024, f"RSS grew by {growth} KiB over 130 associations"
    time.sleep(0.5)
    lines = [json.loads(line) for line in stop(server).splitlines()]
    assert sum(line["event"] == "accepted" for line in lines) == 150
    assert sum(line["event"] == "closed" for line in lines) == 150
    assert lines[-1] == {"event": "stopped", "open_associations": 0}


def test_ipv6_multihomed_association(lab):
    pair = lab.pair
    for (host, path), interface in pair.interfaces.items():
        last = 1 if host == pair.a else 2
        netns.run_ip("-n", host, "addr", "add", f"fd00:{path + 1}::{last}/64", "dev", interface, "nodad")
    server = lab.listen(bind=["fd00:1::2", "fd00:2::2"])
    lines = lab.run_connect("--count", "5", to=["fd00:1::2", "fd00:2::2"], bind=["fd00:1::1", "fd00:2::1"])
    received = stop(server)
    accepted = next(json.loads(line) for line in received.splitlines() if '"accepted"' in line)
    assert sorted(lines[0]["peer"]) == ["fd00:1::2", "fd00:2::2"]
    assert sorted(accepted["peer"]) == ["fd00:1::1", "fd00:2::1"]
    assert [d["seq"] for d in data_lines(received)] == list(range(5))


@pytest.mark.skipif(not shutil.which("tshark"), reason="needs tshark")
@pytest.mark.skipif(not availability.usrsctp()[0], reason=availability.usrsctp()[1])
def test_usrsctp_over_udp_encapsulation(tmp_path):
    """RFC 6951: with an encapsulation port, the same association runs inside UDP."""
    with dual_homed_pair("u") as pair:
        lab = Lab(pair, "usrsctp")
        encaps = ["--udp-encaps-port", "9899"]
        server = lab.listen(*encaps)
        with capture(pair.b, tmp_path / "udp.pcap", "udp port 9899") as pcap:
            lines = lab.run_connect("--count", "10", *encaps)
            received = data_lines(stop(server))
    assert lines[-1] == {"event": "summary", "sent": 10}
    assert [d["seq"] for d in received] == list(range(10))
    rows = tshark_fields(pcap, "asap", "udp.dstport", "sctp.data_payload_proto_id")
    ppids = [ppid for _, chunk_ppids in rows for ppid in chunk_ppids.split(",")]  # DATA chunks bundle
    assert {r[0] for r in rows} == {"9899"} and ppids.count("11") >= 10


# Both ends of the shared-port scenario (see shared_port_scenario): `a` listens on port P and
# connects from P to b's listener on Q; b connects back to P.  Each association carries one
# message each way (ping: send seq, expect seq + 1).  Every line printed is one step.
SHARED_PORT_SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    from nodes import transport
    from nodes.transport.peer import cookie, sequence_of

    role, backend, mine, theirs, P, Q = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4].split(","), int(sys.argv[5]), int(sys.argv[6])
    OPTIONS = transport.TransportOptions(rto_initial_ms=300, rto_min_ms=100, rto_max_ms=500, heartbeat_interval_ms=300)
    T = 20

    def say(event, **fields):
        print(json.dumps({"event": event, **fields}), flush=True)

    async def receive(assoc):
        return sequence_of((await asyncio.wait_for(assoc.receive(), T)).data, 11)[0]

    async def ping(assoc, seq):
        await assoc.send(cookie(seq, 64), 11)
        return await receive(assoc)

    async def pong(assoc):
        seq = await receive(assoc)
        await assoc.send(cookie(seq + 1, 64), 11)
        return seq

    async def connect(port, local_port=0):
        return await transport.connect(theirs, port, local=mine, backend=backend, options=OPTIONS, local_port=local_port)

    async def ended(assoc):
        try:
            while True:
                await asyncio.wait_for(assoc.next_item(), T)
        except transport.AssociationClosed as exc:
            return exc.event.kind.value if exc.event else "closed locally"

    async def side_a():
        listener = await transport.listen(mine, P, backend=backend, options=OPTIONS)
        accepted = []
        async def accept():
            assoc = await asyncio.wait_for(listener.accept(), T)
            accepted.append(assoc.peer_port)
            return assoc
        out = await connect(Q, local_port=P)
        say("out", peer_port=out.peer_port, reply=await ping(out, 1))
        back = await accept()
        say("back", got=await pong(back))
        # Both ends through the listener's socket (usrsctp): the listener must go on.  Abort
        # first: a TCP close would hold this 4-tuple in TIME_WAIT, and out2 reuses it.
        out.abort()
        out2 = await connect(Q, local_port=P)
        say("out2", reply=await ping(out2, 20))
        await out2.close()
        again = await accept()
        say("again", got=await pong(again))
        sockets = None
        if backend == "usrsctp":
            from nodes.transport import usrsctp
            sockets = len(usrsctp._stack.endpoints)
        say("done", accepted_peer_ports=accepted, pending=listener._incoming.qsize(), back_open=back.is_open,
            usrsctp_sockets=sockets)
        await back.close()
        await again.close()
        await listener.close()

    async def side_b():
        listener = await transport.listen(mine, Q, backend=backend, options=OPTIONS)
        say("listening")
        first = await asyncio.wait_for(listener.accept(), T)
        say("first", peer_port=first.peer_port, got=await pong(first))
        back = await connect(P)
        say("back", reply=await ping(back, 10))
        second = await asyncio.wait_for(listener.accept(), T)
        say("second", peer_port=second.peer_port, got=await pong(second), ended=await ended(second))
        again = await connect(P)
        say("again", reply=await ping(again, 30))
        say("done", first_ended=await ended(first))
        await back.close()
        await again.close()
        await listener.close()

    asyncio.run(side_a() if role == "a" else side_b())
""")
SHARED_PORT, PEER_PORT = 5000, 6000


def shared_port_scenario(pair, backend: str) -> tuple[dict[str, dict], dict[str, dict]]:
    """Run SHARED_PORT_SCRIPT in b, then a; each side's steps by name."""

    def start(host: str, role: str, mine: list[str], theirs: list[str]):
        argv = [sys.executable, "-c", SHARED_PORT_SCRIPT, role, backend, ",".join(mine), ",".join(theirs),
                str(SHARED_PORT), str(PEER_PORT)]  # fmt: skip
        return pair.popen(host, argv)

    a_addresses, b_addresses = pair.addresses(pair.a), pair.addresses(pair.b)
    b = start(pair.b, "b", b_addresses, a_addresses)
    wait_for_event(b, "listening")
    a = start(pair.a, "a", a_addresses, b_addresses)
    out, err = a.communicate(timeout=90)
    assert a.returncode == 0, f"side a failed: {err}\n{out}"
    b.wait(30)
    rest = stop(b)
    assert b.returncode == 0, f"side b failed: {b.stderr.read() if b.stderr else ''}\n{rest}"
    a_steps = {line["event"]: line for line in map(json.loads, out.splitlines())}
    b_steps = {line["event"]: line for line in map(json.loads, rest.splitlines())}
    return a_steps, b_steps


def check_shared_port(a: dict[str, dict], b: dict[str, dict]) -> None:
    """What both the SCTP and the stream test expect of SHARED_PORT_SCRIPT's run."""
    assert b["first"] == {"event": "first", "peer_port": SHARED_PORT, "got": 1}  # b sees a's listening port
    assert a["out"] == {"event": "out", "peer_port": PEER_PORT, "reply": 2}
    assert (b["back"]["reply"], a["back"]["got"]) == (11, 10)  # b's association to a's port P works
    assert (a["out2"]["reply"], b["second"]["got"], b["second"]["peer_port"]) == (21, 20, SHARED_PORT)
    assert b["done"]["first_ended"] == "lost" and b["second"]["ended"] == "shutdown"
    assert (b["again"]["reply"], a["again"]["got"]) == (31, 30)  # the listener outlived both outgoing ones
    done = a["done"]
    assert len(done["accepted_peer_ports"]) == 2 and PEER_PORT not in done["accepted_peer_ports"], done
    assert done["pending"] == 0, "a's listener reported its own outgoing association as incoming"
    assert done["back_open"], "closing or aborting an outgoing association ended an accepted one"


def test_connect_from_the_port_a_listener_holds(lab):
    """A PE connects to registrars from the port it listens on (its registrator transport),
    so that a registrar taking it over can reach it there.  usrsctp: the outgoing associations
    go through the listener's one-to-many socket, which must go on serving when they end."""
    a, b = shared_port_scenario(lab.pair, lab.backend)
    check_shared_port(a, b)
    if lab.backend == "usrsctp":
        assert a["done"]["usrsctp_sockets"] == 1  # the listener's socket only: none of their own
