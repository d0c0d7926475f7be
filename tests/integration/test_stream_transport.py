"""TCP and MPTCP between real namespaces: framing, MPTCP failover over two subflows, errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import pytest

from nodes import transport
from nodes.transport import availability
from nodes.transport.stream import mptcp_endpoint_commands
from testbed import netns
from tests.integration.test_sctp_transport import check_shared_port, shared_port_scenario
from tests.netlab import data_lines, dual_homed_pair, needs_root, stop, wait_for_event

pytestmark = [needs_root, pytest.mark.netns]
needs_mptcp = pytest.mark.skipif(not availability.mptcp()[0], reason=availability.mptcp()[1])


@pytest.fixture
def pair():
    with dual_homed_pair("t") as lab:
        yield lab


def configure_mptcp(pair) -> None:
    for host, server in ((pair.a, False), (pair.b, True)):
        interfaces = [(address, pair.interfaces[host, i]) for i, address in enumerate(pair.addresses(host))]
        for command in mptcp_endpoint_commands(interfaces, server=server):
            subprocess.run(netns.in_netns(host, command), check=True, capture_output=True)


def connect_lines(pair, *args: str, timeout: float = 60) -> list[dict]:
    proc = pair.peer(pair.a, "connect", "--to", ",".join(pair.addresses(pair.b)), *args)
    out, err = proc.communicate(timeout=timeout)
    assert out, err
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("backend", ["tcp", pytest.param("mptcp", marks=needs_mptcp)])
def test_messages_arrive_once_in_order_labelled_by_port(pair, backend):
    server = pair.peer(pair.b, "listen", "--backend", backend)
    wait_for_event(server, "listening")
    lines = connect_lines(pair, "--backend", backend, "--count", "500", "--size", "700")
    # Until the server has seen the connection end: stopping it at once cut off what was still
    # in flight over MPTCP's subflows (seen once in CI: the last 35 messages).
    _, seen = wait_for_event(server, "closed", 15)
    stop(server)
    received = [d for d in seen if d.get("event") == "data"]
    assert lines[-1] == {"event": "summary", "sent": 500}
    assert [d["seq"] for d in received] == list(range(500))
    assert {(d["ppid"], d["bytes"]) for d in received} == {(11, 700)}
    # ASAP messages on ENRP's port: a byte stream cannot label them, so they are refused.
    enrp = pair.peer(pair.b, "listen", "--backend", backend, "--port", "9901")
    wait_for_event(enrp, "listening")
    refused = connect_lines(pair, "--backend", backend, "--port", "9901", "--count", "1")[-1]
    assert refused["message"] == f"this {backend} connection carries PPID 12 only, not 11"
    assert data_lines(stop(enrp)) == []


@needs_mptcp
def test_mptcp_failover_over_the_second_subflow(pair):
    configure_mptcp(pair)
    server = pair.peer(pair.b, "listen", "--backend", "mptcp")
    wait_for_event(server, "listening")
    client = pair.peer(pair.a, "connect", "--backend", "mptcp", "--to", ",".join(pair.addresses(pair.b)),
                       "--count", "300", "--interval-ms", "10")  # fmt: skip
    first, _ = wait_for_event(server, "data")
    time.sleep(0.5)
    subflows = subprocess.run(netns.in_netns(pair.a, ["ss", "-tnH", "state", "established", "dport", "= :3863"]),
                              capture_output=True, text=True).stdout.splitlines()  # fmt: skip
    assert {line.split()[-1] for line in subflows} == {f"{a}:3863" for a in pair.addresses(pair.b)}
    pair.set_path(0, up=False)
    client.communicate(timeout=60)
    received = [first, *data_lines(stop(server))]
    assert [d["seq"] for d in received] == list(range(300))
    gaps = [b["t"] - a["t"] for a, b in zip(received, received[1:], strict=False)]
    print(f"longest MPTCP delivery gap during failover: {max(gaps) * 1000:.0f} ms")


def test_connect_refused_and_silent_peer(pair):
    started = time.monotonic()
    refused = connect_lines(pair, "--backend", "tcp", "--count", "1")[-1]
    assert refused["error"] == "ConnectError" and "Connection refused" in refused["message"]
    assert time.monotonic() - started < 5
    netns.run_ip("-n", pair.b, "link", "set", pair.interfaces[pair.b, 0], "down")
    netns.run_ip("-n", pair.b, "link", "set", pair.interfaces[pair.b, 1], "down")
    proc = pair.peer(pair.a, "connect", "--backend", "tcp", "--to", "10.1.0.2", "--connect-timeout", "1.5")
    silent = json.loads(proc.communicate(timeout=30)[0].splitlines()[-1])
    assert silent["message"] == "tcp connection to port 3863 failed: 10.1.0.2: no answer within 1.5 s"


def test_oversize_message_is_refused(pair):
    server = pair.peer(pair.b, "listen", "--backend", "tcp")
    wait_for_event(server, "listening")
    last = connect_lines(pair, "--backend", "tcp", "--size", "3000", "--max-message-size", "2048")[-1]
    assert (last["error"], last["message"]) == ("MessageTooLarge", "message of 3000 bytes exceeds the limit of 2048")
    assert data_lines(stop(server)) == []


def test_garbage_on_the_stream_ends_the_association_with_a_framing_error(pair):
    server = pair.peer(pair.b, "listen", "--backend", "tcp")
    wait_for_event(server, "listening")
    script = ("import socket; s = socket.create_connection(('10.1.0.2', 3863)); "
              "s.sendall(b'\\x01\\x00\\x00\\x02junk'); import time; time.sleep(1)")  # fmt: skip
    subprocess.run(netns.in_netns(pair.a, ["python3", "-c", script]), check=True, timeout=20)
    closed, seen = wait_for_event(server, "closed")
    assert "framing error: message length 2 at the head of the stream is not between 4 and 65535" in closed["reason"]
    assert data_lines(stop(server)) == []


def test_closing_a_listener_ends_the_associations_it_accepted():
    async def scenario() -> tuple[bool, str]:
        listener = await transport.listen(["127.0.0.1"], 38631, backend="tcp")
        client = await transport.connect(["127.0.0.1"], 38631, backend="tcp")
        served = await asyncio.wait_for(listener.accept(), 5)
        await listener.close()
        with pytest.raises(transport.AssociationClosed) as ended:
            await asyncio.wait_for(client.receive(), 5)
        return served.is_open, ended.value.event.kind.value

    served_open, client_saw = asyncio.run(scenario())
    assert served_open is False
    assert client_saw == "lost"  # the accepted side was aborted (RST), not shut down


def test_tcp_connect_from_the_port_a_listener_holds(pair):
    """SO_REUSEPORT on the listener and the connecting socket: a PE's connection to a registrar
    leaves from the port the PE listens on, and the registrar can connect back to it."""
    a, b = shared_port_scenario(pair, "tcp")
    check_shared_port(a, b)


def test_a_second_listener_on_a_port_is_still_refused():
    """SO_REUSEPORT must not let two listeners share a port silently (the kernel would split
    the connections between them): listen() probes with the options it had before."""

    async def scenario() -> str:
        first = await transport.listen(["127.0.0.1"], 38632, backend="tcp")
        try:
            with pytest.raises(transport.TransportError) as refused:
                await transport.listen(["127.0.0.1"], 38632, backend="tcp")
            client = await transport.connect(["127.0.0.1"], 38632, backend="tcp", local_port=38633)
            served = await asyncio.wait_for(first.accept(), 5)
            assert served.peer_port == 38633
            client.abort()
            return str(refused.value)
        finally:
            await first.close()

    assert asyncio.run(scenario()) == "cannot listen on 127.0.0.1 port 38632: Address already in use"
