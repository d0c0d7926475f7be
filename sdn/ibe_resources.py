"""What the IBE measures besides the pools: its domain's hosts (CPU, memory) and its neighbours' delay.

**Hosts.**  A testbed host is a network namespace, known by the pid of a process inside it
(`monitor.collectors` explains why CPU is counted per namespace, not per cgroup).  CPU comes
from `monitor.collectors.CpuSampler` (fraction of one CPU per host over the sampling interval);
memory is the resident set of every process in the hosts' namespaces, read from
`/proc/PID/statm` in the same way (one pass over /proc).  A host in the IBE's own namespace
(the gateway, should the testbed list it) is left out: the IBE would measure itself.

**Neighbours.**  One iputils burst (`ping -n -q -U -c 3 -i 0.2 -W 1 ADDR`) over the gateway link
to the neighbour gateway's address on it; the summary gives loss and the average RTT, and the
one-way delay is RTT/2 (the links are shaped symmetrically).  `-U` times user space to user
space, so that a userspace delay line on our own ingress is seen too (as the monitor does).

**Its socket.**  The API's Unix socket: a stale one (its IBE was killed) is replaced, a live one
or another file is refused, and at exit the IBE removes its own socket, not a successor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from monitor.collectors import CpuSampler, netns_of, processes_in

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024
PING_COUNT, PING_GAP, PING_WAIT = 3, 0.2, 1.0

_SENT_RECEIVED = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_RTT = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)(?:/([\d.]+))? ms")


# -- hosts ----------------------------------------------------------------------------------------


def resident_bytes(namespaces: Iterable[str], proc: Path = Path("/proc")) -> dict[str, int]:
    """Resident memory (bytes) of all processes per network namespace; processes that exit
    during the scan are skipped (an under-count of one process, never an error)."""
    found = dict.fromkeys(namespaces, 0)
    for ns, pid in processes_in(found, proc):
        try:
            found[ns] += int((proc / str(pid) / "statm").read_text().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            continue
    return found


def aggregate(cpu: Mapping[str, float], memory: Mapping[str, int], hosts: Iterable[str],
              cores: int, measured_at: float, unmeasured: Iterable[str] = ()) -> dict[str, Any]:  # fmt: skip
    """The /resources document: mean CPU over the hosts measured (None before the first full
    interval), summed memory, each host's own figures (what the mean hides), and the hosts
    configured but not measured (gone, or in the IBE's own namespace)."""
    names = sorted(hosts)
    measured = [cpu[h] for h in names if h in cpu]
    return {
        "cpu_utilization": round(sum(measured) / len(measured), 4) if measured else None,
        "cpu_cores": cores,
        "memory_mb": round(sum(memory.get(h, 0) for h in names) / MB, 2),
        "hosts": len(names),
        "measured_at": round(measured_at, 3),
        "per_host": {h: {"cpu": round(cpu[h], 4) if h in cpu else None,
                         "memory_mb": round(memory[h] / MB, 2) if h in memory else None} for h in names},
        "unmeasured": sorted(unmeasured),
    }  # fmt: skip


class HostSampler:
    """CPU and memory of a domain's hosts, one call per interval (blocking: run it in a thread)."""

    def __init__(self, hosts: Mapping[str, int | None], proc: Path = Path("/proc")) -> None:
        self.hosts = dict(hosts)
        self.proc = proc
        self.cpu = CpuSampler(proc)
        self.skipped: set[str] = set()  #: hosts not measured: gone, or in our own namespace

    def namespaces(self) -> dict[str, str]:
        """Each live host's namespace, without the ones sharing ours."""
        own = netns_of(os.getpid(), self.proc)
        spaces = {h: ns for h, pid in self.hosts.items() if pid and (ns := netns_of(pid, self.proc))}
        self.skipped = {h for h in self.hosts if spaces.get(h) in (None, own)}
        return {h: ns for h, ns in spaces.items() if ns != own}

    def sample(self) -> dict[str, Any]:
        spaces = self.namespaces()
        pids = {h: p for h, p in self.hosts.items() if h in spaces and p}
        ratios = self.cpu.sample(pids)
        by_ns = resident_bytes(set(spaces.values()), self.proc)
        memory = {h: by_ns.get(ns, 0) for h, ns in spaces.items()}
        return aggregate(ratios, memory, spaces, os.cpu_count() or 1, time.time(), self.skipped)


# -- neighbours -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PingSummary:
    transmitted: int
    received: int
    rtt_avg_ms: float | None

    @property
    def loss(self) -> float:
        return (
            1.0
            if self.transmitted <= 0
            else round(1.0 - min(self.received, self.transmitted) / self.transmitted, 3)
        )


def parse_ping_summary(output: str) -> PingSummary | None:
    """The statistics of `ping -q` (iputils or busybox); None if there are none (ping failed
    before sending: a bad address, no route, no such program)."""
    counts = _SENT_RECEIVED.search(output)
    if counts is None:
        return None
    rtt = _RTT.search(output)
    received = int(counts.group(2))
    return PingSummary(int(counts.group(1)), received, float(rtt.group(2)) if rtt and received else None)


def ping_argv(
    address: str, count: int = PING_COUNT, gap: float = PING_GAP, wait: float = PING_WAIT
) -> list[str]:
    return ["ping", "-n", "-q", "-U", "-c", str(count), "-i", f"{gap:g}", "-W", f"{wait:g}", address]


def delay_entry(summary: PingSummary | None, measured_at: float) -> dict[str, Any]:
    """One neighbour of /delays; no reply at all is `delay_ms: null, loss: 1.0` (unreachable)."""
    rtt = summary.rtt_avg_ms if summary is not None else None
    return {
        "delay_ms": round(rtt / 2, 3) if rtt is not None else None,
        "rtt_ms": round(rtt, 3) if rtt is not None else None,
        "loss": summary.loss if summary is not None else 1.0,
        "measured_at": round(measured_at, 3),
    }


async def ping(
    address: str, count: int = PING_COUNT, gap: float = PING_GAP, wait: float = PING_WAIT
) -> dict[str, Any]:
    """One burst to `address`, as a /delays entry; bounded in time whatever the network does."""
    started = time.time()
    try:
        process = await asyncio.create_subprocess_exec(
            *ping_argv(address, count, gap, wait), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    except OSError:
        return delay_entry(None, started)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), count * gap + wait + 3)
    except TimeoutError:
        out = b""
    finally:  # timed out or cancelled (the IBE stopping): no ping outlives its probe
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
    return delay_entry(parse_ping_summary(out.decode("utf-8", "replace")), started)


# -- the socket -----------------------------------------------------------------------------------


class SocketBusy(OSError):
    """Another process serves on the path, or it is not a socket: neither is ours to remove."""


def claim_socket(path: Path) -> None:
    """Make room for our socket: a stale one (nobody accepts on it: an IBE that was killed) is
    removed, a live one or any other file is left alone and refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketBusy(f"{path} exists and is not a socket")
    if _accepting(path):
        raise SocketBusy(f"{path}: another process serves on it")
    path.unlink(missing_ok=True)


def _accepting(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(str(path))
        except TimeoutError:
            return True  # a full backlog: someone is there
        except OSError:
            return False
        return True


async def serve_unix(runner: web.AppRunner, path: Path, mode: int = 0o660) -> int:
    """Serve on `path`, readable and writable by root and its group; its inode, so that at exit
    we remove our own socket and not a successor's."""
    claim_socket(path)
    await web.UnixSite(runner, str(path)).start()
    os.chmod(path, mode)
    return os.stat(path).st_ino


def release_socket(path: Path, inode: int) -> None:
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == inode:
            path.unlink()
