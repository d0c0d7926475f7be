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
import subprocess
import sys
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


def read_json_line(proc: subprocess.Popen[str], timeout: float = 15.0) -> dict:
    """The next JSON line a peer prints; fails the test with its stderr on EOF or timeout."""
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"no output within {timeout} s from {proc.args}")
    line = proc.stdout.readline()
    if not line:
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
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""
