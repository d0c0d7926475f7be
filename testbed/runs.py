"""Runs: their directories, and the registry through which other commands find them.

A run is one `testbed up`.  Its files live in a run directory (`runs/<name>-<time>-<id>/`:
`state.json`, `logs/`, `config/`, `captures/`, `timeline.jsonl`); its entry in the registry
(`/run/vnfpool-testbed/<id>.json`) says which process owns it and where its control socket
is, so `status`, `exec`, `inject`, `down` and `clean` find it from any directory.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REGISTRY = Path(os.environ.get("VTB_REGISTRY", "/run/vnfpool-testbed"))


class RunError(RuntimeError):
    pass


@dataclass
class RunInfo:
    run_id: str
    name: str
    topology: str
    run_dir: str
    pid: int
    socket: str
    started: float
    ready: bool = False
    started_ovs: bool = False

    @property
    def alive(self) -> bool:
        return pid_alive(self.pid)


def service_socket(run_id: str, kind: str, name: str) -> Path:
    """The Unix socket of a run's service (a monitor's or an IBE's API), beside the run's
    control socket: a run directory may be too deep for the 108 bytes a socket path may have.
    The kind is in the name, so each client finds its own kind; `testbed clean` removes
    `<run>.*.sock`."""
    return REGISTRY / f"{run_id}.{kind}.{name}.sock"


def service_sockets(run_id: str, kind: str) -> dict[str, Path]:
    """The sockets of a run's services of one kind, by service name."""
    prefix = f"{run_id}.{kind}."
    return {p.name.removeprefix(prefix).removesuffix(".sock"): p for p in sorted(REGISTRY.glob(f"{prefix}*.sock"))}


def pid_alive(pid: int) -> bool:
    """Running, and not a zombie (where nobody reaps orphans, a killed owner stays one)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def new_run_id() -> str:
    """Four hex digits, unused by any registered run or leftover `vtb<id>` link."""
    taken = {r.run_id for r in list_runs()}
    links = " ".join(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else ""
    while True:
        run_id = secrets.token_hex(2)
        if run_id not in taken and f"vtb{run_id}" not in links:
            return run_id


def make_run_dir(root: Path, name: str, run_id: str) -> Path:
    path = root / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{run_id}"
    for sub in ("logs", "config", "captures"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path.resolve()


def register(info: RunInfo) -> None:
    REGISTRY.mkdir(parents=True, exist_ok=True)
    tmp = REGISTRY / f".{info.run_id}.json"
    tmp.write_text(json.dumps(asdict(info)))
    tmp.replace(REGISTRY / f"{info.run_id}.json")


def unregister(run_id: str) -> None:
    (REGISTRY / f"{run_id}.json").unlink(missing_ok=True)


def list_runs() -> list[RunInfo]:
    runs = []
    for path in sorted(REGISTRY.glob("*.json")) if REGISTRY.is_dir() else []:
        try:
            runs.append(RunInfo(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue  # half-written or foreign: `clean` reports it
    return runs


def find(run: str | None = None) -> RunInfo:
    """The run named by id or topology name, or the only live run."""
    live = [r for r in list_runs() if r.alive]
    if run:
        matches = [r for r in live if run in (r.run_id, r.name)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise RunError(f"no running testbed {run!r} (running: {_names(live)})")
        raise RunError(f"{run!r} names several runs ({_names(matches)}); give the run id")
    if len(live) == 1:
        return live[0]
    if not live:
        raise RunError("no testbed is running (start one with `testbed up FILE`)")
    raise RunError(f"several testbeds are running ({_names(live)}); choose one with --run ID")


def _names(runs: list[RunInfo]) -> str:
    return ", ".join(f"{r.name} [{r.run_id}]" for r in runs) or "none"
