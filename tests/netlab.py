"""Small network labs in real namespaces for transport tests.

`dual_homed_pair()` gives two hosts, each with two interfaces on two disjoint subnets
(path 0: 10.1.0.0/24, path 1: 10.2.0.0/24), the setting of a multi-homed SCTP association
or an MPTCP connection with two subflows.  Names are unique per test run, and everything is
removed on exit, also when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed import netns

ROOT = Path(__file__).resolve().parent.parent
SUBNETS = ("10.1.0", "10.2.0")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


@dataclass
class DualHomedPair:
    a: str
    b: str
    interfaces: dict[tuple[str, int], str]  # (namespace, path) -> interface name

    def addresses(self, host: str) -> list[str]:
        last = 1 if host == self.a else 2
        return [f"{subnet}.{last}" for subnet in SUBNETS]

    def set_path(self, path: int, up: bool) -> None:
        """Take path `path` down (or up) at host a's end: b's packets on it go nowhere."""
        netns.run_ip("-n", self.a, "link", "set", self.interfaces[self.a, path], "up" if up else "down")

    def popen(self, host: str, argv: Sequence[str], **kwargs) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen(
            netns.in_netns(host, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env, **kwargs,
        )  # fmt: skip

    def peer(self, host: str, *args: str) -> subprocess.Popen[str]:
        """The transport test peer (`python -m nodes.transport.peer`) inside `host`."""
        return self.popen(host, [sys.executable, "-m", "nodes.transport.peer", *args])


@contextlib.contextmanager
def dual_homed_pair(tag: str = "") -> Iterator[DualHomedPair]:
    a, b = netns.unique_name(f"{tag}a"), netns.unique_name(f"{tag}b")
    interfaces: dict[tuple[str, int], str] = {}
    with netns.namespaces(a, b):
        for path, subnet in enumerate(SUBNETS):
            if_a, if_b = f"{a[-9:]}p{path}", f"{b[-9:]}p{path}"
            netns.add_veth(a, if_a, b, if_b)
            netns.run_ip("-n", a, "addr", "add", f"{subnet}.1/24", "dev", if_a)
            netns.run_ip("-n", b, "addr", "add", f"{subnet}.2/24", "dev", if_b)
            interfaces[a, path], interfaces[b, path] = if_a, if_b
        yield DualHomedPair(a, b, interfaces)


_readers: dict[int, tuple[threading.Thread, queue.Queue[str | None]]] = {}


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """A queue of the lines `proc` prints, fed by a thread: select() on a text pipe would
    miss lines already read into Python's buffer."""
    if proc.pid not in _readers:
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        _readers[proc.pid] = (thread, lines)
    return _readers[proc.pid][1]


def read_json_line(proc: subprocess.Popen[str], timeout: float = 15.0) -> dict:
    """The next JSON line a peer prints; fails the test with its stderr on EOF or timeout."""
    try:
        line = _lines(proc).get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no output within {timeout:.0f} s from {proc.args}") from None
    if line is None:
        _lines(proc).put(None)
        proc.wait(5)
        stderr = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"{proc.args} ended (exit {proc.returncode}): {stderr}")
    return json.loads(line)


def wait_for_event(proc: subprocess.Popen[str], name: str, timeout: float = 15.0) -> tuple[dict, list[dict]]:
    """Read lines until one with event == name; returns it and everything read before."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {name!r} event within {timeout} s; saw {seen[-5:]}")
        line = read_json_line(proc, remaining)
        if line.get("event") == name:
            return line, seen
        seen.append(line)


def stop(proc: subprocess.Popen[str]) -> str:
    """Terminate a peer and return the rest of its stdout."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    lines = _lines(proc)
    _readers[proc.pid][0].join(10)
    rest = []
    while (line := lines.get_nowait() if not lines.empty() else None) is not None:
        rest.append(line)
    return "".join(rest)


@contextlib.contextmanager
def capture(host: str, pcap: Path, bpf: str = "") -> Iterator[Path]:
    """tcpdump on every interface of `host` into `pcap` while the block runs."""
    # --immediate-mode: without it libpcap holds packets in its ring for up to a second, and
    # those still there when tcpdump is stopped never reach the file.  -B 8192 (KiB): with the
    # default buffer, a burst of SCTP packets between namespaces lost 14 of 20 in the capture.
    argv = ["tcpdump", "-i", "any", "--immediate-mode", "-B", "8192", "-U", "-n", "-w", str(pcap), *bpf.split()]
    proc = subprocess.Popen(netns.in_netns(host, argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 10
        while "listening on" not in proc.stderr.readline():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"tcpdump did not start in {host}")
        yield pcap
    finally:
        time.sleep(0.3)  # let the last packets reach the file
        proc.terminate()
        proc.wait(10)


def tshark_fields(pcap: Path, display_filter: str, *fields: str) -> list[list[str]]:
    """One row per frame matching `display_filter`, with the given fields (tab-split)."""
    argv = ["tshark", "-r", str(pcap), "-Y", display_filter, "-T", "fields"]
    for f in fields:
        argv += ["-e", f]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def data_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if '"event": "data"' in line]
