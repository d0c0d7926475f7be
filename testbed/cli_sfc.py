"""`testbed sfc ...`: ask the SFC eXchange Platform and the controller of a running testbed.

    testbed sfc paths SF1 SF2 SF3 [--ingress AS1] [--egress AS3] [--exclude AS3] [--max-cost 30] [--json]
    testbed sfc paths SF1 SF2 SF3 --topology topologies/multi-domain.yaml   # offline, as declared
    testbed sfc chains [--json]                  # installed chains: path, instances, moves
    testbed sfc cost AS2 AS3 50 | --reset        # override an ALTO routingcost (AS2 AS2: intra-domain)
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from .cli_inject import inject_app
from .cli_run import RunOpt, call, console, fail

sfc_app = typer.Typer(help="Service function chains: ranked paths, installed chains, ALTO costs.", no_args_is_help=True)


def offline_view(topology: Path):  # noqa: ANN201 (sdn.view.View)
    """The view a topology declares: each domain offers the pools of its pool elements, links
    cost their delay.  What a running testbed reports (live registrations, measured delays)
    can differ; this answers before anything runs."""
    from sdn.view import DomainInfo, LinkInfo, View

    from .plan import build_plan
    from .schema import TopologyError, load

    try:
        plan = build_plan(load(topology), "0000")
    except TopologyError as exc:
        raise fail(str(exc), 2) from None
    domains = {}
    for name in plan.topology.domains:
        pes = [p for h in plan.hosts.values() if h.domain == name for p in h.processes if p.kind == "pool-element"]
        functions: dict[str, int] = {}
        for pe in pes:
            functions[pe.spec.handle] = functions.get(pe.spec.handle, 0) + 1
        subnets = {s.network: str(s.subnet) for s in plan.switches if s.domain == name}
        domains[name] = DomainInfo(name, subnets, functions)
    default = plan.topology.defaults.link
    links = [LinkInfo(*spec.between, default.merged(spec).delay or 1.0) for *_, spec in plan.domain_links]
    return View(domains, links)


@sfc_app.command()
def paths(
    functions: list[str] = typer.Argument(..., help="The chain, in order: SF1 SF2 SF3."),
    ingress: str = typer.Option(None, help="Domain the traffic enters from (its cost to the first SF counts)."),
    egress: str = typer.Option(None, help="Domain the traffic leaves to (the cost from the last SF counts)."),
    exclude: list[str] = typer.Option(None, help="A domain that must not host an SF (repeatable)."),
    max_cost: float = typer.Option(None, "--max-cost", min=0, help="Drop paths costing more."),
    k: int = typer.Option(10, "-k", min=1, max=1000, help="How many paths."),
    metric: str = typer.Option(None, help="routingcost, hopcount or delay-ow (default: the platform's)."),
    topology: Path = typer.Option(None, exists=True, dir_okay=False, help="Offline: rank from this YAML."),
    as_json: bool = typer.Option(False, "--json", help="The platform's JSON answer."),
    run: str = RunOpt,
) -> None:
    """Rank the multi-domain service function paths of a chain (the draft's Table 2)."""
    constraints = {"ingress": ingress, "egress": egress, "exclude": exclude or None, "max_cost": max_cost,
                   "k": k, "metric": metric}  # fmt: skip
    if topology is not None:
        from sdn.paths import NoPath
        from sdn.sxp import paths_json

        try:
            answer = paths_json(offline_view(topology), functions, ingress=ingress, egress=egress,
                                exclude=tuple(exclude or ()), max_cost=max_cost, k=k, metric=metric or "routingcost")
        except (NoPath, ValueError) as exc:
            raise fail(str(exc), 1) from None
    else:
        answer = call(run, "sfc_paths", functions, **constraints)
    if as_json:
        console.print(json.dumps(answer, indent=2), markup=False)
        return
    table = Table(title=f"{' -> '.join(functions)}  ({answer['metric']})")
    for column in ("rank", "multi-domain service function path", "cost", "domains"):
        table.add_column(column)
    for p in answer["paths"]:
        table.add_row(str(p["rank"]), p["path"], f"{p['cost']:g}", " ".join(p["domains"]))
    console.print(table)


@sfc_app.command()
def chains(as_json: bool = typer.Option(False, "--json"), run: str = RunOpt) -> None:
    """The chains the controller installed: state, path, instances, last moves."""
    answer = call(run, "sfc_chains")
    if as_json:
        console.print(json.dumps(answer, indent=2), markup=False)
        return
    for chain in answer:
        placed = chain["placement"]
        line = f"{chain['name']} (SPI {chain['spi']}) {chain['state']}"
        if placed:
            hops = ", ".join(f"{h['function']}@{h['instance']}" for h in placed["hops"])
            line += f": {placed['path']} cost {placed['cost']:g} [{hops}]"
        elif chain["reason"]:
            line += f": {chain['reason']}"
        console.print(line, markup=False)
        for move in chain["moves"][-3:]:
            console.print(f"  v{move['version']}: {move['reason']}", markup=False)


@sfc_app.command()
def cost(
    domain_a: str, domain_b: str,
    routingcost: float = typer.Argument(None, min=0, help="The new cost (omit with --reset)."),
    reset: bool = typer.Option(False, "--reset", help="Back to the configured cost."),
    run: str = RunOpt,
) -> None:  # fmt: skip
    """Override the ALTO routingcost of a domain link (or of a domain itself: A A)."""
    if (routingcost is None) != reset:
        raise fail("give a cost, or --reset", 2)
    console.print(json.dumps(call(run, "sfc_cost", domain_a, domain_b, None if reset else routingcost)), markup=False)


@inject_app.command("switch-restart")
def switch_restart(switch: str = typer.Argument(..., help="Bridge name or DOMAIN/NETWORK (AS2/a)."),
                   run: str = RunOpt) -> None:  # fmt: skip
    """Reboot a switch: its controller connection drops and its flow table is lost."""
    console.print(json.dumps(call(run, "switch_restart", switch)), markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(sfc_app, name="sfc")
