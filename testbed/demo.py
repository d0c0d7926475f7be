"""The small real demo that stands in for the full testbed until the harness exists.

Two network namespaces joined by a veth pair play a registrar's and a peer's host.
The sender puts one of every ASAP and ENRP message on the link over UDP: the
SERVER_ANNOUNCE and ENRP_PRESENCE by multicast to rsplib's groups, the others unicast
to ports 3863/9901. The receiver joins the groups and decodes what arrives with the
codec; tcpdump records the link, and the pcap is decoded again by `testbed decode`'s
code and by tshark, as an independent check.

Run as `python -m testbed.demo send|receive ...` inside a namespace (the demo does).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from nodes.wire import ASAP_ANNOUNCE_GROUP, ENRP_PRESENCE_GROUP, DecodeError, Presence, Protocol, ServerAnnounce, decode
from nodes.wire.examples import example_messages

from . import netns

SUBNET = "10.77.0"


@dataclasses.dataclass
class DemoResult:
    sent: int
    received: list[dict[str, object]]
    captured: list[dict[str, object]]
    tshark: dict[str, int] | None
    pcap: Path


def _bound_socket(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    return sock


def send(local: str, peer: str) -> int:
    """Send every example message; announces by multicast, the rest unicast."""
    sockets = {p: _bound_socket(local, p.port) for p in Protocol}
    for sock in sockets.values():
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(local))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    messages = example_messages()
    for message in messages:
        if isinstance(message, ServerAnnounce):
            target = ASAP_ANNOUNCE_GROUP
        elif isinstance(message, Presence):
            target = ENRP_PRESENCE_GROUP
        else:
            target = (peer, message.PROTOCOL.port)
        sockets[message.PROTOCOL].sendto(message.encode(), target)
        time.sleep(0.002)
    return len(messages)


def receive(local: str, count: int, timeout: float) -> None:
    """Join the announce groups, decode `count` messages, print one JSON line each."""
    sockets = {}
    for protocol, (group, port) in ((Protocol.ASAP, ASAP_ANNOUNCE_GROUP), (Protocol.ENRP, ENRP_PRESENCE_GROUP)):
        sock = _bound_socket("0.0.0.0", port)
        membership = socket.inet_aton(group) + socket.inet_aton(local)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        sockets[sock] = protocol
    print("ready", flush=True)
    deadline = time.monotonic() + timeout
    got = 0
    while got < count and time.monotonic() < deadline:
        readable, _, _ = select.select(list(sockets), [], [], max(deadline - time.monotonic(), 0))
        for sock in readable:
            data, (src, sport) = sock.recvfrom(65535)
            record: dict[str, object] = {"src": f"{src}:{sport}", "protocol": sockets[sock].label}
            try:
                record["type_name"] = decode(data, sockets[sock]).NAME
            except DecodeError as exc:
                record["error"] = str(exc)
            print(json.dumps(record), flush=True)
            got += 1


def _wait_for_line(proc: subprocess.Popen[str], stream_name: str, text: str, timeout: float) -> None:
    stream = getattr(proc, stream_name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([stream], [], [], 0.1)[0]:
            line = stream.readline()
            if text in line:
                return
            if not line and proc.poll() is not None:
                break
    raise RuntimeError(f"{proc.args[-1] if proc.args else 'process'} did not print {text!r} within {timeout}s")


def tshark_counts(pcap: Path) -> dict[str, int] | None:
    """How many ASAP, ENRP and malformed frames tshark finds; None without tshark."""
    if not shutil.which("tshark"):
        return None
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-T", "fields", "-e", "asap.message_type", "-e", "enrp.message_type",
         "-e", "_ws.malformed"],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    return {
        "asap": sum(1 for r in rows if r[0]),
        "enrp": sum(1 for r in rows if len(r) > 1 and r[1]),
        "malformed": sum(1 for r in rows if len(r) > 2 and r[2]),
    }


def run(pcap: Path) -> DemoResult:
    """Build the two namespaces, exchange the messages, capture and decode; clean up always."""
    from captures.report import decode_capture

    for tool in ("ip", "tcpdump"):
        if not shutil.which(tool):
            raise RuntimeError(f"{tool} is not installed (run scripts/install.sh)")
    if os.geteuid() != 0:
        raise RuntimeError("the demo creates network namespaces: run it as root")
    ns_a, ns_b = netns.unique_name("a"), netns.unique_name("b")
    if_a, if_b = netns.unique_name("a0"), netns.unique_name("b0")
    addr_a, addr_b = f"{SUBNET}.1", f"{SUBNET}.2"
    python = [sys.executable, "-m", "testbed.demo"]
    processes: list[subprocess.Popen[str]] = []
    with netns.namespaces(ns_a, ns_b):
        try:
            netns.add_veth(ns_a, if_a, ns_b, if_b)
            for ns, ifname, addr in ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)):
                netns.run_ip("-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
                netns.run_ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", ifname)
            expected = len(example_messages())
            receiver = subprocess.Popen(
                netns.in_netns(ns_b, [*python, "receive", "--local", addr_b, "--count", str(expected)]),
                stdout=subprocess.PIPE, text=True,
            )
            processes.append(receiver)
            tcpdump = subprocess.Popen(
                netns.in_netns(ns_b, ["tcpdump", "-i", if_b, "--immediate-mode", "-B", "8192", "-U", "-w", str(pcap), "udp port 3863 or udp port 9901"]),
                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            )
            processes.append(tcpdump)
            _wait_for_line(tcpdump, "stderr", "listening on", 10)
            _wait_for_line(receiver, "stdout", "ready", 10)
            sent = subprocess.run(
                netns.in_netns(ns_a, [*python, "send", "--local", addr_a, "--peer", addr_b]),
                capture_output=True, text=True, check=True,
            )
            out, _ = receiver.communicate(timeout=15)
            received = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            time.sleep(0.2)
            tcpdump.send_signal(signal.SIGINT)
            tcpdump.wait(timeout=10)
        finally:
            for proc in processes:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    captured = list(decode_capture(pcap))
    return DemoResult(int(sent.stdout.strip() or 0), received, captured, tshark_counts(pcap), pcap)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m testbed.demo")
    sub = parser.add_subparsers(dest="role", required=True)
    s = sub.add_parser("send")
    s.add_argument("--local", required=True)
    s.add_argument("--peer", required=True)
    r = sub.add_parser("receive")
    r.add_argument("--local", required=True)
    r.add_argument("--count", type=int, required=True)
    r.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.role == "send":
        print(send(args.local, args.peer))
    else:
        receive(args.local, args.count, args.timeout)


if __name__ == "__main__":
    main()
