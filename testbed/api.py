"""The Python API of a testbed run, used by the CLI, the scenario runner and scripts.

    with Testbed.from_yaml("topologies/multi-domain.yaml") as tb:
        tb.kill("registrar-as1")
        tb.link_down("sf1-as1-1:eth0")
        print(tb.exec("pu-as1", ["ping", "-c", "3", "10.2.1.10"]).stdout)

`up()` builds everything and registers the run; `down()` (also on exception, Ctrl-C or
SIGTERM through the CLI) removes everything it made.  `RemoteTestbed` offers the same
methods on a run owned by another process (`testbed up --detach`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import builder, capabilities, cleanup, inject, runs, sfc, sfc_api
from .capture import Captures
from .plan import Plan, build_plan
from .schema import Topology, load
from .supervisor import Supervisor


class Testbed:
    __test__ = False  # not a pytest test class, whatever its name
    def __init__(self, topology: Topology, source: str = "<api>", run_root: Path | str = "runs",
                 progress: Callable[[str], None] | None = None):  # fmt: skip
        self.topology = topology
        self.source = source
        self.run_root = Path(run_root)
        self.progress = progress or (lambda message: None)
        self.plan: Plan | None = None
        self.network: builder.Network | None = None
        self.supervisor: Supervisor | None = None
        self.faults = inject.Faults()
        self.captures: Captures | None = None
        self.info: runs.RunInfo | None = None
        self.run_dir: Path | None = None

    @classmethod
    def from_yaml(cls, path: str | Path, **kwargs: Any) -> Testbed:
        return cls(load(path), source=str(Path(path).resolve()), **kwargs)

    # -- life cycle -------------------------------------------------------------------------

    def up(self, run_id: str | None = None) -> Testbed:
        if os.geteuid() != 0:
            raise builder.BuildError("testbed up needs root (network namespaces, Open vSwitch): use sudo")
        run_id = run_id or runs.new_run_id()
        self.run_dir = runs.make_run_dir(self.run_root, self.topology.name, run_id)
        self.info = runs.RunInfo(run_id, self.topology.name, self.source, str(self.run_dir), os.getpid(),
                                 str(runs.REGISTRY / f"{run_id}.sock"), time.time())  # fmt: skip
        runs.register(self.info)  # first: a crash from here on leaves a trace for `clean`
        try:
            self.progress("probing this kernel's capabilities")
            found = capabilities.by_name(capabilities.probe_all())
            self.plan = build_plan(self.topology, run_id)
            self.plan.ports = sfc.allocate_ports(self.plan)
            choices = builder.choose(self.plan, found)
            self.progress(f"switches: {choices.switch} ({choices.switch_reason})")
            self.progress(f"link shaping: {choices.shaping} ({choices.shaping_reason})")
            self.network = builder.build(self.plan, choices, self.run_dir / "logs", self.progress)
            self.info.started_ovs = choices.started_ovs
            runs.register(self.info)
            self.captures = Captures(self.run_dir / "captures")
            facts = sfc.Facts({h: self.network.host_pid(h) for h in self.plan.hosts}, self.network.macs(),
                              self.plan.ports)  # fmt: skip
            self.supervisor = Supervisor(self.plan, self.network.host_pid, self.run_dir, facts)
            if "controller" in self.supervisor.managed:
                self.progress(f"starting the SFC controller (os-ken, OpenFlow on 127.0.0.1:{self.plan.ports['openflow']})")
                self.supervisor.start("controller")
                sfc_api.wait_switches(self.plan, self.supervisor.get("controller"))
            self.progress(f"starting {len(self.supervisor.managed)} processes")
            self.supervisor.start_all()
            self._write_state()
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        """Stop everything this run made; safe to call twice or after a failed `up`."""
        if self.captures is not None:
            self.captures.stop()
        if self.network is not None:
            inject.clear(self.network, self.faults)
        if self.supervisor is not None:
            self.supervisor.shutdown()
        if self.network is not None:
            builder.stop(self.network)
            if self.network.choices.started_ovs:
                cleanup.stop_ovs_if_unused()
        if self.info is not None:
            cleanup.clean_run(self.info.run_id)  # whatever the orderly path missed
            runs.unregister(self.info.run_id)
        self.network = self.supervisor = self.captures = None
        self.info = None

    def __enter__(self) -> Testbed:
        return self.up() if self.network is None else self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def mark_ready(self) -> None:
        assert self.info is not None
        self.info.ready = True
        runs.register(self.info)

    def _write_state(self) -> None:
        assert self.run_dir is not None
        (self.run_dir / "state.json").write_text(json.dumps(self.status(), indent=2) + "\n")

    # -- observing --------------------------------------------------------------------------

    def _net(self) -> builder.Network:
        if self.network is None:
            raise builder.BuildError("the testbed is not up")
        return self.network

    def status(self) -> dict:
        network, plan = self._net(), self.plan
        assert plan is not None and self.supervisor is not None and self.info is not None
        return {
            "run": asdict(self.info),
            "choices": asdict(network.choices),
            "domains": {d: [str(s) for s in plan.domain_subnets(d)] for d in plan.topology.domains},
            "switches": [{"name": s.name, "domain": s.domain, "network": s.network, "subnet": str(s.subnet)}
                         for s in plan.switches],  # fmt: skip
            "hosts": [
                {"name": h.name, "domain": h.domain, "role": h.role, "pid": network.host_pid(h.name),
                 "interfaces": [{"name": i.name, "address": str(i.address), "network": i.network,
                                 "peer": i.peer_host, "state": self._link_state(h.name, i.name)}
                                for i in h.interfaces]}
                for h in plan.hosts.values()
            ],  # fmt: skip
            "shaping": [asdict(s) for s in network.shaped],
            "processes": self.supervisor.status(),
            "faults": {"partitions": sorted("-".join(p) for p in self.faults.partitions),
                       "stress": sorted(h for h, ps in self.faults.stress.items() if any(p.poll() is None for p in ps))},
            "captures": sorted(self.captures.running) if self.captures else [],
            "sfc": self._sfc_urls(),
        }  # fmt: skip

    def _sfc_urls(self) -> dict[str, str]:
        """Where the SFC services listen (loopback, root namespace)."""
        assert self.plan is not None
        urls = {}
        if self.plan.topology.sfc is not None:
            urls["alto"] = f"http://127.0.0.1:{self.plan.ports['sxp']}/alto/directory"
        if self.plan.topology.controller.kind == "os-ken":
            urls["chains"] = f"http://127.0.0.1:{self.plan.ports['rest']}/chains"
        return urls

    def _link_state(self, host: str, intf: str) -> str:
        path = f"/sys/class/net/{intf}/operstate"
        out = self._net().run(host, ["cat", path], check=False).strip()
        return out or "unknown"

    def poll(self) -> list[tuple[str, str]]:
        return self.supervisor.poll() if self.supervisor else []

    def exec(self, host: str, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        pid = self._net().host_pid(self._host(host))
        return subprocess.run(["mnexec", "-a", str(pid), *argv], capture_output=True, text=True, timeout=timeout)

    def run_command(self, host: str, argv: list[str], timeout: float = 60) -> dict:
        """`exec` with a JSON-friendly result (for the control socket and scenarios)."""
        result = self.exec(host, argv, timeout)
        return {"returncode": result.returncode, "stdout": result.stdout[-4000:], "stderr": result.stderr[-2000:]}

    def hsdump(self, registrar: str, as_json: bool = False, timeout: float = 10.0) -> str:
        """The registrar's handlespace as it says over ENRP (`python -m nodes.registrar.hsdump`,
        run in the registrar's own host), as text or one JSON document."""
        assert self.plan is not None
        proc = self.plan.processes().get(registrar)
        if proc is None or proc.kind != "registrar":
            names = [n for n, p in self.plan.processes().items() if p.kind == "registrar"]
            raise inject.InjectError(f"no registrar {registrar!r} (registrars: {', '.join(names) or 'none'})")
        options = proc.spec.options
        addresses = ",".join(str(i.address.ip) for i in self.plan.hosts[proc.host].interfaces)
        argv = [sys.executable, "-m", "nodes.registrar.hsdump", f"{addresses}:{options.get('enrp-port', 9901)}",
                "--backend", str(options.get("backend", "auto")), "--timeout", str(timeout)]  # fmt: skip
        result = self.exec(proc.host, argv + (["--json"] if as_json else []), timeout=timeout + 10)
        if result.returncode != 0:
            raise inject.InjectError(f"hsdump of {registrar}: {(result.stderr or result.stdout).strip()[-500:]}")
        return result.stdout

    def _host(self, name: str) -> str:
        assert self.plan is not None
        if name not in self.plan.hosts:
            raise inject.InjectError(f"no host {name!r} (hosts: {', '.join(self.plan.hosts)})")
        return name

    # -- service function chaining ----------------------------------------------------------

    def sfc_paths(self, functions: Sequence[str], **constraints: Any) -> dict:
        """Ranked multi-domain service function paths from the platform (`GET /sxp/paths`)."""
        return sfc_api.paths(self._sfc_plan(), functions, **constraints)

    def sfc_chains(self) -> list[dict]:
        """The chains the controller installed, with their paths and instances."""
        return sfc_api.chains(self._sfc_plan())

    def sfc_cost(self, a: str, b: str, routingcost: float | None) -> dict:
        """Override the ALTO routingcost between two domains (or of one domain, a == b); None resets."""
        return sfc_api.set_cost(self._sfc_plan(), a, b, routingcost)

    def switch_restart(self, switch: str) -> dict:
        """A switch reboot: its controller connection drops and its flow table is lost."""
        return sfc_api.switch_restart(self._sfc_plan(), switch)

    def _sfc_plan(self) -> Plan:
        self._net()
        assert self.plan is not None
        return self.plan

    # -- faults -----------------------------------------------------------------------------

    def kill(self, process: str) -> dict:
        self.supervisor.signal(process, signal.SIGKILL)  # type: ignore[union-attr]
        return self._proc(process)

    def stop(self, process: str) -> dict:
        self.supervisor.signal(process, signal.SIGSTOP)  # type: ignore[union-attr]
        return self._proc(process)

    def cont(self, process: str) -> dict:
        self.supervisor.signal(process, signal.SIGCONT)  # type: ignore[union-attr]
        return self._proc(process)

    def restart(self, process: str) -> dict:
        self.supervisor.restart(process)  # type: ignore[union-attr]
        return self._proc(process)

    def start(self, process: str) -> dict:
        self.supervisor.start(process)  # type: ignore[union-attr]
        return self._proc(process)

    def _proc(self, name: str) -> dict:
        return next(p for p in self.supervisor.status() if p["name"] == name)  # type: ignore[union-attr]

    def link_down(self, target: str, other: str | None = None) -> list[str]:
        ends = inject.resolve_link(self._net(), target, other)
        inject.set_link(self._net(), ends, up=False)
        return [f"{h}:{i}" for h, i in ends]

    def link_up(self, target: str, other: str | None = None) -> list[str]:
        ends = inject.resolve_link(self._net(), target, other)
        inject.set_link(self._net(), ends, up=True)
        return [f"{h}:{i}" for h, i in ends]

    def partition(self, a: str, b: str) -> int:
        return inject.partition(self._net(), self.faults, a, b)

    def heal(self, a: str, b: str) -> int:
        return inject.heal(self._net(), self.faults, a, b)

    def stress(self, host: str, seconds: float = 10.0, workers: int = 1) -> list[int]:
        return inject.stress(self._net(), self.faults, self._host(host), seconds, workers)

    def loss_burst(self, target: str, percent: float, seconds: float, other: str | None = None) -> list[str]:
        ends = inject.resolve_link(self._net(), target, other)
        inject.loss_burst(self._net(), self.faults, ends, percent, seconds)
        return [f"{h}:{i}" for h, i in ends]

    # -- captures ---------------------------------------------------------------------------

    def capture_start(self, targets: list[str] | None = None) -> list[str]:
        assert self.captures is not None
        return self.captures.start(self._net(), targets)

    def capture_stop(self) -> list[dict]:
        assert self.captures is not None
        return self.captures.stop()


#: What a remote client may call (the control socket refuses anything else).
REMOTE_METHODS = ("status", "run_command", "kill", "stop", "cont", "restart", "start", "link_down", "link_up", "partition",
                  "heal", "stress", "loss_burst", "capture_start", "capture_stop", "hsdump",
                  "sfc_paths", "sfc_chains", "sfc_cost", "switch_restart")  # fmt: skip
