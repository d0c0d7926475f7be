"""The testbed's side of SFC: ask the platform and the controller, restart a switch.

The platform (ALTO + path computation) and the controller listen on loopback in the root
namespace; their ports are chosen at `up` (`plan.ports`).  These calls are what `testbed sfc`
and the Python API use.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from .plan import Plan


class SfcError(RuntimeError):
    """The platform or the controller refused or did not answer; the message says which and why."""


def _call(url: str, method: str = "GET", body: Any = None, timeout: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError):
            pass
        raise SfcError(f"{method} {url}: {exc.code} {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SfcError(f"{method} {url}: no answer ({getattr(exc, 'reason', exc)})") from None
    return json.loads(text) if text else None


def _sxp(plan: Plan) -> str:
    if plan.topology.sfc is None:
        raise SfcError("this topology has no `sfc:` section (no platform runs)")
    return f"http://127.0.0.1:{plan.ports['sxp']}"


def _controller(plan: Plan) -> str:
    if plan.topology.controller.kind != "os-ken":
        raise SfcError("this topology's controller is not the testbed's (controller: os-ken)")
    return f"http://127.0.0.1:{plan.ports['rest']}"


def paths(plan: Plan, functions: Sequence[str], **constraints: Any) -> dict:
    query: dict[str, str] = {"chain": ",".join(functions)}
    for key, value in constraints.items():
        if value is None or value == [] or value == ():
            continue
        query[key.replace("_", "-")] = ",".join(value) if isinstance(value, list | tuple) else str(value)
    return _call(f"{_sxp(plan)}/sxp/paths?{urllib.parse.urlencode(query)}")


def chains(plan: Plan) -> list[dict]:
    return _call(f"{_controller(plan)}/chains")


def set_cost(plan: Plan, a: str, b: str, routingcost: float | None) -> dict:
    return _call(f"{_sxp(plan)}/sxp/costs", "POST", {"a": a, "b": b, "routingcost": routingcost})


def switch_restart(plan: Plan, switch: str) -> dict:
    """Emulate a switch reboot: drop its controller connection, lose its flow table, reconnect.
    `switch` is the bridge name or `<domain>/<network>`."""
    found = [s for s in plan.switches if switch in (s.name, s.label)]
    if not found:
        raise SfcError(f"no switch {switch!r} (switches: {', '.join(s.label for s in plan.switches)})")
    name = found[0].name
    got = subprocess.run(["ovs-vsctl", "get-controller", name], capture_output=True, text=True)
    target = got.stdout.split()
    if got.returncode != 0 or not target:
        raise SfcError(f"switch {name} has no controller to reconnect to ({got.stderr.strip() or 'none set'})")
    steps = [["ovs-vsctl", "del-controller", name], ["ovs-ofctl", "-O", "OpenFlow13", "del-flows", name],
             ["ovs-vsctl", "set-controller", name, *target]]  # fmt: skip
    for argv in steps:
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise SfcError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return {"switch": name, "label": found[0].label, "controller": target}


def wait_switches(plan: Plan, managed: Any, timeout: float = 30.0) -> None:
    """Until the controller has every switch connected and its base flows installed."""
    url = f"{_controller(plan)}/health"
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if managed.popen is not None and managed.popen.poll() is not None:
            raise SfcError(f"the controller exited ({managed.state()}); see {managed.log}")
        try:
            health = _call(url, timeout=2.0)
            if health.get("ready"):
                return
            last = f"{len(health.get('switches', []))} of {health.get('expected')} switches ready"
        except SfcError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise SfcError(f"the controller did not get its switches within {timeout:g} s ({last}); see {managed.log}")
