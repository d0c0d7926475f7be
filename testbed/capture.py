"""Packet captures of a running testbed: one tcpdump, and one pcap, per interface.

tcpdump runs inside the host's namespace with immediate mode and an 8 MiB buffer (smaller
buffers lost packets of bursts here) and writes `<run>/captures/<host>-<intf>.pcap`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .builder import RUN_ENV, Network


DRAIN_S = 0.25  #: s given to tcpdump to write what it has buffered before it is stopped

class CaptureError(ValueError):
    pass


@dataclass
class Captures:
    directory: Path
    running: dict[str, tuple[subprocess.Popen, Path]] = field(default_factory=dict)

    def targets(self, network: Network, selection: list[str] | None) -> list[tuple[str, str]]:
        """`HOST` (all its interfaces), `HOST:INTF`, or nothing for every interface."""
        plan = network.plan
        if not selection:
            return [(h.name, i.name) for h in plan.hosts.values() for i in h.interfaces]
        chosen = []
        for item in selection:
            host, _, intf = item.partition(":")
            if host not in plan.hosts:
                raise CaptureError(f"no host {host!r} (hosts: {', '.join(plan.hosts)})")
            try:
                names = [plan.hosts[host].intf(intf).name] if intf else [i.name for i in plan.hosts[host].interfaces]
            except KeyError as exc:
                raise CaptureError(str(exc.args[0])) from None
            chosen += [(host, n) for n in names]
        return chosen

    def start(self, network: Network, selection: list[str] | None = None) -> list[str]:
        self.directory.mkdir(parents=True, exist_ok=True)
        started = []
        env = {**os.environ, RUN_ENV: network.plan.run_id}
        for host, intf in self.targets(network, selection):
            key = f"{host}:{intf}"
            if key in self.running:
                continue
            path = self.directory / f"{host}-{intf}.pcap"
            argv = ["mnexec", "-a", str(network.host_pid(host)), "tcpdump", "-i", intf, "-w", str(path),
                    "-U", "--immediate-mode", "-B", "8192", "-Z", "root", "-n"]  # fmt: skip
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                                    start_new_session=True)  # fmt: skip
            self.running[key] = (proc, path)
            started.append(str(path))
        self._wait_listening(started)
        return started

    def _wait_listening(self, paths: list[str], timeout: float = 5.0) -> None:
        """tcpdump writes the pcap header once it listens: wait for it, so nothing is missed."""
        deadline = time.monotonic() + timeout
        for key, (proc, path) in list(self.running.items()):
            if str(path) not in paths:
                continue
            while time.monotonic() < deadline and proc.poll() is None:
                if path.exists() and path.stat().st_size >= 24:
                    break
                time.sleep(0.02)
            if proc.poll() is not None:
                del self.running[key]
                err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                raise CaptureError(f"tcpdump on {key} failed: {err}")

    def stop(self) -> list[dict]:
        """Stop every capture; return each file with its packet count as tcpdump reports it."""
        stopped = []
        if self.running:
            # SIGINT breaks tcpdump's loop: what the kernel still buffers for it is dropped.  A
            # moment first lets it take the packets that just went by (CI lost the last one of a
            # ping that had only just returned).
            time.sleep(DRAIN_S)
        for key, (proc, path) in self.running.items():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
        for key, (proc, path) in self.running.items():
            try:
                _, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            captured = next((line.split()[0] for line in err.decode(errors="replace").splitlines()
                             if "captured" in line), "?")  # fmt: skip
            stopped.append({"interface": key, "file": str(path), "packets": captured})
        self.running.clear()
        return stopped
