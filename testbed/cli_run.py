"""The commands that bring up, observe, break and tear down a testbed run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from . import runs
from .schema import TopologyError

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)
inject_app = typer.Typer(help="Break things: processes, links, domains, CPU.", no_args_is_help=True)
capture_app = typer.Typer(help="tcpdump on the testbed's interfaces, one pcap each.", no_args_is_help=True)
scenario_app = typer.Typer(help="Timed failure scenarios.", no_args_is_help=True)
RunOpt = typer.Option(None, "--run", help="Run id or topology name (default: the only running testbed).")


def fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"testbed: {message}", markup=False, highlight=False)
    return typer.Exit(code)


def load_topology(path: Path):
    from .schema import load

    try:
        return load(path)
    except TopologyError as exc:
        for problem in exc.problems:
            errors.print(problem, markup=False, highlight=False)
        raise typer.Exit(2) from None


def remote(run: str | None):
    from .control import RemoteTestbed

    try:
        info = runs.find(run)
    except runs.RunError as exc:
        raise fail(str(exc)) from None
    return info, RemoteTestbed(info.socket)


def call(run: str | None, method: str, *args, **kwargs):
    from .control import ControlError

    _, tb = remote(run)
    try:
        return tb.call(method, *args, **kwargs)
    except ControlError as exc:
        raise fail(str(exc)) from None


# -- up / down ------------------------------------------------------------------------------


def up(
    topology: Path = typer.Argument(..., help="Topology YAML file.", exists=True, dir_okay=False),
    detach: bool = typer.Option(False, "--detach", "-d", help="Return once up; tear down with `testbed down`."),
    cli: bool = typer.Option(False, "--cli", help="Open the Mininet CLI once up; leaving it tears down."),
    run_root: Path = typer.Option(Path("runs"), help="Where run directories (logs, captures) go."),
    daemon_run_id: str = typer.Option(None, "--daemon-run-id", hidden=True),
) -> None:
    """Build the topology in Mininet, start its processes, and keep it running."""
    topo = load_topology(topology)
    if os.geteuid() != 0:
        raise fail("testbed up needs root (namespaces, Open vSwitch): run it with sudo")
    if detach and not daemon_run_id:
        _spawn_daemon(topology, run_root)
        return
    from .api import Testbed
    from .builder import BuildError

    quiet = daemon_run_id is not None
    tb = Testbed(topo, str(topology.resolve()), run_root,
                 progress=(lambda m: print(m, flush=True)) if quiet else (lambda m: console.print(f"[dim]…[/] {m}")))  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(143)))
    signal.signal(signal.SIGHUP, lambda *_: (_ for _ in ()).throw(SystemExit(129)))
    stop = threading.Event()
    server = None
    try:
        try:
            tb.up(daemon_run_id)
        except (BuildError, OSError, RuntimeError) as exc:
            raise fail(f"up failed: {exc}") from None
        from .control import serve

        server = serve(tb.info.socket, tb, stop.set)
        tb.mark_ready()
        if quiet:
            print(f"ready: run {tb.info.run_id} in {tb.run_dir}", flush=True)
            while not stop.wait(1.0):
                tb.poll()
        elif cli:
            from mininet.cli import CLI

            CLI(tb.network.net)
        else:
            _foreground(tb, stop)
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        if not quiet:
            console.print("[dim]…[/] tearing down")
        run_dir = tb.run_dir
        tb.down()
        daemon_log = runs.REGISTRY / f"{daemon_run_id}.log"
        if quiet and run_dir is not None and daemon_log.exists():
            shutil.copy(daemon_log, run_dir / "testbed.log")
            daemon_log.unlink()
        if not quiet:
            console.print("down: everything this run made is removed")


def _foreground(tb, stop: threading.Event) -> None:
    console.print(f"up: run [bold]{tb.info.run_id}[/] in {tb.run_dir}  (Ctrl-C tears down)")
    with Live(render_status(tb.status()), console=console, refresh_per_second=1, transient=False) as live:
        while not stop.wait(1.0):
            tb.poll()
            live.update(render_status(tb.status(), compact=True))


def _spawn_daemon(topology: Path, run_root: Path) -> None:
    run_id = runs.new_run_id()
    runs.REGISTRY.mkdir(parents=True, exist_ok=True)
    log_path = runs.REGISTRY / f"{run_id}.log"
    argv = [sys.executable, "-m", "testbed.cli", "up", str(topology.resolve()), "--run-root",
            str(run_root.resolve()), "--daemon-run-id", run_id]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
    shown = 0
    while True:
        lines = log_path.read_text(errors="replace").splitlines()
        for line in lines[shown:]:
            if not line.startswith("ready:"):
                console.print(f"… {line}", markup=False, highlight=False)
        shown = len(lines)
        info = next((r for r in runs.list_runs() if r.run_id == run_id), None)
        if info is not None and info.ready:
            console.print(f"up: run {run_id} detached (pid {proc.pid}), files in {info.run_dir}; "
                          f"`testbed status`, `testbed down`", markup=False)  # fmt: skip
            return
        if proc.poll() is not None:
            raise fail(f"the testbed process exited ({proc.returncode}) before it was up; log: {log_path}")
        time.sleep(0.2)


def down(run: str = RunOpt, timeout: float = typer.Option(60.0, help="Seconds to wait for teardown.")) -> None:
    """Tear down a running testbed (one started with --detach, or in another terminal)."""
    info, tb = remote(run)
    from .control import ControlError

    try:
        tb.down()
    except ControlError as exc:
        raise fail(str(exc)) from None
    deadline = time.monotonic() + timeout
    while info.alive and time.monotonic() < deadline:
        time.sleep(0.2)
    if info.alive:
        raise fail(f"run {info.run_id} is still tearing down after {timeout:.0f} s (pid {info.pid})")
    console.print(f"down: run {info.run_id} ({info.name}) removed")


# -- status -------------------------------------------------------------------------------


def status(run: str = RunOpt, as_json: bool = typer.Option(False, "--json", help="One JSON document.")) -> None:
    """Hosts, domains, addresses, processes and their state."""
    state = call(run, "status")
    if as_json:
        print(json.dumps(state, indent=2))
    else:
        console.print(render_status(state))


def _note_room(processes: list[dict]) -> int:
    """Characters left for the note once the other columns (and the borders) have their width."""
    keys = {"process": "name", "host": "host", "kind": "kind", "state": "state", "pid": "pid", "restarts": "restarts"}
    fixed = sum(max([len(h), *(len(str(p[k] or "")) for p in processes)]) for h, k in keys.items())
    return max(4, console.width - fixed - 22)  # 7 columns: 8 borders and 14 spaces of padding


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_status(state: dict, compact: bool = False) -> Group:
    choices = state["choices"]
    head = (f"run {state['run']['run_id']} · {state['run']['name']} · switches {choices['switch']} · "
            f"shaping {choices['shaping']}")  # fmt: skip
    urls = state.get("sfc") or {}
    if urls:
        head += " · " + " · ".join(f"{name} {url}" for name, url in urls.items())
    hosts = Table(title=head, title_justify="left")
    for column in ("host", "domain", "role", "interfaces"):
        hosts.add_column(column)
    for h in state["hosts"]:
        intfs = "  ".join(f"{i['name']} {i['address']}" + ("" if i["state"] == "up" else f" [red]{i['state']}[/]")
                          for i in h["interfaces"])  # fmt: skip
        hosts.add_row(h["name"], h["domain"], h["role"], intfs)
    procs = Table(title="processes", title_justify="left")
    for column in ("process", "host", "kind", "state", "pid", "restarts"):
        procs.add_column(column, no_wrap=True)
    procs.add_column("note", no_wrap=True)  # the placeholder's reason, else the node's last event
    room = _note_room(state["processes"])
    for p in state["processes"]:
        colour = "green" if p["state"] == "running" else "yellow" if p["state"] == "stopped" else "red"
        note = f"placeholder: {p['placeholder']}" if p["placeholder"] else p.get("last_event", "")
        procs.add_row(p["name"], p["host"], p["kind"], f"[{colour}]{p['state']}[/]", str(p["pid"] or ""),
                      str(p["restarts"]), _fit(note, room))
    parts: list = [hosts, procs]
    if not compact and state["shaping"]:
        shaped = Table(title="link shaping installed", title_justify="left")
        for column in ("host", "interface", "direction", "what"):
            shaped.add_column(column)
        for s in state["shaping"]:
            shaped.add_row(s["host"], s["intf"], s["direction"], s["description"])
        parts.append(shaped)
    faults = state["faults"]
    if faults["partitions"] or faults["stress"] or state["captures"]:
        parts.append(f"partitions: {faults['partitions']}  stress: {faults['stress']}  "
                     f"captures: {len(state['captures'])} interfaces")  # fmt: skip
    return Group(*parts)


# -- exec ----------------------------------------------------------------------------------


def exec_(
    host: str = typer.Argument(..., help="Host name."),
    command: list[str] = typer.Argument(..., help="The command, after `--`."),
    run: str = RunOpt,
) -> None:
    """Run a command inside a host's namespace: `testbed exec pu-as1 -- ping -c 3 10.2.1.10`."""
    state = call(run, "status")
    pids = {h["name"]: h["pid"] for h in state["hosts"]}
    if host not in pids:
        raise fail(f"no host {host!r} (hosts: {', '.join(pids)})")
    result = subprocess.run(["mnexec", "-a", str(pids[host]), *command])
    raise typer.Exit(result.returncode)


def graph(
    topology: Path = typer.Argument(..., exists=True, dir_okay=False, help="Topology YAML file."),
    output: Path = typer.Option(None, "-o", "--output", help="File: .svg (default), .png, .pdf or .dot."),
) -> None:
    """Draw the topology, domains as clusters (needs no running testbed)."""
    from .graph import GraphError, render
    from .plan import build_plan

    topo = load_topology(topology)
    target = output or Path(f"{topo.name}.svg")
    try:
        render(build_plan(topo, "0000"), target)
    except GraphError as exc:
        raise fail(str(exc)) from None
    console.print(f"graph: {target}", markup=False)


def cli(run: str = RunOpt) -> None:
    """The Mininet CLI on a running testbed (`h1 ping h2`, `nodes`, `net`, `pingall`...)."""
    from .attach import attached_cli

    state = call(run, "status")
    attached_cli(state)


def register(app: typer.Typer) -> None:
    app.command()(graph)
    app.command()(cli)
    app.command()(up)
    app.command()(down)
    app.command()(status)
    app.command("exec", context_settings={"allow_interspersed_args": False})(exec_)
    app.add_typer(inject_app, name="inject")
    app.add_typer(capture_app, name="capture")
    app.add_typer(scenario_app, name="scenario")
    from . import cli_inject  # noqa: F401 (registers the inject, capture and scenario commands)
