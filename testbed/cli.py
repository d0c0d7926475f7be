"""The `testbed` command."""

from __future__ import annotations

import json
import signal
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from . import cli_query, cli_run, cli_sfc

app = typer.Typer(
    help="vnfpool-testbed: emulate pooled and chained VNFs (RSerPool, SFC, ALTO) on one machine.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


@app.command()
def decode(
    pcap: Path = typer.Argument(..., help="A pcap or pcapng file.", exists=True, dir_okay=False, readable=True),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per message."),
) -> None:
    """Print every ASAP/ENRP message of a capture; undecodable ones with their error."""
    from scapy.error import Scapy_Exception

    from captures.report import decode_capture, render_text

    count = failed = 0
    try:
        for record in decode_capture(pcap):
            count += 1
            failed += "error" in record
            if as_json:
                print(json.dumps(record), flush=True)
            else:
                console.print(render_text(record), markup=False, highlight=False, soft_wrap=True)
    except Scapy_Exception as exc:
        errors.print(f"testbed decode: {pcap}: not a readable capture ({exc})", markup=False)
        raise typer.Exit(2) from None
    if not as_json:
        errors.print(f"{count} ASAP/ENRP message(s), {failed} undecodable", markup=False)


@app.command()
def demo(
    pcap: Path = typer.Option(None, help="Keep the capture here (default: a temporary file)."),
) -> None:
    """A small real run: two namespaces exchange every ASAP/ENRP message over UDP and
    multicast; the capture is decoded by the codec and checked by tshark."""
    from captures.report import render_text

    from . import demo as demo_run

    signal.signal(signal.SIGTERM, _exit_on_signal)  # so that the namespaces are removed
    with tempfile.TemporaryDirectory(prefix="vtb-demo-") as tmp:
        target = pcap or Path(tmp) / "demo.pcap"
        try:
            result = demo_run.run(target.resolve())
        except (RuntimeError, OSError) as exc:
            errors.print(f"testbed demo: {exc}", markup=False)
            raise typer.Exit(1) from None
        for record in result.captured:
            console.print(render_text(record), markup=False, highlight=False, soft_wrap=True)
    table = Table(title="demo summary")
    table.add_column("check")
    table.add_column("count", justify="right")
    decoded = sum("error" not in r for r in result.captured)
    table.add_row("messages sent (UDP, multicast for announces)", str(result.sent))
    table.add_row("received and decoded in the peer namespace", str(sum("error" not in r for r in result.received)))
    table.add_row("in the pcap, decoded by testbed decode", f"{decoded}/{len(result.captured)}")
    if result.tshark is not None:
        table.add_row("tshark: ASAP / ENRP frames", f"{result.tshark['asap']} / {result.tshark['enrp']}")
        table.add_row("tshark: malformed frames", str(result.tshark["malformed"]))
    console.print(table)
    ok = result.sent == len(result.received) == decoded and (result.tshark is None or not result.tshark["malformed"])
    if not ok:
        errors.print("testbed demo: some messages were lost or did not decode")
        raise typer.Exit(1)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="One JSON document.")) -> None:
    """What this kernel offers (SCTP, netem, Open vSwitch, MPTCP, multicast, NFQUEUE) and
    what the testbed uses instead of what is missing.  Always exits 0: it is a report."""
    from . import capabilities

    found = capabilities.probe_all()
    backend, why = capabilities.sctp_backend()
    if as_json:
        print(json.dumps(capabilities.report(found, (backend, why)), indent=2))
        return
    table = Table(title="testbed doctor")
    for column in ("capability", "status", "detail", "used instead"):
        table.add_column(column, overflow="fold", no_wrap=column in ("capability", "status"))  # never cut
    for cap in found:
        status = "[green]available[/]" if cap.available else "[red]missing[/]"
        table.add_row(cap.name, status, cap.reason, cap.fallback)
    console.print(table)
    if backend is None:
        console.print(f"SCTP backend for `auto`: none ({why})", markup=False)
    else:
        console.print(f"SCTP backend for `auto`: {backend} ({why})", markup=False)


@app.command()
def hsdump(
    registrar: str = typer.Argument(..., help="Registrar process name (see `testbed status`)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
    run: str = cli_run.RunOpt,
) -> None:
    """A running registrar's handlespace, asked over ENRP as a peer would (like RSPLIB's hsdump)."""
    console.print(cli_run.call(run, "hsdump", registrar, as_json), markup=False, highlight=False, end="")


@app.command()
def clean(run: str = typer.Option(None, "--run", help="Only this run id (default: every dead run).")) -> None:
    """Remove what crashed runs left behind: their processes, namespaces, OVS bridges and links.
    Live runs are not touched."""
    from . import cleanup

    removed = cleanup.clean_run(run) if run else cleanup.clean_all()
    for item in removed:
        console.print(f"removed {item}", markup=False)
    if not removed:
        console.print("nothing to clean")


cli_run.register(app)
cli_query.register(app)
cli_sfc.register(app)


if __name__ == "__main__":
    app()
