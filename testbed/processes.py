"""What each kind of process in a topology runs: its argv and its config file.

Every RSerPool, SDN and monitor process gets one JSON config file written by the testbed
(`<run>/config/<name>.json`): its own spec from the YAML plus what only the built network
knows (its addresses, its domain, the registrars of its domain).  That file is the contract
between the harness and the node programs.  A kind whose program does not exist yet runs
`testbed.placeholder`, which says so in its log and in `status`; it never pretends.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import secrets
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from . import sfc
from .plan import Plan, Process

#: The module that implements each kind (run as `python -m MODULE --config FILE`).
MODULES = {
    "registrar": "nodes.registrar",
    "pool-element": "nodes.pe",
    "pool-user": "nodes.pu",
    "monitor": "monitor",
    "ibe": "sdn.ibe",
    "sxp": "sdn.sxp",
    "controller": "sdn.steering",
}


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    placeholder: str | None  # why a placeholder runs instead of the real program, else None


def module_available(module: str) -> bool:
    """`python -m module` would run: a plain module, or a package with a `__main__`."""
    try:
        spec = importlib.util.find_spec(module)
        if spec is None:
            return False
        return not spec.submodule_search_locations or importlib.util.find_spec(f"{module}.__main__") is not None
    except ModuleNotFoundError:
        return False


def context(plan: Plan, proc: Process) -> dict:
    """What a node needs to know about the network it runs in."""
    host = plan.hosts[proc.host]
    registrars = [
        {"name": p.name, "host": h.name, "addresses": [str(i.address.ip) for i in h.interfaces],
         "port": int(p.spec.options.get("port", 3863)), "enrp_port": int(p.spec.options.get("enrp-port", 9901))}
        for h in plan.hosts.values() if h.domain == host.domain
        for p in h.processes if p.kind == "registrar"
    ]  # fmt: skip
    return {
        "name": proc.name,
        "kind": proc.kind,
        "host": host.name,
        "domain": host.domain,
        "interfaces": [{"name": i.name, "address": str(i.address)} for i in host.interfaces],
        "addresses": [str(i.address.ip) for i in host.interfaces],
        "registrars": registrars,
        "spec": proc.spec.model_dump(mode="json", exclude={"env", "restart", "start"}),
    }


def write_config(plan: Plan, proc: Process, config_dir: Path, facts: sfc.Facts | None = None) -> Path:
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / f"{proc.name}.json"
    facts = facts or sfc.Facts()
    config = sfc.service_config(plan, proc, facts) if proc.host is None else context(plan, proc)
    if proc.kind == "pool-element":
        config["pool_secret"] = pool_secret(config_dir, proc.spec.handle)
    if proc.kind == "monitor":
        config |= monitor_context(plan, proc, config_dir, facts.pids)
    if proc.kind == "ibe":
        config |= sfc.ibe_context(plan, proc, facts)
    path.write_text(json.dumps(config, indent=2) + "\n")
    if proc.kind in ("pool-element", "sxp"):  # a pool's secret; the platform's credentials
        path.chmod(0o600)
    return path


def monitor_context(plan: Plan, proc: Process, config_dir: Path, host_pids: dict[str, int]) -> dict:
    """What only the monitor needs: every host it measures (addresses and the PID of a process
    in its namespace: the monitor measures CPU and probes delays from there), and a Unix socket
    for its API, reachable from the root namespace (`testbed query`) where TCP in its host is not.
    The socket lives beside the run's control socket: a run directory may be too deep for the
    108 bytes a socket path may have."""
    hosts = {
        name: {"domain": h.domain, "addresses": [str(i.address.ip) for i in h.interfaces], "pid": host_pids.get(name)}
        for name, h in plan.hosts.items()
    }  # fmt: skip
    return {"hosts": hosts, "socket": str(monitor_socket(plan.run_id, proc.name))}


def monitor_socket(run_id: str, name: str) -> Path:
    from . import runs

    return runs.service_socket(run_id, "monitor", name)


def pool_secret(config_dir: Path, handle: str) -> str:
    """The secret that seals a pool's cookies: one per run and pool, given to its PEs only, so
    that the pool users (which can read their own configs) can neither read nor forge cookies."""
    run_secret = config_dir / ".run-secret"
    if not run_secret.exists():
        run_secret.touch(mode=0o600)
        run_secret.write_text(secrets.token_hex(32))
    return hmac.new(bytes.fromhex(run_secret.read_text()), handle.encode(), hashlib.sha256).hexdigest()


def launch(plan: Plan, proc: Process, config_dir: Path, facts: sfc.Facts | None = None) -> Launch:
    spec = proc.spec
    if proc.kind == "command":
        command = spec.command
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        return Launch(argv + list(spec.args), None)
    config = write_config(plan, proc, config_dir, facts)
    module = MODULES[proc.kind]
    if module_available(module):
        return Launch([sys.executable, "-m", module, "--config", str(config), *spec.args], None)
    why = f"{module} is not implemented yet"
    argv = [sys.executable, "-m", "testbed.placeholder", "--kind", proc.kind, "--config", str(config),
            "--reason", why]  # fmt: skip
    return Launch(argv, why)


def describe(argv: list[str]) -> str:
    return shlex.join(argv)


def last_event(log: Path, tail_bytes: int = 4096) -> str:
    """The node's latest logged event, in a few words (`reply seq=77 pe=0x70104f05`), or "".

    Node programs log one JSON object per line; this reads only the end of the file, so
    `status` stays cheap however long a run has been going."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - tail_bytes))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        fields = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("t", "node", "event")
                          and isinstance(v, (str, int, float)))  # fmt: skip
        return f"{record.get('event', '?')} {fields}".strip()[:80]
    return ""
