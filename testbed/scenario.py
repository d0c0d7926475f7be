"""Failure scenarios: timed actions against a running testbed, and a timeline of the run.

    name: registrar-failover
    duration: 30s                 # keep observing until then (default: last action + 5 s)
    steps:
      - {at: 5s,  kill: registrar-as1}
      - {at: 10s, link-down: "sf1-as1-1:eth0"}
      - {at: 12s, partition: [AS1, AS2]}
      - {at: 20s, heal: [AS1, AS2]}
      - {at: 21s, stress: {host: sf1-as1-1, seconds: 5}}
      - {at: 22s, loss-burst: {link: "pu-as1:eth0", percent: 30, seconds: 3}}
      - {at: 25s, restart: registrar-as1}
      - {at: 26s, exec: {host: pu-as1, command: "ping -c 3 10.2.1.10"}}

The timeline (JSON lines) records each action with its result or error, and what was
observed meanwhile: every change of a process's state and of an interface's state, polled
twice a second, with times relative to the start.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .schema import _TIME, _quantity

ACTIONS = {
    "kill": "kill", "stop": "stop", "cont": "cont", "restart": "restart", "start": "start",
    "link-down": "link_down", "link-up": "link_up", "partition": "partition", "heal": "heal",
    "stress": "stress", "loss-burst": "loss_burst", "exec": None,
}  # fmt: skip


class ScenarioError(ValueError):
    pass


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: float = Field(description="seconds from the start ('10s', '500ms')")
    action: str
    target: Any

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, v: Any) -> float:
        return _quantity(v, {**_TIME, "": 1000.0}, "a time such as 10s") / 1000.0


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "scenario"
    duration: float | None = None
    steps: list[Step]

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float | None:
        return None if v is None else _quantity(v, {**_TIME, "": 1000.0}, "a time such as 30s") / 1000.0


def load(path: Path) -> Scenario:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list):
        raise ScenarioError(f"{path}: a scenario is a mapping with a list of `steps`")
    steps = []
    for i, raw in enumerate(doc["steps"]):
        if not isinstance(raw, dict) or "at" not in raw:
            raise ScenarioError(f"{path}: steps[{i}]: each step has `at` and one action")
        actions = [k for k in raw if k != "at"]
        if len(actions) != 1 or actions[0] not in ACTIONS:
            raise ScenarioError(f"{path}: steps[{i}]: one action of: {', '.join(ACTIONS)} (got {actions})")
        steps.append({"at": raw["at"], "action": actions[0], "target": raw[actions[0]]})
    try:
        scenario = Scenario.model_validate({**doc, "steps": steps})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ScenarioError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    scenario.steps.sort(key=lambda s: s.at)
    return scenario


def _call(tb: Any, step: Step) -> Any:
    target = step.target
    if step.action == "exec":
        command = target["command"]
        argv = shlex.split(command) if isinstance(command, str) else command
        return tb.run_command(target["host"], argv)
    method = getattr(tb, ACTIONS[step.action])
    if step.action in ("partition", "heal"):
        return method(*target)
    if step.action == "stress":
        return method(target["host"], float(target.get("seconds", 10)), int(target.get("workers", 1)))
    if step.action == "loss-burst":
        return method(target["link"], float(target["percent"]), float(target.get("seconds", 5)), target.get("other"))
    if isinstance(target, list):
        return method(*target)
    return method(target)


def _observe(tb: Any) -> dict[str, str]:
    state = tb.status()
    seen = {f"process {p['name']}": p["state"] for p in state["processes"]}
    for h in state["hosts"]:
        for i in h["interfaces"]:
            seen[f"link {h['name']}:{i['name']}"] = i["state"]
    return seen


def run(scenario: Scenario, tb: Any, timeline: Path, echo: Callable[[str], None] = print) -> bool:
    """Run the steps on time; return False if any action failed."""
    ok = True
    end = scenario.duration if scenario.duration is not None else (scenario.steps[-1].at + 5 if scenario.steps else 0)
    start = time.monotonic()
    previous = _observe(tb)
    with timeline.open("w") as out:

        def record(entry: dict) -> None:
            entry = {"t": round(time.monotonic() - start, 3), **entry}
            out.write(json.dumps(entry, default=str) + "\n")
            out.flush()
            echo(f"{entry['t']:8.3f}s  " + " ".join(f"{k}={v}" for k, v in entry.items() if k != "t"))

        record({"event": "start", "scenario": scenario.name})
        pending = list(scenario.steps)
        while True:
            now = time.monotonic() - start
            while pending and pending[0].at <= now:
                step = pending.pop(0)
                try:
                    result = _call(tb, step)
                    record({"event": "action", "action": step.action, "target": step.target, "result": result})
                except Exception as exc:  # noqa: BLE001 (any failure is recorded and the run goes on)
                    ok = False
                    record({"event": "action", "action": step.action, "target": step.target, "error": str(exc)})
            current = _observe(tb)
            for key, value in current.items():
                if previous.get(key) != value:
                    record({"event": "observed", "what": key, "from": previous.get(key), "to": value})
            previous = current
            if not pending and now >= end:
                break
            time.sleep(0.5 if not pending else max(0.0, min(0.5, pending[0].at - now)))
        record({"event": "end", "ok": ok})
    return ok
