"""Helpers for tests and benchmarks on a running SFC testbed: traffic through a chain, waits.

The probe (`python -m sdn.probe`) runs in the chain's classifier and destination hosts; each
service function instance appends its name to the datagrams it forwards, so what arrives says
which instances, in which order, the packets went through.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testbed.api import Testbed

ROOT = Path(__file__).resolve().parents[1]


def chain_spec(tb: Testbed, name: str = "web") -> Any:
    assert tb.plan is not None and tb.plan.topology.sfc is not None
    return next(c for c in tb.plan.topology.sfc.chains if c.name == name)


def destination_ip(tb: Testbed, chain: Any) -> str:
    assert tb.plan is not None
    return str(tb.plan.hosts[chain.destination].interfaces[0].address.ip)


def start_receiver(tb: Testbed, chain: Any, *, count: int | None = None, timeout: float = 8.0) -> subprocess.Popen:
    """The probe receiver in the destination; its JSON lines go to a file (a pipe nobody reads
    until the end would fill, stall the receiver and make the chain look lossy)."""
    assert tb.network is not None and tb.run_dir is not None
    argv = [sys.executable, "-m", "sdn.probe", "receive", "--port", str(chain.match.port), "--json",
            "--timeout", str(timeout)] + (["--count", str(count)] if count else [])  # fmt: skip
    out = tempfile.NamedTemporaryFile("w+", prefix="probe-", suffix=".jsonl", dir=tb.run_dir, delete=False)  # noqa: SIM115
    proc = subprocess.Popen(["mnexec", "-a", str(tb.network.host_pid(chain.destination)), *argv],
                            stdout=out, stderr=subprocess.STDOUT, text=True, cwd=ROOT)  # fmt: skip
    proc.output = Path(out.name)  # type: ignore[attr-defined]
    out.close()
    wait_for("the probe receiver bound", lambda: '"listening"' in proc.output.read_text() or proc.poll() is not None,
             timeout=15, interval=0.05)  # fmt: skip
    return proc


def start_sender(tb: Testbed, chain: Any, *, count: int, rate: float, size: int | None = None) -> subprocess.Popen:
    assert tb.network is not None
    argv = [sys.executable, "-m", "sdn.probe", "send", destination_ip(tb, chain), "--port", str(chain.match.port),
            "--count", str(count), "--rate", str(rate)] + (["--size", str(size)] if size else [])  # fmt: skip
    return subprocess.Popen(["mnexec", "-a", str(tb.network.host_pid(chain.classifier)), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip


def received(proc: subprocess.Popen, timeout: float = 60.0) -> tuple[list[dict], dict]:
    """The receiver's datagrams and its summary, once it ended."""
    proc.wait(timeout=timeout)
    out = proc.output.read_text()  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    summary = next((r for r in lines if r.get("summary")), {})
    assert summary, f"no summary from the receiver: {out[-800:]}"
    return [r for r in lines if "seq" in r], summary


def send_through(tb: Testbed, count: int = 20, rate: float = 50.0, name: str = "web",
                 size: int | None = None) -> tuple[list[dict], dict]:  # fmt: skip
    """Send `count` datagrams (of `size` payload bytes) into the chain; return what arrived."""
    chain = chain_spec(tb, name)
    rx = start_receiver(tb, chain, count=count, timeout=4.0)
    tx = start_sender(tb, chain, count=count, rate=rate, size=size)
    tx.communicate(timeout=60)
    return received(rx)


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:  # noqa: BLE001 (a service still starting)
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def placement(tb: Testbed, name: str = "web") -> dict | None:
    chain = next(c for c in tb.sfc_chains() if c["name"] == name)
    return chain["placement"] if chain["state"] == "installed" else None


def wait_installed(tb: Testbed, path: str | None = None, timeout: float = 40.0, name: str = "web") -> dict:
    """The chain's placement once it is installed (on `path`, if given)."""
    def check() -> dict | None:
        p = placement(tb, name)
        return p if p and (path is None or p["path"] == path) else None

    return wait_for(f"chain {name} installed" + (f" on {path}" if path else ""), check, timeout)
