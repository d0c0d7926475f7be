"""The `hsdump` command line: argument parsing, and the dump as JSON or as tables.

    python -m nodes.registrar.hsdump REGISTRAR [--port 9901] [--backend auto|usrsctp|kernel-sctp|tcp]
                                     [--local ADDR ...] [--timeout 5] [--json]

Exit status: 0 dumped; 1 the dump failed (connection refused, a reject, an ENRP_ERROR, a
malformed answer); 2 no association or no complete answer within --timeout (or a usage error,
argparse's own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from nodes.node import parse_endpoint
from nodes.registrar.hsdump import EMPTY_CHECKSUM, ENRP, DumpError, DumpResult, DumpTimeout, dump
from nodes.transport import TransportOptions
from nodes.wire import PoolElement, ServerInformation, Transport
from nodes.wire.constants import MAX_LOAD
from nodes.wire.describe import printable

EXIT_OK, EXIT_FAILED, EXIT_TIMEOUT = 0, 1, 2


def hex32(value: int) -> str:
    return f"0x{value:08x}"


def hex16(value: int) -> str:
    return f"0x{value:04x}"


# ------------------------------------------------------------------ JSON


def plain(result: DumpResult) -> dict[str, Any]:
    """The dump as one JSON-ready document (ids and checksums as hex text)."""
    info = result.registrar_info
    endpoint = result.endpoint
    return {
        "registrar": {
            "server_id": hex32(result.registrar_id) if result.registrar_id is not None else None,
            "endpoint": {"addresses": list(endpoint[0]), "port": endpoint[1]} if endpoint else None,
            "transport": plain_transport(info.transport) if info else None,
            "presence_checksum": hex16(result.presence_checksum)
            if result.presence_checksum is not None
            else None,
            "presence_checksum_matches": presence_matches(result),
        },
        "own_id": hex32(result.own_id),
        "responses": result.responses,
        "ignored": result.ignored,
        "pe_count": result.pe_count,
        "checksums": {hex32(home): hex16(value) for home, value in result.checksums().items()},
        "peers": [plain_peer(p) for p in result.peers] if result.peers is not None else None,
        "pools": [
            {
                "handle": printable(pool.handle),
                "policy": pool.policy_name,
                "pool_elements": [plain_pe(pe) for pe in pool.pool_elements],
            }
            for pool in result.pools
        ],  # fmt: skip
    }


def presence_matches(result: DumpResult) -> bool | None:
    """Whether the registrar's PRESENCE checksum agrees with the PEs dumped as its own
    (None without a PRESENCE): a disagreement means its tables changed meanwhile, or a bug."""
    if result.presence_checksum is None or result.registrar_id is None:
        return None
    return result.checksums().get(result.registrar_id, EMPTY_CHECKSUM) == result.presence_checksum


def plain_transport(transport: Transport) -> dict[str, Any]:
    use = getattr(transport, "transport_use", None)
    return {
        "protocol": protocol_name(transport),
        "addresses": [str(a) for a in transport.addresses],
        "port": transport.port,
        "transport_use": use.name if use is not None else None,
    }


def plain_peer(peer: ServerInformation) -> dict[str, Any]:
    return {"server_id": hex32(peer.server_id), "transport": plain_transport(peer.transport)}


def plain_pe(pe: PoolElement) -> dict[str, Any]:
    return {
        "pe_id": hex32(pe.identifier),
        "home": hex32(pe.home_registrar),
        "registration_life_ms": pe.registration_life,
        "user_transport": plain_transport(pe.user_transport),
        "registrator_transport": plain_transport(pe.registrator_transport)
        if pe.registrator_transport
        else None,
        "policy": pe.policy.name,
        "policy_values": dict(zip(pe.policy.FIELDS, pe.policy.values())),
    }


def protocol_name(transport: Transport) -> str:
    """ "sctp", "tcp", "udp", "udplite", "dccp"."""
    return type(transport).__name__.removesuffix("Transport").lower()


# ------------------------------------------------------------------ text


def render_text(result: DumpResult, console: Console) -> None:
    """Tables like RSPLIB's hsdump: the registrar, its pools and PEs, its peers, checksums."""
    console.print(Text(headline(result)))
    console.print(handlespace_table(result) if result.pools else Text("The handlespace is empty."))
    if result.peers is None:
        console.print(Text("Peers: no LIST_RESPONSE"))
    elif not result.peers:
        console.print(Text("Peers: none"))
    else:
        console.print(peer_table(result.peers))
    if result.pools:
        console.print(checksum_table(result))
    if (line := presence_line(result)) is not None:
        console.print(Text(line))


def headline(result: DumpResult) -> str:
    where = f" at {','.join(result.endpoint[0])}:{result.endpoint[1]}" if result.endpoint else ""
    registrar = hex32(result.registrar_id) if result.registrar_id is not None else "?"
    return (f"Registrar {registrar}{where}: {len(result.pools)} pool(s), {result.pe_count} PE(s) "
            f"in {result.responses} HANDLE_TABLE_RESPONSE(s)")  # fmt: skip


def handlespace_table(result: DumpResult) -> Table:
    table = Table(title="Handlespace", caption="* owned by the dumped registrar", caption_justify="left")
    for column in (
        "Pool",
        "Policy",
        "PE",
        "Home PR",
        "User transport",
        "Registrator",
        "Life",
        "Policy values",
    ):
        table.add_column(column, overflow="fold")
    for pool in result.pools:
        for index, pe in enumerate(pool.pool_elements):
            own = " *" if pe.home_registrar == result.registrar_id else ""
            registrator = pe.registrator_transport
            cells = (
                printable(pool.handle) if index == 0 else "", pool.policy_name if index == 0 else "",
                hex32(pe.identifier), hex32(pe.home_registrar) + own, transport_text(pe.user_transport),
                transport_text(registrator) if registrator else "-", f"{pe.registration_life / 1000:g} s",
                policy_text(pe),
            )  # fmt: skip
            table.add_row(*map(Text, cells))
        table.add_section()
    return table


def peer_table(peers: Sequence[ServerInformation]) -> Table:
    table = Table(title="Peers (LIST_RESPONSE)")
    table.add_column("Server ID")
    table.add_column("ENRP transport", overflow="fold")
    for peer in peers:
        table.add_row(Text(hex32(peer.server_id)), Text(transport_text(peer.transport)))
    return table


def checksum_table(result: DumpResult) -> Table:
    table = Table(title="PE checksums by home registrar")
    table.add_column("Home PR")
    table.add_column("PEs", justify="right")
    table.add_column("Checksum")
    counts: dict[int, int] = {}
    for pool in result.pools:
        for pe in pool.pool_elements:
            counts[pe.home_registrar] = counts.get(pe.home_registrar, 0) + 1
    for home, value in result.checksums().items():
        table.add_row(Text(hex32(home)), Text(str(counts[home])), Text(hex16(value)))
    return table


def presence_line(result: DumpResult) -> str | None:
    """Its PRESENCE checksum against the PEs dumped as its own."""
    matches = presence_matches(result)
    if matches is None or result.presence_checksum is None:
        return None
    verdict = "agrees with the dump" if matches else "DISAGREES with the dump (its tables changed meanwhile?)"
    return f"Its PRESENCE checksum for its own PEs, {hex16(result.presence_checksum)}, {verdict}"


def transport_text(transport: Transport) -> str:
    """ "sctp 10.1.1.10,10.1.2.10:7000" (data+ctrl when control goes over it too)."""
    use = getattr(transport, "transport_use", None)
    suffix = " data+ctrl" if use is not None and use.value else ""
    addresses = ",".join(f"[{a}]" if a.version == 6 else str(a) for a in transport.addresses)
    return f"{protocol_name(transport)} {addresses}:{transport.port}{suffix}"


def policy_text(pe: PoolElement) -> str:
    """Load and DPF values as percentages (fractions of 0xffffffff), distance in ms."""
    parts = []
    for name, value in zip(pe.policy.FIELDS, pe.policy.values()):
        if "load" in name or "dpf" in name:
            parts.append(f"{name}={100 * value / MAX_LOAD:.1f}%")
        elif name == "distance":
            parts.append(f"{name}={value}ms")
        else:
            parts.append(f"{name}={value}")
    return " ".join(parts) or "-"


# ------------------------------------------------------------------ command line


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nodes.registrar.hsdump",
                                description="Dump a registrar's handlespace over ENRP (RFC 5353), posing as a peer")  # fmt: skip
    p.add_argument(
        "registrar", metavar="REGISTRAR", help="ADDR[,ADDR...][:PORT] of the registrar's ENRP endpoint"
    )
    p.add_argument(
        "--port", type=int, default=ENRP.port, help="ENRP port when REGISTRAR has none (default 9901)"
    )
    p.add_argument("--backend", default="auto", choices=("auto", "usrsctp", "kernel-sctp", "tcp", "mptcp"))
    p.add_argument("--local", action="append", default=[], metavar="ADDR",
                   help="local address to bind (repeatable: multi-homed)")  # fmt: skip
    p.add_argument("--timeout", type=_positive, default=5.0, help="s for the whole dump, connecting included")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    return p


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be > 0")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        addresses, port = parse_endpoint(args.registrar, args.port)
    except ValueError as exc:
        p.error(str(exc))
    try:
        result = asyncio.run(dump(addresses, port, backend=args.backend, local=tuple(args.local),
                                  options=TransportOptions(connect_timeout_s=args.timeout), timeout=args.timeout))  # fmt: skip
    except DumpError as exc:
        timed_out = isinstance(exc, DumpTimeout)
        if args.json:
            print(json.dumps({"error": str(exc), "timeout": timed_out}), flush=True)
        print(f"hsdump: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT if timed_out else EXIT_FAILED
    if args.json:
        print(json.dumps(plain(result), indent=2), flush=True)
    else:
        render_text(result, Console(highlight=False))
    return EXIT_OK
