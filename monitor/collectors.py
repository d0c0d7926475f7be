"""Live measurements of the emulated hosts for the recursive monitor: CPU per host, delay per pair.

A testbed host is a Mininet host: a network namespace entered by a shell whose pid Mininet
knows; every process of the host (supervised nodes, `testbed exec`, `testbed inject stress`,
the NFQUEUE delay line) is started in it with `mnexec -a <pid>`.  The builder makes no cgroup
per host, and `mnexec -a` would not put a process in one anyway, so CPU is counted by namespace.

**CPU** (`host_cpu_ratio`, label `(host,)`): the CPU time used by all processes whose network
namespace is the host's, over the sampling interval, divided by the interval's wall time, as a
fraction of *one* CPU: one busy loop is 1.0, two are 2.0 (on any number of cores).  Each tick
scans /proc once, keeps utime+stime per (pid, start time) -- so a reused pid is a new process --
and sums the increase of every process seen in both scans, plus all the CPU time of a process
started since the previous scan (a worker that started and burnt CPU in between counts).  A
process that exited since the previous scan loses its last partial interval, and one that lived
wholly between two scans (a probe's ping) is not seen: under-counts, never a negative delta.  Resolution is one clock tick (1/100 s) per process and interval.
Where a host has a cpuacct cgroup that really holds all its processes, give it in `cgroups`:
then `cpuacct.usage` (nanoseconds) is used instead, which loses nothing at exits.

**Delay** (`host_delay_ms`, labels `(src, dst)`): the one-way estimate RTT/2 in milliseconds,
RTT being the median of a burst of ICMP echoes (`ping -U`, timed user space to user space, so
the userspace delay line's ingress half is seen even on the shaped host) sent from the source
host's namespace to the destination's first address.  `host_probe_loss_ratio` (same labels) is
the burst's unanswered fraction: 1.0 with no delay sample means "unreachable", not "no data".
Only pairs given at construction or asked for (`probe_now`, `watch`) are probed, each at most
once per `min_probe_gap` seconds, and re-probed every `probe_interval` seconds.  The probe's
pings run in the source host and count towards its CPU (a few milliseconds per burst).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import re
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .tsdb import Sample, Store

CPU_METRIC = "host_cpu_ratio"
DELAY_METRIC = "host_delay_ms"
LOSS_METRIC = "host_probe_loss_ratio"
CLK_TCK = os.sysconf("SC_CLK_TCK")

HostRef = int | Callable[[], int | None]  #: a host's namespace pid, or how to find it now
Pair = tuple[str, str]
ProcKey = tuple[int, int]  #: (pid, start time in ticks since boot): a reused pid is another process

log = logging.getLogger(__name__)


# -- CPU ------------------------------------------------------------------------------------------


def parse_stat(text: str) -> tuple[int, int]:
    """(start time, utime + stime) in clock ticks from a /proc/PID/stat line.  The command name
    may hold spaces and parentheses, so fields are counted after its last ')'."""
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[19]), int(fields[11]) + int(fields[12])


def netns_of(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The network namespace of a process (`net:[4026532...]`), None if it is gone."""
    try:
        return os.readlink(proc / str(pid) / "ns" / "net")
    except OSError:
        return None


def processes_in(namespaces: Iterable[str], proc: Path = Path("/proc")) -> Iterator[tuple[str, int]]:
    """(namespace, pid) of every process in one of the given network namespaces."""
    wanted = set(namespaces)
    for entry in os.scandir(proc):
        if entry.name.isdigit() and (ns := netns_of(int(entry.name), proc)) in wanted:
            yield ns, int(entry.name)  # type: ignore[misc]


def scan(namespaces: Iterable[str], proc: Path = Path("/proc")) -> dict[str, dict[ProcKey, int]]:
    """CPU ticks of every process in the given namespaces: {namespace: {(pid, start): ticks}}.
    Processes that exit during the scan are skipped."""
    found: dict[str, dict[ProcKey, int]] = {ns: {} for ns in namespaces}
    for ns, pid in processes_in(found, proc):
        try:
            start, ticks = parse_stat((proc / str(pid) / "stat").read_text())
        except (OSError, IndexError, ValueError):
            continue
        found[ns][pid, start] = ticks
    return found


def ticks_delta(before: Mapping[ProcKey, int], after: Mapping[ProcKey, int], since_tick: float) -> int:
    """CPU ticks used between two scans: the increase of every process in both, plus all of a
    process started after `since_tick` (the first scan's start, in ticks since boot)."""
    total = 0
    for key, ticks in after.items():
        if key in before:
            total += max(0, ticks - before[key])
        elif key[1] >= since_tick:
            total += ticks
    return total


def boot_ticks() -> float:
    """Now, in the clock ticks since boot that /proc/PID/stat's start time uses."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) * CLK_TCK


class CpuSampler:
    """Turns successive scans into ratios; keeps a baseline per host (and its namespace, so a
    host rebuilt with a new namespace starts a new baseline instead of a bogus delta)."""

    def __init__(self, proc: Path = Path("/proc"), cgroups: Mapping[str, str] | None = None) -> None:
        self.proc = proc
        self.cgroups = {h: Path(p) for h, p in (cgroups or {}).items()}
        self._base: dict[str, tuple[str, float, float, Any]] = {}  # host -> (ns, wall, boot, counters)
        self._lock = threading.Lock()

    def sample(self, pids: Mapping[str, int]) -> dict[str, float]:
        """Ratios of the hosts that have a baseline; the first call for a host only sets it."""
        with self._lock:
            spaces = {h: ns for h, pid in pids.items() if (ns := netns_of(pid, self.proc))}
            own = netns_of(os.getpid(), self.proc)
            for host in [h for h, ns in spaces.items() if ns == own and h not in self.cgroups]:
                log.warning("host %s is in the collector's own namespace: not measured", host)
                del spaces[host]
            wall, boot = time.monotonic(), boot_ticks()
            counted = scan(set(spaces.values()), self.proc)
            ratios = {}
            for host, ns in spaces.items():
                counters = self._cgroup_usage(host) if host in self.cgroups else counted[ns]
                ratio = self._ratio(host, ns, wall, counters)
                self._base[host] = (ns, wall, boot, counters)
                if ratio is not None:
                    ratios[host] = ratio
            return ratios

    def _ratio(self, host: str, ns: str, wall: float, counters: Any) -> float | None:
        base = self._base.get(host)
        if base is None or base[0] != ns or counters is None or base[3] is None or wall <= base[1]:
            return None
        if host in self.cgroups:
            used = max(0, counters - base[3]) / 1e9
        else:
            used = ticks_delta(base[3], counters, base[2]) / CLK_TCK
        return used / (wall - base[1])

    def _cgroup_usage(self, host: str) -> int | None:
        try:
            return int((self.cgroups[host] / "cpuacct.usage").read_text())
        except (OSError, ValueError):
            return None


# -- delay ----------------------------------------------------------------------------------------


def parse_ping(output: str) -> list[float]:
    """The round-trip times (ms) of the replies in ping's output."""
    return [float(t) for t in re.findall(r"time[=<]([\d.]+) ms", output)]


def ping_argv(pid: int, address: str, count: int, gap: float, wait: float) -> list[str]:
    """A burst of echoes from the namespace of `pid`: user-space timing (-U), numeric (-n),
    `wait` seconds for each reply and a deadline for the whole burst."""
    deadline = count * gap + wait
    return ["mnexec", "-a", str(pid), "ping", "-n", "-U", "-c", str(count), "-i", f"{gap:g}",
            "-W", f"{wait:g}", "-w", f"{max(1, round(deadline + 0.5))}", address]  # fmt: skip


def ping_burst(pid: int, address: str, count: int = 3, gap: float = 0.1, wait: float = 1.0) -> list[float]:
    """The RTTs (ms) of one burst; empty if nothing came back or ping could not run."""
    argv = ping_argv(pid, address, count, gap, wait)
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=count * gap + wait + 5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("probe %s: %s", " ".join(argv), exc)
        return []
    return parse_ping(result.stdout)


# -- the collector --------------------------------------------------------------------------------


class Collector:
    """Periodic sampling of CPU and of the watched pairs' delays into a store, in a thread.

    The sampling thread never waits for a probe: probes run in a small thread pool, so a slow
    or unreachable pair (up to a second per burst) does not delay the CPU ticks."""

    def __init__(self, store: Store, hosts: Mapping[str, HostRef], addresses: Mapping[str, str] | None = None,
                 *, interval: float = 1.0, pairs: Iterable[Pair] = (), probe_interval: float = 5.0,
                 min_probe_gap: float = 1.0, probe_count: int = 3, probe_gap: float = 0.1,
                 probe_wait: float = 1.0, cgroups: Mapping[str, str] | None = None,
                 workers: int = 4) -> None:  # fmt: skip
        self.store = store
        self.hosts = dict(hosts)
        self.addresses = dict(addresses or {})
        self.interval = interval
        self.probe_interval = probe_interval
        self.min_probe_gap = min_probe_gap
        self.burst = (probe_count, probe_gap, probe_wait)
        self.workers = workers
        self.cpu = CpuSampler(cgroups=cgroups)
        self._lock = threading.Lock()
        self._watched: set[Pair] = set()
        self._inflight: dict[Pair, concurrent.futures.Future[Sample | None]] = {}
        self._last_probe: dict[Pair, float] = {}  # monotonic start of the pair's last probe
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        for src, dst in pairs:
            self.watch(src, dst)

    @classmethod
    def from_testbed(
        cls, tb: Any, store: Store, hosts: Iterable[str] | None = None, **kwargs: Any
    ) -> Collector:
        """A collector over a running `testbed.api.Testbed`: each host's pid is looked up at
        every tick (None once the testbed is down), its address is its first interface's."""
        names = list(hosts) if hosts is not None else list(tb.plan.hosts)

        def pid_of(name: str) -> Callable[[], int | None]:
            return lambda: tb.network.host_pid(name) if tb.network is not None else None

        addresses = {n: str(tb.plan.hosts[n].interfaces[0].address.ip) for n in names
                     if tb.plan.hosts[n].interfaces}  # fmt: skip
        return cls(store, {n: pid_of(n) for n in names}, addresses, **kwargs)

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> Collector:
        """Start the sampling thread (the first CPU ratios come one interval later)."""
        if self._thread is not None:
            return self
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="monitor-collector", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling and wait for probes in flight; what is stored ages out by freshness."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
            self._thread = None
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:  # a bad tick must not end the monitoring
                log.exception("collector tick failed")
            next_tick += self.interval
            next_tick = max(next_tick, time.monotonic())  # after a long stall, do not catch up
            self._stopping.wait(next_tick - time.monotonic())

    def tick(self) -> None:
        """One round: sample CPU, start the probes that are due, apply the retention."""
        self.sample_cpu()
        now = time.monotonic()
        for pair in self.watched():
            last = self._last_probe.get(pair)
            if last is None or now - last >= self.probe_interval:
                self._submit(pair)
        self.store.prune()

    # -- CPU ----------------------------------------------------------------------------------

    def pid(self, host: str) -> int | None:
        """The host's namespace pid now, None if it cannot be found (host down)."""
        ref = self.hosts[host]
        try:
            pid = ref() if callable(ref) else ref
        except Exception:
            return None
        return pid if pid and os.path.exists(f"/proc/{pid}") else None

    def sample_cpu(self) -> dict[str, float]:
        """Measure every host's CPU ratio since the previous call and store it."""
        pids = {h: pid for h in self.hosts if (pid := self.pid(h)) is not None}
        ratios = self.cpu.sample(pids)
        t = self.store.clock()
        for host, ratio in ratios.items():
            self.store.add(CPU_METRIC, (host,), ratio, t)
        return ratios

    # -- delay --------------------------------------------------------------------------------

    def watch(self, src: str, dst: str) -> None:
        """Probe this pair periodically from now on."""
        self._check_pair(src, dst)
        with self._lock:
            self._watched.add((src, dst))

    def unwatch(self, src: str, dst: str) -> None:
        with self._lock:
            self._watched.discard((src, dst))

    def watched(self) -> list[Pair]:
        with self._lock:
            return sorted(self._watched)

    def _check_pair(self, src: str, dst: str) -> None:
        for host in (src, dst):
            if host not in self.hosts:
                raise KeyError(f"no host {host!r} (hosts: {', '.join(self.hosts)})")
        if dst not in self.addresses:
            raise KeyError(f"no address known for {dst!r}")

    def probe_now(self, src: str, dst: str, timeout: float = 5.0) -> Sample | None:
        """Measure the pair's delay now and wait for it (at most `timeout` s); the pair is watched
        from then on.  Within the rate limit of a previous probe, that probe's fresh result is
        returned instead; None if the probe failed, timed out or the result is stale."""
        self.watch(src, dst)
        future = self._submit((src, dst))
        if future is not None:
            try:
                return future.result(timeout=timeout)
            except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
                return None
        return self.store.latest(DELAY_METRIC, (src, dst))

    async def probe_async(self, src: str, dst: str, timeout: float = 5.0) -> Sample | None:
        """`probe_now` for asyncio callers (the query engine): the wait is off the event loop."""
        return await asyncio.to_thread(self.probe_now, src, dst, timeout)

    def _submit(self, pair: Pair) -> concurrent.futures.Future[Sample | None] | None:
        """Start a probe of the pair unless one is in flight (returned) or the rate limit holds."""
        with self._lock:
            if pair in self._inflight:
                return self._inflight[pair]
            last = self._last_probe.get(pair)
            if last is not None and time.monotonic() - last < self.min_probe_gap:
                return None
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self.workers, thread_name_prefix="monitor-probe"
                )
            self._last_probe[pair] = time.monotonic()
            future = self._pool.submit(self._probe, pair)
            self._inflight[pair] = future
        future.add_done_callback(lambda _f: self._done(pair))
        return future

    def _done(self, pair: Pair) -> None:
        with self._lock:
            self._inflight.pop(pair, None)

    def _probe(self, pair: Pair) -> Sample | None:
        """One burst from src's namespace to dst's address: store the loss, and RTT/2 if any."""
        src, dst = pair
        pid = self.pid(src)
        if pid is None:
            return None
        count, gap, wait = self.burst
        rtts = ping_burst(pid, self.addresses[dst], count, gap, wait)
        t = self.store.clock()
        self.store.add(LOSS_METRIC, pair, 1.0 - len(rtts) / count, t)
        if not rtts:
            return None
        return self.store.add(DELAY_METRIC, pair, statistics.median(rtts) / 2, t)
