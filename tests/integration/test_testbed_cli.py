"""The `testbed` command on a detached run: up, status, exec, inject, scenario, down, and
`clean` after the owner was killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from testbed import cleanup, runs
from tests.netlab import needs_root

ROOT = Path(__file__).resolve().parents[2]
TESTBED = [str(ROOT / ".venv/bin/testbed")] if (ROOT / ".venv/bin/testbed").exists() else ["testbed"]

SMALL = """
name: cli-{tag}
domains:
  D1:
    networks: [a, b]
    hosts:
      h1:
        interfaces: [{{network: a, delay: 10ms, loss: 1%}}, b]
        processes:
          - command: {{name: sleeper-{tag}, command: sleep 600}}
      h2:
        processes:
          - registrar: {{name: registrar-{tag}}}
          - monitor: {{name: monitor-{tag}, vnffg: monitor/examples/figure1.yaml}}
  D2:
    hosts:
      h3: {{}}
links:
  - {{between: [D1, D2], delay: 2ms}}
"""


def run_testbed(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TESTBED, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _query(run_id: str, text: str) -> dict:
    deadline = time.monotonic() + 20
    while True:  # the monitor needs a moment to listen
        out = run_testbed("query", "--run", run_id, text, "--json")
        if out.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def test_bad_topology_gets_a_precise_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndomains:\n  D1:\n    hosts:\n      h1:\n        interfaces: [z]\n")
    result = run_testbed("up", str(bad))
    assert result.returncode == 2
    assert f"{bad}:6: domains.D1.hosts.h1.interfaces[0]: no network 'z' in domain D1" in result.stderr


def test_wrong_flag_is_refused():
    result = run_testbed("status", "--jsn")
    assert result.returncode == 2 and "--jsn" in result.stderr


@pytest.mark.netns
@needs_root
def test_detached_run_then_kill_9_then_clean(tmp_path):
    tag = f"{os.getpid() % 10000}"
    topo = tmp_path / "small.yaml"
    topo.write_text(SMALL.format(tag=tag))
    up = run_testbed("up", str(topo), "--detach", "--run-root", str(tmp_path / "runs"))
    assert up.returncode == 0, up.stdout + up.stderr
    info = runs.find(f"cli-{tag}")
    try:
        state = json.loads(run_testbed("status", "--run", info.run_id, "--json").stdout)
        assert {p["name"]: p["state"] for p in state["processes"]} == {
            f"sleeper-{tag}": "running", f"registrar-{tag}": "running", f"monitor-{tag}": "running"}
        placeholders = {p["name"]: p["placeholder"] for p in state["processes"]}
        assert placeholders[f"registrar-{tag}"] is None  # the real registrar
        assert placeholders[f"monitor-{tag}"] is None  # the real monitor
        leaves = _query(info.run_id, "leaf NF1")  # through the monitor's Unix socket, from the root namespace
        assert sorted(row[1] for row in leaves["rows"]) == ["vm1", "vm2", "vm3", "vm7", "vm8"], leaves
        unmeasured = _query(info.run_id, "max_cpu NF1")  # Figure 1's VMs are not hosts of this run
        assert unmeasured["rows"] == [] and "cpu of vm1" in unmeasured["missing"], unmeasured
        out = run_testbed("exec", "--run", info.run_id, "h3", "--", "ping", "-c", "2", "-i", "0.1", "10.1.2.10")
        assert out.returncode == 0 and "2 received" in out.stdout, out.stdout + out.stderr
        scenario = tmp_path / "s.yaml"
        scenario.write_text(f"duration: 2s\nsteps:\n  - {{at: 0.2s, kill: sleeper-{tag}}}\n"
                            "  - {at: 0.4s, link-down: 'h3:eth0'}\n")  # fmt: skip
        ran = run_testbed("scenario", "run", str(scenario), "--run", info.run_id)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        timeline = [json.loads(line) for line in Path(info.run_dir, "timeline-s.jsonl").read_text().splitlines()]
        observed = {(e["what"], e["to"]) for e in timeline if e["event"] == "observed"}
        assert (f"process sleeper-{tag}", "killed (SIGKILL)") in observed
        assert ("link h3:eth0", "down") in observed
        bad = run_testbed("inject", "kill", "nosuch", "--run", info.run_id)
        assert bad.returncode == 1 and "no process 'nosuch'" in bad.stderr
    finally:
        os.kill(info.pid, signal.SIGKILL)  # a crash: nothing is torn down in order
    time.sleep(0.5)
    assert info.run_id in cleanup.run_processes().values()  # leftovers exist: the test can fail
    cleaned = run_testbed("clean")
    assert cleaned.returncode == 0 and f"run {info.run_id}" in cleaned.stdout, cleaned.stdout
    prefix = f"vtb{info.run_id}"
    assert not [n for n in cleanup.root_links() if n.startswith(prefix)]
    assert not [b for b in cleanup.ovs_bridges() if b.startswith(prefix)]
    assert info.run_id not in cleanup.run_processes().values()  # shells, delay lines, processes
    assert not list(runs.REGISTRY.glob(f"{info.run_id}.*"))
    qdiscs = subprocess.run(["tc", "qdisc", "show"], capture_output=True, text=True).stdout
    assert prefix not in qdiscs


@pytest.mark.netns
@needs_root
def test_down_removes_a_detached_run(tmp_path):
    tag = f"d{os.getpid() % 10000}"
    topo = tmp_path / "small.yaml"
    topo.write_text(SMALL.format(tag=tag))
    assert run_testbed("up", str(topo), "--detach", "--run-root", str(tmp_path / "runs")).returncode == 0
    info = runs.find(f"cli-{tag}")
    down = run_testbed("down", "--run", info.run_id)
    assert down.returncode == 0, down.stderr
    assert not info.alive
    assert not [n for n in cleanup.root_links() if n.startswith(f"vtb{info.run_id}")]
    assert (Path(info.run_dir) / "testbed.log").read_text().count("ready:") == 1
