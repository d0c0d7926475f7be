"""Remove what a run left behind, and only that (`testbed clean`).

A run's root-namespace names all start with `vtb<run id>` (bridges, switch ports) and every
process it starts carries `VTB_RUN=<run id>` in its environment.  Mininet's host namespaces
are unnamed: they vanish with the last process inside, so killing the run's processes
removes them, with their veth ends, qdiscs and iptables rules.  Live runs are never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from . import netns, runs
from .capabilities import OVS_CTL

RUN_ENV = "VTB_RUN"
RESOURCE = re.compile(rf"^{netns.PREFIX}([0-9a-f]{{4}})s\d+")  # vtb<id>s<n>[p<port>]


def _run_of_process(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for entry in environ.split(b"\0"):
        if entry.startswith(RUN_ENV.encode() + b"="):
            return entry.split(b"=", 1)[1].decode(errors="replace")
    return None


SHARED_DAEMONS = {"ovs-vswitchd", "ovsdb-server"}  #: may carry a run's environment, serve everyone


def run_processes() -> dict[int, str]:
    """Every process that belongs to some run: pid -> run id (this process excluded)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/comm").read_text().strip() in SHARED_DAEMONS:
                    continue
            run_id = _run_of_process(int(entry))
            if run_id:
                found[int(entry)] = run_id
    return found


def ovs_bridges() -> list[str]:
    result = subprocess.run(["ovs-vsctl", "--timeout=5", "list-br"], capture_output=True, text=True)
    return result.stdout.split() if result.returncode == 0 else []


def root_links() -> list[str]:
    return os.listdir("/sys/class/net") if os.path.isdir("/sys/class/net") else []


def clean_run(run_id: str) -> list[str]:
    """Kill the run's processes, delete its bridges and links, unregister it."""
    removed = []
    victims = [pid for pid, rid in run_processes().items() if rid == run_id]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            removed.append(f"process {pid}")
    prefix = f"{netns.PREFIX}{run_id}s"
    for bridge in ovs_bridges():
        if bridge.startswith(prefix):
            subprocess.run(["ovs-vsctl", "--timeout=5", "--if-exists", "del-br", bridge], capture_output=True)
            removed.append(f"ovs bridge {bridge}")
    for _ in range(20):  # unnamed namespaces take their veth ends along once their processes are gone
        if not any(pid_exists(p) for p in victims):
            break
        time.sleep(0.05)
    for link in root_links():
        if link.startswith(prefix):
            result = subprocess.run(["ip", "link", "delete", link], capture_output=True)
            if result.returncode == 0:
                removed.append(f"link {link}")
    runs.unregister(run_id)
    Path(runs.REGISTRY, f"{run_id}.sock").unlink(missing_ok=True)
    for socket in runs.REGISTRY.glob(f"{run_id}.*.sock"):  # the run's monitor and IBE API sockets
        socket.unlink(missing_ok=True)
    return removed


def pid_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def clean_all() -> list[str]:
    """Clean every run whose owner is dead, and leftovers of runs nobody registered."""
    registered = runs.list_runs()
    live = {r.run_id for r in registered if r.alive}
    dead = {r.run_id for r in registered if not r.alive}
    started_ovs = any(r.started_ovs for r in registered if not r.alive)
    dead |= {rid for rid in run_processes().values() if rid not in live}
    for name in [*ovs_bridges(), *root_links()]:
        match = RESOURCE.match(name)
        if match and match.group(1) not in live:
            dead.add(match.group(1))
    removed = []
    for run_id in sorted(dead):
        removed += [f"run {run_id}: {item}" for item in clean_run(run_id)] or [f"run {run_id}: registry entry"]
        Path(runs.REGISTRY, f"{run_id}.log").unlink(missing_ok=True)  # the log of a daemon that died
    for ns in netns.testbed_namespaces():  # from `testbed demo` and the transport tests
        netns.delete_namespace(ns)
        removed.append(f"netns {ns}")
    if started_ovs and stop_ovs_if_unused():
        removed.append("Open vSwitch daemons (started by a dead run, no bridge left)")
    return removed


def stop_ovs_if_unused() -> bool:
    """Stop Open vSwitch when no bridge is left (only called when the testbed started it)."""
    if ovs_bridges():
        return False
    script = OVS_CTL.split()[0]
    return subprocess.run([script, "stop"], capture_output=True).returncode == 0
