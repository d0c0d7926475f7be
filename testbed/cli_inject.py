"""`testbed inject ...`, `testbed capture ...` and `testbed scenario run`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .cli_run import RunOpt, call, capture_app, console, fail, inject_app, remote, scenario_app

Other = typer.Argument(None, help="With a domain as TARGET: the other domain of a domain link.")
Target = typer.Argument(..., help="HOST:INTF (interface or network name), or a domain with OTHER.")


def _said(result) -> None:
    console.print(json.dumps(result) if not isinstance(result, str) else result, markup=False)


@inject_app.command()
def kill(process: str, run: str = RunOpt) -> None:
    """SIGKILL a process (it stays down until `inject restart`)."""
    _said(call(run, "kill", process))


@inject_app.command()
def stop(process: str, run: str = RunOpt) -> None:
    """SIGSTOP a process: alive but silent (undo with `inject cont`)."""
    _said(call(run, "stop", process))


@inject_app.command()
def cont(process: str, run: str = RunOpt) -> None:
    """SIGCONT a stopped process."""
    _said(call(run, "cont", process))


@inject_app.command()
def restart(process: str, run: str = RunOpt) -> None:
    """Stop (TERM, then KILL) and start a process again."""
    _said(call(run, "restart", process))


@inject_app.command()
def start(process: str, run: str = RunOpt) -> None:
    """Start a process that is not running: one marked `start: manual`, or one that ended."""
    _said(call(run, "start", process))


@inject_app.command("link-down")
def link_down(target: str = Target, other: str = Other, run: str = RunOpt) -> None:
    """Take a link down at both its ends."""
    _said(call(run, "link_down", target, other))


@inject_app.command("link-up")
def link_up(target: str = Target, other: str = Other, run: str = RunOpt) -> None:
    """Bring a link up again."""
    _said(call(run, "link_up", target, other))


@inject_app.command()
def partition(domain_a: str, domain_b: str, run: str = RunOpt) -> None:
    """Cut every path between two domains (on every gateway) until `inject heal`."""
    console.print(f"{call(run, 'partition', domain_a, domain_b)} drop rules installed")


@inject_app.command()
def heal(domain_a: str, domain_b: str, run: str = RunOpt) -> None:
    """Undo a partition."""
    console.print(f"{call(run, 'heal', domain_a, domain_b)} drop rules removed")


@inject_app.command()
def stress(
    host: str,
    seconds: float = typer.Option(10.0, min=0.1, help="How long."),
    workers: int = typer.Option(1, min=1, max=64, help="Busy processes (one core each)."),
    run: str = RunOpt,
) -> None:
    """Load a host's CPU with busy processes for a while."""
    _said(call(run, "stress", host, seconds, workers))


@inject_app.command("loss-burst")
def loss_burst(
    target: str = Target,
    other: str = Other,
    percent: float = typer.Option(..., min=0.01, max=100, help="Loss, percent."),
    seconds: float = typer.Option(5.0, min=0.1, help="How long."),
    run: str = RunOpt,
) -> None:
    """Drop a share of a link's packets for a while."""
    _said(call(run, "loss_burst", target, percent, seconds, other))


@capture_app.command("start")
def capture_start(
    targets: list[str] = typer.Argument(None, help="HOST or HOST:INTF (default: every interface)."),
    run: str = RunOpt,
) -> None:
    """Start tcpdump, one pcap per interface in the run's captures/ directory."""
    for path in call(run, "capture_start", targets or None):
        console.print(f"capturing into {path}", markup=False)


@capture_app.command("stop")
def capture_stop(run: str = RunOpt) -> None:
    """Stop every capture and list the files."""
    for item in call(run, "capture_stop"):
        console.print(f"{item['interface']}: {item['packets']} packets in {item['file']}", markup=False)


@scenario_app.command("run")
def scenario_run(
    scenario: Path = typer.Argument(..., exists=True, dir_okay=False, help="Scenario YAML file."),
    run: str = RunOpt,
    timeline: Path = typer.Option(None, help="Where to write the timeline (default: the run directory)."),
) -> None:
    """Run timed actions against a running testbed and write a timeline of what happened."""
    from . import scenario as scenarios

    try:
        plan = scenarios.load(scenario)
    except scenarios.ScenarioError as exc:
        raise fail(str(exc), 2) from None
    info, tb = remote(run)
    out = timeline or Path(info.run_dir) / f"timeline-{scenario.stem}.jsonl"
    ok = scenarios.run(plan, tb, out, echo=lambda line: console.print(line, markup=False))
    console.print(f"timeline: {out}", markup=False)
    if not ok:
        raise typer.Exit(1)
