"""Start, watch, signal and restart the processes of a topology inside their hosts.

Each process runs in its host's namespaces (`mnexec -a <host shell pid>`), in a session of
its own so that a signal reaches everything it started, with stdout and stderr in
`<run>/logs/<name>.log`.  `poll()` notices exits and restarts what the topology's restart
policy asks for; what was killed on purpose (`inject kill`) stays down until restarted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import processes
from .builder import RUN_ENV
from .plan import Plan, Process
from .sfc import Facts

ROOT = Path(__file__).resolve().parent.parent
RESTART_BACKOFF = 1.0  #: seconds between automatic restarts of a crashing process


class SupervisorError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class Managed:
    spec: Process
    launch: processes.Launch
    log: Path
    popen: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    exit_code: int | None = None
    held: bool = False  # killed on purpose: no automatic restart

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def state(self) -> str:
        if self.popen is None:
            return "not started"
        if self.popen.poll() is not None:
            code = self.popen.returncode
            return f"killed ({signal.Signals(-code).name})" if code < 0 else f"exited ({code})"
        with contextlib.suppress(OSError, IndexError):
            if Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
                return "stopped"
        return "running"


class Supervisor:
    def __init__(self, plan: Plan, host_pid: Callable[[str], int], run_dir: Path, facts: Facts | None = None):
        self.plan = plan
        self.host_pid = host_pid
        self.log_dir = run_dir / "logs"
        self.config_dir = run_dir / "config"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.managed: dict[str, Managed] = {}
        procs = plan.processes()
        facts = facts or Facts()
        if not facts.pids and any(p.kind in ("monitor", "ibe") for p in procs.values()):
            facts.pids = {h: host_pid(h) for h in plan.hosts}
        for name, proc in procs.items():
            self.managed[name] = Managed(proc, processes.launch(plan, proc, self.config_dir, facts),
                                         self.log_dir / f"{name}.log")  # fmt: skip

    def get(self, name: str) -> Managed:
        try:
            return self.managed[name]
        except KeyError:
            raise SupervisorError(f"no process {name!r} (processes: {', '.join(self.managed) or 'none'})") from None

    def start_all(self) -> None:
        """Start every process but those marked `start: manual` (a registrar that joins later)."""
        for name, m in self.managed.items():
            if m.spec.spec.start == "auto":
                self.start(name)

    def start(self, name: str) -> Managed:
        with self.lock:
            m = self.get(name)
            if m.popen is not None and m.popen.poll() is None:
                return m
            env = {**os.environ, RUN_ENV: self.plan.run_id, "PYTHONUNBUFFERED": "1",
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                   **m.spec.spec.env}  # fmt: skip
            with open(m.log, "ab") as log:
                log.write(f"--- {time.strftime('%H:%M:%S')} start: {processes.describe(m.launch.argv)}\n".encode())
                log.flush()
                where = [] if m.spec.host is None else ["mnexec", "-a", str(self.host_pid(m.spec.host))]
                m.popen = subprocess.Popen(
                    [*where, *m.launch.argv],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=env, start_new_session=True, cwd=self.log_dir.parent,
                )  # fmt: skip
            m.started_at, m.exit_code, m.held = time.time(), None, False
            return m

    def signal(self, name: str, sig: signal.Signals, hold: bool = True) -> Managed:
        """Send `sig` to the process's session; a kill on purpose is not restarted."""
        with self.lock:
            m = self.get(name)
            if m.popen is None or m.popen.poll() is not None:
                raise SupervisorError(f"process {name} is not running ({m.state()})")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(m.popen.pid, sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                m.held = hold
                with contextlib.suppress(subprocess.TimeoutExpired):
                    m.popen.wait(timeout=5)
            elif sig in (signal.SIGSTOP, signal.SIGCONT):  # delivery is asynchronous: report the result
                wanted = "stopped" if sig == signal.SIGSTOP else "running"
                deadline = time.monotonic() + 2.0
                while m.state() != wanted and time.monotonic() < deadline:
                    time.sleep(0.01)
            return m

    def restart(self, name: str) -> Managed:
        with self.lock:
            m = self.get(name)
            if m.popen is not None and m.popen.poll() is None:
                os.killpg(m.popen.pid, signal.SIGCONT)  # a stopped process must see the TERM
                self._terminate(m)
            m.restarts += 1
            return self.start(name)

    def poll(self) -> list[tuple[str, str]]:
        """Apply restart policies; return (name, new state) for each process that ended."""
        ended = []
        with self.lock:
            for name, m in self.managed.items():
                if m.popen is None or m.popen.poll() is None or m.exit_code is not None:
                    continue
                m.exit_code = m.popen.returncode
                ended.append((name, m.state()))
                policy = m.spec.spec.restart
                wanted = policy == "always" or (policy == "on-failure" and m.exit_code != 0)
                if wanted and not m.held and time.time() - m.started_at >= RESTART_BACKOFF:
                    m.restarts += 1
                    self.start(name)
                    ended.append((name, "restarted"))
        return ended

    def status(self) -> list[dict]:
        with self.lock:
            return [
                {"name": name, "host": m.spec.host or "(root)", "kind": m.spec.kind, "pid": m.pid, "state": m.state(),
                 "restarts": m.restarts, "placeholder": m.launch.placeholder, "log": str(m.log),
                 "last_event": processes.last_event(Path(m.log)) if m.spec.kind != "command" else "",
                 "uptime": round(time.time() - m.started_at, 1) if m.state() == "running" else None}
                for name, m in self.managed.items()
            ]  # fmt: skip

    def shutdown(self) -> None:
        with self.lock:
            for m in self.managed.values():
                if m.popen is not None and m.popen.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(m.popen.pid, signal.SIGCONT)
                    self._terminate(m)

    @staticmethod
    def _terminate(m: Managed, grace: float = 3.0) -> None:
        assert m.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(m.popen.pid, signal.SIGTERM)
        try:
            m.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(m.popen.pid, signal.SIGKILL)
            m.popen.wait(timeout=grace)
        m.exit_code = m.popen.returncode
