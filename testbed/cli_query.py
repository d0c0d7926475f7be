"""`testbed query`: ask the recursive monitor, live or offline.

Live (a testbed with a `monitor` process is up): the query goes to the monitor's Unix socket in
the run directory, so it works from the root namespace.  Offline (`--program`, `--facts`,
`--vnffg` or `--metrics` given): the same engine runs here, over the given facts and fixed
measurements.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.table import Table

from . import cli_run, runs

QUERY_HELP = "A template call (`max_cpu NF1`, `e2e_delay NF1 NF2`), `query(m, ...)` or a goal such as `leaf(NF1, Y)`."


def query(
    text: str = typer.Argument(None, metavar="[QUERY]", help=QUERY_HELP + " Default: the program's own query(...) statements."),
    program: Path = typer.Option(None, "--program", exists=True, dir_okay=False, help="Rules (and facts) of your own."),
    facts: Path = typer.Option(None, "--facts", exists=True, dir_okay=False, help="Facts in the language, e.g. sub(NF1, VNF1-1)."),
    vnffg: Path = typer.Option(None, "--vnffg", exists=True, dir_okay=False, help="A nested VNFFG (YAML or TOSCA) as facts."),
    metrics: Path = typer.Option(None, "--metrics", exists=True, dir_okay=False,
                                 help="Measurements, YAML/JSON: {cpu: {vm1: 0.3}, delay: {vm7: {vm10: 20}}}."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
    monitor: str = typer.Option(None, "--monitor", help="Live: which monitor process, if the run has several."),
    run: str = cli_run.RunOpt,
) -> None:
    """Ask the recursive monitor: offline over files, or the monitor of a running testbed."""
    offline = any(x is not None for x in (program, facts, vnffg, metrics))
    if text is None and program is None:
        raise cli_run.fail("no query: give QUERY, or a --program with query(...) statements", 2)
    queries = [text] if text is not None else _program_queries(program)  # type: ignore[arg-type]
    answers = [_offline(q, program, facts, vnffg, metrics) if offline else _live(q, run, monitor) for q in queries]
    for answer in answers:
        if "error" in answer:
            raise cli_run.fail(answer["error"], 2)
    if as_json:
        document = answers[0] if len(answers) == 1 else answers
        cli_run.console.print(json.dumps(document), markup=False, highlight=False)
        return
    for answer in answers:
        _print(answer)


def _program_queries(program: Path) -> list[str]:
    from monitor.parser import ParseError, parse_program

    try:
        found = [str(q) for q in parse_program(program.read_text()).queries]
    except ParseError as exc:
        raise cli_run.fail(f"{program}: parse error: {exc}", 2) from None
    if not found:
        raise cli_run.fail(f"{program} has no query(...) statement: give QUERY", 2)
    return found


def _offline(text: str, program: Path | None, facts: Path | None, vnffg: Path | None, metrics: Path | None) -> dict[str, Any]:
    from monitor.engine import EngineError
    from monitor.functions import FixedMetrics
    from monitor.parser import ParseError, parse_program
    from monitor.query import Answerer, QueryError
    from monitor.tosca import load_any as load_vnffg

    try:
        graph = load_vnffg(vnffg) if vnffg else None
        all_facts = list(graph.facts()) if graph else []
        if facts:
            all_facts += parse_program(facts.read_text()).facts
        data = yaml.safe_load(metrics.read_text()) if metrics else {}
        if not isinstance(data, dict):
            return {"error": f"{metrics}: expected a mapping with `cpu` and/or `delay`"}
        answerer = Answerer(all_facts, FixedMetrics(data), host_of=graph.host_of if graph else None,
                            program=program.read_text() if program else "")  # fmt: skip
        return answerer.answer(text).to_json()
    except ParseError as exc:
        return {"error": f"parse error: {exc}"}
    except (QueryError, EngineError, ValueError) as exc:
        return {"error": str(exc)}


def _live(text: str, run: str | None, monitor: str | None) -> dict[str, Any]:
    try:
        info = runs.find(run)
    except runs.RunError as exc:
        return {"error": f"{exc} (or query offline: --program/--facts/--vnffg/--metrics)"}
    found = runs.service_sockets(info.run_id, "monitor")
    names = list(found)
    sockets = [s for n, s in found.items() if not monitor or n == monitor]
    if len(sockets) != 1:
        names = ", ".join(names) or "none"
        return {"error": f"run {info.run_id}: {'several monitors, choose with --monitor' if sockets else 'no monitor is running'} ({names})"}
    return asyncio.run(_ask(sockets[0], text))


async def _ask(socket: Path, text: str) -> dict[str, Any]:
    import aiohttp

    connector = aiohttp.UnixConnector(path=str(socket))
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.post("http://monitor/query", json={"query": text}, timeout=aiohttp.ClientTimeout(total=60)) as r:
                return await r.json()  # type: ignore[no-any-return]
    except aiohttp.ClientError as exc:
        return {"error": f"monitor at {socket}: {exc}"}


def _print(answer: dict[str, Any]) -> None:
    table = Table(title=f"{answer['goal']}  ({answer['took_ms']:.1f} ms)", show_header=False)
    for row in answer["rows"]:
        table.add_row(*(str(v) for v in row))
    cli_run.console.print(table if answer["rows"] else f"{answer['goal']}: no answer")
    if answer.get("missing"):
        cli_run.console.print(f"not measured: {', '.join(answer['missing'])}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("query")(query)
